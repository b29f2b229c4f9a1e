"""route: a recipient address → the Destination it stands for (SPEC §2), like URL routing.

Pure: it reads the configuration and asks `group_exists` about slugs; it never touches the network or
the store itself. An address that is not ours routes to None, and the edges refuse it (550 5.1.1).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from dataclasses import dataclass

from wgbot.config import Config


class Kind(enum.StrEnum):
    COMMAND = "command"        # wgbot@
    CONFIRM = "confirm"        # wgbot+confirm-TOKEN@
    APPROVAL = "approval"      # wgbot+approval-TOKEN@
    POST = "post"              # SLUG@
    REQUEST = "request"        # SLUG-request@
    JOIN = "join"              # SLUG-join@
    LEAVE = "leave"            # SLUG-leave@
    OWNER = "owner"            # SLUG-owner@
    COMMENTS = "comments"      # SLUG-comments@
    BOUNCES = "bounces"        # SLUG-bounces@ and SLUG-bounces+ADDR@


# The order matters: "-bounces" is tried before the bare slug.
SUFFIXES = {
    "-request": Kind.REQUEST,
    "-join": Kind.JOIN,
    "-leave": Kind.LEAVE,
    "-owner": Kind.OWNER,
    "-comments": Kind.COMMENTS,
    "-bounces": Kind.BOUNCES,
}
RESERVED_LOCALS = {"postmaster", "mailer-daemon", "abuse", "root", "hostmaster", "webmaster", "noreply"}
_TOKEN = re.compile(r"^[a-z0-9]{26,64}$")
_HASHED = re.compile(r"^#([0-9a-f]{64})$")
# wgbot+confirm-TOKEN@ and wgbot+approval-TOKEN@: the part a stored or logged address must not show.
_TOKEN_ADDRESS = re.compile(r"^(\s*<?[^@+<>\s]+\+(?:confirm|approval)-)([^@]*)(@.*)$", re.I | re.S)


@dataclass(frozen=True)
class Destination:
    kind: Kind
    address: str            # the recipient as given
    slug: str = ""          # for list addresses
    token: str = ""         # for +confirm- / +approval-
    token_hash: str = ""    # the same, from an address masked by `mask_token` (what the store keeps)
    verp: str = ""          # for SLUG-bounces+ADDR@: the decoded member address
    tag: str = ""           # for SLUG-bounces+ADDR=TAG@: the keyed hash that proves we sent it (bounces.py)


def verp_encode(address: str) -> str:
    """alice@example.org → alice=example.org (the part after '+' in SLUG-bounces+...)."""
    local, _, domain = address.rpartition("@")
    return f"{local}={domain}"


def verp_decode(value: str) -> str:
    local, sep, domain = value.rpartition("=")
    return f"{local}@{domain}" if sep and local and domain else ""


# A VERP tag (bounces.verp_tag): hex, so an MTA that lower-cases local parts cannot spoil it; a domain always
# has a dot, so `alice=example.org=1a2b3c4d` cannot be read as the address `alice=example.org@1a2b3c4d`.
_VERP_TAG = re.compile(r"^p?[0-9a-f]{8,16}$")


def verp_split(value: str) -> tuple[str, str]:
    """`alice=example.org=1a2b3c4d` → ("alice@example.org", "1a2b3c4d"); an untagged value has tag ""."""
    rest, sep, tag = value.rpartition("=")
    if sep and _VERP_TAG.match(tag.lower()):
        address = verp_decode(rest)
        if address:
            return address, tag.lower()
    return verp_decode(value), ""


def route(address: str, cfg: Config, group_exists: Callable[[str], bool]) -> Destination | None:
    """Where mail to `address` goes, or None when the address is not one of ours."""
    addr = address.strip().strip("<>").strip()
    local, sep, domain = addr.rpartition("@")
    if not sep or not local:
        return None
    domain = domain.lower().rstrip(".")
    local_l = local.lower()
    bot = cfg.bot_local
    if domain == cfg.bot_domain:
        if local_l == bot:
            return Destination(Kind.COMMAND, addr)
        for tag, kind in (("+confirm-", Kind.CONFIRM), ("+approval-", Kind.APPROVAL)):
            if local_l.startswith(bot + tag):
                token = local_l[len(bot + tag):]
                hashed = _HASHED.match(token)
                if hashed:
                    return Destination(kind, addr, token_hash=hashed.group(1))
                return Destination(kind, addr, token=token) if _TOKEN.match(token) else None
    if domain != cfg.network.list_domain.lower() or local_l in RESERVED_LOCALS:
        return None
    base, plus, detail = local_l.partition("+")
    for suffix, kind in SUFFIXES.items():
        if base.endswith(suffix):
            slug = base[: -len(suffix)]
            if kind is Kind.BOUNCES and plus:
                verp, tag = verp_split(local[len(slug) + len(suffix) + 1:])
                return Destination(kind, addr, slug=slug, verp=verp, tag=tag) if verp and group_exists(slug) else None
            if plus:
                return None
            return Destination(kind, addr, slug=slug) if group_exists(slug) else None
    if plus:
        return None
    return Destination(Kind.POST, addr, slug=base) if group_exists(base) else None


def mask_token(address: str) -> str:
    """`address` with the token of a +confirm-/+approval- address replaced by `#` and its SHA-256 (the form
    the store looks tokens up by), for the inbound row and the log: a live token never rests in plain text.
    Whatever follows the tag is hashed, a `#...` sent from outside too, so a hash is never a credential."""
    from wgbot.store import token_hash

    m = _TOKEN_ADDRESS.match(address)
    if m is None:
        return address
    return f"{m.group(1)}#{token_hash(m.group(2))}{m.group(3)}"


_TOKEN_IN_TEXT = re.compile(r"(\+(?:confirm|approval)-|\b(?:confirm|approve|reject)\s+)([A-Za-z0-9]{26,64})"
                            r"(?=@|>|\s|\\|'|$)", re.I)


def mask_tokens_in(text: str) -> str:
    """Every +confirm-TOKEN / +approval-TOKEN address and `confirm TOKEN` (a reply's Subject) in free text (a
    log line, an SMTP dialogue at DEBUG) masked as by `mask_token`."""
    from wgbot.store import token_hash

    return _TOKEN_IN_TEXT.sub(lambda m: f"{m.group(1)}#{token_hash(m.group(2))}", text)
