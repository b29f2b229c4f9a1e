"""parse: raw bytes → a frozen Message. The ONLY module that imports mail-parser.

Caps (size, header bytes and fields, multipart containers, boundary lines) are checked on the raw bytes
before anything is parsed (bpo-42909, mail-safety.md §4.1 items 9, 10, 17, 18), and every parser failure is
turned into MessageRefused here, once. It decides nothing about what the message means.
"""

from __future__ import annotations

import html
import logging
import re
import types
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from email import policy as email_policy
from email.message import Message as StdMessage
from typing import Any

from wgbot.errors import MessageRefused

log = logging.getLogger("wgbot.parse")


@dataclass(frozen=True)
class Caps:
    """Limits checked before a message is parsed."""

    max_size: int = 10 * 1024 * 1024
    max_header_bytes: int = 256 * 1024
    max_header_field_bytes: int = 32 * 1024
    max_header_fields: int = 1000
    max_parts: int = 500
    max_depth: int = 20
    max_received: int = 100


# Header names the gate and the router read; kept lower-cased, all their values (RFC 5322: names are
# case-insensitive, mail-safety.md §4.1 item 8).
KEPT_HEADERS = (
    "auto-submitted", "precedence", "list-id", "list-post", "list-help", "list-unsubscribe",
    "list-subscribe", "list-owner", "list-archive", "x-loop", "x-beenthere", "return-path", "delivered-to",
    "x-original-to", "to", "cc", "x-autoreply", "x-autorespond", "x-auto-response-suppress",
    "authentication-results", "x-mailer",
)

# Charsets a command may be read in (mail-safety.md A12); UTF-7 is refused: `+ADw-script+AD4-` is `<script>`.
_CHARSET_OK = re.compile(
    r"^(us-ascii|ascii|utf-8|utf8|iso-8859-\d{1,2}|iso8859-\d{1,2}|latin-?1|windows-125\d|cp125\d|koi8-[ru]|"
    r"gb2312|gbk|gb18030|big5|shift_jis|shift-jis|sjis|euc-jp|euc-kr|iso-2022-jp|ks_c_5601-1987|tis-620)$"
)
_TEXT_ENCODINGS = {"", "7bit", "8bit", "quoted-printable", "base64"}
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")
_HEADER_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_FOLD = re.compile(r"\r?\n(?=[ \t])")
_BLOCK_TAGS = re.compile(r"<\s*(br|/p|p|/div|div|/li|li|/tr|tr|/h[1-6]|hr|/blockquote|blockquote)\b[^>]*>", re.I)


def clean_header_text(value: str, limit: int = 300) -> str:
    """Text from a message made safe to show in a header or one line: no CR, LF, NUL, controls or bidi overrides."""
    value = _HEADER_CONTROL.sub(" ", value)
    value = " ".join(value.split())
    return value[:limit]


def clean_text(value: str) -> str:
    """Body text with control characters (other than newline and tab) removed."""
    return _CONTROL.sub("", value.replace("\r\n", "\n").replace("\r", "\n"))


@dataclass(frozen=True)
class Message:
    """What wgbot needs of one inbound message; built only by `parse`."""

    sender: str                      # the one From mailbox, addr-spec as written
    display_name: str                # decoded display name, cleaned (never used for identity)
    subject: str                     # decoded Subject, cleaned to one line
    text: str                        # the first text part (HTML-only mail converted to text)
    text_from_html: bool
    message_id: str                  # "<...>" or ""
    in_reply_to: str
    references: str
    headers: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: types.MappingProxyType({}))
    received_count: int = 0
    defects: tuple[str, ...] = ()
    size: int = 0

    def header(self, name: str) -> str:
        """The first value of a kept header, or "" (names are case-insensitive)."""
        values = self.headers.get(name.lower(), ())
        return values[0] if values else ""

    def all(self, name: str) -> tuple[str, ...]:
        return self.headers.get(name.lower(), ())


