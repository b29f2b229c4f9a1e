"""The automated-mail gate (SPEC §6, RFC 3834 §2, mail-safety.md §2.1 and §5 rule 4), and the trust we give a
message's From (RFC 8601 Authentication-Results from our own border MTA).

It runs before any command: a message it classes as automated never changes state and never gets a reply.
It is pure: the message, its envelope sender and the configuration in, a verdict out. It sends nothing.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass

from wgbot.autoreply import vacation_header
from wgbot.config import Config
from wgbot.parse import Message

_RESPONDER_LOCALS = re.compile(r"^(mailer-daemon|postmaster|owner-.*|.*-request|.*-owner|.*-bounces(\+.*)?|"
                               r"no-?reply|do-?not-?reply|bounces?)$", re.I)

# Subjects vacation responders write before the subject they answer (Outlook/Exchange in its languages,
# Gmail's and Apple's defaults as users leave them). Anchored at the start, after any "Re:"/"AW:" stack.
_REPLY_PREFIXES = r"^(?:(?:re|aw|sv|antw|fw|fwd|wg|r|rif)\s*:\s*)*"
_AUTO_SUBJECT = re.compile(
    _REPLY_PREFIXES + r"(?:automatic reply|auto[- ]?reply|autoreply|auto[- ]?response|"
    r"abwesenheitsnotiz|automatische antwort|r[ée]ponse automatique|risposta automatica|"
    r"respuesta autom[áa]tica|resposta autom[áa]tica|automatisch antwoord|autosvar|automaattinen vastaus|"
    r"odpowied[źz] automatyczna|automatick[áa] odpov[ěe]ď)", re.I)
# Words a person may also start a subject with ("Out of office hours meeting"): they mark an auto-reply only
# when followed by a colon or when the message answers another one (In-Reply-To/References).
_AWAY_SUBJECT = re.compile(_REPLY_PREFIXES + r"(?:out of (?:the )?office|ooo\b|on vacation|on holiday)(\s*:)?",
                           re.I)


class Why(enum.StrEnum):
    """What kind of automated mail it is: callers test this flag, never the human reason."""

    HUMAN = "human"
    BOUNCE = "bounce"            # may be a delivery report (null sender, MAILER-DAEMON, postmaster)
    LOOP = "loop"                # our own mail coming back
    RESPONDER = "responder"      # an automatic responder address (noreply@, -bounces@, -request@)
    AUTO_REPLY = "auto-reply"    # a vacation or out-of-office answer
    AUTO_SUBMITTED = "auto-submitted"
    BULK = "bulk"                # Precedence: bulk/junk/list, or another list's List-Id


@dataclass(frozen=True)
class Verdict:
    """`why` is the typed class; `reason` says it in words for logs and stored outcomes."""

    why: Why
    reason: str = ""

    @property
    def automated(self) -> bool:
        """No reply, no command."""
        return self.why is not Why.HUMAN

    @property
    def bounce(self) -> bool:
        return self.why is Why.BOUNCE

    @property
    def loop(self) -> bool:
        return self.why is Why.LOOP


HUMAN = Verdict(Why.HUMAN)


def _local(address: str) -> str:
    return address.rpartition("@")[0]


def responder_address(address: str) -> bool:
    """Whether `address` is an automatic responder's (RFC 3834 §2: MAILER-DAEMON, -bounces, noreply, ...)."""
    local = _local(address)
    return bool(local) and _RESPONDER_LOCALS.match(local) is not None


def check(msg: Message, envelope_from: str | None, cfg: Config) -> Verdict:
    """Classify one message. `envelope_from` is the SMTP MAIL FROM ("" for the null sender, None if unknown)."""
    if envelope_from is not None and envelope_from.strip("<> ") == "":
        return Verdict(Why.BOUNCE, "null envelope sender (a delivery report)")
    for who, address in (("envelope sender", envelope_from or ""), ("From", msg.sender)):
        local = _local(address)
        if local and _RESPONDER_LOCALS.match(local):
            why = Why.BOUNCE if local.lower() in ("mailer-daemon", "postmaster") else Why.RESPONDER
            return Verdict(why, f"{who} {address} is an automatic responder address (RFC 3834 §2)")
    return _loop(msg, cfg) or _marked(msg) or _auto_reply(msg) or HUMAN


