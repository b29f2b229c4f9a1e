"""rules: a network's formation rules, loaded from rules/*.toml and evaluated as pure functions.

The vocabulary is closed (no expressions): thresholds of organisations and countries, who constitutes a
group, the introduction text, contacts, joining, who is told of what, and reports and deliverables (used by
the schedules). Every evaluation returns a Decision naming the rule that decided, for replies and the audit log.
Nothing here touches the store or the network.
"""

from __future__ import annotations

import re
import tomllib
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from wgbot.config import build_from_table
from wgbot.countries import country_name
from wgbot.errors import RulesError

AUDIENCES = ("secretariat", "contacts", "supporters", "members", "network", "proposer")
CONSTITUTED_BY = ("automatic", "secretariat")
LAST_LEAVES = ("ask_secretariat", "close", "refuse")
JOIN_POLICIES = ("open", "approval")


@dataclass(frozen=True)
class NetworkRules:
    name: str
    organisation: str = "organisation"   # what a supporting organisation is called ("city")
    contact: str = "contact"             # what a group's contact is called ("chair", "facilitator")


@dataclass(frozen=True)
class FormationRules:
    min_organisations: int = 1
    min_countries: int = 0
    constituted_by: str = "secretariat"
    announce_while_forming: bool = False
    proposal_expiry_days: int = 60
    organisation_required: bool = False


@dataclass(frozen=True)
class IntroductionRules:
    required: bool = False
    max_words: int = 0


@dataclass(frozen=True)
class ContactRules:
    minimum: int = 1
    first: str = "proposer"
    last_leaves: str = "ask_secretariat"


@dataclass(frozen=True)
class JoiningRules:
    policy: str = "open"
    organisation_required: bool = False
    notify: tuple[str, ...] = ()


@dataclass(frozen=True)
class NotifyRules:
    proposed: tuple[str, ...] = ("secretariat",)
    constituted: tuple[str, ...] = ("secretariat", "supporters")
    closed: tuple[str, ...] = ("members", "secretariat")
    contact_changed: tuple[str, ...] = ("contacts", "secretariat")


@dataclass(frozen=True)
class ReportRules:
    yearly_report: bool = False
    report_due: str = ""
    approved_by: str = "secretariat"
    yearly_declaration: bool = False
    reminder_days: tuple[int, ...] = ()
    close_without_declaration: bool = False   # close groups that never declared after the final reminder


@dataclass(frozen=True)
class Deliverable:
    name: str
    due: str                             # "MM-DD" each year
    reminder_days: tuple[int, ...] = ()
    approved_by: str = "secretariat"
    publish_to_list: bool = False
    public_comment_days: int = 0
    comments_held: bool = False          # public comments wait for the contacts before they count


@dataclass(frozen=True)
class Rules:
    network: NetworkRules
    formation: FormationRules = FormationRules()
    introduction: IntroductionRules = IntroductionRules()
    contacts: ContactRules = ContactRules()
    joining: JoiningRules = JoiningRules()
    notify: NotifyRules = NotifyRules()
    reports: ReportRules = ReportRules()
    deliverables: tuple[Deliverable, ...] = ()
    path: str = ""


def _validate(r: Rules) -> None:
    p = r.path

    def one_of(where: str, value: str, allowed: tuple[str, ...]) -> None:
        if value not in allowed:
            raise RulesError(p, where, f"expected one of {', '.join(allowed)}, got {value!r}")

    f = r.formation
    if f.min_organisations < 1:
        raise RulesError(p, "formation.min_organisations", "expected at least 1 (the proposer)")
    if not 0 <= f.min_countries <= f.min_organisations:
        raise RulesError(p, "formation.min_countries", "expected 0 up to formation.min_organisations")
    if f.min_countries and not f.organisation_required:
        raise RulesError(p, "formation.organisation_required", "must be true when min_countries is set")
    one_of("formation.constituted_by", f.constituted_by, CONSTITUTED_BY)
    if f.proposal_expiry_days < 1:
        raise RulesError(p, "formation.proposal_expiry_days", "expected at least 1")
    if r.introduction.max_words < 0:
        raise RulesError(p, "introduction.max_words", "expected 0 (no limit) or more")
    if r.contacts.minimum < 1:
        raise RulesError(p, "contacts.minimum", "expected at least 1")
    one_of("contacts.first", r.contacts.first, ("proposer",))
    one_of("contacts.last_leaves", r.contacts.last_leaves, LAST_LEAVES)
    one_of("joining.policy", r.joining.policy, JOIN_POLICIES)
    for where, values in (("joining.notify", r.joining.notify), ("notify.proposed", r.notify.proposed),
                          ("notify.constituted", r.notify.constituted), ("notify.closed", r.notify.closed),
                          ("notify.contact_changed", r.notify.contact_changed)):
        for v in values:
            one_of(where, v, AUDIENCES)
    rep = r.reports
    if rep.report_due not in ("", "general_assembly") and not re.fullmatch(r"\d\d-\d\d", rep.report_due):
        raise RulesError(p, "reports.report_due", 'expected "general_assembly" or a date as "MM-DD"')
    one_of("reports.approved_by", rep.approved_by, ("secretariat", "contacts"))
    for i, d in enumerate(r.deliverables):
        where = f"deliverables[{i}]"
        m = re.fullmatch(r"(\d\d)-(\d\d)", d.due)
        if not m or not (1 <= int(m.group(1)) <= 12 and 1 <= int(m.group(2)) <= 31):
            raise RulesError(p, f"{where}.due", f'expected a date as "MM-DD", got {d.due!r}')
        one_of(f"{where}.approved_by", d.approved_by, ("secretariat", "contacts"))
        if any(n < 1 for n in d.reminder_days):
            raise RulesError(p, f"{where}.reminder_days", "expected whole numbers of days, at least 1")


