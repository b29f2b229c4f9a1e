"""The README's "A two-minute tour", run as written: its shell commands are read from README.md (not copied
here) and run one by one in one bash, beside a real `wgbot run` on the configuration `wgbot init` writes.
Only the listener's port is changed (in config.toml and in the commands alike), so that runs beside other
tests do not collide; the test checks first that the README's port is the default one."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import free_port, need

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_PORT = "8025"
KEPT = ("PYTHONPATH", "LANG")     # the environment a user's terminal would have: their wgbot, their locale


def tour_blocks() -> list[list[str]]:
    """The tour's ```sh blocks, each as its list of commands (continuation lines and quoted newlines joined)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## A two-minute tour\n", 1)[1].split("\n## ", 1)[0]
    blocks = []
    for block in re.findall(r"```sh\n(.*?)```", section, re.S):
        commands: list[str] = []
        pending = ""
        for line in block.splitlines():
            pending = f"{pending}\n{line}" if pending else line
            if pending.endswith("\\") or not _complete(pending):
                continue
            if pending.strip() and not pending.lstrip().startswith("#"):
                commands.append(pending)
            pending = ""
        assert not pending, f"unfinished command in the README's tour: {pending!r}"
        blocks.append(commands)
    return blocks


def _complete(command: str) -> bool:
    try:
        shlex.split(command, comments=True)
        return True
    except ValueError:      # an open quote: the command goes on on the next line
        return False


class Shell:
    """One bash, so that a variable set by one command (TOKEN=...) is there for the next, as in a terminal."""

    def __init__(self, cwd: Path, path: str) -> None:
        self.proc = subprocess.Popen(["bash", "--noprofile", "--norc"], cwd=cwd, text=True, bufsize=1,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     env={"PATH": path, "HOME": str(cwd), "LANG": "C.UTF-8",
                                          **{k: v for k, v in os.environ.items() if k == "PYTHONPATH"}})

    def run(self, command: str) -> tuple[int, str]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"{command}\necho __done__ $?\n")
        out: list[str] = []
        for line in self.proc.stdout:
            if line.startswith("__done__ "):
                return int(line.split()[1]), "".join(out)
            out.append(line)
        raise AssertionError(f"bash ended during {command!r}: {''.join(out)}")

    def close(self) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=10)
        self.proc.stdout.close()


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[Path, str, str]]:
    """A folder after `wgbot init`, with `wgbot run` going: (folder, port, PATH with `wgbot` and `python3`)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shims = (("wgbot", f'exec "{sys.executable}" -m wgbot "$@"'), ("python3", f'exec "{sys.executable}" "$@"'))
    for name, target in shims:
        (bin_dir / name).write_text(f"#!/bin/sh\n{target}\n")
        (bin_dir / name).chmod(0o755)
    path = f"{bin_dir}:/usr/local/bin:/usr/bin:/bin"
    folder = tmp_path / "site"
    folder.mkdir()
    env = {"PATH": path, "HOME": str(tmp_path), **{k: v for k, v in os.environ.items() if k in KEPT}}
    subprocess.run(["wgbot", "init"], cwd=folder, env=env, check=True, capture_output=True)
    config = folder / "config.toml"
    assert str(tomllib.loads(config.read_text())["inbound"]["smtp"]["port"]) == DEFAULT_PORT
    port = str(free_port())
    config.write_text(config.read_text().replace(f"port = {DEFAULT_PORT}", f"port = {port}", 1))
    with open(tmp_path / "run.log", "wb") as log:
        bot = subprocess.Popen(["wgbot", "run"], cwd=folder, env=env, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 20
        while b"wgbot running" not in (tmp_path / "run.log").read_bytes():
            assert bot.poll() is None and time.monotonic() < deadline, (tmp_path / "run.log").read_text()
            time.sleep(0.05)
        yield folder, port, path
    finally:
        bot.send_signal(signal.SIGTERM)
        bot.wait(timeout=30)


def wait_for_messages(folder: Path, n: int) -> None:
    deadline = time.monotonic() + 20
    while len(list((folder / "var/outbox/new").glob("*"))) < n and time.monotonic() < deadline:
        time.sleep(0.05)


@pytest.mark.parametrize("client", ["swaks", "python"])
def test_readme_tour_runs_as_written(site: tuple[Path, str, str], client: str) -> None:
    """Each command of the tour succeeds on the defaults and does what the README says: two messages (the
    results and a confirmation request), the confirmation by `wgbot process`, and `wgbot members` showing
    Alice with digest delivery. Run once with swaks and once with the Python one-liner the README offers."""
    if client == "swaks":
        need(shutil.which("swaks") is not None, "swaks (apt-get install swaks)")
    folder, port, path = site
    first, alternative, confirming = tour_blocks()
    assert [c.split()[0] for c in first] == ["wgbot", "swaks", "ls", "cat"], first
    assert len(alternative) == 1 and alternative[0].startswith("python3 -c")
    if client == "python":
        first[1] = alternative[0]
    shell = Shell(folder, path)
    try:
        outputs = []
        assert DEFAULT_PORT in first[1], "the tour sends to the default listener"
        for i, command in enumerate(first + confirming):
            rc, out = shell.run(command.replace(DEFAULT_PORT, port))
            assert rc == 0, f"{command!r} exited {rc}:\n{out}"
            outputs.append(out)
            if i == 1:
                wait_for_messages(folder, 2)
        created, _, listing, shown, _, processed, members = outputs
    finally:
        shell.close()
    assert "created group 'Migrant Inclusion & Rights'" in created
    assert len(listing.split()) == 2, listing                                   # "two messages"
    assert "Subject: confirm " in shown and "Refused" not in shown, shown       # the results and the request
    assert "1 ok, 0 refused" in processed, processed
    alice = next(line.split() for line in members.splitlines() if line.startswith("alice@example.com"))
    assert alice[-3:] == ["AT", "member", "digest"], members
    told = [p.read_text() for p in (folder / "var/outbox/new").iterdir()]     # "the chair and the office are told"
    assert {"chair@bologna.example", "office@example.org"} <= {
        line.split(": ", 1)[1] for text in told for line in text.splitlines() if line.startswith("Delivered-To: ")}
