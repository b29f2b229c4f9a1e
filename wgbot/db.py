"""Opening the store from the configuration, and running its Alembic migrations.

Used by the command line and by tests; it holds no domain logic.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import inspect
from sqlalchemy.engine import Connection, Engine

from wgbot.resources import data_dir

if TYPE_CHECKING:
    from wgbot.config import Config


def database_url(cfg: Config) -> str:
    """The database URL with a relative SQLite path resolved against the configuration file's folder."""
    url = cfg.database.url
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and url != prefix + ":memory:":
        path = cfg.resolve(url[len(prefix):])
        path.parent.mkdir(parents=True, exist_ok=True)
        return prefix + str(path)
    return url


def delivery_sessions(cfg: Config) -> Any:
    """Sessions for processing stored mail and marking outbox rows sent: with SQLite, commits that survive a
    killed process without an fsync each (see store._sqlite_pragmas); with PostgreSQL, the ordinary ones.
    Only accepting mail (before the 250) needs the fsync."""
    from wgbot.store import make_engine, make_sessionmaker

    url = database_url(cfg)
    return make_sessionmaker(make_engine(url, durable=not url.startswith("sqlite")))


def _alembic_config(connection: Connection | None):  # type: ignore[no-untyped-def]
    from alembic.config import Config as AlembicConfig

    acfg = AlembicConfig()
    acfg.set_main_option("script_location", str(data_dir("migrations")))
    acfg.attributes["connection"] = connection
    return acfg


def migrate(engine: Engine, revision: str = "head") -> None:
    """Create or upgrade the schema to `revision`."""
    from alembic import command

    with engine.begin() as conn:
        command.upgrade(_alembic_config(conn), revision)


def head_revision() -> str | None:
    """The newest migration this code ships (what `migrate` upgrades to)."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_alembic_config(None)).get_current_head()


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def is_initialised(engine: Engine) -> bool:
    return "members" in inspect(engine).get_table_names()
