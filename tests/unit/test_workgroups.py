"""Working groups under the three networks' rules: proposals, support, approval by reply, contacts, closing."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tests.conftest import make_config
from tests.helpers import (
    NOW,
    approval_token,
    body_of,
    confirm,
    feed,
    last_reply,
    mail,
    make_group,
    notices_to,
    queued,
    token_from,
)
from wgbot.config import Config
from wgbot.context import Context
from wgbot.groups import expire_proposals, list_groups, list_members
from wgbot.parse import parse
from wgbot.pending import read_decision
from wgbot.rules import cached_rules
from wgbot.store import AuditEntry, Group

S = sessionmaker[Session]
OFFICE = ["office@example.org", "deputy@example.org"]


def net(tmp_path: Path, rules: str, **network: object) -> Config:
    return make_config(tmp_path, network={"rules": rules, "secretariat": OFFICE, **network})


def group(sessions: S, slug: str) -> dict[str, object]:
    with sessions() as session:
        return next(g for g in list_groups(session) if g["slug"] == slug)


def roles(sessions: S, slug: str) -> dict[str, str]:
    with sessions() as session:
        g = session.scalars(select(Group).where(Group.slug == slug)).one()
        return {m["address"]: m["role"] for m in list_members(session, g)}


def say(sessions: S, cfg: Config, sender: str, body: str, subject: str = "", confirm_it: bool = True,
        now: dt.datetime = NOW) -> str:
    """Send commands as `sender` (and confirm them); returns the results reply's body."""
    feed(sessions, cfg, mail(body, subject=subject, sender=sender, msgid=f"<{abs(hash((sender, body)))}@x.org>"),
         now=now)
    reply = last_reply(sessions)
    if confirm_it and "confirmation request" in reply:
        confirm(sessions, cfg, sender, now)
        return last_reply(sessions)
    return reply


def test_read_decision() -> None:
    """The first non-quoted, non-blank line decides; anything else decides nothing (SPEC §3)."""
    cases = {
        "Approved!\n\nthanks": ("approve", ""),
        "  yes.\n": ("approve", ""),
        "OK": ("approve", ""),
        "reject: out of scope\nplease merge it with X\n-- \nAnna": ("reject", "out of scope\nplease merge it with X"),
        "No\nit overlaps with Y.\n> approve\n": ("reject", "it overlaps with Y."),
        "Rejected - it overlaps with Y.\n": ("reject", "it overlaps with Y."),
        "OK, thanks!": ("", ""),
        "": ("", ""),
        "> approve\n> yes": ("", ""),
        "I think we should approve": ("", ""),
    }
    for text, expected in cases.items():
        assert read_decision(text) == expected, text


# ---------------------------------------------------------------------------------------------------- ECCAR


