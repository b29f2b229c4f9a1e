"""dsn: what a delivery report to a list's bounce address says about one member's copy — permanent failure,
temporary failure, the list's own server blamed, an auto-reply, a feedback report, or not a report at all.

Pure: raw bytes in, a Report out; it never raises (a report nobody can read is "not a report", never a crash),
never touches the store, and never reads the returned original message or our own MTA's stamps
(Authentication-Results, Received): only the failure's own Status and diagnostic text decide.
"""

from __future__ import annotations

import email
import email.policy
import re
from dataclasses import dataclass
from email.message import Message

from wgbot.autoreply import vacation_header

PERMANENT = "permanent"      # scores (unknown user or host, mailbox disabled or closed)
TEMPORARY = "temporary"      # never scores (full, deferred, greylisting, rate limits, gave up after those)
OURS = "ours"                # the list's server or the copy was refused (blocklist, spam filter, DMARC, policy)
AUTO_REPLY = "auto-reply"    # a vacation or other auto-response (RFC 3834)
FEEDBACK = "feedback"        # an abuse/feedback report (ARF, RFC 5965)
NONE = "none"                # not a delivery failure report (or a delivery/relay notice)

KINDS = (PERMANENT, TEMPORARY, OURS, AUTO_REPLY, FEEDBACK, NONE)
_WORST_FIRST = (PERMANENT, OURS, TEMPORARY, NONE)   # for the member, when a report has several failures
_COMPAT = email.policy.compat32


@dataclass(frozen=True)
class Report:
    kind: str
    reason: str
    recipients: tuple[str, ...] = ()     # the failed recipients the report names (lower-cased)


def _c(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.I)


# RFC 3463 enhanced status code (class.subject.detail) and an RFC 5321 reply code at a word start.
_ENHANCED = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.])")
_REPLY = re.compile(r"(?<![\d.#-])([45][0-5]\d)(?:[ -]|$)", re.M)

# The member's mailbox or domain is gone or refused for good (RFC 3463 X.1.x, X.2.1) — checked first.
_GONE = _c(
    r"user(name)? (is )?unknown|unknown (user|recipient|address|local[- ]part|mailbox)|no such (user|mailbox|recipient|"
    r"address|account|domain|person)|(user|mailbox|recipient|address|account|e-?mail( address)?) (does not|doesn'?t|"
    r"not) exists?|(user|recipient|mailbox|account|address)( \S+)? not found|not a valid (mailbox|user|recipient)|"
    r"invalid (recipient|mailbox|user|address|account)|recipient (address )?(rejected|invalid|unknown)|"
    r"address rejected|mailbox (is )?(unavailable|not available|disabled|inactive|closed|suspended|locked|"
    r"deactivated|removed|deleted|does not exist|not found)|(account|mailbox|address) (has been |was |is )?"
    r"(disabled|deactivated|suspended|closed|terminated|deleted|removed|blocked|inactive|expired|locked)|"
    r"(disabled|inactive|closed|suspended|deactivated|expired) (account|mailbox|user)|no mailbox|"
    r"not our customer|unrouteable|unroutable|host (or domain name )?not found|host unknown|domain (not found|"
    r"does not exist|unknown)|unknown (host|domain)|name service error|nxdomain|no mx|null mx|"
    r"bad destination (mailbox|system)|undeliverable address|no longer (valid|available|active|in use|exists?)|"
    r"is not accepting (any )?mail|does not accept mail|hop count exceeded|mail loop|"
    r"no valid recipients|dd this user doesn't have|delivery to the following recipients? failed permanently|"
    r"sorry, no mailbox|account that you tried to reach (does not exist|is disabled)|mailbox unavailable|"
    r"address (is )?not (valid|recognized)|not listed in|no such person|list of known recipients|"
    # The same in the languages providers' notices are written in (German, French, Spanish, Italian,
    # Portuguese, Dutch, Russian, Japanese: Lotus Notes' "not in the directory list", "does not exist").
    r"(empf\u00e4nger|benutzer|adresse|postfach)\w* (ist )?(unbekannt|existiert nicht)|(utilisateur|destinataire|"
    r"adresse)s? (inconnue?s?|inexistante?s?)|n'existe pas|(usuario|destinatario|direcci\u00f3n) (desconocido|"
    r"inexistente|no existe)|(utente|destinatario|indirizzo) (sconosciuto|inesistente)|n\u00e3o existe|"
    r"onbekende (gebruiker|ontvanger)|bestaat niet|\u043d\u0435 \u0441\u0443\u0449\u0435\u0441\u0442\u0432"
    r"\u0443\u0435\u0442|\u30c7\u30a3\u30ec\u30af\u30c8\u30ea\u306e\u30ea\u30b9\u30c8\u306b\u3042\u308a"
    r"\u307e\u305b\u3093|\u5b58\u5728\u3057\u307e\u305b\u3093")
