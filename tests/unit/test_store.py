"""The store: migrations build exactly the models' schema on SQLite and PostgreSQL; SQLite runs in WAL mode."""

from __future__ import annotations

import datetime as dt

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from wgbot.db import current_revision, migrate
from wgbot.resources import data_dir
from wgbot.store import Base, Group, make_engine


def test_migrations_match_the_models(db_url: str) -> None:
    """After `wgbot init`'s migrations, the database has exactly the models' tables, columns and indexes."""
    engine = make_engine(db_url)
    migrate(engine)
    migrate(engine)  # running again is a no-op
    heads = ScriptDirectory(str(data_dir("migrations"))).get_heads()
    assert len(heads) == 1 and current_revision(engine) == heads[0]
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []
    engine.dispose()


def test_sqlite_pragmas(tmp_path: pytest.TempPathFactory) -> None:
    """SQLite runs in WAL mode with foreign keys enforced."""
    engine = make_engine(f"sqlite:///{tmp_path}/p.sqlite3")
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
    engine.dispose()


def test_times_are_aware_utc(sessions: sessionmaker[Session]) -> None:
    """Datetimes come back timezone-aware in UTC on both backends; naive ones are refused."""
    brussels = dt.timezone(dt.timedelta(hours=1))
    with sessions.begin() as session:
        session.add(Group(slug="g", name="G", status="active", introduction="",
                          created_at=dt.datetime(2026, 5, 1, 13, 0, tzinfo=brussels)))
    with sessions() as session:
        created = session.query(Group).one().created_at
    assert created == dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.UTC) and created.tzinfo is not None
    with pytest.raises(Exception, match="naive"), sessions.begin() as session:
        session.add(Group(slug="h", name="H", status="active", introduction="", created_at=dt.datetime(2026, 1, 1)))