def test_eccar_forming_to_constituted(sessions: S, tmp_path: Path) -> None:
    """Three distinct cities in two countries constitute the group automatically; until then it is forming,
    announced to the network; the same city twice and two cities of one country are not enough."""
    cfg = net(tmp_path, "eccar")
    make_group(sessions, cfg, name="Older Group", contact="member@lyon.example")  # a known network member
    make_group(sessions, cfg, name="Oldest Group", contact="mayor@bologna.example")  # the proposer is one too
    reply = say(sessions, cfg, "mayor@bologna.example",
                "propose Migrant Inclusion\nOrganisation: City of Bologna\nCountry: Italia\n"
                "Supporters: equality@rome.example\n\nSharing practice on inclusion.\n")
    assert "open for support" in reply and "2 more cities" in reply
    assert group(sessions, "migrant-inclusion")["status"] == "forming"
    assert roles(sessions, "migrant-inclusion") == {"mayor@bologna.example": "contact"}
    assert any("New proposal" in s for s in notices_to(sessions, "office@example.org"))
    assert any("Invitation to support" in s for s in notices_to(sessions, "member@lyon.example"))
    # equality@rome.example is no network member: its invitation waits for the office (issue 11, spam relay)
    assert not any("Invitation to support" in s for s in notices_to(sessions, "equality@rome.example"))
    assert any("equality@rome.example" in s for s in notices_to(sessions, "office@example.org"))

    reply = say(sessions, cfg, "deputy@bologna.example",
                "support migrant-inclusion\nOrganisation: city of  bologna\nCountry: IT\n")
    assert "1 city in 1 country" in reply                      # a second person from the same city adds nothing
    reply = say(sessions, cfg, "equality@rome.example", "second migrant-inclusion\nOrganisation: Roma\nCountry: IT\n")
    assert "2 cities in 1 country" in reply and "other than Italy" in reply
    assert "Once the group is constituted you will be on its list" in reply and "leave migrant-inclusion" in reply
    assert group(sessions, "migrant-inclusion")["status"] == "forming"
    reply = say(sessions, cfg, "office@graz.example", "support migrant-inclusion\nOrganisation: Graz\nCountry: AT\n")
    assert "now constituted" in reply and "you are on it: to leave it" in reply
    g = group(sessions, "migrant-inclusion")
    assert g["status"] == "active" and g["countries"] == ["AT", "IT"] and g["contacts"] == ["mayor@bologna.example"]
    for told in ("office@example.org", "mayor@bologna.example", "equality@rome.example", "office@graz.example"):
        assert any("is now an ECCAR working group" in s for s in notices_to(sessions, told)), told
    assert any("Its supporters are on its list" in body_of(m) and '"leave migrant-inclusion"' in body_of(m)
               for r, m in queued(sessions) if r == "equality@rome.example" and "working group" in str(m["Subject"]))
    with sessions() as session:
        rules_fired = [a.rule for a in session.scalars(select(AuditEntry).where(AuditEntry.action == "constituted"))]
    assert rules_fired == ["formation.min_organisations=3, formation.min_countries=2"]


def test_eccar_support_needs_city_and_country(sessions: S, tmp_path: Path) -> None:
    """A support without a city and country is refused, saying what to add in words, and changes nothing."""
    cfg = net(tmp_path, "eccar")
    say(sessions, cfg, "mayor@bologna.example", "propose Culture\nOrganisation: Bologna\nCountry: IT\n")
    reply = say(sessions, cfg, "someone@x.example", "support culture\n")
    assert "add the lines 'Organisation: <your city>' and 'Country: <your country>'" in reply
    assert "Rule:" not in reply and "organisation_required" not in reply and "Nothing was changed" in reply
    assert len(roles(sessions, "culture")) == 1


def test_eccar_supporter_withdraws_and_proposal_expires(sessions: S, tmp_path: Path) -> None:
    """A supporter who leaves is no longer counted; a proposal short of its threshold expires and is closed."""
    cfg = net(tmp_path, "eccar")
    say(sessions, cfg, "mayor@bologna.example", "propose Housing\nOrganisation: Bologna\nCountry: IT\n")
    say(sessions, cfg, "graz@graz.example", "support housing\nOrganisation: Graz\nCountry: AT\n")
    reply = say(sessions, cfg, "graz@graz.example", "leave housing")
    assert "left Housing" in reply
    assert list(roles(sessions, "housing")) == ["mayor@bologna.example"]
    later = NOW + dt.timedelta(days=181)
    with sessions.begin() as session:
        ctx = Context(session=session, cfg=cfg, now=later, msg=parse(mail("x")), sender="wgbot",
                      reply_address="", rules=cached_rules(str(cfg.rules_path)))
        assert expire_proposals(ctx) == ["housing"]
    assert group(sessions, "housing")["status"] == "closed"
    assert any("is closed" in s for s in notices_to(sessions, "mayor@bologna.example"))


def test_eccar_join_tells_chair_and_office(sessions: S, tmp_path: Path) -> None:
    """A city joining an active group is confirmed, and the chair and the office are told."""
    cfg = net(tmp_path, "eccar")
    slug = make_group(sessions, cfg, name="Policing", contact="chair@ghent.example")
    reply = say(sessions, cfg, "city@lyon.example", f"join {slug}\n")
    assert "add the lines 'Organisation: <your city>'" in reply and "organisation_required" not in reply
    reply = say(sessions, cfg, "city@lyon.example", f"join {slug}\nOrganisation: Lyon\nCountry: France\n")
    assert "now a member" in reply
    for told in ("chair@ghent.example", "office@example.org", "deputy@example.org"):
        assert any("new member Lyon" in s for s in notices_to(sessions, told)), told


