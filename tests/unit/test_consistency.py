"""Commands ↔ templates ↔ example configuration: nothing is missing on either side, everything renders."""

from __future__ import annotations

import re
from types import SimpleNamespace

from wgbot.commands import registry
from wgbot.config import Config
from wgbot.render import compose, render_fragment, template_names
from wgbot.resources import data_dir

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
    group = SimpleNamespace(name="Migrant Inclusion", slug="migrant-inclusion", status="active",
                            introduction="We work on inclusion.")
    sample = {
        "commands": registry.specs(), "groups": [group], "group": group, "domain": "lists.example.org",
        "contacts": [], "countries": [("Italy", ["City of Bologna"])], "members": [], "privileged": False,
        "value": "x", "ref": "R-ABCDEFG", "sent": True, "delivery": "digest", "outcome_was": "confirmed",
        "token": "a" * 32, "description": "join a group", "address": "alice@example.com", "days": 14,
        "reason": "too big", "results": [], "unknown": ["frobnicate"], "stopped": "",
    }
    from datetime import UTC, datetime

    for name in template_names():
        if name.startswith("commands/_"):
            continue
        if name.startswith("commands/"):
            source = (data_dir("templates") / name).read_text() + (data_dir("templates") / "commands/_group_errors.txt"
                                                                   ).read_text()
            outcomes = set(re.findall(r'outcome == "(\w+)"', source)) or {"ok"}
            for outcome in outcomes:
                text = render_fragment(cfg, name, **{**sample, **NOW_CONTEXT, "outcome": outcome},
                                       network=cfg.network, cfg=cfg)
                assert text.strip(), f"{name} renders nothing for outcome {outcome}"
        else:
            msg = compose(cfg, name, sample, to=["alice@example.com"], now=datetime(2026, 1, 1, tzinfo=UTC))
            assert str(msg["Subject"]).strip(), name