# The mailbox is (or was, until the reporter gave up) full or over quota (RFC 3463 X.2.2, X.3.1).
_FULL = _c(r"mailbox (is )?full|mail ?box (size|storage)|quota|over ?the ?limit|exceeded (its |the )?storage|"
           r"insufficient (system )?storage|out of (disk )?space|storage (space )?(is )?(full|exceeded)|"
           r"mail ?folder is full|full mailbox|disk full|too much mail|mailbox has exceeded|exceeds? (its )?size limit")
# DMARC, SPF, DKIM: the copy's authentication (mail-safety.md: munged copies; Mailman #939).
_DMARC = _c(r"dmarc|5\.7\.26|5\.7\.509|5\.7\.27|\bspf\b|sender policy framework|\bdkim\b|unauthenticated (e-?mail|"
            r"message)|authentication (checks? )?fail|not authenticated")
# The list's server or the copy itself refused: blocklists, reputation, spam and content filters, policy.
_OURS = _c(
    r"black ?list|block ?list|block list|\b(rbl|dnsbl|rbls)\b|spamhaus|spamcop|sorbs|barracuda|listed (in|at|on|by)|"
    r"blocked (using|by|due|because)|client host .{0,80}(blocked|rejected|refused)|banned sending ip|"
    r"5\.7\.606|5\.7\.511|5\.7\.512|reputation|spam|junk|content (rejected|filter)|message content|"
    r"rejected (due to|for) (content|policy|security)|virus|malware|phish|suspicious|"
    r"relay(ing)? (access )?(denied|not permitted|prohibited)|not permitted to relay|"
    r"(reverse dns|rdns|ptr record|\bptr\b|helo)|poor (ip|sender)|ip (address )?(is )?(not allowed|"
    r"blocked|banned|rejected)|your ip|sender ip|connecting ip|message size|size limit|too large|too big|"
    r"message (length )?exceeds|policy (violation|rejection|reasons|restrictions?)|(due to|for) (local |security )?"
    r"polic(y|ies)|administrative prohibition|"
    r"sender (address )?(rejected|denied|blocked)|access denied, (banned|rejected)|provide a valid from|"
    r"\b(from|sender)( address| domain)?:? (domain )?(is )?(invalid|not valid|not allowed|rejected)")
# Temporary by nature: greylisting, rate limits, deferrals.
_TRANSIENT = _c(r"grey ?list|gray ?list|try (again )?later|temporar(il)?y (unavailable|deferred|rejected|blocked|"
                r"not available|suspended)|temporary (error|failure|problem|local problem)|deferr?ed|"
                r"rate limit|rate-limit|too many (connections|messages|recipients|concurrent|emails)|throttl|"
                r"resources temporarily|service (is )?temporarily unavailable|insufficient system resources|"
                r"receiving mail (too quickly|at a rate)|server busy")
# The reporter gave up retrying a temporary failure (RFC 3464 Action: failed with 4.X.X; RFC 3463 X.4.7).
_EXPIRED = _c(r"4\.4\.7|retry time(out)? (not reached|exceeded)|delivery time expired|message expired|"
              r"(has|have) been delayed|could not be delivered (for|within|in) \d+|gave up|giving up|"
              r"expired after|too long in queue|queue(d)? too long|was not delivered (for|within)")
# Subjects and headers of auto-responses (RFC 3834) and of vendors that leave out Auto-Submitted.
_VACATION_SUBJECT = _c(r"^\s*(re:\s*)?(auto(matic|matisk)?[- ]?(reply|response|antwort|respon[ds]e?)|"
                       r"out of (the )?office|abwesenheit|r[ée]ponse automatique|risposta automatica|"
                       r"respuesta autom[áa]tica|resposta autom[áa]tica|automatisch antwoord|"
                       r"automatische antwort|vacation|on leave|away from|i am away|absence|absent|"
                       r"autoreply|autosvar|poissa|urlaub)")
_BOUNCE_SUBJECT = _c(r"undeliver|undelivered|not delivered|delivery (status|failure|failed|has failed|problem|"
                     r"notification)|returned mail|return(ed)? to sender|failure notice|mail delivery|"
                     r"delivery report|non ?remis|unzustellbar|nicht zustellbar|could not be delivered|"
                     r"mail system error|nondeliverable|non-deliverable|rejected|bounce|failed|warning: could not")