# ---------------------------------------------------------------------------------------------------- IETM


def test_ietm_introduction_limit(sessions: S, tmp_path: Path) -> None:
    """An introduction over 200 words is refused with the count and the limit; nothing is created."""
    cfg = net(tmp_path, "ietm")
    reply = say(sessions, cfg, "anna@theatre.example", "propose Circus Futures\n\n" + "word " * 243)
    assert "introduction text has 243 words; IETM allows at most 200" in reply
    assert "max_words" not in reply
    with sessions() as session:
        assert session.scalars(select(Group)).all() == []


def test_ietm_approval_by_reply(sessions: S, tmp_path: Path) -> None:
    """A confirmed proposal is pending; each secretariat address gets the request with the rule and the reference;
    an unclear reply decides nothing; the first approval wins; the other approver and the requester are told."""
    cfg = net(tmp_path, "ietm")
    reply = say(sessions, cfg, "anna@theatre.example", "propose Circus Futures\n\nWe look at circus and climate.\n")
    assert "waiting for the secretariat's approval" in reply
    assert group(sessions, "circus-futures")["status"] == "pending"
    requests = queued(sessions, "approval")
    assert sorted(r for r, _ in requests) == sorted(OFFICE)
    token = approval_token(sessions)
    request = requests[0][1]
    assert "formation.constituted_by=secretariat" in request.get_body().get_content()  # type: ignore[union-attr]
    assert str(request["Reply-To"]) == f"wgbot+approval-{token}@lists.example.org"
    to = f"wgbot+approval-{token}@lists.example.org"

    feed(sessions, cfg, mail("OK, thanks!\n", sender="office@example.org", msgid="<u1@x.org>"), to=to)
    assert "could not tell" in last_reply(sessions) and group(sessions, "circus-futures")["status"] == "pending"
    feed(sessions, cfg, mail("approve", sender="office@example.org", msgid="<u2@x.org>",
                             headers={"Auto-Submitted": "auto-replied"}), to=to)
    assert group(sessions, "circus-futures")["status"] == "pending"     # an auto-reply decides nothing
    feed(sessions, cfg, mail("approve", sender="intruder@evil.example", msgid="<u3@x.org>"), to=to)
    assert "not one of the people who decide" in last_reply(sessions)

    feed(sessions, cfg, mail("Approved!\n\n> approve\n", sender="deputy@example.org", msgid="<u4@x.org>"), to=to)
    assert "Approved" in last_reply(sessions)
    assert group(sessions, "circus-futures")["status"] == "active"
    assert any("Decided by deputy@example.org" in s for s in notices_to(sessions, "office@example.org"))
    assert any("was approved" in s for s in notices_to(sessions, "anna@theatre.example"))
    feed(sessions, cfg, mail("reject: too late", sender="office@example.org", msgid="<u5@x.org>"), to=to)
    assert "already decided (approved by deputy@example.org)" in last_reply(sessions)
    with sessions() as session:
        decisions = [(a.actor, a.action, a.rule) for a in session.scalars(select(AuditEntry))
                     if a.action.startswith(("approve", "reject"))]
    assert decisions == [("deputy@example.org", "approve:group", "formation.constituted_by=secretariat")]


def test_ietm_rejection_reaches_the_requester(sessions: S, tmp_path: Path) -> None:
    """A rejection closes the proposal; the requester gets the reason."""
    cfg = net(tmp_path, "ietm")
    say(sessions, cfg, "anna@theatre.example", "propose Puppetry\n\nStrings and things.\n")
    token = approval_token(sessions)
    feed(sessions, cfg, mail("Reject - this overlaps with the Objects group.\n", sender="office@example.org"),
         to=f"wgbot+approval-{token}@lists.example.org")
    assert group(sessions, "puppetry")["status"] == "closed"
    (_, outcome), = [(r, m) for r, m in queued(sessions) if r == "anna@theatre.example"
                     and "was rejected" in str(m["Subject"])]
    assert "this overlaps with the Objects group." in outcome.get_body().get_content()  # type: ignore[union-attr]


