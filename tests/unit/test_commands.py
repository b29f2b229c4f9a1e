"""The command language and the spine's commands, on SQLite and on PostgreSQL."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tests.helpers import NOW, feed, last_reply, mail, make_group, outbox_count, queued, token_from
from wgbot import inbox  # noqa: F401  (the place that imports the features: every command registers)
from wgbot.commands import read_commands, strip_subject
from wgbot.config import Config
from wgbot.context import registry
from wgbot.groups import list_members
from wgbot.store import Group, InboundMessage, Membership, PendingAction


def members(sessions: sessionmaker[Session], slug: str) -> dict[str, str]:
    with sessions() as session:
        group = session.scalar(select(Group).where(Group.slug == slug))
        assert group is not None
        return {m["address"]: m["delivery"] for m in list_members(session, group)}


# ----------------------------------------------------------------------------------------- reading commands

def test_subject_prefixes_are_stripped() -> None:
    """Re:, Fwd:, AW:, 回复: and [tags] are removed, however stacked."""
    assert strip_subject("Re: Re: AW: 回复: [ext] Fwd: confirm abc") == "confirm abc"


def test_reading_stops_at_end_signature_and_quote() -> None:
    """Reading stops at `end`, at `-- ` and at the first quoted line."""
    for stopper in ("end", "-- ", "> quoted"):
        lines, unknown, stopped = read_commands(registry, "", f"help\n{stopper}\njoin x\n", 25)
        assert [line.verb for line in lines] == ["help"] and unknown == []
        assert stopped


def test_subject_words_that_are_not_commands_are_ignored() -> None:
    """A Subject like 'Hello there' is not an error; an unknown body line is reported."""
    lines, unknown, _ = read_commands(registry, "Hello there", "frobnicate now\nhelp\n", 25)
    assert [line.verb for line in lines] == ["help"] and unknown == ["frobnicate now"]


def test_fields_and_quoted_arguments() -> None:
    """Field lines after join are its fields; quoted arguments keep their spaces; verbs are case-insensitive."""
    lines, _, _ = read_commands(registry, "", 'JOIN "Migrant Inclusion" digest\nOrganisation: City of Rome\n'
                                          "Country: Italia\nhelp\n", 25)
    assert lines[0].args == ["Migrant Inclusion", "digest"]
    assert lines[0].fields == {"organisation": "City of Rome", "country": "Italia"}
    assert lines[1].verb == "help"


def test_aliases() -> None:
    """subscribe, unsubscribe, lists and stop are aliases."""
    assert {registry.lookup(v).name for v in ("subscribe", "unsubscribe", "lists", "stop")  # type: ignore[union-attr]
            } == {"join", "leave", "groups", "end"}


def test_at_most_max_lines() -> None:
    """Only the first N command lines are read."""
    lines, _, stopped = read_commands(registry, "", "help\n" * 40, 25)
    assert len(lines) == 25 and "25" in stopped


# ----------------------------------------------------------------------------------------- commands


def test_help_lists_every_command(sessions: sessionmaker[Session], cfg: Config) -> None:
    """`help` is generated from the registry: every command's usage appears in the reply."""
    feed(sessions, cfg, mail("", subject="help"))
    body = last_reply(sessions)
    for spec in registry.specs():
        assert spec.usage in body


def test_join_needs_confirmation(sessions: sessionmaker[Session], cfg: Config) -> None:
    """join sends a confirmation request and changes nothing until it is confirmed by reply."""
    slug = make_group(sessions, cfg)
    feed(sessions, cfg, mail(f"join {slug} digest\nOrganisation: City of Graz\nCountry: Österreich\n"))
    assert "alice@example.com" not in members(sessions, slug)
    assert "confirmation request" in last_reply(sessions)
    (rcpt, request), = queued(sessions, "confirm")
    token = token_from(sessions)
    assert rcpt == "alice@example.com"
    assert str(request["Reply-To"]) == f"wgbot+confirm-{token}@lists.example.org"
    # Reply to the confirmation request: it lands on the +confirm- address.
    feed(sessions, cfg, mail("ok", subject=f"Re: confirm {token}", msgid="<m2@example.com>"),
         to=f"wgbot+confirm-{token}@lists.example.org")
    assert members(sessions, slug)["alice@example.com"] == "digest"
    assert "now a member" in last_reply(sessions)
    with sessions() as session:
        member = [m for m in list_members(session, session.scalars(select(Group)).one())
                  if m["address"] == "alice@example.com"][0]
    assert member["organisation"] == "City of Graz" and member["country"] == "AT"


