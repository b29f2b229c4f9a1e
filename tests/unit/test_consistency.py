"""Commands ↔ templates ↔ example configuration: nothing is missing on either side, everything renders."""

from __future__ import annotations

import re
from types import SimpleNamespace

from wgbot import inbox  # noqa: F401  (the place that imports the features: every command registers)
from wgbot.config import Config
from wgbot.context import registry
from wgbot.render import compose, render_fragment, template_names
from wgbot.resources import data_dir
from wgbot.rules import Decision, load_rules

NOW_CONTEXT = {"outcome": "ok", "sender": "alice@example.com"}


def test_every_command_has_a_template_and_every_template_a_command() -> None:
    """commands/NAME.txt exists for each registered command, and names no command that does not exist."""
    names = {n.removeprefix("commands/").removesuffix(".txt") for n in template_names()
             if n.startswith("commands/") and not n.startswith("commands/_")}
    assert names == {spec.name for spec in registry.specs()}


def test_every_command_has_usage_summary_and_example() -> None:
    """help is generated from the registry, so each entry must be complete."""
    for spec in registry.specs():
        assert spec.usage.startswith(spec.name) and spec.summary and spec.example


def test_every_template_renders(cfg: Config) -> None:
    """Each template renders with a sample context; full messages start with a Subject line."""
    from datetime import UTC, date, datetime

    from wgbot.reports import Obligation

    decision = Decision(False, "formation.min_organisations=3", "ECCAR needs 3 cities")
    group = SimpleNamespace(proposer="p@example.com", closed_reason="", name="Migrant Inclusion",
                            slug="migrant-inclusion", status="active",
                            introduction="We work on inclusion.")
    sample = {
        "commands": registry.specs(), "groups": [group], "group": group, "domain": "lists.example.org",
        "contacts": [], "countries": [("Italy", ["City of Bologna"])], "members": [], "privileged": False,
        "value": "x", "ref": "R-ABCDEFG", "sent": True, "delivery": "digest", "outcome_was": "confirmed",
        "token": "a" * 32, "description": "join a group", "address": "alice@example.com", "days": 14,
        "reason": "too big", "results": [], "unknown": ["frobnicate"], "stopped": "",
        "summary": "constitute the working group Migrant Inclusion", "applied": "the group is active",
        "decisions": [decision], "decision": decision, "formation": decision, "name": "Migrant Inclusion",
        "problem": "reserved", "what": "join a group", "verb": "add", "minimum": 1, "last": True,
        "member": SimpleNamespace(address="a@example.com", organisation="City of Graz", country="AT"),
        "requester": "alice@example.com", "kind": "group", "rule": "formation.constituted_by=secretariat",
        "reply_address": "wgbot+approval-" + "a" * 32 + "@lists.example.org", "decider": "office@example.org",
        "by": "chair@example.org", "score": 5,
        "obligation": Obligation("draft output", date(2027, 11, 1), (30, 7, 1), "secretariat", True, 30, False,
                                 "deliverables[0]"),
        "deadline": date(2026, 11, 1), "declaration": True,
        "report": SimpleNamespace(kind="draft output", comments_until=datetime(2027, 1, 1, tzinfo=UTC)),
        "comments": [SimpleNamespace(name="Bo", sender="bo@example.org", received_at=datetime(2026, 12, 1, tzinfo=UTC),
                                     status="held", text="Good work.")],
        "expires": datetime(2026, 12, 5, tzinfo=UTC), "approval": True,
        "held": [], "approvals": [], "upcoming": [], "overdue": [], "disabled": [], "scores": 0,
        "today": date(2026, 11, 23),
        "entries": [{"subject": "Hello", "sender": "a@example.org", "date": "Mon, 23 Nov 2026", "text": "Hi"}],
        "number": 3, "setting": "delivery", "digest": "plain", "size": 10, "limit": 5,
        "unverified": "", "invited": None, "more": 2,
        "items": [{"ref": "R-ABCDEFG", "summary": "let the post through", "token": "a" * 32, "reason": "not a member",
                   "reply_address": "wgbot+approval-" + "a" * 32 + "@lists.example.org", "excerpt": "Hi"}],
        "suggestion": "join", "args": ["migrant-inclusion"], "similar": group,
        "meeting": SimpleNamespace(public_ref="M-ABCDEFG", location="Town Hall, Bologna", agenda="1. The budget",
                                   minutes_long=90, status="scheduled"),
        "when": "12 January 2027 at 14:00 CET", "until": "15:30", "link": "", "before": "11 January 2027 at 14:00 CET",
        "request_address": "migrant-inclusion-request@lists.example.org", "count": 12, "invitees": 14,
        "tally": SimpleNamespace(counts={"attend": 2, "maybe": 1, "decline": 0}, total=3,
                                 by_answer={"attend": [("City of Graz", ["Al <al@graz.example>"])], "maybe": [],
                                            "decline": []},
                                 organisations={"attend": ["City of Graz"], "maybe": [], "decline": []}),
        "soon": "tomorrow", "contact": True, "now_text": "11 January 2027 at 13:30 CET", "example": "2027-01-12 14:00",
        "formats": ["2027-01-12 14:00"], "meetings_coming": [], "minutes_missing": [],
    }
    from datetime import UTC, date, datetime

    rules = load_rules(cfg.rules_path)

    for name in template_names():
        if name.startswith("commands/_"):
            continue
        if "/_" in name:
            assert render_fragment(cfg, name, **{**sample, "address": "g@lists.example.org"}, network=cfg.network,
                                   cfg=cfg, rules=rules, archive="https://lists.example.org/archive/g/").strip(), name
            continue
        if name.startswith("commands/"):
            source = (data_dir("templates") / name).read_text()
            for partial in re.findall(r'include "(commands/_\w+\.txt)"', source):
                source += (data_dir("templates") / partial).read_text()
            outcomes = set(re.findall(r'outcome == "(\w+)"', source)) or {"ok"}
            for outcome in outcomes:
                text = render_fragment(cfg, name, **{**sample, **NOW_CONTEXT, "outcome": outcome},
                                       network=cfg.network, cfg=cfg, rules=rules)
                assert text.strip(), f"{name} renders nothing for outcome {outcome}"
        else:
            msg = compose(cfg, name, {**sample, "rules": rules, "outcome": "the group is active"},
                          to=["alice@example.com"], now=datetime(2026, 1, 1, tzinfo=UTC))
            assert str(msg["Subject"]).strip(), name