_DAEMON_FROM = _c(r"mailer-daemon|postmaster|mail delivery (subsystem|system)|mail ?administrator|"
                  r"mailer_daemon|post_?master|(^|<)bounces?[@+-]|mdaemon|mail ?router|internet mail delivery|"
                  r"microsoftexchange|notification|delivery")
# Where a text-only report starts quoting the returned message (qmail, Exim, Courier, sendmail v5, ...).
_ORIGINAL = re.compile(
    r"(?im)^[ \t>]*((-{2,}|={3,}|\*{2,}|_{3,}).{0,40}(original|copy of|returned|unsent|message headers|below this line|"
    r"header of)|(below this line is a copy|this is a copy of the (message|headers)|(the )?original message "
    r"(follows|headers:)|unsent message below|message headers follow|headers of the original message|"
    r"the header of the original))")


def _decoded_text(part: Message) -> str:
    try:
        payload = part.get_payload(decode=True)
    except Exception:
        return ""
    if not isinstance(payload, bytes):
        return ""
    try:
        charset = part.get_content_charset() or "utf-8"
    except Exception:
        charset = "utf-8"
    # The declared charset, else UTF-8 (reports often mislabel it), else the declared one with replacements.
    for name, errors in ((charset, "strict"), ("utf-8", "strict"), (charset, "replace")):
        try:
            return payload.decode(name, errors)
        except (LookupError, UnicodeError):
            continue
    return payload.decode("utf-8", "replace")


def _visible(text: str, html: bool) -> str:
    if html:
        text = re.sub(r"(?is)<(script|style)\b.*?</\1>", " ", text)
        text = re.sub(r"(?i)<br\s*/?>|</p>|</div>|</tr>", "\n", text)
        text = re.sub(r"<[^>]*>", " ", text)
        import html as html_mod

        text = html_mod.unescape(text)
    return text


def notification_text(msg: Message, limit: int = 20000) -> str:
    """The human-readable part of a report: its text parts, never the returned message (message/*,
    text/rfc822-headers) nor a quoted copy of it in a text-only report."""
    pieces: list[str] = []

    def walk(part: Message, depth: int) -> None:
        if depth > 10 or sum(len(p) for p in pieces) > limit:
            return
        # A broken Content-Type (`text/plain` CRLF `charset=...` unfolded) still names its type first.
        ctype = (part.get_content_type().split() or ["text/plain"])[0].rstrip(";").lower()
        if ctype.startswith("message/") or ctype == "text/rfc822-headers":
            return
        if part.is_multipart():
            for sub in part.get_payload():
                if isinstance(sub, Message):
                    walk(sub, depth + 1)
            return
        if ctype.startswith(("text/", "multipart/")):   # a multipart without a boundary is read as text
            pieces.append(_visible(_decoded_text(part), ctype == "text/html"))

    walk(msg, 0)
    text = "\n".join(pieces)[:limit]
    cut = _ORIGINAL.search(text)
    if cut is not None and cut.start() > 0:
        text = text[: cut.start()]
    # A quoted header block (a text-only report pasting the original's headers) ends the notice too.
    header = re.search(r"(?m)^(Return-Path|Received|DKIM-Signature|Authentication-Results|ARC-[A-Za-z-]+):", text)
    if header is not None and header.start() > 0:
        text = text[: header.start()]
    return text


def _fields(block: str) -> dict[str, str]:
    """One RFC 3464 field group (continuation lines unfolded, names lower-cased, first value kept)."""
    out: dict[str, str] = {}
    for m in re.finditer(r"(?m)^([A-Za-z][A-Za-z0-9-]*)[ \t]*:(.*(?:\n[ \t].*)*)", block):
        name = m.group(1).lower()
        out.setdefault(name, " ".join(m.group(2).split()))
    return out


def _status_blocks(msg: Message) -> list[dict[str, str]]:
    """The per-recipient field groups of every message/delivery-status part (RFC 3464 §2.3), whether the
    email package split them into header blocks or left them as (possibly encoded) text."""
    blocks: list[dict[str, str]] = []
    for part in msg.walk():
        ctype = part.get_content_type()
        if ctype not in ("message/delivery-status", "message/global-delivery-status"):
            continue
        payload = part.get_payload()
        if isinstance(payload, list):
            text = "\n\n".join(str(sub) if not isinstance(sub, Message) else
                               "\n".join(f"{k}: {v}" for k, v in sub.items()) for sub in payload)
        else:
            text = _decoded_text(part) or (payload if isinstance(payload, str) else "")
        text = text.replace("\r\n", "\n")
        for chunk in re.split(r"\n[ \t]*\n", text):
            fields = _fields(chunk)
            if any(k in fields for k in ("final-recipient", "original-recipient", "action", "x-actual-recipient")):
                if "final-recipient" in fields or "original-recipient" in fields or "status" in fields:
                    blocks.append(fields)
    return blocks


