"""Rules files: the three networks encode their source documents; the evaluation is table-driven and pure."""

from __future__ import annotations

from pathlib import Path

import pytest

from wgbot.errors import RulesError
from wgbot.resources import data_dir
from wgbot.rules import Supporter, formation, introduction, load_rules, org_key, supporter_fields

ECCAR = load_rules(data_dir("rules") / "eccar.toml")
IETM = load_rules(data_dir("rules") / "ietm.toml")
IGF = load_rules(data_dir("rules") / "igf.toml")


def s(*pairs: str) -> list[Supporter]:
    return [Supporter(p.split("/")[0], p.split("/")[1], f"person{i}@example.org") for i, p in enumerate(pairs)]


@pytest.mark.parametrize(("rules", "supporters", "met", "text"), [
    (ECCAR, s("Bologna/IT"), False, "2 more cities"),
    (ECCAR, s("Bologna/IT", "Rome/IT"), False, "1 more city and support from 1 more country (other than Italy)"),
    (ECCAR, s("Bologna/IT", "Rome/IT", "Turin/IT"), False, "3 cities in 1 country"),        # two cities of one country
    (ECCAR, s("Bologna/IT", "bologna /IT", "Graz/AT"), False, "2 cities in 2 countries"),   # the same city twice
    (ECCAR, s("Bologna/IT", "City of  Rome/IT", "city of rome/IT"), False, "2 cities"),
    (ECCAR, s("Bologna/IT", "Rome/IT", "Graz/AT"), True, "3 cities in 2 countries support it"),
    (IETM, s("Teatro/IT"), True, ""),
    (IGF, s("/"), True, ""),                     # IGF: the proposer alone, no organisation needed
])
def test_formation_thresholds(rules: object, supporters: list[Supporter], met: bool, text: str) -> None:
    """ECCAR needs three distinct cities in two countries; IETM and IGF the proposer alone."""
    decision = formation(rules, supporters)  # type: ignore[arg-type]
    assert decision.ok is met
    assert text in decision.reason
    assert decision.rule.startswith("formation.min_organisations")


def test_organisations_compare_ignoring_case_and_spacing() -> None:
    """'City of  Rome' and 'city of rome' are the same organisation."""
    assert org_key("City of  Rome") == org_key("city of rome") == org_key(" CITY OF ROME ")


@pytest.mark.parametrize(("rules", "n", "ok", "text"), [
    (IETM, 243, False, "introduction text has 243 words; IETM allows at most 200"),
    (IETM, 200, True, ""),
    (IETM, 0, False, "IETM requires an introduction text"),
    (IGF, 0, False, "IGF requires an introduction text"),
    (IGF, 5000, True, ""),
    (ECCAR, 0, True, ""),
])
def test_introduction(rules: object, n: int, ok: bool, text: str) -> None:
    """IETM: required, at most 200 words; IGF: required; ECCAR: optional."""
    decision = introduction(rules, " ".join(["word"] * n))  # type: ignore[arg-type]
    assert decision.ok is ok and text in decision.reason


def test_eccar_needs_city_and_country() -> None:
    """ECCAR counts cities and countries, so supporting and joining need both; IETM does not."""
    assert not supporter_fields(ECCAR, "Bologna", "", False).ok
    assert not supporter_fields(ECCAR, "", "", True).ok
    assert supporter_fields(ECCAR, "Bologna", "IT", True).ok
    assert supporter_fields(IETM, "", "", False).ok


def test_the_three_files_encode_their_sources() -> None:
    """SPEC §4's table, knob by knob."""
    assert (ECCAR.formation.min_organisations, ECCAR.formation.min_countries) == (3, 2)
    assert ECCAR.formation.constituted_by == "automatic" and ECCAR.formation.announce_while_forming
    assert set(ECCAR.joining.notify) == {"contacts", "secretariat"}
    assert ECCAR.reports.yearly_report and ECCAR.reports.yearly_declaration
    assert ECCAR.reports.report_due == "general_assembly"
    assert IETM.formation.constituted_by == "secretariat" and IETM.introduction.max_words == 200
    assert IETM.introduction.required and IETM.joining.notify == ("contacts",)
    assert IETM.contacts.last_leaves == "ask_secretariat"
    assert IGF.formation.constituted_by == "secretariat" and IGF.joining.policy == "open"
    (draft,) = IGF.deliverables
    assert (draft.due, draft.reminder_days, draft.public_comment_days) == ("11-01", (30, 7, 1), 30)


@pytest.mark.parametrize(("text", "where"), [
    ('[network]\nname = "X"\n[formation]\nconstituted_by = "vote"\n', "formation.constituted_by"),
    ('[network]\nname = "X"\n[formation]\nmin_organisations = 0\n', "formation.min_organisations"),
    ('[network]\nname = "X"\n[formation]\nmin_organisations = "3"\n', "formation.min_organisations"),
    ('[network]\nname = "X"\n[formation]\nmin_countries = 2\nmin_organisations = 3\n',
     "formation.organisation_required"),
    ('[network]\nname = "X"\n[joining]\nnotify = ["everyone"]\n', "joining.notify"),
    ('[network]\nname = "X"\n[contacts]\nlast_leaves = "shrug"\n', "contacts.last_leaves"),
    ('[network]\nname = "X"\n[[deliverables]]\nname = "d"\ndue = "13-45"\n', "deliverables[0].due"),
    ('[network]\nname = "X"\n[formation]\nquorum = 3\n', "formation.quorum"),
    ('[formation]\nmin_organisations = 3\n', "network"),
])
def test_errors_name_file_rule_and_field(tmp_path: Path, text: str, where: str) -> None:
    """An invalid rules file is refused with an error naming the file, the rule and the field."""
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(RulesError) as err:
        load_rules(path)
    assert str(path) in str(err.value) and f": {where}:" in str(err.value)
