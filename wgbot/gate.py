"""The automated-mail gate (SPEC §6, RFC 3834 §2, mail-safety.md §2.1 and §5 rule 4).

It runs before any command: a message it classes as automated never changes state and never gets a reply.
It is pure: the message, its envelope sender and the configuration in, a verdict out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from wgbot.config import Config
from wgbot.parse import Message

_RESPONDER_LOCALS = re.compile(r"^(mailer-daemon|postmaster|owner-.*|.*-request|.*-owner|.*-bounces(\+.*)?|"
                               r"no-?reply|do-?not-?reply|bounces?)$", re.I)


@dataclass(frozen=True)
class Verdict:
    """`automated` means: no reply, no command; `bounce` means it may be a delivery report."""

    automated: bool
    reason: str = ""
    bounce: bool = False


HUMAN = Verdict(False)


def _local(address: str) -> str:
    return address.rpartition("@")[0]


def responder_address(address: str) -> bool:
    """Whether `address` is an automatic responder's (RFC 3834 §2: MAILER-DAEMON, -bounces, noreply, ...)."""
    local = _local(address)
    return bool(local) and _RESPONDER_LOCALS.match(local) is not None


def check(msg: Message, envelope_from: str | None, cfg: Config) -> Verdict:
    """Classify one message. `envelope_from` is the SMTP MAIL FROM ("" for the null sender, None if unknown)."""
    if envelope_from is not None and envelope_from.strip("<> ") == "":
        return Verdict(True, "null envelope sender (a delivery report)", bounce=True)
    for who, address in (("envelope sender", envelope_from or ""), ("From", msg.sender)):
        local = _local(address)
        if local and _RESPONDER_LOCALS.match(local):
            bounce = local.lower() in ("mailer-daemon", "postmaster")
            return Verdict(True, f"{who} {address} is an automatic responder address (RFC 3834 §2)", bounce=bounce)
    ours = {cfg.network.list_domain.lower(), cfg.bot_domain}
    sender_domain = msg.sender.rpartition("@")[2].lower()
    if msg.sender.lower() == cfg.network.bot_address.lower() or sender_domain in ours:
        return Verdict(True, "sent from one of our own addresses (a loop)")
    auto = msg.header("auto-submitted").split(";")[0].strip().lower()
    if auto and auto != "no":
        return Verdict(True, f"Auto-Submitted: {auto} (RFC 3834 §2)")
    precedence = msg.header("precedence").strip().lower()
    if precedence in ("bulk", "junk", "list"):
        return Verdict(True, f"Precedence: {precedence}")
    for value in msg.all("x-loop") + msg.all("x-beenthere"):
        if cfg.network.bot_address.lower() in value.lower() or cfg.network.list_domain.lower() in value.lower():
            return Verdict(True, "X-Loop/X-BeenThere names us (a loop)")
    list_id = msg.header("list-id")
    if list_id:
        if cfg.network.list_domain.lower() in list_id.lower():
            return Verdict(True, "carries our own List-Id (a loop)")
        return Verdict(True, "carries another list's List-Id (RFC 3834 §2)")
    if msg.message_id.lower().endswith("@" + cfg.network.list_domain.lower() + ">"):
        return Verdict(True, "carries one of our own Message-IDs (a loop)")
    if msg.header("x-autoreply") or msg.header("x-autorespond"):
        return Verdict(True, "X-Autoreply/X-Autorespond (a vacation responder)")
    return HUMAN
