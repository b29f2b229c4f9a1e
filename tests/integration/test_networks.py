"""End to end over SMTP: the ECCAR, IETM and IGF flows through `wgbot run`'s listener, with every mail the bot
sends captured by an aiosmtpd relay, and every confirmation and approval given by replying to it."""

from __future__ import annotations

import email.utils
import smtplib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import make_config
from tests.helpers import Captured, Relay, free_port
from tests.integration.test_listener import Bot, wait_for
from wgbot.db import migrate
from wgbot.groups import list_groups
from wgbot.store import make_engine, make_sessionmaker

OFFICE = ["office@network.example", "deputy@network.example"]


class Network:
    """A running bot under one rules file, and a way to talk to it like people do."""

    def __init__(self, bot: Bot, relay: Relay) -> None:
        self.bot, self.relay = bot, relay
        self.count = 0

    def send(self, sender: str, body: str, subject: str = "", to: str = "wgbot@lists.example.org",
             headers: dict[str, str] | None = None) -> None:
        self.count += 1
        lines = [f"From: {sender}", f"To: {to}", f"Subject: {subject}",
                 f"Message-ID: <e2e{self.count}.{time.monotonic_ns()}@people.example>",
                 f"Date: {email.utils.formatdate()}"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        raw = ("\r\n".join(lines) + "\r\n\r\n" + body.replace("\n", "\r\n")).encode()
        with smtplib.SMTP("127.0.0.1", self.bot.port) as client:
            client.sendmail(sender, [to], raw)

    def inbox(self, address: str) -> list[Captured]:
        return [m for m in list(self.relay.messages) if address in m.rcpt_tos]

    def wait(self, address: str, subject_part: str, n: int = 1) -> Captured:
        """The `n`th message to `address` whose Subject contains `subject_part`."""
        def found() -> list[Captured]:
            return [m for m in self.inbox(address) if subject_part in str(m.message["Subject"])]
        wait_for(lambda: len(found()) >= n, timeout=10)
        return found()[n - 1]

    def reply(self, original: Captured, sender: str, body: str) -> None:
        """Reply to a message the bot sent, as a mail client does (To: its Reply-To, Subject: Re: ...)."""
        msg = original.message
        self.send(sender, body, subject="Re: " + str(msg["Subject"]), to=str(msg["Reply-To"] or msg["From"]))

    def confirm(self, address: str, n: int = 1) -> None:
        self.reply(self.wait(address, "confirm ", n), address, "Yes, that was me.\n")

    def group(self, slug: str) -> dict[str, Any]:
        with self.bot.sessions() as session:
            return next(g for g in list_groups(session) if g["slug"] == slug)

    def body(self, captured: Captured) -> str:
        return " ".join(str(captured.message.get_body(preferencelist=("plain",)).get_content()).split())


@pytest.fixture
def network(request: pytest.FixtureRequest, tmp_path: Path, relay: Relay) -> Iterator[Network]:
    cfg = make_config(tmp_path, network={"rules": request.param, "secretariat": OFFICE},
                      **{"inbound.smtp": {"port": free_port()}}, outbound={"transport": "smtp", "port": relay.port})
    engine = make_engine(f"sqlite:///{tmp_path}/wgbot.sqlite3")
    migrate(engine)
    with Bot(cfg, make_sessionmaker(engine)) as bot:
        yield Network(bot, relay)
    engine.dispose()


@pytest.mark.parametrize("network", ["eccar"], indirect=True)
def test_eccar_flow(network: Network) -> None:
    """Bologna proposes; Rome supports (still one country); Graz supports and the group is constituted
    automatically; the office and every supporter are told; Lyon joins, and the chair and office are told."""
    network.send("mayor@bologna.example", "Organisation: City of Bologna\nCountry: Italia\n\nInclusion in practice.\n",
                 subject="propose Migrant Inclusion")
    network.confirm("mayor@bologna.example")
    network.wait("office@network.example", "New proposal: Migrant Inclusion")
    assert network.group("migrant-inclusion")["status"] == "forming"
    network.send("equality@rome.example", "support migrant-inclusion\nOrganisation: Roma\nCountry: IT\n")
    network.confirm("equality@rome.example")
    result = network.wait("equality@rome.example", "Results", 2)
    assert "2 cities in 1 country" in network.body(result)
    network.send("office@graz.example", "support migrant-inclusion\nOrganisation: Graz\nCountry: Österreich\n")
    network.confirm("office@graz.example")
    for told in ("office@network.example", "mayor@bologna.example", "equality@rome.example", "office@graz.example"):
        network.wait(told, "Migrant Inclusion is now an ECCAR working group")
    group = network.group("migrant-inclusion")
    assert group["status"] == "active" and group["contacts"] == ["mayor@bologna.example"]
    assert group["countries"] == ["AT", "IT"]
    network.send("city@lyon.example", "join migrant-inclusion\nOrganisation: Lyon\nCountry: FR\n")
    network.confirm("city@lyon.example")
    network.wait("mayor@bologna.example", "new member Lyon")
    network.wait("deputy@network.example", "new member Lyon")


@pytest.mark.parametrize("network", ["ietm"], indirect=True)
def test_ietm_flow(network: Network) -> None:
    """An over-long introduction is refused with the count; a proper proposal waits for the secretariat, an
    unclear reply is asked again, the first approval by reply wins and everyone concerned is told."""
    network.send("anna@theatre.example", ("word " * 20 + "\n") * 10 + "word\n", subject="propose Circus Futures")
    refused = network.wait("anna@theatre.example", "Results")
    assert "introduction text has 201 words; IETM allows at most 200" in network.body(refused)
    network.send("anna@theatre.example", "Circus companies working on climate.\n", subject="propose Circus Futures")
    network.confirm("anna@theatre.example")
    request = network.wait("office@network.example", "Approval needed: constitute the working group Circus Futures")
    network.wait("deputy@network.example", "Approval needed")
    assert network.group("circus-futures")["status"] == "pending"
    network.reply(request, "office@network.example", "OK, thanks!\n\n> approve\n")
    network.wait("office@network.example", "Please say approve or reject")
    assert network.group("circus-futures")["status"] == "pending"
    network.reply(request, "office@network.example", "Approved.\n")
    network.wait("anna@theatre.example", "Your request was approved")
    network.wait("deputy@network.example", "Decided by office@network.example")
    assert network.group("circus-futures")["status"] == "active"
    network.send("ben@dance.example", "join circus-futures")
    network.confirm("ben@dance.example")
    network.wait("anna@theatre.example", "new member ben@dance.example")


@pytest.mark.parametrize("network", ["igf"], indirect=True)
def test_igf_flow(network: Network) -> None:
    """A facilitator proposes a Best Practice Forum; the secretariat rejects a first one with a reason and
    approves the second; anyone joins, and nobody else is bothered."""
    network.send("fac@ngo.example", "Spam everywhere.\n", subject="propose BPF Spam")
    network.confirm("fac@ngo.example")
    request = network.wait("deputy@network.example", "Approval needed: constitute the working group BPF Spam")
    network.reply(request, "deputy@network.example", "Reject: merge it with the cybersecurity BPF\n")
    outcome = network.wait("fac@ngo.example", "Your request was rejected")
    assert "merge it with the cybersecurity BPF" in network.body(outcome)
    assert network.group("bpf-spam")["status"] == "closed"
    network.send("fac@ngo.example", "Norms and practice.\n", subject="propose BPF Cybersecurity")
    network.confirm("fac@ngo.example", 2)
    request = network.wait("office@network.example", "BPF Cybersecurity")
    network.reply(request, "office@network.example", "yes")
    network.wait("fac@ngo.example", "BPF Cybersecurity is now an IGF working group")
    network.send("student@uni.example", "", subject="subscribe bpf-cybersecurity", to="wgbot@lists.example.org")
    network.confirm("student@uni.example")
    welcome = network.wait("student@uni.example", "Results", 2)
    assert "now a member of BPF Cybersecurity" in network.body(welcome)
    assert not [m for m in network.inbox("fac@ngo.example") if "new member" in str(m.message["Subject"])]
