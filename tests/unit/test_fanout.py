"""Fan-out reads members in pages and inserts outbox rows in batches: the statement count grows with N/batch,
not with N (no N+1 queries), on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event, func, insert, select
from sqlalchemy.orm import Session, sessionmaker

from tests.helpers import NOW, make_group
from wgbot.config import Config
from wgbot.lists import fan_out
from wgbot.store import Group, Member, Membership, OutboxEntry


def add_many(sessions: sessionmaker[Session], slug: str, n: int) -> None:
    with sessions.begin() as session:
        group = session.scalars(select(Group).where(Group.slug == slug)).one()
        session.execute(insert(Member), [{"address": f"m{i}@{slug}.example", "address_key": f"m{i}@{slug}.example",
                                          "name": "", "organisation": "", "country": "", "created_at": NOW}
                                         for i in range(n)])
        ids = session.scalars(select(Member.id).where(Member.address_key.like(f"%@{slug}.example"))).all()
        session.execute(insert(Membership), [{"group_id": group.id, "member_id": i, "role": "member",
                                              "delivery": "regular", "delivery_reason": "", "moderated": False,
                                              "joined_at": NOW} for i in ids])


def statements_for(sessions: sessionmaker[Session], cfg: Config, n: int) -> int:
    slug = make_group(sessions, cfg, name=f"g{n}")
    add_many(sessions, slug, n)
    count = 0

    def counter(*_: Any) -> None:
        nonlocal count
        count += 1
    with sessions.begin() as session:
        engine = session.get_bind()
        event.listen(engine, "before_cursor_execute", counter)
        try:
            group = session.scalars(select(Group).where(Group.slug == slug)).one()
            queued = fan_out(session, cfg, group, b"Subject: x\r\n\r\nx\r\n", "<x@y>", NOW, None)
        finally:
            event.remove(engine, "before_cursor_execute", counter)
        assert queued == n + 1  # the members and the contact
        total = session.scalar(select(func.count()).select_from(OutboxEntry)
                               .where(OutboxEntry.envelope_from.like(f"{slug}-bounces+%")))
        assert total == n + 1
    return count


def test_fan_out_statements_grow_with_batches_not_members(sessions: sessionmaker[Session], cfg: Config) -> None:
    """1,000 and 5,000 members take a handful of statements (pages of [lists] fanout_batch), not one per member."""
    small = statements_for(sessions, cfg, 1_000)
    large = statements_for(sessions, cfg, 5_000)
    assert small <= 9 and large <= 17          # one of them reads the secret that signs the VERP tags
    assert large - small <= 2 * ((5_000 - 1_000) // cfg.lists.fanout_batch) + 2
