"""The command line (SPEC §8): init, process, deliver, group create, groups, members, quarantine, audit."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import mail
from wgbot.cli import build_parser, main


def wgbot(*args: str, cwd: Path, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "wgbot", *args], cwd=cwd, input=stdin, capture_output=True,
                          timeout=60)


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder where `wgbot init` has run on the embedded defaults."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("WGBOT_CONFIG", raising=False)
    assert main(["init"]) == 0
    return tmp_path


def outbox_files(site: Path) -> list[str]:
    return [p.read_text() for p in sorted((site / "var/outbox/new").iterdir())]


def test_every_command_has_help() -> None:
    """Every command and sub-command answers --help with a description."""
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, p in sub.choices.items():  # type: ignore[union-attr]
        text = p.format_help()
        assert p.description, name
        assert "usage: wgbot " + name in text
    run = subprocess.run([sys.executable, "-m", "wgbot", "--help"], capture_output=True, timeout=30)
    assert run.returncode == 0 and b"process" in run.stdout and b"exit codes" in run.stdout


def test_init_creates_config_and_database(site: Path) -> None:
    """init writes config.toml from the example and creates the database and the outbox Maildir."""
    assert (site / "config.toml").exists() and (site / "var/wgbot.sqlite3").exists()
    assert (site / "var/outbox/new").is_dir()
    assert main(["init"]) == 0  # running it again changes nothing and succeeds


def test_process_answers_into_the_maildir(site: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """process reads a message from a file, answers it, and the reply lands in var/outbox."""
    (site / "help.eml").write_bytes(mail("", subject="help"))
    assert main(["process", "help.eml"]) == 0
    out = capsys.readouterr().out
    assert "done" in out and "delivery: 1 sent" in out
    (reply,) = outbox_files(site)
    assert "Delivered-To: alice@example.com" in reply and "join GROUP" in reply


def test_process_from_stdin_with_envelope(site: Path) -> None:
    """stdin works, --from sets the envelope sender (replies go there) and --to the recipient."""
    run = wgbot("process", "--from", "bounce-alice@example.com", "--to", "wgbot@lists.example.org", cwd=site,
                stdin=mail("", subject="groups", to="someone@else.example"))
    assert run.returncode == 0, run.stderr
    assert "Delivered-To: bounce-alice@example.com" in outbox_files(site)[0]


def test_process_refuses_foreign_recipients(site: Path) -> None:
    """A message to no address of ours is not accepted: exit 1, nothing stored."""
    run = wgbot("process", cwd=site, stdin=mail("help", to="nobody@elsewhere.example"))
    assert run.returncode == 1 and b"not one of our addresses" in run.stderr


def test_group_create_and_listings(site: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """group create makes an active group; groups --json and members --json have the SPEC's fields."""
    assert main(["group", "create", "Migrant Inclusion & Rights", "--contact", "chair@bologna.example",
                 "--organisation", "City of Bologna", "--country", "Italia"]) == 0
    capsys.readouterr()
    assert main(["groups", "--json"]) == 0
    (group,) = json.loads(capsys.readouterr().out)
    assert group == {"slug": "migrant-inclusion-rights", "name": "Migrant Inclusion & Rights", "status": "active",
                     "contacts": ["chair@bologna.example"], "organisations": ["City of Bologna"],
                     "countries": ["IT"], "members": 1}
    assert main(["members", "migrant-inclusion-rights", "--json"]) == 0
    (member,) = json.loads(capsys.readouterr().out)
    assert {k: member[k] for k in ("address", "organisation", "country", "role", "delivery")} == {
        "address": "chair@bologna.example", "organisation": "City of Bologna", "country": "IT", "role": "contact",
        "delivery": "regular"}
    assert main(["audit"]) == 0
    assert "group-create" in capsys.readouterr().out


