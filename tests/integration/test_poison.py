"""No poison message (issue 11 item 5): a message whose processing kills `wgbot run` is tried at most three
times, then quarantined with the reason, and the rest is processed. Real processes, killed for real."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import insert, select

from tests.helpers import NOW, Relay, mail
from tests.integration.botproc import BotProcess
from wgbot.inbox import MAX_ATTEMPTS, accept
from wgbot.store import Group, InboundMessage, Member, Membership

MEMBERS = 20_000   # a post to this many members takes long enough (over a second) to be caught in its fan-out
POISON_ID = "<poison@example.net>"


def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(interval)


def big_group(bot: BotProcess) -> None:
    """A list of MEMBERS members (m0, m1, ...), written straight to the store."""
    with bot.sessions.begin() as session:
        group = Group(slug="big", name="Big List", status="active", created_at=NOW)
        session.add(group)
        session.flush()
        session.execute(insert(Member), [{"address": f"m{i}@example.net", "address_key": f"m{i}@example.net",
                                          "created_at": NOW} for i in range(MEMBERS)])
        ids = session.scalars(select(Member.id)).all()
        session.execute(insert(Membership), [{"group_id": group.id, "member_id": i, "role": "member",
                                              "joined_at": NOW} for i in ids])


def row(bot: BotProcess, message_id: str) -> InboundMessage:
    with bot.sessions() as session:
        found = session.scalars(select(InboundMessage).where(InboundMessage.message_id == message_id)).one()
        session.expunge(found)
        return found


def statuses(bot: BotProcess) -> dict[str, str]:
    with bot.sessions() as session:
        return {m: s for m, s in session.execute(select(InboundMessage.message_id, InboundMessage.status))}


def store_all(bot: BotProcess) -> None:
    """The poison post to the big list first, then five ordinary commands behind it, stored as the listener
    stores them (sending them over SMTP would wait for the write lock the post's fan-out holds)."""
    with bot.sessions.begin() as session:
        accept(session, mail("a post", subject="hello", sender="m0@example.net", to="big@lists.example.org",
                             msgid=POISON_ID), ["big@lists.example.org"], "m0@example.net", NOW)
        for i in range(5):
            accept(session, mail("help", sender=f"u{i}@example.com", msgid=f"<after{i}@example.com>"),
                   ["wgbot@lists.example.org"], f"u{i}@example.com", NOW)


@pytest.fixture
def big_bot(tmp_path: Path, relay: Relay, request: pytest.FixtureRequest) -> Iterator[BotProcess]:
    bot = BotProcess(tmp_path, relay.port, limits=getattr(request, "param", ""))
    big_group(bot)
    try:
        yield bot
    finally:
        bot.stop()


def assert_quarantined_and_rest_done(bot: BotProcess, reason: str) -> None:
    wait_for(lambda: statuses(bot).get(POISON_ID) == "quarantined"
             and all(statuses(bot).get(f"<after{i}@example.com>") == "done" for i in range(5)), timeout=120)
    poison = row(bot, POISON_ID)
    assert poison.attempts == MAX_ATTEMPTS + 1   # three tries, and the claim that set it aside
    assert f"did not finish in {MAX_ATTEMPTS} attempts" in poison.error and reason in poison.error


def test_sigkill_three_times_quarantines_the_message_and_the_rest_goes_on(big_bot: BotProcess) -> None:
    """SIGKILL `wgbot run` while it processes one chosen post, three times (as the OOM killer would): the fourth
    start quarantines that post with the reason and processes the five commands queued behind it."""
    bot = big_bot
    store_all(bot)
    bot.start()
    for attempt in range(1, MAX_ATTEMPTS + 1):
        # The attempt is on record (committed) while the post is still being processed: kill right then.
        def in_hand(n: int = attempt) -> bool:
            current = row(bot, POISON_ID)
            return current.attempts == n and current.status == "pending"
        wait_for(in_hand, timeout=60, interval=0.005)
        assert bot.signal(signal.SIGKILL) == -signal.SIGKILL
        assert row(bot, POISON_ID).status == "pending"
        bot.start()
    assert_quarantined_and_rest_done(bot, "the process stopped while processing it")
    log = bot.log.read_text()
    assert "quarantined as a poison message" in log


@pytest.mark.parametrize("big_bot", ["process_seconds = 0.2"], indirect=True)
def test_time_limit_restarts_the_bot_and_quarantines_after_three_tries(big_bot: BotProcess) -> None:
    """A message processed longer than [limits] process_seconds: the watchdog notes why and restarts `wgbot run`
    in place; after three tries the message is quarantined with that reason and the others are processed."""
    bot = big_bot
    store_all(bot)
    started = time.monotonic()
    bot.start()
    assert_quarantined_and_rest_done(bot, "processing took over 0.2 s")
    assert bot.log.read_text().count("CRITICAL wgbot.run: inbound 1: processing took over") == MAX_ATTEMPTS
    assert bot.proc is not None and bot.proc.poll() is None   # the same process id, running the fresh bot
    assert time.monotonic() - started < 120
