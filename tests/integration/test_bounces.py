"""Bounces end to end: a list copy's signed VERP return path, reports to it over real SMTP whatever their From,
scoring, the probe before delivery is paused, and forged reports that score nothing (issue 11 items 3, 8)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tests.conftest import make_config
from tests.helpers import NOW, Relay, add_members, dsn, feed, make_group, queued, signed_verp
from tests.integration.test_listener import wait_for
from tests.integration.test_lists import MEMBERS, ListBot, start
from wgbot.store import BounceScore, InboundMessage, Membership


@pytest.fixture
def lists(tmp_path: Path, relay: Relay) -> Iterator[ListBot]:
    yield from start(tmp_path, relay)


def _outcomes(sessions: sessionmaker[Session]) -> list[tuple[str, str]]:
    with sessions() as session:
        return [(r.status, r.outcome) for r in session.scalars(select(InboundMessage).order_by(InboundMessage.id))]


def _scores(sessions: sessionmaker[Session]) -> int:
    with sessions() as session:
        return len(session.scalars(select(BounceScore)).all())


BROKEN_FROMS = ["MAILER-DAEMON", "MAILER-DAEMON <>", None, "Mail Delivery System <MAILER-DAEMON>", "<>"]


def _with_from(raw: bytes, sender: str | None) -> bytes:
    head, _, body = raw.partition(b"\r\n")          # the helper's first line is the From header
    assert head.startswith(b"From:")
    return (b"" if sender is None else f"From: {sender}\r\n".encode()) + body


def test_bounce_with_broken_from_to_the_copys_return_path_scores(lists: ListBot) -> None:
    """A post goes out with a signed VERP return path; a report to that very address scores the member over the
    real listener even when its From is MAILER-DAEMON without a domain, `MAILER-DAEMON <>`, or missing, and an
    `Authentication-Results: ...; dmarc=none` stamp does not stop it (issue 11 item 3)."""
    lists.post("r1@example.com", subject="Copy")
    (copy,) = [c for c in lists.copies(3, "Copy") if c.rcpt_tos == ["r2@example.net"]]
    verp = copy.envelope_from
    assert verp.startswith("grp-bounces+r2=example.net=")
    for n, sender in enumerate(BROKEN_FROMS):
        raw = _with_from(dsn("r2@example.net", to=verp, msgid=f"<broken{n}@mx.example.net>"), sender)
        raw = b"Authentication-Results: mx.lists.example.org; dmarc=none header.from=example.net\r\n" + raw
        lists.post("", raw=raw, to=verp, envelope="")
    wait_for(lambda: len([o for o in _outcomes(lists.bot.sessions) if o[1]]) == 1 + len(BROKEN_FROMS))
    outcomes = _outcomes(lists.bot.sessions)[1:]          # the first is the post itself
    assert all(status != "quarantined" for status, _ in outcomes), outcomes
    assert outcomes[0] == ("done", "r2@example.net: score 1 of 5")
    assert all("already scored today" in outcome for _, outcome in outcomes[1:]), outcomes
    assert _scores(lists.bot.sessions) == 1


def test_bounce_over_smtp_temporary_and_auto_replies(lists: ListBot) -> None:
    """At the member's signed address a DSN scores; a delayed report and a vacation reply do not."""
    verp = signed_verp(lists.bot.sessions, "grp", "r1@example.com")
    lists.post("", raw=dsn("r1@example.com", to=verp), to=verp, envelope="")
    lists.post("", raw=dsn("r1@example.com", status="4.2.2", action="delayed", to=verp, msgid="<dsn2@x>"), to=verp,
               envelope="")
    lists.post("r1@example.com", raw=b"From: r1@example.com\r\nTo: " + verp.encode() +
               b"\r\nSubject: Out of office\r\nAuto-Submitted: auto-replied\r\n\r\nI am away.\r\n", to=verp)
    wait_for(lambda: len([o for o in _outcomes(lists.bot.sessions) if o[1]]) == 3)
    assert _scores(lists.bot.sessions) == 1
    text = " | ".join(o for _, o in _outcomes(lists.bot.sessions))
    assert "score 1 of 5" in text and "temporary" in text and "auto-reply" in text


def test_forged_reports_score_nothing(sqlite_sessions: Any, tmp_path: Path) -> None:
    """Reports to the shared SLUG-bounces@, to an unsigned VERP address, with a wrong tag, or with another
    member's tag score nothing (issue 11 item 8); the same report at the signed address does."""
    cfg = make_config(tmp_path)
    make_group(sqlite_sessions, cfg, name="grp")
    add_members(sqlite_sessions, "grp", MEMBERS)
    good = signed_verp(sqlite_sessions, "grp", "r1@example.com")
    other_tag = signed_verp(sqlite_sessions, "grp", "r2@example.net").rsplit("=", 1)[1]  # "TAG@domain"
    forged = ["grp-bounces@lists.example.org", "grp-bounces+r1=example.com@lists.example.org",
              "grp-bounces+r1=example.com=0123456789@lists.example.org",
              f"grp-bounces+r1=example.com={other_tag}"]
    for n, to in enumerate(forged):
        (outcome,) = feed(sqlite_sessions, cfg, dsn("r1@example.com", to=to, msgid=f"<f{n}@x>"), to=to, envelope="")
        assert outcome.status == "ignored", (to, outcome)
    assert _scores(sqlite_sessions) == 0
    (outcome,) = feed(sqlite_sessions, cfg, dsn("r1@example.com", to=good, msgid="<ok@x>"), to=good, envelope="")
    assert outcome.status == "done" and _scores(sqlite_sessions) == 1