def _address(value: str) -> str:
    """`rfc822; <Alice@Example.org>` → `alice@example.org`."""
    value = value.split(";", 1)[1] if ";" in value else value
    m = re.search(r"[^\s<>\"';,()]+@[^\s<>\"';,()]+", value)
    return m.group(0).strip(".").lower() if m else ""


def _recipients(block: dict[str, str]) -> set[str]:
    return {a for a in (_address(block.get(k, "")) for k in ("final-recipient", "original-recipient",
                                                             "x-actual-recipient")) if a}


def classify(status: str, text: str, action: str = "") -> tuple[str, str]:
    """(kind, reason) for one failure: its RFC 3463 status (if any), its diagnostic text and RFC 3464 action."""
    text = " ".join(text.split())[:4000]
    # The Status field, unless it is a bare X.0.0 and the diagnostic text carries a more specific code.
    found = [c for c in (_ENHANCED.search(status), _ENHANCED.search(text)) if c]
    m = next((c for c in found if c.group(2, 3) != ("0", "0")), found[0] if found else None)
    cls, subject, detail = (m.group(1), int(m.group(2)), int(m.group(3))) if m else ("", -1, -1)
    reply = _REPLY.search(text)
    if not cls and reply:
        cls = reply.group(1)[0]
    code = f"{cls}.{subject}.{detail}" if m else (reply.group(1) if reply else "")
    said = f" ({code})" if code else ""
    if action.startswith("delay"):      # RFC 3464 §2.3.3: not a final report; the MTA keeps trying
        return TEMPORARY, "delayed: the reporter is still trying" + said
    if _DMARC.search(text) or (subject == 7 and detail in (26, 27, 509)):
        return OURS, "a DMARC/SPF/DKIM rejection of the list's copy" + said
    gave_up = ", the reporter gave up" if action.startswith("fail") and cls != "5" else ""
    if _FULL.search(text) or (subject, detail) in ((2, 2), (3, 1)):
        return TEMPORARY, "mailbox full" + said + gave_up
    if _TRANSIENT.search(text):
        return TEMPORARY, "greylisting, a rate limit or a deferral" + said + gave_up
    if _GONE.search(text) or (cls == "5" and (subject == 1 and detail != 8 or (subject, detail) == (2, 1))):
        return PERMANENT, "the address does not exist or is disabled" + said
    if _OURS.search(text) or subject == 7 or (subject, detail) in ((3, 4), (6, 0), (2, 3)):
        return OURS, "the list's server or the copy was refused (blocklist, spam filter, size or policy)" + said
    if cls == "4" or _EXPIRED.search(text):
        return TEMPORARY, ("gave up after temporary failures" if gave_up or _EXPIRED.search(text) else
                           "temporary failure") + said
    if cls == "5":
        return PERMANENT, "permanent failure" + said
    if action.startswith(("fail", "error")):
        return PERMANENT, "failed (RFC 3464 Action: failed)"
    return NONE, "no failure code or text"


def _is_feedback(msg: Message) -> bool:
    """An ARF report (RFC 5965 §2): multipart/report; report-type=feedback-report, or its feedback part."""
    if msg.get_content_type() == "multipart/report" and str(msg.get_param("report-type", "")).lower() == \
            "feedback-report":
        return True
    return any(part.get_content_type() == "message/feedback-report" for part in msg.walk())


def _header_text(msg: Message, name: str) -> str:
    """A header's text with RFC 2047 encoded words decoded (`=?utf-8?q?R=C3=A9ponse_automatique?=`)."""
    from email.header import decode_header, make_header

    value = str(msg.get(name, ""))
    try:
        return str(make_header(decode_header(value)))
    except Exception:  # undecodable encoded words: the raw text
        return value