def test_bad_usage_exits_2(site: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A duplicate group, a bad country or a reserved name are usage errors (exit 2) that say why."""
    assert main(["group", "create", "Arts", "--contact", "a@example.com"]) == 0
    assert main(["group", "create", "ARTS", "--contact", "a@example.com"]) == 2
    assert main(["group", "create", "Theatre", "--contact", "a@example.com", "--country", "Atlantis"]) == 2
    assert main(["group", "create", "wgbot", "--contact", "a@example.com"]) == 2
    assert main(["group", "create", "x-request", "--contact", "a@example.com"]) == 2
    err = capsys.readouterr().err
    assert "exists already" in err and "Atlantis" in err and "reserved" in err and "-request" in err


def test_bad_config_exits_2(tmp_path: Path) -> None:
    """A configuration error names the file and the key, with exit code 2."""
    (tmp_path / "config.toml").write_text('[network]\nname = "N"\nlist_domain = "l.example.org"\n'
                                          'bot_address = "w@l.example.org"\ncolour = "red"\n')
    run = wgbot("groups", cwd=tmp_path)
    assert run.returncode == 2
    assert b"config.toml: network.colour: unknown key" in run.stderr
    missing = wgbot("--config", str(tmp_path / "nope.toml"), "groups", cwd=tmp_path)
    assert missing.returncode == 2 and b"wgbot init" in missing.stderr


def test_quarantine_list_show_and_retry(site: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A message that cannot be processed is kept; the operator lists it, reads its error and re-runs it."""
    bad = b"To: wgbot@lists.example.org\r\nSubject: help\r\n\r\nhelp\r\n"  # no From
    (site / "bad.eml").write_bytes(bad)
    assert main(["process", "bad.eml"]) == 0  # accepted: kept for the operator
    capsys.readouterr()
    assert main(["quarantine", "list", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["reason"] == "no From header"
    assert main(["quarantine", "show", str(row["id"])]) == 0
    assert "no From header" in capsys.readouterr().out
    assert main(["quarantine", "retry", str(row["id"])]) == 0
    assert "0 left quarantine" in capsys.readouterr().out


def test_status_shows_queues_and_quarantine(site: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """status counts what waits, what is quarantined and what is queued, and names the oldest waiting message."""
    (site / "ok.eml").write_bytes(mail("help"))
    (site / "bad.eml").write_bytes(b"To: wgbot@lists.example.org\r\n\r\nhelp\r\n")
    (site / "later.eml").write_bytes(mail("groups", msgid="<later@example.com>"))
    assert main(["process", "--no-deliver", "ok.eml", "bad.eml"]) == 0
    assert main(["process", "--no-deliver", "--to", "wgbot@lists.example.org", "later.eml"]) == 0
    capsys.readouterr()
    assert main(["status", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["inbound"]["done"] == 2 and data["inbound"]["quarantined"] == 1
    assert data["outbox"]["due"] == 2 and data["outbox"]["sent"] == 0
    assert main(["status"]) == 0
    text = capsys.readouterr().out
    assert "1 quarantined" in text and "2 due" in text and "IMAP:       disabled" in text
    assert main(["deliver"]) == 0
    capsys.readouterr()
    assert main(["status", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["outbox"]["sent"] == 2


def test_import_members_all_or_nothing(site: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """import adds members from CSV without confirmation; a bad row is reported with its line number and then
    nothing is imported; importing the same file again changes nothing."""
    assert main(["group", "create", "Arts", "--contact", "chair@example.org"]) == 0
    good = site / "members.csv"
    good.write_text("address,name,organisation,country,delivery\n"
                    "ann@example.org,Ann,Teatro,Italia,digest\n"
                    "bob@example.net,,,,\n"
                    "chair@example.org,Chair,City,DE,\n")
    bad = site / "bad.csv"
    bad.write_text("address,country\nok@example.org,IT\nbroken-address,IT\nzed@example.org,Atlantis\n")
    capsys.readouterr()
    assert main(["import", "arts", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "nothing was imported" in err and "line 3: 'broken-address' is not an email address" in err
    assert "line 4: 'Atlantis' is not a country" in err
    assert main(["import", "arts", str(good)]) == 0
    assert "3 row(s): 2 joined arts, 2 new member(s)" in capsys.readouterr().out
    assert main(["import", "arts", str(good)]) == 0
    assert "0 joined arts, 0 new member(s)" in capsys.readouterr().out
    assert main(["members", "arts", "--json"]) == 0
    members = {m["address"]: m for m in json.loads(capsys.readouterr().out)}
    assert members["ann@example.org"]["delivery"] == "digest" and members["ann@example.org"]["country"] == "IT"
    assert members["chair@example.org"]["role"] == "contact" and members["chair@example.org"]["country"] == "DE"
    assert "ok@example.org" not in members
    (site / "nohead.csv").write_text("email\nx@example.org\n")
    assert main(["import", "arts", str(site / "nohead.csv")]) == 1
    assert "must name an 'address' column" in capsys.readouterr().err