def test_ietm_sole_contact_leaving(sessions: S, tmp_path: Path) -> None:
    """A sole contact who leaves names a replacement, or the secretariat is asked to keep or close the group."""
    cfg = net(tmp_path, "ietm")
    slug = make_group(sessions, cfg, name="Dance", contact="anna@theatre.example")
    reply = say(sessions, cfg, "anna@theatre.example", f"leave {slug}\nReplacement: ben@theatre.example\n")
    assert roles(sessions, slug) == {"ben@theatre.example": "contact"}
    assert any("contacts changed" in s.lower() or "contact persons changed" in s for s in
               notices_to(sessions, "office@example.org"))
    reply = say(sessions, cfg, "ben@theatre.example", f"leave {slug}\n")
    assert "secretariat has been asked" in reply
    assert group(sessions, slug)["status"] == "active"
    token = approval_token(sessions)
    feed(sessions, cfg, mail("reject\nNobody is left to run it.", sender="office@example.org"),
         to=f"wgbot+approval-{token}@lists.example.org")
    assert group(sessions, slug)["status"] == "closed"


def test_contacts_cannot_fall_below_the_minimum(sessions: S, tmp_path: Path) -> None:
    """Removing the last contact is refused, saying why in words; adding one then removing the other works."""
    cfg = net(tmp_path, "ietm")
    slug = make_group(sessions, cfg, name="Dance", contact="anna@theatre.example")
    reply = say(sessions, cfg, "anna@theatre.example", f"contact {slug} remove anna@theatre.example")
    assert "must keep at least 1" in reply and "contacts.minimum" not in reply
    reply = say(sessions, cfg, "stranger@x.example", f"contact {slug} add stranger@x.example")
    assert "Only Dance's contact persons and the secretariat" in reply
    say(sessions, cfg, "anna@theatre.example", f"contact {slug} add ben@theatre.example")
    say(sessions, cfg, "office@example.org", f"contact {slug} remove anna@theatre.example")
    assert roles(sessions, slug) == {"ben@theatre.example": "contact", "anna@theatre.example": "member"}


# ---------------------------------------------------------------------------------------------------- IGF


def test_igf_approve_command_open_join_and_withdraw(sessions: S, tmp_path: Path) -> None:
    """IGF: approval by `approve TOKEN`, joining open to anyone; a pending proposal can be withdrawn."""
    cfg = net(tmp_path, "igf")
    reply = say(sessions, cfg, "fac@ngo.example", "propose Best Practice Forum on Cybersecurity\n\nNorms.\n")
    assert "waiting for the secretariat's approval" in reply
    say(sessions, cfg, "office@example.org", f"approve {approval_token(sessions)}", confirm_it=False)
    slug = "best-practice-forum-on-cybersecurity"
    assert group(sessions, slug)["status"] == "active"
    reply = say(sessions, cfg, "anyone@gmail.example", f"join {slug}")
    assert "now a member" in reply and notices_to(sessions, "fac@ngo.example") == [] or all(
        "new member" not in s for s in notices_to(sessions, "fac@ngo.example"))
    reply = say(sessions, cfg, "fac@ngo.example", "propose Dynamic Coalition on Youth\n\nYouth.\n")
    ref = reply.split("Reference: ")[1].split(".")[0].split()[0]
    reply = say(sessions, cfg, "fac@ngo.example", f"withdraw {ref}")
    assert "Withdrawn" in reply and group(sessions, "dynamic-coalition-on-youth")["status"] == "closed"
    reply = say(sessions, cfg, "office@example.org", f"approve {approval_token(sessions)}", confirm_it=False)
    assert "already decided (group closed)" in reply


