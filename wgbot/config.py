"""Configuration: a TOML file (read with tomllib) turned into frozen, typed dataclasses at start-up.

Every problem is a ConfigError naming the file, the key and what was expected; the command line turns it
into exit code 2. Nothing here opens a socket or a database: it only reads and checks.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
import typing
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from wgbot.errors import ConfigError

BUNDLED_RULES = ("eccar", "ietm", "igf")
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
ErrorFactory = Callable[[str, str, str], Exception]
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_DOMAIN = re.compile(rf"^{_LABEL}(?:\.{_LABEL})+$")
_ADDRESS = re.compile(rf"^[A-Za-z0-9.!#$%&'*+/=?^_`{{|}}~-]+@{_LABEL}(?:\.{_LABEL})+$")


@dataclass(frozen=True)
class NetworkConfig:
    name: str
    list_domain: str
    bot_address: str
    rules: str = "eccar"
    secretariat: tuple[str, ...] = ()
    timezone: str = "UTC"
    base_url: str = ""
    trusted_authserv_id: str = ""


@dataclass(frozen=True)
class DatabaseConfig:
    url: str = "sqlite:///var/wgbot.sqlite3"


@dataclass(frozen=True)
class SmtpInboundConfig:
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 8025
    protocol: str = "smtp"
    max_message_size: int = 10 * 1024 * 1024
    tls_cert: str = ""
    tls_key: str = ""


@dataclass(frozen=True)
class ImapInboundConfig:
    enabled: bool = False
    host: str = "imap.example.org"
    port: int = 993
    ssl: bool = True
    username: str = ""
    password: str = field(default="", repr=False)
    password_env: str = ""
    folder: str = "INBOX"
    processed_folder: str = "wgbot-processed"
    failed_folder: str = "wgbot-failed"
    poll_seconds: int = 60


@dataclass(frozen=True)
class InboundConfig:
    smtp: SmtpInboundConfig = SmtpInboundConfig()
    imap: ImapInboundConfig = ImapInboundConfig()


@dataclass(frozen=True)
class OutboundConfig:
    transport: str = "maildir"
    host: str = "127.0.0.1"
    port: int = 25
    maildir: str = "var/outbox"
    starttls: bool = False
    ca_file: str = ""
    username: str = ""
    password: str = field(default="", repr=False)
    password_env: str = ""
    timeout_seconds: int = 60
    connections: int = 1
    batch_size: int = 200
    retry_base_seconds: int = 60
    retry_max_seconds: int = 4 * 3600
    give_up_days: float = 5.0
    lease_seconds: int = 600


@dataclass(frozen=True)
class LimitsConfig:
    replies_per_day: int = 10
    max_command_lines: int = 25
    token_days: int = 14
    max_header_bytes: int = 256 * 1024
    max_header_fields: int = 1000
    max_parts: int = 500
    max_depth: int = 20
    max_received: int = 100
    invitations_per_proposal: int = 10
    invitations_per_day: int = 200
    process_seconds: float = 120.0   # one message's processing time before `wgbot run` restarts (issue 11 item 5)
    max_rcpts: int = 50              # RCPT TO per SMTP transaction; more get 452 4.5.3 (RFC 5321 §4.5.3.1.10)


@dataclass(frozen=True)
class ListsConfig:
    personalize: bool = True
    from_policy: str = "munge"
    max_post_bytes: int = 5 * 1024 * 1024
    allowed_types: tuple[str, ...] = ("text/*", "image/*", "application/pdf", "application/vnd.oasis.opendocument.*",
                                      "application/vnd.openxmlformats-officedocument.*", "application/msword",
                                      "message/rfc822", "multipart/*")
    hold_days: int = 14
    archive_url: str = ""
    fanout_batch: int = 1000
    held_requests_per_hour: int = 3


@dataclass(frozen=True)
class DigestsConfig:
    send_at: str = "07:00"
    weekly_on: str = ""          # a weekday ("monday") for weekly digests; "" for daily
    max_posts: int = 30          # a digest goes out as soon as this many posts wait ...
    max_bytes: int = 300_000     # ... or this many bytes


@dataclass(frozen=True)
class ScheduleConfig:
    general_assembly: str = ""   # "YYYY-MM-DD": the next General Assembly (ECCAR's yearly reports are due before it)
    rollup_on: str = "monday"    # the weekday of the secretariat's weekly roll-up ("" for none)
    rollup_at: str = "08:00"
    reminder_days_before_expiry: int = 3


@dataclass(frozen=True)
class MeetingsConfig:
    remind_before: tuple[str, ...] = ("1d", "1h")   # reminders this long before a meeting: "1d", "1h", "30m", "90"
    default_minutes: int = 90                       # a meeting's length when `Duration:` is not given


def offset_minutes(text: str) -> int | None:
    """Minutes from "1d", "2h", "30m" or "90" (minutes), or None when `text` is none of these."""
    m = re.fullmatch(r"\s*(\d{1,5})\s*(d|h|m|min)?\s*", text.lower())
    if m is None:
        return None
    return int(m.group(1)) * {"d": 1440, "h": 60}.get(m.group(2) or "m", 1)


@dataclass(frozen=True)
class BouncesConfig:
    threshold: int = 5
    window_days: int = 7


@dataclass(frozen=True)
class WebConfig:
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 8080
    archives: str = "public"     # or "private": no list archive is published unless a group's own setting says so


@dataclass(frozen=True)
class LogConfig:
    level: str = "INFO"


@dataclass(frozen=True)
class PathsConfig:
    templates: str = ""


@dataclass(frozen=True)
class Config:
    """The whole configuration; `path` is the file it came from (relative paths resolve against its folder)."""

    network: NetworkConfig
    database: DatabaseConfig = DatabaseConfig()
    inbound: InboundConfig = InboundConfig()
    outbound: OutboundConfig = OutboundConfig()
    limits: LimitsConfig = LimitsConfig()
    lists: ListsConfig = ListsConfig()
    digests: DigestsConfig = DigestsConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    bounces: BouncesConfig = BouncesConfig()
    meetings: MeetingsConfig = MeetingsConfig()
    web: WebConfig = WebConfig()
    log: LogConfig = LogConfig()
    paths: PathsConfig = PathsConfig()
    path: str = ""

    @property
    def base_dir(self) -> Path:
        return Path(self.path).resolve().parent if self.path else Path.cwd()

    def resolve(self, value: str) -> Path:
        """A path from the configuration, relative to the configuration file's folder."""
        p = Path(value).expanduser()
        return p if p.is_absolute() else self.base_dir / p

    @property
    def bot_local(self) -> str:
        return self.network.bot_address.rsplit("@", 1)[0].lower()

    @property
    def bot_domain(self) -> str:
        return self.network.bot_address.rsplit("@", 1)[1].lower()

    @property
    def rules_path(self) -> Path:
        from wgbot.resources import data_dir

        value = self.network.rules
        if value in BUNDLED_RULES:
            return data_dir("rules") / f"{value}.toml"
        return self.resolve(value)


