"""Fixtures: a configuration, the store on SQLite and on the PostgreSQL server, and a capturing relay."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from tests.helpers import IN_CI, Relay, free_port, need
from wgbot.config import Config, parse_config

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def make_config(tmp_path: Path, **sections: dict[str, Any]) -> Config:
    data: dict[str, Any] = {
        "network": {"name": "Test Network", "list_domain": "lists.example.org",
                    "bot_address": "wgbot@lists.example.org", "secretariat": ["office@example.org"],
                    "rules": "igf", "timezone": "Europe/Brussels"},
        "database": {"url": f"sqlite:///{tmp_path}/wgbot.sqlite3"},
        "outbound": {"transport": "maildir", "maildir": str(tmp_path / "outbox")},
        "web": {"enabled": False},   # tests that serve pages ask for a port of their own
    }
    for name, values in sections.items():
        target = data
        for part in name.split("."):
            target = target.setdefault(part, {})
        target.update(values)
    return parse_config(data, str(tmp_path / "config.toml"))


@pytest.fixture
def cfg(tmp_path: Path) -> Config:
    return make_config(tmp_path)


def _pg_available() -> bool:
    try:
        import psycopg

        with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=test", connect_timeout=3):
            return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def pg_ok() -> bool:
    return _pg_available()


@pytest.fixture
def pg_url(pg_ok: bool) -> Iterator[str]:
    """A fresh PostgreSQL schema on the local server, dropped afterwards."""
    need(pg_ok, "PostgreSQL at 127.0.0.1:5432")
    from wgbot.store import make_engine

    schema = "wgbot_test_" + secrets.token_hex(6)
    admin = make_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/store.sqlite3"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def sessions(db_url: str) -> Iterator[sessionmaker[Session]]:
    """A migrated store on each backend (the same models and migrations)."""
    from wgbot.db import migrate
    from wgbot.store import make_engine, make_sessionmaker

    engine = make_engine(db_url)
    migrate(engine)
    yield make_sessionmaker(engine)
    engine.dispose()


@pytest.fixture
def sqlite_sessions(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    """A migrated SQLite store only, for tests that are about something other than the backend."""
    from wgbot.db import migrate
    from wgbot.store import make_engine, make_sessionmaker

    engine = make_engine(f"sqlite:///{tmp_path}/only.sqlite3")
    migrate(engine)
    yield make_sessionmaker(engine)
    engine.dispose()


@pytest.fixture
def relay() -> Iterator[Relay]:
    """A capturing SMTP relay (aiosmtpd) on a free loopback port."""
    from aiosmtpd.controller import Controller

    port = free_port()
    handler = Relay("127.0.0.1", port)
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler
    finally:
        controller.stop()


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (it is its own CA) and its key."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    folder = tmp_path_factory.mktemp("tls")
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@pytest.fixture(scope="session")
def dovecot_server() -> Iterator[Any]:
    """A private Dovecot for the whole session; each test takes its own user with `take_user()`."""
    from tests.servers import dovecot, have

    need(have("dovecot"), "Dovecot (apt-get install dovecot-imapd) run as root")
    with dovecot() as server:
        yield server


def pytest_report_header() -> list[str]:
    return [f"CI mode: {IN_CI} (real-server tests {'fail' if IN_CI else 'skip'} when their server is missing)"]