def test_withdraw_only_by_the_requester(sessions: S, tmp_path: Path) -> None:
    """Someone else's reference cannot be withdrawn."""
    cfg = net(tmp_path, "igf")
    reply = say(sessions, cfg, "fac@ngo.example", "propose Youth\n\nYouth.\n")
    ref = reply.split("Reference: ")[1].split(".")[0].split()[0]
    reply = say(sessions, cfg, "other@ngo.example", f"withdraw {ref}")
    assert "You have no pending request" in reply
    assert group(sessions, "youth")["status"] == "pending"


# ---------------------------------------------------------------------------------------------------- trust


@pytest.mark.parametrize(("header", "trusted"), [
    ("mx.lists.example.org; dkim=pass header.d=example.com; dmarc=pass header.from=example.com", True),
    ("evil.example; dmarc=pass header.from=example.com", False),              # not our authserv-id
    ("mx.lists.example.org; dmarc=pass header.from=other.example", False),    # not aligned with From
    ("mx.lists.example.org; dmarc=fail header.from=example.com", False),
])
def test_trusted_authentication_results_skip_confirmation(sessions: S, tmp_path: Path, header: str,
                                                          trusted: bool) -> None:
    """With trusted_authserv_id, a topmost A-R from our MX with an aligned dmarc=pass applies at once."""
    cfg = net(tmp_path, "igf", trusted_authserv_id="mx.lists.example.org")
    slug = make_group(sessions, cfg, name="Youth")
    feed(sessions, cfg, mail(f"join {slug}", headers={"Authentication-Results": header}))
    assert ("alice@example.com" in roles(sessions, slug)) is trusted
    assert (queued(sessions, "confirm") == []) is trusted


def test_approval_needs_trusted_dmarc_when_configured(sessions: S, tmp_path: Path) -> None:
    """With trusted_authserv_id set, an approval reply without a trusted pass decides nothing, and the approver
    (the From address) is told why."""
    cfg = net(tmp_path, "ietm", trusted_authserv_id="mx.lists.example.org")
    say(sessions, cfg, "anna@theatre.example", "propose Dance\n\nDance.\n")
    feed(sessions, cfg, mail("approve", subject="approve", sender="anna@theatre.example", msgid="<c@x.org>"))
    to = f"wgbot+approval-{approval_token(sessions)}@lists.example.org"
    feed(sessions, cfg, mail("approve", sender="office@example.org", msgid="<n1@x.org>"), to=to)
    assert group(sessions, "dance")["status"] == "pending"
    assert "Nothing was decided" in last_reply(sessions) and queued(sessions, "reply")[-1][0] == "office@example.org"
    feed(sessions, cfg, mail("approve", sender="office@example.org", msgid="<n2@x.org>", headers={
        "Authentication-Results": "mx.lists.example.org; dmarc=pass header.from=example.org"}), to=to)
    assert group(sessions, "dance")["status"] == "active"
    assert token_from(sessions)


def test_held_posts_expire_with_a_notice(sessions: S, tmp_path: Path) -> None:
    """A held post nobody decides on expires after [lists] hold_days (the sweep of open requests, with the
    lifetime its kind registers); the poster is told; it is never sent."""
    from wgbot.pending import sweep

    cfg = net(tmp_path, "igf")
    slug = make_group(sessions, cfg, name="Youth")
    feed(sessions, cfg, mail("hello list", subject="Held", sender="stranger@else.example"),
         to=f"{slug}@lists.example.org")
    assert any("Approval needed" in s for s in notices_to(sessions, "chair@city.example"))
    for days, expected in ((cfg.lists.hold_days - 1, 0), (cfg.lists.hold_days + 1, 1)):
        with sessions.begin() as session:
            ctx = Context(session=session, cfg=cfg, now=NOW + dt.timedelta(days=days), msg=parse(mail("x")),
                          sender="wgbot", reply_address="", rules=cached_rules(str(cfg.rules_path)))
            assert sweep(ctx) == expected
    assert any("has expired" in s for s in notices_to(sessions, "stranger@else.example"))
    token = approval_token(sessions)
    feed(sessions, cfg, mail("approve", sender="chair@city.example", msgid="<late@x.org>"),
         to=f"wgbot+approval-{token}@lists.example.org")
    assert "already decided (expired)" in last_reply(sessions)
