"""Abuse a hostile outsider tried (issue 11, item 8) and what people read (item 7): each test replays the attack
or the defect against the real processing path on a migrated store."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tests.conftest import make_config
from tests.helpers import NOW, approval_token, feed, mail, make_group, queued
from tests.unit.test_workgroups import group, roles, say
from wgbot.config import Config
from wgbot.errors import UsageError
from wgbot.groups import create_group
from wgbot.store import AuditEntry, PendingAction

S = sessionmaker[Session]
OFFICE = ["office@example.org"]


def net(tmp_path: Path, rules: str, **sections: dict[str, object]) -> Config:
    network = {"rules": rules, "secretariat": OFFICE, "base_url": "https://lists.example.org/wg",
               **sections.pop("network", {})}
    return make_config(tmp_path, network=network, **sections)


# ------------------------------------------------------------------------------------------ look-alike names


@pytest.mark.parametrize("name, why", [
    ("Urb\u0430n S\u0430fety", "looks like the name of the existing group 'Urban Safety'"),   # Cyrillic а
    ("Migrant lnclusion", "looks like the name of the existing group 'Migrant Inclusion'"),  # l for I
    ("Urban\u00adSafety Net", "invisible or control characters (U+00AD)"),                  # soft hyphen
    ("Urban\u3164Safety Forum", "invisible or control characters (U+3164)"),                    # Hangul filler
    ("Urban\u2060Safety Forum", "invisible or control characters (U+2060)"),                # word joiner
    ("Migr\u0430nt Rights", "mixes scripts (CYRILLIC, LATIN)"),
])
def test_lookalike_group_names_are_refused(sqlite_sessions: S, tmp_path: Path, name: str, why: str) -> None:
    """A name whose TR 39 skeleton matches an existing group's, a mixed-script name and one with invisible or
    bidi control characters are refused by email and on the command line."""
    cfg = net(tmp_path, "igf")
    make_group(sqlite_sessions, cfg, name="Urban Safety")
    make_group(sqlite_sessions, cfg, name="Migrant Inclusion")
    reply = say(sqlite_sessions, cfg, "mallory@evil.example", f"propose {name}\n\nCopycat.\n")
    assert "cannot be a group's name" in reply and why in reply, reply
    with sqlite_sessions.begin() as session, pytest.raises(UsageError, match="cannot use the name|printable"):
        create_group(session, cfg, name, contact="x@evil.example", now=NOW)


def test_names_in_one_script_still_pass(sqlite_sessions: S, tmp_path: Path) -> None:
    """Japanese (Han with kana, and Latin) and accented Latin names that resemble no group are accepted."""
    cfg = net(tmp_path, "igf")
    make_group(sqlite_sessions, cfg, name="Urban Safety")
    for name in ("Sécurité urbaine", "都市の安全 Forum", "Ciudades Seguras 2030"):
        reply = say(sqlite_sessions, cfg, "fac@ngo.example", f"propose {name}\n\nText.\n")
        assert "waiting for the secretariat's approval" in reply, reply


# ------------------------------------------------------------------------------------------ one-click unsubscribe
def one_click(sessions: S, cfg: Config, url: str) -> tuple[int, str]:
    """POST the RFC 8058 one-click body to the web application (Starlette, in-process over ASGI) at `url`."""
    import asyncio

    import httpx

    from wgbot import web

    async def post() -> httpx.Response:
        transport = httpx.ASGITransport(app=web.make_app(cfg, sessions))
        async with httpx.AsyncClient(transport=transport, base_url="https://lists.example.org") as client:
            return await client.post(url.removeprefix(cfg.network.base_url or ""),
                                     content=b"List-Unsubscribe=One-Click",
                                     headers={"Content-Type": "application/x-www-form-urlencoded"})
    response = asyncio.run(post())
    return response.status_code, response.text




def test_one_click_unsubscribe_of_the_sole_contact_follows_last_leaves(sessions: S, tmp_path: Path) -> None:
    """The sole contact's one-click unsubscribe (RFC 8058) asks the secretariat to keep or close the group,
    exactly as a confirmed `leave` does (contacts.last_leaves = ask_secretariat), instead of leaving a
    group without a contact that nobody knows about."""
    from wgbot.lists import unsubscribe_url
    from wgbot.store import secret_key

    cfg = net(tmp_path, "ietm")
    slug = make_group(sessions, cfg, name="Dance", contact="anna@theatre.example")
    with sessions.begin() as session:
        url = unsubscribe_url(cfg, secret_key(session), slug, "anna@theatre.example")
    status, page = one_click(sessions, cfg, url)
    assert status == 200 and "You have left Dance" in page
    assert roles(sessions, slug) == {}
    requests = [m for r, m in queued(sessions, "approval") if r == "office@example.org"]
    assert len(requests) == 1 and "keep Dance open" in str(requests[0]["Subject"])
    with sessions() as session:
        assert session.scalar(select(AuditEntry.rule).where(AuditEntry.action == "one-click-unsubscribe")) == \
            "RFC 8058"


def test_one_click_unsubscribe_refused_where_the_rules_refuse(sqlite_sessions: S, tmp_path: Path) -> None:
    """Under contacts.last_leaves = refuse, the sole contact's one-click link leaves nothing without a contact:
    the page says to leave by email with a replacement, and the membership stays."""
    from wgbot.lists import unsubscribe_url
    from wgbot.store import secret_key

    rules = (Path(__file__).parents[2] / "rules" / "ietm.toml").read_text().replace(
        'last_leaves = "ask_secretariat"', 'last_leaves = "refuse"')
    (tmp_path / "strict.toml").write_text(rules)
    cfg = net(tmp_path, str(tmp_path / "strict.toml"))
    slug = make_group(sqlite_sessions, cfg, name="Dance", contact="anna@theatre.example")
    with sqlite_sessions.begin() as session:
        url = unsubscribe_url(cfg, secret_key(session), slug, "anna@theatre.example")
    status, page = one_click(sqlite_sessions, cfg, url)
    assert status == 200 and "last contact" in page and "Replacement: ADDRESS" in page
    assert roles(sqlite_sessions, slug) == {"anna@theatre.example": "contact"}


# ------------------------------------------------------------------------------------------ withdraw


def test_withdraw_by_the_approval_reference_closes_the_proposal(sessions: S, tmp_path: Path) -> None:
    """The proposer withdrawing by the approval request's reference (the one in the outcome mails) withdraws
    the proposal: it is closed, the approvers can no longer decide it, and its name is free again."""
    cfg = net(tmp_path, "igf")
    say(sessions, cfg, "fac@ngo.example", "propose Youth Coalition\n\nYouth.\n")
    with sessions() as session:
        row = session.scalars(select(PendingAction).where(PendingAction.action == "approval")).one()
        approval_ref = row.public_ref
    reply = say(sessions, cfg, "fac@ngo.example", f"withdraw {approval_ref}")
    assert "Withdrawn" in reply, reply
    assert group(sessions, "youth-coalition")["status"] == "closed"
    token = approval_token(sessions)
    feed(sessions, cfg, mail("approve", sender="office@example.org", msgid="<late@example.org>"),
         to=f"wgbot+approval-{token}@lists.example.org")
    assert group(sessions, "youth-coalition")["status"] == "closed"


# ------------------------------------------------------------------------------------------ item 7: what people read


def test_one_spelling_per_organisation(sessions: S, tmp_path: Path) -> None:
    """The same city spelt three ways (by email, and by the operator's import) shows once, in the first
    spelling given, in `groups --json`, `info` and `who`."""
    from wgbot.groups import list_members
    from wgbot.importer import import_rows, rows_of
    from wgbot.store import Group

    cfg = net(tmp_path, "eccar")
    say(sessions, cfg, "mayor@bologna.example", "propose Housing\nOrganisation: COMUNE  di bologna\nCountry: IT\n")
    say(sessions, cfg, "deputy@bologna.example", "support housing\nOrganisation: Comune di Bologna\nCountry: IT\n")
    (tmp_path / "m.csv").write_text("address,organisation,country\nclerk@bologna.example,comune di  BOLOGNA,IT\n")
    with sessions.begin() as session:
        housing = session.scalars(select(Group).where(Group.slug == "housing")).one()
        import_rows(session, housing, rows_of(tmp_path / "m.csv"), NOW)
    assert group(sessions, "housing")["organisations"] == ["COMUNE di bologna"]
    info = say(sessions, cfg, "anyone@x.example", "info housing", confirm_it=False)
    assert "Italy: COMUNE di bologna" in info and "Comune di Bologna" not in info and "BOLOGNA," not in info
    who = say(sessions, cfg, "mayor@bologna.example", "who housing", confirm_it=False)
    assert who.count("COMUNE di bologna") == 3 and "Comune di Bologna" not in who and "BOLOGNA" not in who
    with sessions() as session:
        housing = session.scalars(select(Group).where(Group.slug == "housing")).one()
        assert {m["organisation"] for m in list_members(session, housing)} == {"COMUNE di bologna"}


def test_dates_are_written_as_people_write_them(tmp_path: Path) -> None:
    """Dates read `1 November 2027` (no leading zero), and a moment is given in the network's timezone, not
    in UTC: a request expiring at 23:30 UTC on 30 November expires on 1 December in Brussels."""
    from wgbot.render import compose
    from wgbot.reports import Obligation

    cfg = net(tmp_path, "igf")
    ob = Obligation("draft output", dt.date(2027, 11, 1), (30,), "secretariat", True, 30, False, "deliverables[0]")
    group_ = type("G", (), {"name": "BPF Gender", "slug": "bpf-gender"})()
    msg = compose(cfg, "notices/deadline_missed.txt", {"group": group_, "obligation": ob,
                                                        "deadline": dt.date(2026, 11, 1)}, to=["a@x.org"], now=NOW)
    assert str(msg["Subject"]) == "BPF Gender: the draft output due 1 November 2026 was not received"
    text = b" ".join(msg.raw.split())
    assert b"01 November" not in text and b"next deadline, 1 November 2027." in text
    reminder = compose(cfg, "notices/pending_reminder.txt", {
        "ref": "R-ABCDEFG", "approval": False, "summary": "join",
        "expires": dt.datetime(2026, 11, 30, 23, 30, tzinfo=dt.UTC)}, to=["a@x.org"], now=NOW)
    assert b"It expires on 1 December 2026 at 00:30 CET" in b" ".join(reminder.raw.split())


def test_subjects_carry_no_leading_or_doubled_spaces(sqlite_sessions: S, tmp_path: Path) -> None:
    """Names and organisations stored with odd spacing (the operator's CSV import) never put leading or
    doubled spaces into a Subject, in replies, notices or list copies."""
    from wgbot.importer import import_rows, rows_of
    from wgbot.store import Group

    cfg = net(tmp_path, "ietm", network={"base_url": ""})
    slug = make_group(sqlite_sessions, cfg, name="  Circus   Futures ", contact="anna@theatre.example")
    (tmp_path / "m.csv").write_text("address,organisation\nbo@x.example,  Teatro   Nuovo \n")
    with sqlite_sessions.begin() as session:
        import_rows(session, session.scalars(select(Group).where(Group.slug == slug)).one(),
                    rows_of(tmp_path / "m.csv"), NOW)
    say(sqlite_sessions, cfg, "zed@x.example", f"join {slug}")
    feed(sqlite_sessions, cfg, mail("Hello all", subject="  Re:   our   next  meeting ", sender="bo@x.example",
                                    to=f"{slug}@lists.example.org", msgid="<post1@x.example>"),
         to=f"{slug}@lists.example.org")
    subjects = [str(m["Subject"]) for _, m in queued(sqlite_sessions)]
    assert "[circus-futures] Re: our next meeting" in subjects
    assert subjects and all(s == s.strip() and "  " not in s for s in subjects), subjects


# ------------------------------------------------------------------------------------------ the register


REGISTER = ("name,country,domains\n"
            "Comune di Bologna,IT,comune.bologna.it\n"
            "Roma Capitale,Italia,comune.roma.it\n"
            '"Stadt Graz",AT,"stadt.graz.at graz.at"\n')


def eccar_with_register(tmp_path: Path) -> Config:
    """An ECCAR installation whose operator imported the register with `wgbot organisations import`."""
    from wgbot.cli import main

    cfg_path = tmp_path / "config.toml"
    cfg_path.write_text(
        '[network]\nname = "ECCAR"\nlist_domain = "lists.example.org"\nbot_address = "wgbot@lists.example.org"\n'
        'rules = "eccar"\nsecretariat = ["office@example.org"]\n'
        f'[database]\nurl = "sqlite:///{tmp_path}/wgbot.sqlite3"\n'
        f'[outbound]\ntransport = "maildir"\nmaildir = "{tmp_path}/outbox"\n')
    (tmp_path / "register.csv").write_text(REGISTER)
    assert main(["--config", str(cfg_path), "init"]) == 0
    assert main(["--config", str(cfg_path), "organisations", "import", str(tmp_path / "register.csv")]) == 0
    assert main(["--config", str(cfg_path), "organisations", "import", str(tmp_path / "register.csv")]) == 0
    from wgbot.config import load_config

    return load_config(cfg_path)


def test_invented_cities_do_not_constitute_a_group(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """With a register, three invented cities (free-mail addresses claiming cities) constitute nothing: each
    support is unverified, the office is asked about each, and the replies say so; a city writing from its own
    domain counts at once; the office's acceptance makes an unverified support count."""
    from wgbot.db import database_url
    from wgbot.store import make_engine, make_sessionmaker

    cfg = eccar_with_register(tmp_path)
    assert "3 added, 0 updated" in capsys.readouterr().out
    sessions = make_sessionmaker(make_engine(database_url(cfg)))
    reply = say(sessions, cfg, "mallory@mail.example", "propose Fake Group\nOrganisation: Atlantis\nCountry: IT\n")
    assert "unverified: Atlantis is not in the register" in reply
    reply = say(sessions, cfg, "m2@mail.example", "support fake-group\nOrganisation: Roma Capitale\nCountry: IT\n")
    assert "recorded but unverified: mail.example is not a mail domain of Roma Capitale" in reply
    reply = say(sessions, cfg, "m3@mail.example", "support fake-group\nOrganisation: Stadt Graz\nCountry: AT\n")
    assert "Unverified, not counted until the secretariat accepts them: Atlantis (Italy), Roma Capitale " \
           "(Italy), Stadt Graz (Austria)." in reply
    assert group(sessions, "fake-group")["status"] == "forming"
    requests = [str(m["Subject"]) for r, m in queued(sessions, "approval") if r == "office@example.org"
                and "Approval needed: count" in str(m["Subject"])]
    assert len(requests) == 3

    reply = say(sessions, cfg, "sindaco@comune.bologna.it", "support fake-group\nOrganisation: comune di  bologna\n"
                "Country: IT\n")
    assert "Your support for Fake Group is counted" in reply and "1 city in 1 country" in reply
    token = approval_token(sessions)   # the newest request: Stadt Graz, from m3@mail.example
    feed(sessions, cfg, mail("approve", sender="office@example.org", msgid="<ok-graz@example.org>"),
         to=f"wgbot+approval-{token}@lists.example.org")
    assert group(sessions, "fake-group")["status"] == "forming"    # 2 cities now: Bologna and Graz
    assert group(sessions, "fake-group")["organisations"] == ["Atlantis", "Comune di Bologna", "Roma Capitale",
                                                            "Stadt Graz"]


def test_register_import_refuses_bad_rows(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A bad row is reported with its line number and nothing is imported."""
    from wgbot.cli import main

    cfg = eccar_with_register(tmp_path)
    (tmp_path / "bad.csv").write_text("name,country,domains\nNew City,IT,newcity.it\nOld Town,Narnia,old.example\n"
                                      "Bad Domains,IT,not a domain!\n")
    assert main(["--config", str(tmp_path / "config.toml"), "organisations", "import", str(tmp_path / "bad.csv")]) == 1
    err = capsys.readouterr().err
    assert "line 3: 'Narnia' is not a country" in err and "line 4: domains must be" in err
    assert main(["--config", str(tmp_path / "config.toml"), "organisations", "list", "--json"]) == 0
    assert "New City" not in capsys.readouterr().out and cfg.network.name == "ECCAR"


# ------------------------------------------------------------------------------------------ invitations


def invitations(sessions: S) -> list[str]:
    return [r for r, m in queued(sessions) if str(m["Subject"]).startswith("Invitation to support")]


def test_a_strangers_proposal_is_no_spam_relay(sessions: S, tmp_path: Path) -> None:
    """A stranger's one confirmation no longer sends their text to 20 outsiders and the whole network: nothing
    goes until the secretariat agrees, and then at most invitations_per_proposal of the listed addresses."""
    from tests.helpers import add_members

    cfg = net(tmp_path, "eccar")
    slug = make_group(sessions, cfg, name="Older Group", contact="chair@lyon.example")
    add_members(sessions, slug, {f"city{i}@member{i}.example": "regular" for i in range(25)})
    outsiders = ", ".join(f"victim{i}@elsewhere.example" for i in range(20))
    reply = say(sessions, cfg, "spammer@mail.example", "propose Cheap Watches\nOrganisation: Nowhere\nCountry: IT\n"
                f"Supporters: {outsiders}\n\nBuy cheap watches at http://spam.example/\n")
    assert "open for support" in reply and "0 sent; the others wait for the secretariat's agreement" in reply
    assert "10 not sent (over the limits on invitations)" in reply
    assert invitations(sessions) == []
    requests = [m for r, m in queued(sessions, "approval") if r == "office@example.org"]
    assert len(requests) == 1 and "send invitations to support Cheap Watches" in str(requests[0]["Subject"])

    feed(sessions, cfg, mail("approve", sender="office@example.org", msgid="<agree@example.org>"),
         to=f"wgbot+approval-{approval_token(sessions)}@lists.example.org")
    sent = invitations(sessions)
    assert len([a for a in sent if a.startswith("victim")]) == 10
    assert len([a for a in sent if a.startswith("city")]) == 25


def test_a_members_proposal_invites_members_at_once(sessions: S, tmp_path: Path) -> None:
    """A known member's proposal is announced to the network and to the listed members at once; listed
    strangers still wait for the secretariat, and every invitation counts against its recipient's daily limit."""
    cfg = net(tmp_path, "eccar", limits={"replies_per_day": 4})
    make_group(sessions, cfg, name="Older Group", contact="chair@lyon.example")
    make_group(sessions, cfg, name="Other Group", contact="chair@graz.example")
    make_group(sessions, cfg, name="Third Group", contact="chair@wien.example")
    for n in range(4):   # chair@graz.example has had its four automatic mails today
        say(sessions, cfg, "chair@graz.example", f"info older-group {n}", confirm_it=False)
    reply = say(sessions, cfg, "chair@lyon.example", "propose Housing\nOrganisation: Lyon\nCountry: FR\n"
                "Supporters: chair@graz.example, friend@elsewhere.example\n\nHousing.\n")
    assert "Invitations to support it: 1 sent; the others wait" in reply and "1 not sent" in reply
    assert invitations(sessions) == ["chair@wien.example"]    # the network's announcement, at once
    assert any("friend@elsewhere.example" in str(m["Subject"]) for _, m in queued(sessions, "approval"))


# ------------------------------------------------------------------------------------------ held-post floods


def test_a_flood_of_held_posts_makes_one_digest_an_hour(sqlite_sessions: S, tmp_path: Path) -> None:
    """150 posts from a non-member make 3 moderation requests per contact, then one digest per contact and hour
    (sent by the scheduler), not 150 requests each; a contact still decides each post from the digest."""
    from tests.helpers import add_members
    from wgbot.context import job_context as context
    from wgbot.groups import add_member
    from wgbot.schedule import tick
    from wgbot.store import Group, Post

    cfg = net(tmp_path, "ietm", network={"base_url": ""})
    slug = make_group(sqlite_sessions, cfg, name="Dance", contact="anna@theatre.example")
    with sqlite_sessions.begin() as session:
        dance = session.scalars(select(Group).where(Group.slug == slug)).one()
        add_member(context(session, cfg, NOW), dance, "ben@theatre.example", role="contact")
    add_members(sqlite_sessions, slug, {"member@x.example": "regular"})
    for n in range(150):
        feed(sqlite_sessions, cfg, mail(f"Buy now {n}", subject=f"offer {n}", sender="flood@spam.example",
                                        to=f"{slug}@lists.example.org", msgid=f"<flood{n}@spam.example>"),
             to=f"{slug}@lists.example.org", now=NOW + dt.timedelta(seconds=n))
    requests = [r for r, _ in queued(sqlite_sessions, "approval")]
    assert sorted(requests) == ["anna@theatre.example"] * 3 + ["ben@theatre.example"] * 3
    tick(sqlite_sessions, cfg, NOW + dt.timedelta(minutes=5))
    tick(sqlite_sessions, cfg, NOW + dt.timedelta(minutes=6))       # the same hour: nothing more
    digests = [(r, m) for r, m in queued(sqlite_sessions, "approval") if "held posts waiting" in str(m["Subject"])]
    assert sorted(r for r, _ in digests) == ["anna@theatre.example", "ben@theatre.example"]
    assert "50 held posts waiting" in str(digests[0][1]["Subject"])
    tick(sqlite_sessions, cfg, NOW + dt.timedelta(minutes=65))      # the next hour: the next 50
    tick(sqlite_sessions, cfg, NOW + dt.timedelta(minutes=125))     # and the last 47
    assert len([1 for _, m in queued(sqlite_sessions, "approval") if "held post" in str(m["Subject"])]) == 6
    last = [m for r, m in queued(sqlite_sessions, "approval") if r == "anna@theatre.example"][-1]
    text = last.get_body(preferencelist=("plain",)).get_content()
    assert "47 held posts" in str(last["Subject"]) and "offer 149" in text
    address = " ".join(text.split()).split("send \"approve\" to ")[-1].split()[0]
    feed(sqlite_sessions, cfg, mail("approve", sender="anna@theatre.example", msgid="<ok149@theatre.example>"),
         to=address, now=NOW + dt.timedelta(minutes=130))
    with sqlite_sessions() as session:
        assert [p.subject for p in session.scalars(select(Post))] == ["offer 149"]