def _type_name(tp: Any) -> str:
    if tp is str:
        return "a string"
    if tp is bool:
        return "true or false"
    if tp is int:
        return "a whole number"
    if tp is float:
        return "a number"
    if typing.get_origin(tp) is tuple:
        return "a list of whole numbers" if typing.get_args(tp)[0] is int else "a list of strings"
    return str(tp)


def _check_value(path: str, key: str, tp: Any, value: Any, error: ErrorFactory = ConfigError) -> Any:
    if tp is bool:
        ok = isinstance(value, bool)
    elif tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif tp is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif tp is str:
        ok = isinstance(value, str)
    elif typing.get_origin(tp) is tuple:
        inner = typing.get_args(tp)[0]
        if dataclasses.is_dataclass(inner):
            if not isinstance(value, list):
                raise error(path, key, "expected a list of tables ([[...]])")
            return tuple(build_from_table(typing.cast(type, inner), item, path, f"{key}[{i}]", error)
                         for i, item in enumerate(value))
        ok = isinstance(value, list) and all(
            isinstance(v, inner) and not isinstance(v, bool) for v in value)
        value = tuple(value) if ok else value
    else:  # pragma: no cover - a schema mistake, not a user mistake
        raise TypeError(tp)
    if not ok:
        raise error(path, key, f"expected {_type_name(tp)}, got {value!r}")
    return value


def build_from_table(cls: type[Any], table: Any, path: str, prefix: str, error: ErrorFactory = ConfigError) -> Any:
    """One dataclass from one TOML table: unknown keys, wrong types and missing values are errors."""
    if not isinstance(table, dict):
        raise error(path, prefix, "expected a table")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name != "path"}
    kwargs: dict[str, Any] = {}
    for key, value in table.items():
        dotted = f"{prefix}.{key}" if prefix else key
        if key.endswith("_env") and key[:-4] in fields and key[:-4] in table:
            raise error(path, dotted, f"give either {key[:-4]} or {key}, not both")
        if key not in fields:
            known = ", ".join(sorted(fields))
            raise error(path, dotted, f"unknown key (known keys here: {known})")
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            kwargs[key] = build_from_table(typing.cast(type, tp), value, path, dotted, error)
        else:
            kwargs[key] = _check_value(path, dotted, tp, value, error)
    for name, f in fields.items():
        if name not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            dotted = f"{prefix}.{name}" if prefix else name
            raise error(path, dotted, f"missing; expected {_type_name(hints[name])}")
    return cls(**kwargs)


