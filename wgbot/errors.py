"""The exception tree of wgbot and the SMTP reply texts; library errors are translated here once.

    WgbotError
    ├── ConfigError        the configuration file is wrong (names the file and the key); exit code 2
    ├── RulesError         a rules file is wrong (names the file, the rule and the field); exit code 2
    ├── UsageError         the command line is wrong; exit code 2
    ├── MessageRefused     an inbound message cannot be read at all (caps, no single From, ...)
    └── FileProblems       a file to import has bad rows; nothing was imported (ImportError_, RegisterError)

Ordinary outcomes (a held post, an unknown command, an automated message) are return values, not
exceptions: exceptions are for faults.
"""

from __future__ import annotations


class WgbotError(Exception):
    """Base class of every error wgbot raises on purpose."""


class ConfigError(WgbotError):
    """The configuration is invalid; the message names the file and the key."""

    def __init__(self, path: str, key: str, problem: str) -> None:
        self.path = path
        self.key = key
        self.problem = problem
        super().__init__(f"{path}: {key}: {problem}")


class RulesError(WgbotError):
    """A rules file is invalid; the message names the file, the rule and the field."""

    def __init__(self, path: str, where: str, problem: str) -> None:
        self.path = path
        self.where = where
        self.problem = problem
        super().__init__(f"{path}: {where}: {problem}")


class UsageError(WgbotError):
    """The command line is wrong (exit code 2)."""


class MessageRefused(WgbotError):
    """An inbound message cannot be processed at all; the text says why, for the operator."""


class FileProblems(WgbotError):
    """A file to import has bad rows: nothing was imported; `problems` names each (file, row and column)."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


# SMTP/LMTP replies (SPEC §6). Our own faults are always 4xx: a 5xx makes the sending MTA bounce good mail.
SMTP_OK = "250 2.0.0 Ok: queued"
SMTP_UNKNOWN_RECIPIENT = "550 5.1.1 No such recipient here"
SMTP_TOO_BIG = "552 5.3.4 Message too big for this system"
SMTP_TOO_MANY_RECIPIENTS = "452 4.5.3 Too many recipients"
SMTP_OUR_FAULT = "451 4.3.0 Temporary failure, please try again later"
