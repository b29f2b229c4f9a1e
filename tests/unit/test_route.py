"""route: every address of SPEC §2 to its destination; anything else refused."""

from __future__ import annotations

import pytest

from wgbot.config import Config
from wgbot.route import Kind, route, verp_decode, verp_encode

TOKEN = "a" * 32


def exists(slug: str) -> bool:
    return slug in {"migrants", "arts-and-culture"}


@pytest.mark.parametrize(("address", "kind", "slug"), [
    ("wgbot@lists.example.org", Kind.COMMAND, ""),
    ("WGBOT@Lists.Example.ORG", Kind.COMMAND, ""),
    (f"wgbot+confirm-{TOKEN}@lists.example.org", Kind.CONFIRM, ""),
    (f"wgbot+approval-{TOKEN}@lists.example.org", Kind.APPROVAL, ""),
    ("migrants@lists.example.org", Kind.POST, "migrants"),
    ("migrants-request@lists.example.org", Kind.REQUEST, "migrants"),
    ("migrants-join@lists.example.org", Kind.JOIN, "migrants"),
    ("migrants-leave@lists.example.org", Kind.LEAVE, "migrants"),
    ("migrants-owner@lists.example.org", Kind.OWNER, "migrants"),
    ("migrants-comments@lists.example.org", Kind.COMMENTS, "migrants"),
    ("migrants-bounces@lists.example.org", Kind.BOUNCES, "migrants"),
    ("arts-and-culture-join@lists.example.org", Kind.JOIN, "arts-and-culture"),
    ("<migrants@lists.example.org>", Kind.POST, "migrants"),
])
def test_addresses_route(cfg: Config, address: str, kind: Kind, slug: str) -> None:
    """Each SPEC §2 address routes to its kind and group."""
    dest = route(address, cfg, exists)
    assert dest is not None and dest.kind is kind and dest.slug == slug


def test_token_is_read_lower_case(cfg: Config) -> None:
    """An MTA that upper-cases the local part does not break the token (SPEC §3)."""
    dest = route(f"WGBOT+CONFIRM-{TOKEN.upper()}@lists.example.org", cfg, exists)
    assert dest is not None and dest.kind is Kind.CONFIRM and dest.token == TOKEN


def test_verp_address(cfg: Config) -> None:
    """SLUG-bounces+ADDR@ decodes the member's address."""
    dest = route("migrants-bounces+bob.smith=example.net@lists.example.org", cfg, exists)
    assert dest is not None and dest.kind is Kind.BOUNCES and dest.verp == "bob.smith@example.net"
    assert verp_decode(verp_encode("x+y@a.b")) == "x+y@a.b"


@pytest.mark.parametrize("address", [
    "nobody@lists.example.org",              # no such group
    "migrants@other.example.org",            # not our domain
    "migrants-request+x@lists.example.org",  # detail only on -bounces
    "wgbot+confirm-short@lists.example.org",  # token too short
    "wgbot+hello@lists.example.org",
    "postmaster@lists.example.org",
    "nobody-join@lists.example.org",
    "not an address",
    "",
])
def test_unknown_addresses_are_refused(cfg: Config, address: str) -> None:
    """Anything that is not one of ours routes to None."""
    assert route(address, cfg, exists) is None