def split_head(raw: bytes) -> tuple[bytes, bytes]:
    """The header block and the body of raw message bytes (at the first empty line)."""
    m = re.search(rb"\r?\n\r?\n", raw)
    if m is None:
        return raw, b""
    return raw[: m.start() + 1], raw[m.end():]


def check_caps(raw: bytes, caps: Caps) -> None:
    """Refuse a message that breaks a cap, looking only at bytes (bounded time, nothing parsed)."""
    if len(raw) > caps.max_size:
        raise MessageRefused(f"message is {len(raw)} bytes; the limit is {caps.max_size}")
    head, _ = split_head(raw)
    if len(head) > caps.max_header_bytes:
        raise MessageRefused(f"header block is {len(head)} bytes; the limit is {caps.max_header_bytes}")
    fields = re.findall(rb"(?m)^[^ \t\r\n][^:\r\n]*:", head)
    if len(fields) > caps.max_header_fields:
        raise MessageRefused(f"{len(fields)} header fields; the limit is {caps.max_header_fields}")
    received = sum(1 for f in fields if f.lower() == b"received:")
    if received >= caps.max_received:
        raise MessageRefused(f"{received} Received headers: a mail loop (RFC 5321 §6.3)")
    # A header field with its folded continuation lines.
    for m in re.finditer(rb"(?m)^[^ \t\r\n][^\r\n]*(?:\r?\n[ \t][^\r\n]*)*", head):
        if m.end() - m.start() > caps.max_header_field_bytes:
            name = m.group(0).split(b":", 1)[0][:40].decode("ascii", "replace")
            raise MessageRefused(f"header field {name!r} is over {caps.max_header_field_bytes} bytes")
    containers = len(re.findall(rb"(?i)boundary\s*\*?\s*=", raw))
    if containers > caps.max_depth:
        raise MessageRefused(f"{containers} multipart containers; at most {caps.max_depth} are accepted")
    if re.search(rb"(?i)content-type:\s*[^\r\n]{0,200}(;\s*){1000}", raw):
        raise MessageRefused("a Content-Type header with thousands of parameters (bpo-42909)")
    delimiters = len(re.findall(rb"(?m)^--", raw))
    if delimiters > caps.max_parts * 2:
        raise MessageRefused(f"about {delimiters // 2} MIME parts; at most {caps.max_parts} are accepted")


def _header_values(msg: StdMessage, name: str) -> tuple[str, ...]:
    """Every value of header `name` as text; raw UTF-8 (RFC 6532) is decoded, other 8-bit bytes replaced."""
    out = []
    for key, value in msg.raw_items():
        if key.lower() != name:
            continue
        # Unfold first (RFC 5322 §2.2.3): a long display name folded onto a second line is one value.
        text = _FOLD.sub("", str(value))
        if any("\udc80" <= c <= "\udcff" for c in text):
            text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        out.append(text)
    return tuple(out)


def _decode_header(name: str, value: str) -> Any:
    return email_policy.default.header_factory(name, value)


def _sender(msg: StdMessage) -> tuple[str, str]:
    froms = _header_values(msg, "from")
    if not froms:
        raise MessageRefused("no From header")
    if len(froms) > 1:
        raise MessageRefused("more than one From header (RFC 5322 §3.6 allows exactly one)")
    try:
        header = _decode_header("From", froms[0])
        addresses = header.addresses
        defects = header.defects
    except RecursionError:
        raise MessageRefused("From header nests too deeply to be read") from None
    except Exception as exc:  # the stdlib header parser has raised IndexError/ValueError on odd input
        raise MessageRefused("From header cannot be read as an address (RFC 5322 §3.4)") from exc
    if len(addresses) != 1:
        raise MessageRefused(f"From header holds {len(addresses)} mailboxes; exactly one is required")
    if any("invalid" in str(d).lower() for d in defects):
        raise MessageRefused("From header is ambiguous (CVE-2023-27043): " + "; ".join(str(d) for d in defects))
    addr = addresses[0]
    spec = addr.addr_spec
    if "@" not in spec or not addr.username or not addr.domain or "." not in addr.domain:
        raise MessageRefused(f"From address {clean_header_text(spec, 80)!r} is not a full address")
    if not spec.isascii() or _HEADER_CONTROL.search(spec) or " " in spec:
        raise MessageRefused(f"From address {clean_header_text(spec, 80)!r} has characters we cannot reply to")
    if len(spec) > 254:
        raise MessageRefused("From address is longer than 254 characters")
    return spec, clean_header_text(addr.display_name or "", 100)