def test_lower_cased_return_path_still_verifies(sqlite_sessions: Any, tmp_path: Path) -> None:
    """An MTA that lower-cases the local part (RFC 5321 allows it to be case-sensitive, many are not) does not
    spoil the tag: a report to the lower-cased address of a mixed-case member scores."""
    cfg = make_config(tmp_path)
    make_group(sqlite_sessions, cfg, name="grp")
    add_members(sqlite_sessions, "grp", {"Bob.Smith@Example.NET": "regular"})
    verp = signed_verp(sqlite_sessions, "grp", "Bob.Smith@Example.NET")
    assert verp != verp.lower()
    (outcome,) = feed(sqlite_sessions, cfg, dsn("bob.smith@example.net", to=verp.lower()), to=verp.lower(),
                      envelope="")
    assert outcome.status == "done" and "score 1" in outcome.outcome


def _delivery(sessions: sessionmaker[Session], address: str) -> tuple[str, str]:
    with sessions() as session:
        ms = [m for m in session.scalars(select(Membership)) if m.member.address == address][0]
        return ms.delivery, ms.delivery_reason


def test_threshold_sends_a_probe_and_only_its_bounce_pauses_delivery(sqlite_sessions: Any, tmp_path: Path) -> None:
    """Permanent bounces score at most once a day; at five within seven days the member gets a probe from its
    own probe return path, and delivery is paused (with a notice saying how to resume) only when the probe
    bounces too; a DMARC rejection of the munged copy never counts."""
    cfg = make_config(tmp_path)
    make_group(sqlite_sessions, cfg, name="grp")
    add_members(sqlite_sessions, "grp", MEMBERS)
    verp = signed_verp(sqlite_sessions, "grp", "r1@example.com")

    def bounce(msgid: str, day: int, to: str = verp, **kw: str) -> Any:
        (outcome,) = feed(sqlite_sessions, cfg, dsn("r1@example.com", to=to, msgid=msgid, **kw), to=to, envelope="",
                          now=NOW + dt.timedelta(days=day))
        return outcome
    bounce("<d0@x>", 0)
    assert "already scored today" in bounce("<d0b@x>", 0).outcome
    dmarc = bounce("<dm@x>", 1, diagnostic="smtp; 550 5.7.1 Unauthenticated email is not accepted due to "
                                           "domain's DMARC policy")
    assert dmarc.status == "ignored" and "DMARC" in dmarc.outcome
    for day in range(1, 4):
        bounce(f"<d{day}@x>", day)
    assert _delivery(sqlite_sessions, "r1@example.com")[0] == "regular" and _scores(sqlite_sessions) == 4
    assert "probe sent" in bounce("<d6@x>", 6).outcome
    assert _delivery(sqlite_sessions, "r1@example.com")[0] == "regular"
    (probe,) = [m for r, m in queued(sqlite_sessions) if r == "r1@example.com"]
    assert "still working" in str(probe["Subject"])
    probe_verp = signed_verp(sqlite_sessions, "grp", "r1@example.com", probe=True)
    with sqlite_sessions() as session:
        from wgbot.store import OutboxEntry

        assert session.scalars(select(OutboxEntry.envelope_from).where(
            OutboxEntry.recipient == "r1@example.com")).all() == [probe_verp]
    assert "delivery disabled" in bounce("<probe@x>", 6, to=probe_verp).outcome
    state, reason = _delivery(sqlite_sessions, "r1@example.com")
    assert state == "nomail" and "probe bounced" in reason
    notices = [m for r, m in queued(sqlite_sessions) if r == "r1@example.com" and "paused" in str(m["Subject"])]
    assert "set grp delivery regular" in notices[0].get_body().get_content()  # type: ignore[union-attr]


def test_whole_corpus_through_the_inbox(sqlite_sessions: Any, tmp_path: Path) -> None:
    """Every corpus report, stored and processed as the listener would at its member's signed address: none is
    quarantined, each permanent failure is counted for that member, nothing else is."""
    from benchmarks.bounces import samples
    from wgbot import dsn as reader

    cfg = make_config(tmp_path)
    make_group(sqlite_sessions, cfg, name="grp")
    corpus = [(s, s.recipient or "member@example.net") for s in samples()]
    add_members(sqlite_sessions, "grp", {address: "regular" for _, address in corpus})
    for sample, address in corpus:
        verp = signed_verp(sqlite_sessions, "grp", address)
        (outcome,) = feed(sqlite_sessions, cfg, sample.path.read_bytes(), to=verp, envelope="")
        assert outcome.status == ("done" if sample.kind == reader.PERMANENT else "ignored"), (sample.path.name,
                                                                                              outcome)
    scored = {a for s, a in corpus if s.kind == reader.PERMANENT}
    with sqlite_sessions() as session:
        assert {r.address_key for r in session.scalars(select(BounceScore))} == scored
