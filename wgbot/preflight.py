"""preflight: an operator's mistakes, found before the command line opens the store or starts listening, each
said in one line that names the configuration file, the key and what to do (issue 15), never a traceback.

Used by cli.py only. It reads files and tries one database connection; it never changes the store, and it
checks nothing the configuration's own validation (config.py) already checks.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO, Any

from sqlalchemy.engine import make_url

from wgbot.config import Config
from wgbot.errors import ConfigError


def _where(cfg: Config) -> str:
    return cfg.path or "config.toml"


def check_database(cfg: Config) -> None:
    """The PostgreSQL driver is installed when database.url names PostgreSQL; an absolute SQLite file's folder
    exists (a relative one, such as the default var/, is created beside the configuration)."""
    url = cfg.database.url
    if url.startswith("postgresql"):
        try:
            import psycopg  # noqa: F401
        except ImportError:
            raise ConfigError(_where(cfg), "database.url",
                              "names PostgreSQL, but its driver (psycopg) is not installed: "
                              "pip install -e '.[postgresql]'") from None
    elif url.startswith("sqlite:////"):
        folder = Path(url[len("sqlite:///"):]).parent
        if not folder.is_dir():
            raise ConfigError(_where(cfg), "database.url",
                              f"the folder of the SQLite file, {folder}, does not exist: create it, or give a path "
                              f"in an existing folder")


def explain_database_error(cfg: Config, exc: BaseException) -> ConfigError:
    """One line for a database that could not be opened: unreachable, missing, or a file that cannot be opened."""
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    url = cfg.database.url
    if url.startswith("sqlite"):
        problem = f"cannot open the SQLite file {make_url(url).database}: {text}"
    else:
        parsed = make_url(url)
        place = f"{parsed.host or 'localhost'}:{parsed.port or 5432}"
        if "does not exist" in text and "database" in text:
            problem = (f"the database {parsed.database!r} does not exist on {place}: create it "
                       f"(createdb {parsed.database}), or change database.url")
        else:
            problem = f"cannot reach PostgreSQL at {place} ({text}): start it, or change database.url"
    return ConfigError(_where(cfg), "database.url", problem)


def check_run_files(cfg: Config, tls: bool = True) -> None:
    """The listener's TLS files exist, and the outbound Maildir is a folder (or can be made one)."""
    smtp = cfg.inbound.smtp
    for key, value in (("tls_cert", smtp.tls_cert), ("tls_key", smtp.tls_key)) if tls else ():
        if value and not cfg.resolve(value).is_file():
            raise ConfigError(_where(cfg), f"inbound.smtp.{key}",
                              f"{cfg.resolve(value)} does not exist: give the PEM file's path, or set tls_cert and "
                              f"tls_key to \"\" to listen without STARTTLS")
    if cfg.outbound.transport == "maildir":
        box = cfg.resolve(cfg.outbound.maildir)
        bad = next((p for p in (box, *box.parents) if p.exists() and not p.is_dir()), None)
        if bad is not None:
            raise ConfigError(_where(cfg), "outbound.maildir",
                              f"{bad} is a file, not a folder: give the path of a folder for the outgoing mail")


def single_sqlite_run(cfg: Config) -> IO[str] | None:
    """With SQLite, one `wgbot run` at a time: a second one on the same file refuses at once (README, "Several
    workers"; PostgreSQL is for several). Returns the held lock (kept open for the process's life), or None."""
    url = cfg.database.url
    if not url.startswith("sqlite") or ":memory:" in url or url == "sqlite://":
        return None
    database = Path(str(make_url(url).database))
    if not database.is_absolute():
        database = cfg.resolve(str(database))
    handle = open(database.with_name(database.name + ".run"), "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        pid = handle.read().strip() or "?"
        handle.close()
        raise ConfigError(_where(cfg), "database.url",
                          f"another `wgbot run` (pid {pid}) already runs on {database}: with SQLite one process "
                          f"does everything; stop it first, or use PostgreSQL for several workers") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def opened(cfg: Config, engine: Any) -> None:
    """Try one connection, so that a database that cannot be opened is one line here, not a traceback later."""
    from sqlalchemy.exc import DBAPIError

    try:
        with engine.connect():
            pass
    except DBAPIError as exc:
        raise explain_database_error(cfg, exc) from None