def _plain_unstructured(name: str) -> bool:
    """Whether `name` is an unstructured header to email's registry (its text is its value)."""
    from email.headerregistry import UnstructuredHeader

    registry: dict[str, type] | None = getattr(email_policy.default.header_factory, "registry", None)
    if registry is None:      # not the email package we know: always take the careful way
        return False
    kind = registry.get(name.lower())
    return kind is None or issubclass(kind, UnstructuredHeader)


def _decoded(name: str, value: str) -> str:
    """A header's text with encoded words decoded. An unstructured header in plain ASCII without an encoded
    word is its own text: that case (most headers of most mail) skips the header parser, a fifth of the time
    of reading a message (tests/unit/test_parse.py checks both ways agree)."""
    if value.isascii() and "=?" not in value and _plain_unstructured(name):
        return value
    try:
        return str(_decode_header(name, value))
    except Exception:  # undecodable encoded words: show the raw text rather than fail
        return value


def _charset_of(part: StdMessage) -> str:
    try:
        cs = part.get_content_charset() or ""
    except Exception:
        return ""
    return cs.strip().strip('"').lower() if isinstance(cs, str) else ""


def _decode_part(part: StdMessage, notes: list[str]) -> str | None:
    cte = str(part.get("content-transfer-encoding", "")).strip().lower()
    if cte not in _TEXT_ENCODINGS:
        notes.append(f"text part in transfer encoding {cte!r} was not read")
        return None
    try:
        payload = part.get_payload(decode=True)
    except Exception:
        notes.append("text part could not be decoded")
        return None
    if not isinstance(payload, bytes):
        return None
    for defect in getattr(part, "defects", []):
        notes.append(type(defect).__name__)
    charset = _charset_of(part)
    if charset in ("utf-7", "utf7", "unicode-1-1-utf-7"):
        notes.append("charset utf-7 is not accepted for commands; read as plain ASCII")
        return payload.decode("ascii", "replace")
    if charset and _CHARSET_OK.match(charset):
        try:
            return payload.decode(charset, "replace")
        except LookupError:
            pass
    elif charset:
        notes.append(f"unknown charset {clean_header_text(charset, 40)!r}; read as UTF-8 with replacements")
    return payload.decode("utf-8", "replace")


def html_to_text(markup: str) -> str:
    """HTML to plain text lines, with nh3 dropping every tag (and script/style content)."""
    import nh3

    markup = _BLOCK_TAGS.sub("\n", markup)
    text = html.unescape(nh3.clean(markup, tags=set()))
    lines = [" ".join(line.split()) for line in text.splitlines()]
    return "\n".join(lines).strip("\n")


def _first_text(msg: StdMessage, caps: Caps, notes: list[str]) -> tuple[str, bool]:
    """The first text/plain part (else the first text/html, converted); never inside message/rfc822."""
    plain: StdMessage | None = None
    htmlpart: StdMessage | None = None
    parts = 0

    def walk(part: StdMessage, depth: int) -> None:
        nonlocal plain, htmlpart, parts
        parts += 1
        if depth > caps.max_depth:
            raise MessageRefused(f"MIME nesting deeper than {caps.max_depth}")
        if parts > caps.max_parts:
            raise MessageRefused(f"more than {caps.max_parts} MIME parts")
        ctype = part.get_content_type()
        if part.is_multipart():
            payload = part.get_payload()
            if isinstance(payload, list):
                for sub in payload:
                    if isinstance(sub, StdMessage):
                        walk(sub, depth + 1)
            return
        if ctype == "message/rfc822" or ctype.startswith("message/"):
            return  # a forwarded message is never read as commands (mail-safety.md §4.1 item 23)
        disposition = str(part.get("content-disposition", "")).lower()
        if disposition.startswith("attachment"):
            return
        if ctype == "text/plain" and plain is None:
            plain = part
        elif ctype == "text/html" and htmlpart is None:
            htmlpart = part

    walk(msg, 0)
    if plain is not None:
        text = _decode_part(plain, notes)
        if text is not None:
            return clean_text(text), False
    if htmlpart is not None:
        text = _decode_part(htmlpart, notes)
        if text is not None:
            return clean_text(html_to_text(text)), True
    return "", False


