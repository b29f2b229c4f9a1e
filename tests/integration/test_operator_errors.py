"""An operator's mistake is one clear line (the file, the key, what to do) and exit code 2, never a traceback
(issue 15): each mistake made for real and run through the real command line in a subprocess."""

from __future__ import annotations

import os
import signal
import smtplib
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import free_port, mail, need
from tests.integration.test_listener import wait_for


def write_config(tmp_path: Path, database: str, extra: str = "", maildir: str = "outbox", port: int = 0) -> Path:
    config = tmp_path / "config.toml"
    config.write_text(f"""
[network]
name = "N"
list_domain = "lists.example.org"
bot_address = "wgbot@lists.example.org"
[database]
url = "{database}"
[inbound.smtp]
port = {port or free_port()}
{extra}
[outbound]
transport = "maildir"
maildir = "{maildir}"
""")
    return config


def wgbot(config: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "wgbot", "--config", str(config), *args], capture_output=True,
                          text=True, timeout=60, env={**os.environ, **(env or {})})


def one_line(result: subprocess.CompletedProcess[str], config: Path, key: str, *words: str, code: int = 2) -> str:
    """The command failed with exit code 2 (or `code`) and one line on stderr naming the file and the key."""
    err = result.stderr.strip()
    assert result.returncode == code, (result.returncode, err)
    assert "\n" not in err and "Traceback" not in err, err
    assert str(config) in err and key in err, err
    for word in words:
        assert word in err, err
    return err


@pytest.mark.parametrize("command", ["init", "run"])
def test_postgresql_without_its_driver(tmp_path: Path, command: str) -> None:
    """database.url names PostgreSQL but psycopg is not installed (here hidden by a package that fails to
    import, as a missing one does): the line says to install the [postgresql] extra."""
    shadow = tmp_path / "shadow" / "psycopg"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'psycopg'\", name='psycopg')\n")
    config = write_config(tmp_path, "postgresql+psycopg://postgres@127.0.0.1:5432/test")
    paths = os.pathsep.join([str(shadow.parent), os.environ.get("PYTHONPATH", "")])
    one_line(wgbot(config, command, env={"PYTHONPATH": paths}), config, "database.url", "[postgresql]")


