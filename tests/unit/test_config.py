"""Configuration: typed, frozen, validated, with errors naming file and key (SPEC §7)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from wgbot.config import load_config, secret
from wgbot.errors import ConfigError
from wgbot.resources import data_dir

EXAMPLE = data_dir("config.example.toml")


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "config.toml"
    p.write_text(text)
    return p


BASE = """
[network]
name = "N"
list_domain = "lists.example.org"
bot_address = "wgbot@lists.example.org"
"""


def test_example_loads_and_documents_every_key() -> None:
    """The example configuration is valid, and every key the loader knows appears in it."""
    cfg = load_config(EXAMPLE)
    assert cfg.outbound.transport == "maildir"
    text = EXAMPLE.read_text()

    def keys(obj: object) -> set[str]:
        out: set[str] = set()
        for f in dataclasses.fields(obj):  # type: ignore[arg-type]
            value = getattr(obj, f.name)
            if dataclasses.is_dataclass(value):
                out |= keys(value)
            elif f.name != "path":
                out.add(f.name)
        return out

    missing = [k for k in keys(cfg) if not re.search(rf"(?m)^{k}(_env)? *=", text)]
    assert missing == []


def test_config_is_frozen(tmp_path: Path) -> None:
    """Configuration objects cannot be changed after loading."""
    cfg = load_config(write(tmp_path, BASE))
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.network.name = "x"  # type: ignore[misc]


def test_unknown_key_names_file_and_key(tmp_path: Path) -> None:
    """An unknown key is an error naming the file and the dotted key."""
    p = write(tmp_path, BASE + "\n[outbound]\nhots = 'x'\n")
    with pytest.raises(ConfigError) as err:
        load_config(p)
    assert str(p.resolve()) in str(err.value) and "outbound.hots" in str(err.value)
    assert "unknown key" in str(err.value)


def test_wrong_type_says_what_was_expected(tmp_path: Path) -> None:
    """A wrong type names the key and the expected type."""
    with pytest.raises(ConfigError, match=r"inbound\.smtp\.port: expected a whole number"):
        load_config(write(tmp_path, BASE + "\n[inbound.smtp]\nport = '25'\n"))
    with pytest.raises(ConfigError, match=r"inbound\.smtp\.enabled: expected true or false"):
        load_config(write(tmp_path, BASE + "\n[inbound.smtp]\nenabled = 1\n"))


def test_missing_required_value(tmp_path: Path) -> None:
    """A missing required value is named."""
    with pytest.raises(ConfigError, match=r"network\.list_domain: missing"):
        load_config(write(tmp_path, '[network]\nname = "N"\nbot_address = "w@x.org"\n'))


def test_bad_values_are_refused(tmp_path: Path) -> None:
    """Values of the right type but wrong content are refused with the key named."""
    cases = {
        '\n[outbound]\ntransport = "pigeon"\n': "outbound.transport",
        '\n[inbound.smtp]\nprotocol = "http"\n': "inbound.smtp.protocol",
        '\n[digests]\nsend_at = "25:00"\n': "digests.send_at",
        '\n[database]\nurl = "mysql://x"\n': "database.url",
        '\n[limits]\nprocess_seconds = 0\n': "limits",
        '\n[limits]\nmax_rcpts = 0\n': "limits",
        '\n[outbound]\nlease_seconds = 0\n': "outbound.lease_seconds",
    }
    for extra, key in cases.items():
        with pytest.raises(ConfigError, match=re.escape(key)):
            load_config(write(tmp_path, BASE + extra))
    with pytest.raises(ConfigError, match="network.timezone"):
        load_config(write(tmp_path, BASE.replace('name = "N"', 'name = "N"\ntimezone = "Mars/Olympus"')))


def test_secret_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """*_env keys name an environment variable; a missing one is an error only when the feature is on."""
    imap = '\n[inbound.imap]\nenabled = true\nusername = "u"\npassword_env = "WGBOT_TEST_PW"\n'
    monkeypatch.delenv("WGBOT_TEST_PW", raising=False)
    with pytest.raises(ConfigError, match=r"inbound\.imap\.password_env: the environment variable WGBOT_TEST_PW"):
        load_config(write(tmp_path, BASE + imap))
    monkeypatch.setenv("WGBOT_TEST_PW", "s3cret")
    cfg = load_config(write(tmp_path, BASE + imap))
    assert secret(cfg.inbound.imap.password, cfg.inbound.imap.password_env) == "s3cret"
    assert "s3cret" not in repr(cfg)


def test_relative_paths_resolve_against_the_config_file(tmp_path: Path) -> None:
    """Relative paths are relative to the configuration file's folder, not the working directory."""
    cfg = load_config(write(tmp_path, BASE))
    assert cfg.resolve("var/outbox") == tmp_path / "var/outbox"
    assert cfg.rules_path.name == "eccar.toml"


def test_not_toml(tmp_path: Path) -> None:
    """A file that is not TOML is reported with its name."""
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[network\n"))
