"""mimesafe: what makes a list copy of real-world mail acceptable to the next relay (issue 11 item 6).

`lists.build_copy` calls it on the copy it built (email's compat32 objects): undeclared 8-bit header text is
decoded tolerantly and re-encoded with RFC 2047 instead of pasted; a body part with lines over 998 octets
(RFC 5322 §2.1.1) is re-encoded quoted-printable (base64 if not text), and NUL bytes leave text parts. A part
that breaks none of these keeps its bytes and transfer encoding. It reads no database and decides nothing.
"""

from __future__ import annotations

import hashlib
from email import encoders
from email.header import Header
from email.message import Message as StdMessage
from email.utils import formataddr, getaddresses

from wgbot.parse import clean_header_text

MAX_LINE = 998   # octets per line, without CRLF (RFC 5322 §2.1.1)
_ADDRESS_HEADERS = frozenset({"from", "to", "cc", "bcc", "reply-to", "sender", "resent-from", "resent-to",
                              "resent-cc", "resent-sender", "mail-followup-to"})
_IDENTITY = frozenset({"", "7bit", "8bit", "binary"})


def header_text(value: str) -> str:
    """A header value read as text: bytes outside ASCII (kept by email as surrogate escapes) are taken as
    UTF-8, the charset every mail client writes undeclared (RFC 6532), else as Windows-1252."""
    data = value.encode("utf-8", "surrogateescape")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", "replace")


def _encoded(name: str, text: str) -> str | Header:
    text = clean_header_text(text, 2000)
    if name.lower() in _ADDRESS_HEADERS:
        pairs = getaddresses([text])
        if pairs and all(addr.isascii() and addr for _, addr in pairs):
            # Only the display names become encoded words; an addr-spec never may (RFC 2047 §5).
            return ", ".join(formataddr((clean_header_text(n, 200), a), charset="utf-8") for n, a in pairs)
    return Header(text, "utf-8", header_name=name)


def reencode_headers(msg: StdMessage) -> None:
    """Re-encode every header of `msg` that is not plain ASCII; the others, and their order, stay as they are."""
    items = list(msg.raw_items())
    if all(isinstance(v, Header) or str(v).isascii() for _, v in items):
        return
    for name in dict.fromkeys(n.lower() for n, _ in items):
        del msg[name]
    for name, value in items:
        kept: str | Header = value
        if not isinstance(value, Header) and not str(value).isascii():
            kept = _encoded(name, header_text(str(value)))
        msg[name] = kept  # type: ignore[assignment]  # compat32 takes Header objects too


def _too_long(data: bytes) -> bool:
    return any(len(line) > MAX_LINE for line in data.splitlines())


def transport_safe(msg: StdMessage) -> None:
    """Re-encode the leaf parts of `msg` that a relay would refuse or that carry NUL bytes."""
    for part in msg.walk():
        if part.is_multipart():
            continue
        cte = str(part.get("content-transfer-encoding", "")).strip().lower()
        data = part.get_payload(decode=True)
        if not isinstance(data, bytes):
            continue
        text = part.get_content_maintype() == "text"
        nul = text and b"\0" in data
        if not nul and not (cte in _IDENTITY and _too_long(data)):
            continue
        del part["Content-Transfer-Encoding"]
        part.set_payload(data.replace(b"\0", b"") if text else data)
        if text:
            encoders.encode_quopri(part)
        else:
            encoders.encode_base64(part)


def message_id_for(raw: bytes, domain: str) -> str:
    """A Message-ID for a post that came without one (RFC 5322 §3.6.4 says it SHOULD have one): derived from
    its bytes, so processing the same post again gives the same id."""
    return f"<wgbot.{hashlib.sha256(raw).hexdigest()[:32]}@{domain}>"