@pytest.mark.parametrize("command", ["init", "run", "status"])
def test_postgresql_unreachable(tmp_path: Path, command: str) -> None:
    """Nothing listens at database.url's host and port: the line names them and says to start the server."""
    config = write_config(tmp_path, f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/test")
    one_line(wgbot(config, command), config, "database.url", "cannot reach PostgreSQL", "start it")


def test_process_from_an_mta_pipe_asks_to_retry(tmp_path: Path) -> None:
    """`wgbot process` (an MTA's pipe) with a store it cannot reach exits 75, EX_TEMPFAIL, so that the MTA keeps
    the message and tries again instead of bouncing it; still one line."""
    config = write_config(tmp_path, f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/test")
    result = subprocess.run([sys.executable, "-m", "wgbot", "--config", str(config), "process", "--local",
                             "--to", "wgbot@lists.example.org"], input=mail("help").decode(), capture_output=True,
                            text=True, timeout=60)
    one_line(result, config, "database.url", "cannot reach PostgreSQL", code=75)


def test_postgresql_database_missing(tmp_path: Path, pg_ok: bool) -> None:
    """The server runs but has no such database: the line names it and says how to create it."""
    need(pg_ok, "PostgreSQL at 127.0.0.1:5432")
    config = write_config(tmp_path, "postgresql+psycopg://postgres@127.0.0.1:5432/wgbot_no_such_database")
    one_line(wgbot(config, "init"), config, "database.url", "does not exist", "createdb wgbot_no_such_database")


@pytest.mark.parametrize("command", ["init", "run"])
def test_sqlite_folder_missing(tmp_path: Path, command: str) -> None:
    """An absolute SQLite path in a folder that does not exist."""
    config = write_config(tmp_path, f"sqlite:///{tmp_path}/no/such/folder/wgbot.sqlite3")
    one_line(wgbot(config, command), config, "database.url", f"{tmp_path}/no/such/folder", "does not exist")


@pytest.mark.parametrize("command", ["init", "run"])
def test_maildir_path_is_a_file(tmp_path: Path, command: str) -> None:
    """outbound.maildir names a file."""
    (tmp_path / "afile").write_text("not a folder\n")
    config = write_config(tmp_path, f"sqlite:///{tmp_path}/w.sqlite3", maildir=str(tmp_path / "afile"))
    if command == "run":
        write_config(tmp_path, f"sqlite:///{tmp_path}/w.sqlite3")
        assert wgbot(config, "init").returncode == 0
        write_config(tmp_path, f"sqlite:///{tmp_path}/w.sqlite3", maildir=str(tmp_path / "afile"))
    one_line(wgbot(config, command), config, "outbound.maildir", "is a file, not a folder")


@pytest.mark.parametrize("key", ["tls_cert", "tls_key"])
def test_tls_file_missing(tmp_path: Path, key: str) -> None:
    """A tls_cert or tls_key that does not exist stops `wgbot run` with the key and the path."""
    (tmp_path / "present.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    files = {"tls_cert": "present.pem", "tls_key": "present.pem", key: "missing.pem"}
    extra = "\n".join(f'{k} = "{tmp_path / v}"' for k, v in files.items())
    config = write_config(tmp_path, f"sqlite:///{tmp_path}/w.sqlite3", extra=extra)
    assert wgbot(config, "init").returncode == 0
    one_line(wgbot(config, "run"), config, f"inbound.smtp.{key}", str(tmp_path / "missing.pem"))


def start_run(config: Path, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "wgbot", "--config", str(config), "run"], stdout=out,
                                stderr=out)
    wait_for(lambda: b"wgbot running" in log.read_bytes() or proc.poll() is not None, timeout=30)
    assert proc.poll() is None, log.read_text()
    return proc


def test_second_run_on_the_same_sqlite_file_refuses(tmp_path: Path) -> None:
    """While one `wgbot run` uses an SQLite file, a second one (another configuration, another port) exits 2
    at once naming the first one's pid, as the README says; once the first stops, a new one starts."""
    config = write_config(tmp_path, f"sqlite:///{tmp_path}/w.sqlite3")
    assert wgbot(config, "init").returncode == 0
    first = start_run(config, tmp_path / "first.log")
    try:
        other = tmp_path / "other"
        other.mkdir()
        second = write_config(other, f"sqlite:///{tmp_path}/w.sqlite3")
        err = one_line(wgbot(second, "run"), second, "database.url", "another `wgbot run`", f"pid {first.pid}")
        assert "PostgreSQL" in err
    finally:
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=30) == 0
    again = start_run(config, tmp_path / "again.log")
    again.send_signal(signal.SIGTERM)
    assert again.wait(timeout=30) == 0


def test_maildir_failure_is_not_a_relay_failure(tmp_path: Path) -> None:
    """When the Maildir cannot be written while running, the log names the Maildir and its key, not a relay."""
    port = free_port()
    config = write_config(tmp_path, f"sqlite:///{tmp_path}/w.sqlite3", port=port)
    assert wgbot(config, "init").returncode == 0
    log = tmp_path / "run.log"
    proc = start_run(config, log)
    try:
        for sub in ("tmp", "new", "cur"):
            (tmp_path / "outbox" / sub).rmdir()
        (tmp_path / "outbox").rmdir()
        (tmp_path / "outbox").write_text("now a file\n")
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.sendmail("alice@example.com", ["wgbot@lists.example.org"], mail("", subject="help"))
        wait_for(lambda: b"messages deferred" in log.read_bytes(), timeout=30)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    text = log.read_text()
    assert f"cannot write to the Maildir {tmp_path / 'outbox'} (outbound.maildir)" in text, text
    assert "relay" not in text, text