def _loop(msg: Message, cfg: Config) -> Verdict | None:
    ours = {cfg.network.list_domain.lower(), cfg.bot_domain}
    sender_domain = msg.sender.rpartition("@")[2].lower()
    if msg.sender.lower() == cfg.network.bot_address.lower() or sender_domain in ours:
        return Verdict(Why.LOOP, "sent from one of our own addresses (a loop)")
    for value in msg.all("x-loop") + msg.all("x-beenthere"):
        if cfg.network.bot_address.lower() in value.lower() or cfg.network.list_domain.lower() in value.lower():
            return Verdict(Why.LOOP, "X-Loop/X-BeenThere names us (a loop)")
    list_id = msg.header("list-id")
    if list_id and cfg.network.list_domain.lower() in list_id.lower():
        return Verdict(Why.LOOP, "carries our own List-Id (a loop)")
    if msg.message_id.lower().endswith("@" + cfg.network.list_domain.lower() + ">"):
        return Verdict(Why.LOOP, "carries one of our own Message-IDs (a loop)")
    return None


def _marked(msg: Message) -> Verdict | None:
    """The standard markers: Auto-Submitted (RFC 3834 §5), Precedence (RFC 2076 §3.9), List-Id (RFC 2919)."""
    auto = msg.header("auto-submitted").split(";")[0].strip().lower()
    if auto and auto != "no":
        why = Why.AUTO_REPLY if auto == "auto-replied" else Why.AUTO_SUBMITTED
        return Verdict(why, f"Auto-Submitted: {auto} (RFC 3834 §2)")
    precedence = msg.header("precedence").strip().lower()
    if precedence in ("bulk", "junk", "list", "auto_reply"):
        why = Why.AUTO_REPLY if precedence == "auto_reply" else Why.BULK
        return Verdict(why, f"Precedence: {precedence}")
    if msg.header("list-id"):
        return Verdict(Why.BULK, "carries another list's List-Id (RFC 3834 §2)")
    return None


def _auto_reply(msg: Message) -> Verdict | None:
    """Vendors' vacation responders that send no Auto-Submitted: Apple iCloud (X-Apple-Action: VACATION),
    Exchange (X-MS-Exchange-Inbox-Rules-Loop, X-Auto-Response-Suppress: All), X-Autoreply/-Autorespond/
    -Autogenerated, and the subjects responders write."""
    marked = vacation_header(msg.header)
    if marked:
        return Verdict(Why.AUTO_REPLY, marked)
    # Exchange stamps "DR, RN, NRN, OOF, AutoReply" on ordinary mail of its users too; only its own automatic
    # answers ask for "All" to be suppressed, so only that value marks automated mail.
    if msg.header("x-auto-response-suppress").strip().lower() == "all":
        return Verdict(Why.AUTO_REPLY, "X-Auto-Response-Suppress: All (an Exchange automatic reply)")
    away = _AWAY_SUBJECT.match(msg.subject)
    if _AUTO_SUBJECT.match(msg.subject) or (away and (away.group(1) or msg.in_reply_to or msg.references)):
        return Verdict(Why.AUTO_REPLY, "the subject is an automatic reply's")
    return None


def trusted_dmarc_pass(cfg: Config, headers: Iterable[str], sender: str) -> bool:
    """True when the topmost Authentication-Results of our own authserv-id says dmarc=pass for the From
    domain (RFC 8601 §5: only our border MTA's verdict counts; it adds its header on top of what came in, so
    a forged copy with our id further down, under our MTA's own `fail`, never counts)."""
    import authres

    authserv = cfg.network.trusted_authserv_id.lower()
    if not authserv:
        return False
    domain = sender.rpartition("@")[2].lower()
    for value in headers:
        first = re.match(r"\s*([^\s;]+)", value)
        if first is None or first.group(1).lower() != authserv:
            continue
        # The topmost header of our id decides alone: one we cannot read is no pass.
        try:
            header = authres.AuthenticationResultsHeader.parse("Authentication-Results: " + value)
        except (authres.AuthResError, ValueError, IndexError):
            return False
        if str(header.authserv_id).lower() != authserv:
            return False
        return any(str(r.method).lower() == "dmarc" and str(r.result).lower() == "pass"
                   and any(p.type == "header" and p.name == "from" and str(p.value).lower() == domain
                           for p in r.properties)
                   for r in header.results)
    return False
