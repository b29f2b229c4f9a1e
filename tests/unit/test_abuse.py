"""Abuse a hostile outsider tried (issue 11, item 8) and what people read (item 7): each test replays the attack
or the defect against the real processing path on a migrated store."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tests.conftest import make_config
from tests.helpers import NOW, approval_token, feed, mail, make_group, queued
from tests.unit.test_workgroups import group, roles, say
from wgbot.config import Config
from wgbot.errors import UsageError
from wgbot.groups import create_group
from wgbot.store import AuditEntry, PendingAction

S = sessionmaker[Session]
OFFICE = ["office@example.org"]


def net(tmp_path: Path, rules: str, **sections: dict[str, object]) -> Config:
    network = {"rules": rules, "secretariat": OFFICE, "base_url": "https://lists.example.org/wg",
               **sections.pop("network", {})}
    return make_config(tmp_path, network=network, **sections)


# ------------------------------------------------------------------------------------------ look-alike names


@pytest.mark.parametrize("name, why", [
    ("Urb\u0430n S\u0430fety", "looks like the name of the existing group 'Urban Safety'"),   # Cyrillic а
    ("Migrant lnclusion", "looks like the name of the existing group 'Migrant Inclusion'"),  # l for I
    ("Urban\u00adSafety Net", "invisible or control characters (U+00AD)"),                  # soft hyphen
    ("Urban\u3164Safety Forum", "invisible or control characters (U+3164)"),                    # Hangul filler
    ("Urban\u2060Safety Forum", "invisible or control characters (U+2060)"),                # word joiner
    ("Migr\u0430nt Rights", "mixes scripts (CYRILLIC, LATIN)"),
])
def test_lookalike_group_names_are_refused(sqlite_sessions: S, tmp_path: Path, name: str, why: str) -> None:
    """A name whose TR 39 skeleton matches an existing group's, a mixed-script name and one with invisible or
    bidi control characters are refused by email and on the command line."""
    cfg = net(tmp_path, "igf")
    make_group(sqlite_sessions, cfg, name="Urban Safety")
    make_group(sqlite_sessions, cfg, name="Migrant Inclusion")
    reply = say(sqlite_sessions, cfg, "mallory@evil.example", f"propose {name}\n\nCopycat.\n")
    assert "cannot be a group's name" in reply and why in reply, reply
    with sqlite_sessions.begin() as session, pytest.raises(UsageError, match="cannot use the name|printable"):
        create_group(session, cfg, name, contact="x@evil.example", now=NOW)


def test_names_in_one_script_still_pass(sqlite_sessions: S, tmp_path: Path) -> None:
    """Japanese (Han with kana, and Latin) and accented Latin names that resemble no group are accepted."""
    cfg = net(tmp_path, "igf")
    make_group(sqlite_sessions, cfg, name="Urban Safety")
    for name in ("Sécurité urbaine", "都市の安全 Forum", "Ciudades Seguras 2030"):
        reply = say(sqlite_sessions, cfg, "fac@ngo.example", f"propose {name}\n\nText.\n")
        assert "waiting for the secretariat's approval" in reply, reply


# ------------------------------------------------------------------------------------------ one-click unsubscribe


def test_one_click_unsubscribe_of_the_sole_contact_follows_last_leaves(sessions: S, tmp_path: Path) -> None:
    """The sole contact's one-click unsubscribe (RFC 8058) asks the secretariat to keep or close the group,
    exactly as a confirmed `leave` does (contacts.last_leaves = ask_secretariat), instead of leaving a
    group without a contact that nobody knows about."""
    from wgbot import web
    from wgbot.lists import unsubscribe_url
    from wgbot.store import secret_key

    cfg = net(tmp_path, "ietm")
    slug = make_group(sessions, cfg, name="Dance", contact="anna@theatre.example")
    with sessions.begin() as session:
        url = unsubscribe_url(cfg, secret_key(session), slug, "anna@theatre.example")
    path = url.removeprefix("https://lists.example.org/wg")
    status, page = web.handle(sessions, cfg, "POST", path, b"List-Unsubscribe=One-Click", NOW)
    assert status == "200 OK" and b"You have left Dance" in page
    assert roles(sessions, slug) == {}
    requests = [m for r, m in queued(sessions, "approval") if r == "office@example.org"]
    assert len(requests) == 1 and "keep Dance open" in str(requests[0]["Subject"])
    with sessions() as session:
        assert session.scalar(select(AuditEntry.rule).where(AuditEntry.action == "one-click-unsubscribe")) == \
            "RFC 8058"


def test_one_click_unsubscribe_refused_where_the_rules_refuse(sqlite_sessions: S, tmp_path: Path) -> None:
    """Under contacts.last_leaves = refuse, the sole contact's one-click link leaves nothing without a contact:
    the page says to leave by email with a replacement, and the membership stays."""
    from wgbot import web
    from wgbot.lists import unsubscribe_url
    from wgbot.store import secret_key

    rules = (Path(__file__).parents[2] / "rules" / "ietm.toml").read_text().replace(
        'last_leaves = "ask_secretariat"', 'last_leaves = "refuse"')
    (tmp_path / "strict.toml").write_text(rules)
    cfg = net(tmp_path, str(tmp_path / "strict.toml"))
    slug = make_group(sqlite_sessions, cfg, name="Dance", contact="anna@theatre.example")
    with sqlite_sessions.begin() as session:
        url = unsubscribe_url(cfg, secret_key(session), slug, "anna@theatre.example")
    status, page = web.handle(sqlite_sessions, cfg, "POST", url.removeprefix("https://lists.example.org/wg"),
                              b"List-Unsubscribe=One-Click", NOW)
    assert b"last contact" in page and b"Replacement: ADDRESS" in page
    assert roles(sqlite_sessions, slug) == {"anna@theatre.example": "contact"}


# ------------------------------------------------------------------------------------------ withdraw


def test_withdraw_by_the_approval_reference_closes_the_proposal(sessions: S, tmp_path: Path) -> None:
    """The proposer withdrawing by the approval request's reference (the one in the outcome mails) withdraws
    the proposal: it is closed, the approvers can no longer decide it, and its name is free again."""
    cfg = net(tmp_path, "igf")
    say(sessions, cfg, "fac@ngo.example", "propose Youth Coalition\n\nYouth.\n")
    with sessions() as session:
        row = session.scalars(select(PendingAction).where(PendingAction.action == "approval")).one()
        approval_ref = row.public_ref
    reply = say(sessions, cfg, "fac@ngo.example", f"withdraw {approval_ref}")
    assert "Withdrawn" in reply, reply
    assert group(sessions, "youth-coalition")["status"] == "closed"
    token = approval_token(sessions)
    feed(sessions, cfg, mail("approve", sender="office@example.org", msgid="<late@example.org>"),
         to=f"wgbot+approval-{token}@lists.example.org")
    assert group(sessions, "youth-coalition")["status"] == "closed"