def test_confirm_in_subject_and_single_use(sessions: sessionmaker[Session], cfg: Config) -> None:
    """`confirm TOKEN` in the Subject confirms; the same token again changes nothing and says so."""
    slug = make_group(sessions, cfg)
    feed(sessions, cfg, mail(f"join {slug}"))
    token = token_from(sessions)
    feed(sessions, cfg, mail("", subject=f"Re: Re: confirm {token}", msgid="<m2@example.com>"))
    assert "alice@example.com" in members(sessions, slug)
    feed(sessions, cfg, mail("", subject=f"confirm {token}", msgid="<m3@example.com>"))
    assert "already been confirmed" in last_reply(sessions)


def test_token_is_stored_hashed_and_long(sessions: sessionmaker[Session], cfg: Config) -> None:
    """Tokens have at least 128 bits in lower-case letters and digits, and only their hash is stored."""
    slug = make_group(sessions, cfg)
    feed(sessions, cfg, mail(f"join {slug}"))
    token = token_from(sessions)
    assert len(token) >= 26 and token.isalnum() and token == token.lower()
    with sessions() as session:
        row = session.scalars(select(PendingAction)).one()
    assert row.token_hash != token and token not in str(row.payload)


def test_expired_token_is_refused(sessions: sessionmaker[Session], cfg: Config) -> None:
    """A token past its expiry confirms nothing."""
    slug = make_group(sessions, cfg)
    feed(sessions, cfg, mail(f"join {slug}"))
    token = token_from(sessions)
    later = NOW + dt.timedelta(days=cfg.limits.token_days, seconds=1)
    feed(sessions, cfg, mail(f"confirm {token}", msgid="<m9@example.com>"), now=later)
    assert "alice@example.com" not in members(sessions, slug)
    assert "expired" in last_reply(sessions)


def test_wrong_token_is_refused(sessions: sessionmaker[Session], cfg: Config) -> None:
    """An unknown token confirms nothing."""
    slug = make_group(sessions, cfg)
    feed(sessions, cfg, mail(f"join {slug}"))
    feed(sessions, cfg, mail("confirm " + "b" * 32, msgid="<m9@example.com>"))
    assert "not one we know" in last_reply(sessions)
    assert "alice@example.com" not in members(sessions, slug)


def test_leave_and_set(sessions: sessionmaker[Session], cfg: Config) -> None:
    """leave and set take effect after confirmation; set changes the delivery."""
    slug = make_group(sessions, cfg)
    feed(sessions, cfg, mail(f"join {slug}", msgid="<a1@example.com>"))
    feed(sessions, cfg, mail(f"confirm {token_from(sessions)}", msgid="<a2@example.com>"))
    feed(sessions, cfg, mail(f"set {slug} delivery nomail", msgid="<a3@example.com>"))
    assert members(sessions, slug)["alice@example.com"] == "regular"
    feed(sessions, cfg, mail(f"confirm {token_from(sessions)}", msgid="<a4@example.com>"))
    assert members(sessions, slug)["alice@example.com"] == "nomail"
    feed(sessions, cfg, mail(f"leave {slug}", msgid="<a5@example.com>"))
    assert "alice@example.com" in members(sessions, slug)
    feed(sessions, cfg, mail(f"confirm {token_from(sessions)}", msgid="<a6@example.com>"))
    assert "alice@example.com" not in members(sessions, slug)


def test_one_reply_lists_every_result(sessions: sessionmaker[Session], cfg: Config) -> None:
    """Several commands in one message get one reply that lists each result, errors included."""
    slug = make_group(sessions, cfg)
    before = len(queued(sessions, "reply"))
    feed(sessions, cfg, mail(f"groups\ninfo {slug}\njoin nosuchgroup\nleave {slug}\n"))
    assert len(queued(sessions, "reply")) == before + 1
    body = last_reply(sessions)
    assert "> groups" in body and f"> info {slug}" in body
    assert 'There is no group "nosuchgroup"' in body
    assert "is not a member of Migrant Inclusion" in body


def test_failed_command_changes_nothing(sessions: sessionmaker[Session], cfg: Config) -> None:
    """A join with a bad country creates no pending request and no member."""
    slug = make_group(sessions, cfg)
    feed(sessions, cfg, mail(f"join {slug}\nCountry: Atlantis\n"))
    assert "is not a country we know" in last_reply(sessions)
    with sessions() as session:
        assert session.scalars(select(PendingAction)).all() == []


