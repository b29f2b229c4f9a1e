"""Digests (wgbot.digests): a group nobody reads in digests does not load its waiting posts to mark them."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from tests.helpers import NOW, make_group
from wgbot import digests
from wgbot.config import Config
from wgbot.context import find_group, job_context
from wgbot.store import Ledger, Membership, OutboxEntry, Post


def _posts(sessions: sessionmaker[Session], slug: str, n: int) -> None:
    with sessions.begin() as session:
        group = find_group(session, slug)
        assert group is not None
        session.add_all(Post(group_id=group.id, message_id=f"<p{i}@x.org>", sender="a@x.org", subject=f"Post {i}",
                             raw=f"Subject: Post {i}\r\n\r\nText {i}\r\n".encode(), posted_at=NOW)
                        for i in range(n))


def _waiting(sessions: sessionmaker[Session]) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(Post).where(Post.digested_at.is_(None))) or 0


def test_without_digest_readers_posts_are_marked_and_nothing_is_sent(sqlite_sessions: sessionmaker[Session],
                                                                      cfg: Config) -> None:
    """No member takes digests: the waiting posts are marked digested, the day's ledger key is written (the job
    does not come back to them), and nothing is queued; with a reader, the same posts would make a digest."""
    slug = make_group(sqlite_sessions, cfg, name="Dance")
    _posts(sqlite_sessions, slug, 3)
    later = NOW + dt.timedelta(hours=1)
    with sqlite_sessions.begin() as session:
        group = find_group(session, slug)
        assert group is not None
        assert digests.send(job_context(session, cfg, later), group, f"digest:{slug}:2027-01-01") == 0
    assert _waiting(sqlite_sessions) == 0
    with sqlite_sessions() as session:
        assert session.get(Ledger, f"digest:{slug}:2027-01-01") is not None
        assert session.scalar(select(func.count()).select_from(OutboxEntry)) == 0
    _posts(sqlite_sessions, slug, 2)
    with sqlite_sessions.begin() as session:
        session.execute(update(Membership).values(delivery="digest"))
        group = find_group(session, slug)
        assert group is not None
        assert digests.send(job_context(session, cfg, later), group, f"digest:{slug}:2027-01-02") == 1
    assert _waiting(sqlite_sessions) == 0
