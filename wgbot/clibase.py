"""clibase: what every command of the command line shares (wgbot.cli, wgbot.cligroups): the exit codes, `Fail`,
reading the configuration, logging with tokens masked, opening the store, printing a table.

Imports are made inside each function, so `wgbot --help` and `wgbot process` start fast.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from wgbot.config import Config

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
EX_TEMPFAIL = 75   # sysexits.h: the MTA keeps the message and tries again
log = logging.getLogger("wgbot")


class Fail(Exception):
    """A failure to report on stderr with an exit code."""

    def __init__(self, message: str, code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.code = code


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def config_path(arg: str | None) -> Path:
    """--config, else ./config.toml, else $WGBOT_CONFIG (SPEC §8)."""
    if arg:
        return Path(arg)
    here = Path("config.toml")
    if here.exists():
        return here
    env = os.environ.get("WGBOT_CONFIG")
    return Path(env) if env else here


def load(args: argparse.Namespace, rules: bool = True) -> Config:
    from wgbot.config import load_config
    from wgbot.errors import ConfigError

    path = config_path(args.config)
    if not path.exists():
        raise Fail(f"{path}: no configuration file here; run `wgbot init` to create one, or pass --config PATH",
                   EXIT_USAGE)
    try:
        cfg = load_config(path)
    except ConfigError as exc:
        raise Fail(f"configuration error: {exc}", EXIT_USAGE) from exc
    setup_logging(cfg.log.level)
    if rules:
        from wgbot.errors import RulesError
        from wgbot.rules import cached_rules

        try:
            cached_rules(str(cfg.rules_path))
        except RulesError as exc:
            raise Fail(f"rules error (network.rules in {path}): {exc}", EXIT_USAGE) from exc
    return cfg


class MaskTokens(logging.Filter):
    """No live confirmation or approval token in any log line (aiosmtpd logs RCPT TO at DEBUG): each is shown
    as its hash, the form the store keeps."""

    def filter(self, record: logging.LogRecord) -> bool:
        from wgbot.route import mask_tokens_in

        text = record.getMessage()
        masked = mask_tokens_in(text)
        if masked != text:
            record.msg, record.args = masked, ()
        return True


def setup_logging(level: str) -> None:
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
    root.setLevel(level.upper())
    for each in root.handlers:
        if not any(isinstance(f, MaskTokens) for f in each.filters):
            each.addFilter(MaskTokens())
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)  # our tick logs what it did
    # aiosmtpd logs every SMTP command at INFO; our own one line per message is what an operator reads.
    if level.upper() != "DEBUG":
        logging.getLogger("mail.log").setLevel(logging.WARNING)


def store_engine(cfg: Config) -> Any:
    """The store's engine, once one connection worked; an operator's mistake (no driver, no server, no such
    database or folder) is one line naming the file and the key (wgbot/preflight.py)."""
    from wgbot import preflight
    from wgbot.db import database_url
    from wgbot.errors import ConfigError
    from wgbot.store import make_engine

    try:
        preflight.check_database(cfg)
        engine = make_engine(database_url(cfg))
        preflight.opened(cfg, engine)
    except ConfigError as exc:
        raise Fail(f"configuration error: {exc}", EXIT_USAGE) from None
    return engine


def open_store(cfg: Config, must_exist: bool = True) -> sessionmaker[Session]:
    from wgbot.db import is_initialised
    from wgbot.store import make_sessionmaker

    engine = store_engine(cfg)
    if must_exist and not is_initialised(engine):
        raise Fail(f"the database ({cfg.database.url}) has no tables yet; run `wgbot init`", EXIT_USAGE)
    return make_sessionmaker(engine)


def opened(args: argparse.Namespace) -> tuple[Config, sessionmaker[Session]]:
    """The configuration named by the command line, and its store (which must exist)."""
    cfg = load(args)
    return cfg, open_store(cfg)


def delivery(cfg: Config) -> sessionmaker[Session]:
    from wgbot.db import delivery_sessions

    return delivery_sessions(cfg)  # type: ignore[no-any-return]


def print_rows(rows: list[dict[str, Any]], columns: list[str], as_json: bool, empty: str = "",
               ensure_ascii: bool = False) -> None:
    """What the listing commands print: `rows` as JSON with --json, else a table, else `empty` (if any)."""
    if as_json:
        print(json.dumps(rows, indent=2, ensure_ascii=ensure_ascii))
    elif rows:
        print_table(rows, columns)
    elif empty:
        print(empty)


def print_table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    if not rows:
        return
    cells = [[", ".join(map(str, r[c])) if isinstance(r[c], list) else str(r[c]) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