def test_request_address_defaults_the_group(sessions: sessionmaker[Session], cfg: Config) -> None:
    """Commands to SLUG-request@ may leave out the group; SLUG-join@ joins whatever the body says."""
    slug = make_group(sessions, cfg)
    feed(sessions, cfg, mail("info\n"), to=f"{slug}-request@lists.example.org")
    assert "status: active" in last_reply(sessions)
    feed(sessions, cfg, mail("whatever", msgid="<j1@example.com>"), to=f"{slug}-join@lists.example.org")
    assert "confirmation request" in last_reply(sessions)


def test_who_hides_addresses_from_members(sessions: sessionmaker[Session], cfg: Config) -> None:
    """who shows organisations to anyone but addresses only to contacts and the secretariat."""
    slug = make_group(sessions, cfg)
    feed(sessions, cfg, mail(f"who {slug}"))
    assert "chair@city.example" not in last_reply(sessions) and "City of Bologna" in last_reply(sessions)
    feed(sessions, cfg, mail(f"who {slug}", sender="chair@city.example", msgid="<w2@example.com>"))
    assert "chair@city.example" in last_reply(sessions)
    feed(sessions, cfg, mail(f"who {slug}", sender="office@example.org", msgid="<w3@example.com>"))
    assert "chair@city.example" in last_reply(sessions)


def test_reprocessing_changes_nothing(sessions: sessionmaker[Session], cfg: Config) -> None:
    """The same message delivered twice (RFC 1047) is stored once and answered once."""
    slug = make_group(sessions, cfg)
    raw = mail(f"join {slug}")
    feed(sessions, cfg, raw)
    count = outbox_count(sessions)
    feed(sessions, cfg, b"Received: from relay.example by mx.example; Sat, 21 Nov 2026 09:00:00 +0000\r\n" + raw)
    assert outbox_count(sessions) == count
    with sessions() as session:
        assert len(session.scalars(select(InboundMessage)).all()) == 1
        assert session.scalars(select(Membership)).all().__len__() == 1


def test_rate_limit(sessions: sessionmaker[Session], cfg: Config) -> None:
    """At most replies_per_day automatic mails go to one address a day; the rest are silent."""
    for i in range(cfg.limits.replies_per_day + 3):
        feed(sessions, cfg, mail("help", msgid=f"<r{i}@example.com>"))
    assert len(queued(sessions, "reply")) == cfg.limits.replies_per_day
    feed(sessions, cfg, mail("help", msgid="<next-day@example.com>"), now=NOW + dt.timedelta(days=1))
    assert len(queued(sessions, "reply")) == cfg.limits.replies_per_day + 1


def test_reply_headers(sessions: sessionmaker[Session], cfg: Config) -> None:
    """Replies thread under the message and say they are automatic (RFC 3834)."""
    feed(sessions, cfg, mail("help", headers={"References": "<p0@example.com>"}))
    (rcpt, reply), = queued(sessions, "reply")
    assert rcpt == "alice@example.com"
    assert reply["In-Reply-To"] == "<m1@example.com>"
    assert reply["References"] == "<p0@example.com> <m1@example.com>"
    assert reply["Auto-Submitted"] == "auto-replied" and reply["Message-ID"] and reply["Date"]


def test_replies_go_to_the_envelope_sender(sessions: sessionmaker[Session], cfg: Config) -> None:
    """A reply that is the same whoever asks goes to the envelope sender; one that depends on who the From is
    (issue 11 item 1) goes to the From address, as the confirmation does."""
    slug = make_group(sessions, cfg)
    feed(sessions, cfg, mail("help"), envelope="srs0+alice@mail.example.com")
    assert queued(sessions, "reply")[-1][0] == "srs0+alice@mail.example.com"
    feed(sessions, cfg, mail(f"join {slug}", msgid="<j@example.com>"), envelope="srs0+alice@mail.example.com")
    assert queued(sessions, "reply")[-1][0] == "alice@example.com"
    assert queued(sessions, "confirm")[-1][0] == "alice@example.com"


def test_subject_command_takes_the_body_as_its_fields_and_text() -> None:
    """`propose NAME` in the Subject: the body's field lines are its fields, the rest its introduction."""
    lines, unknown, _ = read_commands(registry, "propose Circus Futures",
                                      "\nOrganisation: Teatro\nCountry: IT\n\nWe bring circus together.\nAll welcome.\n"
                                      "-- \nAnna\n", 25)
    assert unknown == [] and len(lines) == 1
    assert lines[0].fields == {"organisation": "Teatro", "country": "IT"}
    assert lines[0].text == "We bring circus together.\nAll welcome."
    # A body that starts with a command is read as commands, as before.
    lines, _, _ = read_commands(registry, "propose X", "help\n", 25)
    assert [line.verb for line in lines] == ["propose", "help"] and lines[0].text == ""