def parse_rules(data: dict[str, Any], path: str) -> Rules:
    if "network" not in data:
        raise RulesError(path, "network", "missing; the [network] table is required")
    rules = build_from_table(Rules, data, path, "", RulesError)
    rules = Rules(**{**rules.__dict__, "path": path})
    _validate(rules)
    return rules


def load_rules(path: str | Path) -> Rules:
    """Read and validate a rules file; RulesError names the file, the rule and the field."""
    p = str(path)
    try:
        with open(p, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise RulesError(p, "-", "file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise RulesError(p, "-", f"not valid TOML: {exc}") from exc
    return parse_rules(data, p)


@lru_cache(maxsize=16)
def cached_rules(path: str) -> Rules:
    return load_rules(path)


# ---------------------------------------------------------------------------------------------------------
# Evaluation: pure functions of the rules and the facts


@dataclass(frozen=True)
class Decision:
    """The outcome of one rule: `ok`, the rule's name, and a sentence for people."""

    ok: bool
    rule: str
    reason: str


@dataclass(frozen=True)
class Supporter:
    organisation: str
    country: str
    address: str = ""        # counts as its own organisation when none is given (networks that do not ask)
    verified: bool = True    # False while the office has not accepted an organisation the register cannot confirm


def org_key(name: str) -> str:
    """Organisations are compared ignoring case and spacing (SPEC §4): 'City of  Rome' == 'city of rome'."""
    return "".join(unicodedata.normalize("NFKC", name).casefold().split())


def _plural(n: int, word: str) -> str:
    if n == 1:
        return f"1 {word}"
    return f"{n} {word[:-1]}ies" if word.endswith("y") and word[-2:-1] not in "aeiou" else f"{n} {word}s"


def count_supporters(supporters: list[Supporter]) -> tuple[int, int]:
    """(distinct organisations, distinct countries among them)."""
    orgs: dict[str, str] = {}
    for s in (s for s in supporters if s.verified):
        key = org_key(s.organisation) if s.organisation else "<" + s.address.lower() + ">"
        orgs.setdefault(key, s.country)
    return len(orgs), len({c for c in orgs.values() if c})


def formation(rules: Rules, supporters: list[Supporter]) -> Decision:
    """Has a proposal reached its threshold? A second person from the same organisation adds nothing."""
    f = rules.formation
    org_word = rules.network.organisation
    orgs, countries = count_supporters(supporters)
    waiting = [s for s in supporters if not s.verified]
    unverified = (" Unverified, not counted until the secretariat accepts them: " + ", ".join(
        (s.organisation or s.address) + (f" ({country_name(s.country)})" if s.country else "") for s in waiting)
        + ".") if waiting else ""
    rule = f"formation.min_organisations={f.min_organisations}"
    if f.min_countries:
        rule += f", formation.min_countries={f.min_countries}"
    if orgs >= f.min_organisations and countries >= f.min_countries:
        return Decision(True, rule, f"{_plural(orgs, org_word)} in {_plural(countries, 'country')} support it; "
                                    f"{rules.network.name} needs {f.min_organisations}"
                                    + (f" in {f.min_countries} countries" if f.min_countries else "") + unverified)
    have = f"{_plural(orgs, org_word)}" + (f" in {_plural(countries, 'country')}" if f.min_countries else "")
    needed = []
    if orgs < f.min_organisations:
        needed.append(_plural(f.min_organisations - orgs, f"more {org_word}"))
    if countries < f.min_countries:
        seen = sorted({country_name(s.country) for s in supporters if s.country})
        where = f" (other than {', '.join(seen)})" if seen else ""
        needed.append(f"support from {_plural(f.min_countries - countries, 'more country')}{where}")
    return Decision(False, rule, f"{rules.network.name} needs {_plural(f.min_organisations, org_word)}"
                                 + (f" in at least {f.min_countries} countries" if f.min_countries else "")
                                 + f"; it has {have}. Still needed: {' and '.join(needed)}." + unverified)


def words(text: str) -> int:
    return len(text.split())


def introduction(rules: Rules, text: str) -> Decision:
    """Is the introduction text present when required, and within the word limit?"""
    intro = rules.introduction
    n = words(text)
    if intro.required and n == 0:
        return Decision(False, "introduction.required",
                        f"{rules.network.name} requires an introduction text: write it after the propose line "
                        f"and its fields" + (f" (at most {intro.max_words} words)" if intro.max_words else ""))
    if intro.max_words and n > intro.max_words:
        return Decision(False, f"introduction.max_words={intro.max_words}",
                        f"introduction text has {n} words; {rules.network.name} allows at most {intro.max_words}")
    return Decision(True, "introduction", f"introduction text of {n} words")


def supporter_fields(rules: Rules, organisation: str, country: str, joining: bool) -> Decision:
    """Are the organisation and country given where the rules need them to count supporters?"""
    needed = rules.joining.organisation_required if joining else rules.formation.organisation_required
    where = "joining.organisation_required" if joining else "formation.organisation_required"
    if needed and (not organisation or not country):
        org_word = rules.network.organisation
        return Decision(False, where,
                        f"{rules.network.name} counts {org_word} and country: add the lines "
                        f"'Organisation: <your {org_word}>' and 'Country: <your country>' after the command")
    return Decision(True, where, "")


def constitution_status(rules: Rules) -> str:
    """The status a group takes on reaching its threshold: active when automatic, else pending approval."""
    return "active" if rules.formation.constituted_by == "automatic" else "pending"