def _msgid(value: str) -> str:
    m = re.search(r"<[^<>\s]{1,900}>", value)
    return m.group(0) if m else ""


def _structure(raw: bytes) -> StdMessage:
    """The message's MIME tree: mail-parser's, else the standard `email` parser's (mail-parser has crashed on
    broken or repeated boundaries); the refusal never shows a parser's own error text to the sender."""
    import email

    import mailparser

    try:
        parsed: StdMessage = mailparser.parse_from_bytes(raw).message
        return parsed
    except RecursionError:
        raise MessageRefused("message nests too deeply to be parsed") from None
    except Exception as exc:
        log.warning("mail-parser failed (%s: %s); reading the message with the standard email parser",
                    type(exc).__name__, exc)
    try:
        return email.message_from_bytes(raw, policy=email_policy.compat32)
    except RecursionError:
        raise MessageRefused("message nests too deeply to be parsed") from None
    except Exception as exc:
        log.warning("the standard email parser failed too: %s: %s", type(exc).__name__, exc)
        raise MessageRefused("its MIME structure (RFC 2045, RFC 2046) could not be read") from exc


def parse(raw: bytes, caps: Caps | None = None) -> Message:
    """Parse raw RFC 5322 bytes into a Message, or raise MessageRefused saying why not."""
    caps = caps or Caps()
    check_caps(raw, caps)
    std = _structure(raw)
    notes: list[str] = [type(d).__name__ for d in getattr(std, "defects", [])]
    sender, display = _sender(std)
    subjects = _header_values(std, "subject")
    subject = clean_header_text(_decoded("Subject", subjects[0]), 500) if subjects else ""
    try:
        text, from_html = _first_text(std, caps, notes)
    except RecursionError:
        raise MessageRefused("MIME structure nests too deeply to be read") from None
    kept = {name: tuple(clean_header_text(_decoded(name, v), 2000) for v in _header_values(std, name))
            for name in KEPT_HEADERS}
    received = len(_header_values(std, "received"))
    msgid = _msgid(" ".join(_header_values(std, "message-id")))
    in_reply_to = _msgid(" ".join(_header_values(std, "in-reply-to")))
    refs = " ".join(re.findall(r"<[^<>\s]{1,900}>", " ".join(_header_values(std, "references"))))[-4000:]
    return Message(
        sender=sender,
        display_name=display,
        subject=subject,
        text=text,
        text_from_html=from_html,
        message_id=msgid,
        in_reply_to=in_reply_to,
        references=refs,
        headers=types.MappingProxyType({k: v for k, v in kept.items() if v}),
        received_count=received,
        defects=tuple(dict.fromkeys(notes)),
        size=len(raw),
    )


def parse_headers(raw: bytes, caps: Caps | None = None) -> Message | None:
    """Only the header block, for answering a message the full parse refused; None if even that fails."""
    caps = caps or Caps()
    head, _ = split_head(raw)
    if len(head) > caps.max_header_bytes:
        return None
    try:
        return parse(head + b"\r\n", Caps(max_size=caps.max_header_bytes + 2, max_header_bytes=caps.max_header_bytes,
                                          max_header_fields=caps.max_header_fields, max_received=caps.max_received))
    except MessageRefused:
        return None


def normalise_word(word: str) -> str:
    """A command word as compared: NFKC (full-width letters become ASCII), case-folded."""
    return unicodedata.normalize("NFKC", word).casefold()
