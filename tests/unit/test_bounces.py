"""Signed VERP addresses and the report reader on their own: tags survive lower-casing and differ per list,
member and purpose; odd or hostile input never raises; our own MTA's stamps decide nothing (issue 11 items 3, 8)."""

from __future__ import annotations

import pytest

from tests.helpers import dsn as postfix_dsn
from wgbot import dsn
from wgbot.bounces import verp_tag
from wgbot.config import Config
from wgbot.route import Kind, route, verp_split

KEY = bytes(range(32))


def test_tag_depends_on_key_list_member_and_purpose_not_on_case() -> None:
    """The tag is keyed, per list and member, distinct for a probe, and the same for any spelling of the address."""
    tag = verp_tag(KEY, "grp", "Bob.Smith@Example.NET")
    assert tag == verp_tag(KEY, "grp", "bob.smith@example.net") and tag == tag.lower() and len(tag) == 10
    others = {verp_tag(KEY, "other", "bob.smith@example.net"), verp_tag(KEY, "grp", "alice@example.net"),
              verp_tag(bytes(32), "grp", "bob.smith@example.net")}
    assert tag not in others
    probe = verp_tag(KEY, "grp", "bob.smith@example.net", probe=True)
    assert probe.startswith("p") and probe[1:] != tag


@pytest.mark.parametrize(("value", "address", "tag"), [
    ("alice=example.org=0123456789", "alice@example.org", "0123456789"),
    ("ALICE=EXAMPLE.ORG=0A1B2C3D4E", "ALICE@EXAMPLE.ORG", "0a1b2c3d4e"),         # upper-cased by an MTA
    ("a.b=c=sub.example.org=p0123456789", "a.b=c@sub.example.org", "p0123456789"),
    ("alice=example.org", "alice@example.org", ""),                           # untagged (never scores)
    ("alice=example.org=not-a-tag", "alice=example.org@not-a-tag", ""),
])
def test_verp_split(value: str, address: str, tag: str) -> None:
    """SLUG-bounces+ADDR=TAG@ splits into the member and the tag; a dotted last part is a domain, not a tag."""
    assert verp_split(value) == (address, tag)


def test_route_carries_the_tag(cfg: Config) -> None:
    """The router hands the tag to the bounce handler; the lower-cased form routes the same way."""
    dest = route("grp-bounces+Bob=Example.NET=0123456789@lists.example.org", cfg, lambda s: s == "grp")
    assert dest is not None and dest.kind is Kind.BOUNCES and (dest.verp, dest.tag) == ("Bob@Example.NET",
                                                                                        "0123456789")


HOSTILE = [
    b"",
    b"\x00\xff" * 5000,
    b"From: MAILER-DAEMON\r\nSubject: Undelivered\r\n",                                 # headers only
    b"Content-Type: multipart/report; report-type=delivery-status; boundary=\"\"\r\n\r\n--\r\n--\r\n",
    b"Content-Type: multipart/report; boundary=B\r\n\r\n--B\r\nContent-Type: message/delivery-status\r\n"
    b"Content-Transfer-Encoding: base64\r\n\r\n!!!not base64!!!\r\n--B--\r\n",
    b"Content-Type: message/delivery-status; charset=x-unknown-charset\r\n\r\nFinal-Recipient: \xff\xfe\r\n"
    b"Action: failed\r\nStatus: 5.\r\n",
    b"Subject: =?utf-8?q?=FF=FE?=\r\nContent-Type: text/plain; charset=\"bogus\"\r\n\r\n550 5.1.1 " + b"x" * 100000,
    b"Content-Type: multipart/mixed; boundary=A\r\n\r\n" + b"--A\r\nContent-Type: multipart/mixed; boundary=A\r\n\r\n"
    * 200 + b"--A--\r\n",
]


@pytest.mark.parametrize("raw", HOSTILE, ids=range(len(HOSTILE)))
def test_odd_input_never_raises(raw: bytes) -> None:
    """Empty, binary, truncated, mis-encoded or deeply nested reports give an answer, never an exception."""
    report = dsn.read(raw, "alice@example.org")
    assert report.kind in dsn.KINDS


def test_our_own_dmarc_stamps_decide_nothing() -> None:
    """`Authentication-Results: ...; dmarc=none` (added by our MTA) on the report and in the returned headers
    does not turn an unknown user into a 'DMARC rejection' (the fault in lists.handle_bounce)."""
    stamp = b"Authentication-Results: mx.lists.example.org; dmarc=none (p=none dis=none) header.from=example.org\r\n"
    raw = stamp + postfix_dsn("alice@example.org").replace(b"From: Alice via grp", stamp + b"From: Alice via grp")
    assert raw.count(b"dmarc=none") == 2
    assert dsn.read(raw, "alice@example.org").kind == dsn.PERMANENT
    refused = postfix_dsn("alice@example.org", status="5.7.26", diagnostic="smtp; 550-5.7.26 Unauthenticated email "
                          "from example.org is not accepted due to domain's DMARC policy")
    assert dsn.read(refused, "alice@example.org").kind == dsn.OURS


def test_member_block_decides_a_multi_recipient_report() -> None:
    """In a report for two recipients, the member's own block decides: a full mailbox next to an unknown user is
    temporary for its owner and permanent for the other."""
    one = postfix_dsn("full@example.org", status="5.2.2", diagnostic="smtp; 552 5.2.2 Mailbox full")
    two = postfix_dsn("gone@example.org").split(b"\r\n\r\nFinal-Recipient", 1)[1].split(b"\r\n\r\n--BB")[0]
    raw = one.replace(b"Diagnostic-Code: smtp; 552 5.2.2 Mailbox full\r\n",
                      b"Diagnostic-Code: smtp; 552 5.2.2 Mailbox full\r\n\r\nFinal-Recipient" + two + b"\r\n")
    assert dsn.read(raw, "full@example.org").kind == dsn.TEMPORARY
    assert dsn.read(raw, "gone@example.org").kind == dsn.PERMANENT


@pytest.mark.parametrize(("status", "action", "diagnostic", "kind"), [
    ("4.4.7", "failed", "smtp; 451 4.4.7 Delivery time expired", dsn.TEMPORARY),    # gave up: not counted
    ("5.0.0", "failed", "smtp; 554 5.7.1 Service unavailable; Client host [192.0.2.25] blocked using "
                        "zen.spamhaus.org", dsn.OURS),
    ("5.1.1", "delayed", "smtp; 550 5.1.1 User unknown", dsn.TEMPORARY),           # RFC 3464: delayed is not final
    ("2.0.0", "delivered", "smtp; 250 2.0.0 Ok", dsn.NONE),
    ("5.0.0", "failed", "", dsn.PERMANENT),                                         # failed, no more said
])
def test_status_action_and_diagnostic(status: str, action: str, diagnostic: str, kind: str) -> None:
    """RFC 3464 Action and RFC 3463 codes with the diagnostic text decide: expired and blamed-on-us reports do
    not count, a delivery notice is not a failure, a bare `failed` is permanent."""
    raw = postfix_dsn("alice@example.org", status=status, action=action, diagnostic=diagnostic)
    assert dsn.read(raw, "alice@example.org").kind == kind