def _is_auto_reply(msg: Message) -> bool:
    """An auto-response (RFC 3834) and not a delivery report: vacation headers or subjects, from a person's
    address. Delivery reports carry Auto-Submitted too (Exim, Postfix), so that header alone decides nothing."""
    subject = _header_text(msg, "subject")
    sender = str(msg.get("from", ""))
    if _BOUNCE_SUBJECT.search(subject) or _DAEMON_FROM.search(sender):
        return False
    if vacation_header(lambda name: str(msg.get(name, ""))):
        return True
    if _VACATION_SUBJECT.search(subject):
        return True
    auto = str(msg.get("auto-submitted", "")).strip().lower()
    return auto.startswith("auto-replied") or str(msg.get("precedence", "")).strip().lower() in ("bulk", "junk")


def _flufl(msg: Message) -> tuple[set[str], set[str]]:
    """flufl.bounce's temporary and permanent failures (its detectors know many vendors' texts)."""
    from flufl.bounce import all_failures

    try:
        temporary, permanent = all_failures(msg)
    except Exception:  # a detector choking on odd input: unrecognised, never a crash
        return set(), set()

    def text(addresses: object) -> set[str]:
        return {(a.decode("utf-8", "replace") if isinstance(a, bytes) else str(a)).lower()
                for a in addresses}  # type: ignore[attr-defined]
    return text(temporary), text(permanent)


def _from_blocks(blocks: list[dict[str, str]], member: str, fallback: str) -> Report | None:
    """The verdict of a DSN: the member's own recipient block when it names the member, else every failed
    or delayed one (a forwarded address fails under another name); the worst outcome for the member wins."""
    if not blocks:
        return None
    failing = [b for b in blocks if not b.get("action", "failed").lower().startswith(("deliver", "relay", "expand"))]
    if not failing:
        return Report(NONE, "a delivery or relay notice, not a failure", ())
    mine = [b for b in failing if member and member.lower() in _recipients(b)]
    chosen = mine or failing
    verdicts = []
    for block in chosen:
        diagnostic = " ".join(block.get(k, "") for k in ("diagnostic-code", "x-postfix-diagnostic", "x-diagnostic"))
        status = block.get("status", "")
        if not diagnostic.strip() and not _ENHANCED.search(status):
            diagnostic = fallback        # no code of its own: the notice's text speaks for it
        verdicts.append(classify(status, diagnostic or fallback, block.get("action", "").lower()))
    names = tuple(sorted({a for b in chosen for a in _recipients(b)}))
    kind, reason = min(verdicts, key=lambda v: _WORST_FIRST.index(v[0]))
    if kind == NONE:      # a failed block that says nothing: what the notice's text says
        kind, reason = classify("", fallback, chosen[0].get("action", "").lower())
    return Report(kind, reason, names)


def read(raw: bytes, member: str = "") -> Report:
    """What the report `raw` says about `member`'s copy (the address from its VERP return path)."""
    try:
        return _read(raw, member)
    except Exception as exc:  # whatever odd input does to a parser, a report never stops the bot
        return Report(NONE, f"unreadable report ({type(exc).__name__})")


def _read(raw: bytes, member: str) -> Report:
    msg = email.message_from_bytes(raw, policy=_COMPAT)
    if _is_feedback(msg):
        return Report(FEEDBACK, "a feedback (abuse) report, RFC 5965: never a bounce")
    text = notification_text(msg)
    blocks = _status_blocks(msg)
    if blocks:
        report = _from_blocks(blocks, member, text)
        if report is not None:
            return report
    if _is_auto_reply(msg):
        return Report(AUTO_REPLY, "an auto-reply (RFC 3834), not a delivery report")
    temporary, permanent = _flufl(msg)
    kind, reason = classify("", text)
    names = tuple(sorted(permanent or temporary))
    if kind == NONE:
        if permanent:
            return Report(PERMANENT, "permanent failure (flufl.bounce)", names)
        if temporary:
            return Report(TEMPORARY, "temporary failure (flufl.bounce)", names)
        return Report(NONE, "not a delivery report", names)
    if kind == PERMANENT and not permanent and not _looks_like_report(msg, text):
        return Report(NONE, "not a delivery report (no report structure, sender or subject)", names)
    return Report(kind, reason, names)


def _looks_like_report(msg: Message, text: str) -> bool:
    """A text-only notice that flufl.bounce does not know: from a mail system, or titled as a report."""
    return bool(_DAEMON_FROM.search(str(msg.get("from", ""))) or _BOUNCE_SUBJECT.search(_header_text(msg, "subject"))
                or not msg.get("from") or _ENHANCED.search(text) or _REPLY.search(text)
                or re.search(r"(?i)could not be delivered|delivery.{0,20}failed|permanent (error|failure)|"
                             r"undeliverable", text))