def secret(value: str, env: str) -> str:
    """A secret given directly or as the name of an environment variable (read when needed)."""
    return value or os.environ.get(env, "") if env else value


def _check_secret(path: str, key: str, value: str, env: str, needed: bool) -> None:
    if env and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", env):
        raise ConfigError(path, key + "_env", f"expected the name of an environment variable, got {env!r}")
    if needed and not value and not env:
        raise ConfigError(path, key, f"required: give {key.rsplit('.', 1)[1]} or {key.rsplit('.', 1)[1]}_env")
    if needed and env and not value and env not in os.environ:
        raise ConfigError(path, key + "_env", f"the environment variable {env} is not set")


def _validate(cfg: Config) -> None:
    """Every value checked, in the order of the sections; the first problem found is the one reported."""
    _validate_network(cfg)
    _validate_mail(cfg)
    _validate_lists_and_schedule(cfg)


def _validate_network(cfg: Config) -> None:
    p = cfg.path
    net = cfg.network
    if not _DOMAIN.match(net.list_domain):
        raise ConfigError(p, "network.list_domain", f"expected a domain name, got {net.list_domain!r}")
    if not _ADDRESS.match(net.bot_address):
        raise ConfigError(p, "network.bot_address", f"expected an email address, got {net.bot_address!r}")
    if "+" in net.bot_address.split("@")[0]:
        raise ConfigError(p, "network.bot_address", "the local part may not contain '+' (it separates tokens)")
    for addr in net.secretariat:
        if not _ADDRESS.match(addr):
            raise ConfigError(p, "network.secretariat", f"expected email addresses, got {addr!r}")
    try:
        zoneinfo.ZoneInfo(net.timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ConfigError(p, "network.timezone", f"unknown time zone {net.timezone!r} (e.g. Europe/Brussels)") from None
    if net.rules not in BUNDLED_RULES and not net.rules.endswith(".toml"):
        raise ConfigError(p, "network.rules", f"expected one of {', '.join(BUNDLED_RULES)} or a path to a .toml file")
    if net.base_url and not net.base_url.startswith("https://"):
        raise ConfigError(p, "network.base_url", "expected an https:// URL")
    if cfg.web.archives not in ("public", "private"):
        raise ConfigError(p, "web.archives", f'expected "public" or "private", got {cfg.web.archives!r}')
    url = cfg.database.url
    if not (url.startswith("sqlite:") or url.startswith("postgresql")):
        raise ConfigError(p, "database.url", f"expected sqlite:///PATH or postgresql+psycopg://..., got {url!r}")


def _validate_mail(cfg: Config) -> None:
    p = cfg.path
    smtp = cfg.inbound.smtp
    if smtp.protocol not in ("smtp", "lmtp"):
        raise ConfigError(p, "inbound.smtp.protocol", f'expected "smtp" or "lmtp", got {smtp.protocol!r}')
    if bool(smtp.tls_cert) != bool(smtp.tls_key):
        raise ConfigError(p, "inbound.smtp.tls_key", "tls_cert and tls_key go together")
    for key, port in (("inbound.smtp.port", smtp.port), ("inbound.imap.port", cfg.inbound.imap.port),
                      ("outbound.port", cfg.outbound.port), ("web.port", cfg.web.port)):
        if not 0 <= port <= 65535:
            raise ConfigError(p, key, f"expected a port number 0-65535, got {port}")
    if smtp.max_message_size < 1024:
        raise ConfigError(p, "inbound.smtp.max_message_size", "expected at least 1024 bytes")
    if cfg.limits.process_seconds <= 0 or cfg.limits.max_rcpts < 1:
        raise ConfigError(p, "limits", "expected process_seconds above 0 and max_rcpts of at least 1")
    imap = cfg.inbound.imap
    if imap.enabled and not imap.username:
        raise ConfigError(p, "inbound.imap.username", "required when inbound.imap.enabled = true")
    _check_secret(p, "inbound.imap.password", imap.password, imap.password_env, imap.enabled)
    _check_secret(p, "outbound.password", cfg.outbound.password, cfg.outbound.password_env,
                  cfg.outbound.transport == "smtp" and bool(cfg.outbound.username))
    if imap.poll_seconds < 1:
        raise ConfigError(p, "inbound.imap.poll_seconds", "expected at least 1")
    out = cfg.outbound
    if out.transport not in ("smtp", "maildir"):
        raise ConfigError(p, "outbound.transport", f'expected "smtp" or "maildir", got {out.transport!r}')
    if out.batch_size < 1:
        raise ConfigError(p, "outbound.batch_size", "expected at least 1")
    if not 1 <= out.connections <= 64:
        raise ConfigError(p, "outbound.connections", "expected 1 to 64")
    if out.lease_seconds < 1:
        raise ConfigError(p, "outbound.lease_seconds", "expected at least 1")


def _validate_lists_and_schedule(cfg: Config) -> None:
    p = cfg.path
    if cfg.lists.from_policy not in ("keep", "munge", "wrap"):
        raise ConfigError(p, "lists.from_policy", f'expected "keep", "munge" or "wrap", got {cfg.lists.from_policy!r}')
    if cfg.lists.archive_url and not cfg.lists.archive_url.startswith(("https://", "http://")):
        raise ConfigError(p, "lists.archive_url", "expected an http(s):// URL")
    for key, value in (("lists.max_post_bytes", cfg.lists.max_post_bytes), ("lists.hold_days", cfg.lists.hold_days),
                       ("lists.fanout_batch", cfg.lists.fanout_batch)):
        if value < 1:
            raise ConfigError(p, key, "expected at least 1")
    for key, text in (("digests.send_at", cfg.digests.send_at), ("schedule.rollup_at", cfg.schedule.rollup_at)):
        if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", text):
            raise ConfigError(p, key, f'expected a time as "HH:MM", got {text!r}')
    for key, text in (("digests.weekly_on", cfg.digests.weekly_on), ("schedule.rollup_on", cfg.schedule.rollup_on)):
        if text and text.lower() not in WEEKDAYS:
            raise ConfigError(p, key, f"expected a weekday in English (monday ... sunday) or \"\", got {text!r}")
    if cfg.schedule.general_assembly:
        try:
            date.fromisoformat(cfg.schedule.general_assembly)
        except ValueError:
            raise ConfigError(p, "schedule.general_assembly", 'expected a date as "YYYY-MM-DD"') from None
    for key, value in (("digests.max_posts", cfg.digests.max_posts), ("digests.max_bytes", cfg.digests.max_bytes)):
        if value < 1:
            raise ConfigError(p, key, "expected at least 1")
    for text in cfg.meetings.remind_before:
        minutes = offset_minutes(text)
        if minutes is None or not 1 <= minutes <= 60 * 24 * 60:
            raise ConfigError(p, "meetings.remind_before", f'expected times before a meeting such as "1d", "1h" or '
                                                           f'"30m" (at most 60 days), got {text!r}')
    if not 5 <= cfg.meetings.default_minutes <= 24 * 60:
        raise ConfigError(p, "meetings.default_minutes", "expected 5 to 1440 (minutes)")
    if cfg.log.level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError(p, "log.level", "expected DEBUG, INFO, WARNING or ERROR")
    for key, value in (("limits.replies_per_day", cfg.limits.replies_per_day),
                       ("limits.max_command_lines", cfg.limits.max_command_lines),
                       ("limits.token_days", cfg.limits.token_days),
                       ("bounces.threshold", cfg.bounces.threshold),
                       ("bounces.window_days", cfg.bounces.window_days)):
        if value < 1:
            raise ConfigError(p, key, "expected at least 1")


def parse_config(data: dict[str, Any], path: str = "<config>") -> Config:
    """A Config from an already-parsed TOML document."""
    if "network" not in data:
        raise ConfigError(path, "network", "missing; the [network] table is required")
    cfg = build_from_table(Config, data, path, "")
    cfg = dataclasses.replace(cfg, path=path)
    _validate(cfg)
    return typing.cast(Config, cfg)


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and validate the configuration file at `path`."""
    p = str(path)
    try:
        with open(p, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(p, "-", "file not found (run `wgbot init` to create one)") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(p, "-", f"not valid TOML: {exc}") from exc
    except OSError as exc:
        raise ConfigError(p, "-", f"cannot be read: {exc.strerror}") from exc
    return parse_config(data, str(Path(p).resolve()))


