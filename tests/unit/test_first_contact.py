"""Issue 15, first contact: every address the bot advertises works under each bundled rule set, and members
get answers a person understands (group names unquoted, a bare Subject verb, "did you mean")."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tests.conftest import make_config
from tests.helpers import body_of, confirm, feed, last_reply, mail, make_group, queued
from wgbot import inbox  # noqa: F401  (the place that imports the features: every command registers)
from wgbot.commands import read_commands
from wgbot.config import Config
from wgbot.context import one_letter_off, registry
from wgbot.groups import list_members
from wgbot.store import Group

S = sessionmaker[Session]
NAME = "Migrant Inclusion & Rights"
FIELDS = "Organisation: City of Graz\r\nCountry: Österreich\r\n"


def members(sessions: S, slug: str) -> dict[str, dict[str, str]]:
    with sessions() as session:
        group = session.scalars(select(Group).where(Group.slug == slug)).one()
        return {m["address"]: m for m in list_members(session, group)}


def network(tmp_path: Path, rules: str) -> Config:
    return make_config(tmp_path, network={"rules": rules})


# ------------------------------------------------------------------------------ every advertised address


@pytest.mark.parametrize("rules", ["eccar", "ietm", "igf"])
def test_join_address_reads_the_fields_in_the_body(sessions: S, tmp_path: Path, rules: str) -> None:
    """Mail to SLUG-join@ (in `groups` and List-Subscribe) with Organisation: and Country: in its body joins the
    group under every bundled rule set: the fields are read, not asked for again."""
    cfg = network(tmp_path, rules)
    slug = make_group(sessions, cfg, name=NAME)
    feed(sessions, cfg, mail("Hello,\r\n\r\n" + FIELDS + "\r\n-- \r\nAlice\r\n", subject="join", msgid="<j@x.org>"),
         to=f"{slug}-join@lists.example.org")
    assert "confirmation request" in last_reply(sessions), last_reply(sessions)
    confirm(sessions, cfg, "alice@example.com")
    alice = members(sessions, slug)["alice@example.com"]
    assert (alice["organisation"], alice["country"]) == ("City of Graz", "AT")


@pytest.mark.parametrize("rules", ["eccar", "ietm", "igf"])
def test_request_and_leave_addresses_and_list_help(sessions: S, tmp_path: Path, rules: str) -> None:
    """SLUG-request@ (README) takes `join` without the group; List-Help's address answers `help`; SLUG-leave@
    (List-Unsubscribe) leaves; each under every bundled rule set."""
    cfg = network(tmp_path, rules)
    slug = make_group(sessions, cfg, name=NAME)
    feed(sessions, cfg, mail("join digest\r\n" + FIELDS, msgid="<r@x.org>"), to=f"{slug}-request@lists.example.org")
    confirm(sessions, cfg, "alice@example.com")
    assert members(sessions, slug)["alice@example.com"]["delivery"] == "digest"
    feed(sessions, cfg, mail("", subject="help", msgid="<h@x.org>"))
    assert "join GROUP" in last_reply(sessions)
    feed(sessions, cfg, mail("please take me off", msgid="<l@x.org>"), to=f"{slug}-leave@lists.example.org")
    assert "confirmation request" in last_reply(sessions)
    confirm(sessions, cfg, "alice@example.com")
    assert "alice@example.com" not in members(sessions, slug)


@pytest.mark.parametrize("rules", ["eccar", "ietm", "igf"])
def test_list_address_from_groups_takes_a_members_post(sessions: S, tmp_path: Path, rules: str) -> None:
    """The list address `groups` shows (SLUG@, List-Post) distributes a member's post, SLUG-owner@ reaches the
    contacts and SLUG-comments@ answers outside a comment period (README), under every rule set."""
    cfg = network(tmp_path, rules)
    slug = make_group(sessions, cfg, name=NAME)
    feed(sessions, cfg, mail("groups", msgid="<g@x.org>"))
    assert f"{slug}@lists.example.org" in last_reply(sessions) and f"{slug}-join@" in last_reply(sessions)
    feed(sessions, cfg, mail(f"join {slug}\r\n" + FIELDS, msgid="<j2@x.org>"))
    confirm(sessions, cfg, "alice@example.com")
    feed(sessions, cfg, mail("Hello all", subject="Meeting", msgid="<p@x.org>"), to=f"{slug}@lists.example.org")
    copies = [r for r, m in queued(sessions) if str(m["Subject"]).endswith("Meeting")]
    assert "chair@city.example" in copies
    feed(sessions, cfg, mail("A question", subject="For the chair", msgid="<o@x.org>"),
         to=f"{slug}-owner@lists.example.org")
    assert "chair@city.example" in [r for r, m in queued(sessions) if str(m["Subject"]) == "For the chair"]
    feed(sessions, cfg, mail("My comment", subject="Comment", msgid="<k@x.org>"),
         to=f"{slug}-comments@lists.example.org")
    assert any(r == "alice@example.com" and "No comment period is open" in str(m["Subject"])
               for r, m in queued(sessions))


# ------------------------------------------------------------------------------ plain answers


def test_group_name_unquoted_works_where_a_group_is_taken(sessions: S, cfg: Config) -> None:
    """`info Migrant Inclusion & Rights` and `join Migrant Inclusion & Rights digest`, unquoted, name the group."""
    slug = make_group(sessions, cfg, name=NAME)
    feed(sessions, cfg, mail(f"info {NAME}", msgid="<i@x.org>"))
    reply = last_reply(sessions)
    assert "status: active" in reply and "Wrong number" not in reply
    feed(sessions, cfg, mail(f"join {NAME} digest", msgid="<j@x.org>"))
    assert "confirmation request" in last_reply(sessions)
    confirm(sessions, cfg, "alice@example.com")
    assert members(sessions, slug)["alice@example.com"]["delivery"] == "digest"


def test_group_name_with_an_apostrophe_unquoted(sessions: S, cfg: Config) -> None:
    """A name with an apostrophe (read by shlex as an open quote) still names the group when written as is."""
    make_group(sessions, cfg, name="Women's Rights")
    feed(sessions, cfg, mail("info Women's Rights", msgid="<i@x.org>"))
    reply = last_reply(sessions)
    assert "Women's Rights status: active" in reply and "unbalanced" not in reply


def test_bare_subject_verb_repeating_the_body_adds_no_refusal(sessions: S, cfg: Config) -> None:
    """`Subject: join` over `join SLUG`, and `Subject: confirm` over `confirm TOKEN`, each give one result."""
    slug = make_group(sessions, cfg, name=NAME)
    feed(sessions, cfg, mail(f"join {slug}", subject="join", msgid="<j@x.org>"))
    reply = last_reply(sessions)
    assert "confirmation request" in reply and "Wrong number" not in reply and reply.count("> join") == 1
    token = str(queued(sessions, "confirm")[-1][1]["Subject"]).split()[1]
    feed(sessions, cfg, mail(f"confirm {token}", subject="confirm", msgid="<c@x.org>"))
    reply = last_reply(sessions)
    assert "Wrong number" not in reply and "Refused" not in reply and reply.count("> confirm") == 1
    assert "alice@example.com" in members(sessions, slug)


def test_subject_verb_with_other_body_commands_still_runs() -> None:
    """A bare Subject verb the body does not repeat (`help` over `join x`) is still a command."""
    lines, _, _ = read_commands(registry, "help", "join x\n", 25)
    assert [line.verb for line in lines] == ["help", "join"]


def test_verb_and_slug_one_letter_off_get_did_you_mean(sessions: S, cfg: Config) -> None:
    """`joni SLUG digest` is answered "did you mean join SLUG digest"; a slug one letter off names the group."""
    slug = make_group(sessions, cfg, name=NAME)
    feed(sessions, cfg, mail(f"joni {slug} digest", msgid="<j@x.org>"))
    assert f'Did you mean "join {slug} digest"?' in last_reply(sessions)
    feed(sessions, cfg, mail("info migrant-inclusion-right", msgid="<i@x.org>"))
    assert f'Did you mean "{slug}" ({NAME})?' in last_reply(sessions)
    for i, prose in enumerate(("Let me know what you think of it", "Sent from my iPhone", "And you?")):
        feed(sessions, cfg, mail(prose, msgid=f"<p{i}@x.org>"))
        assert "Did you mean" not in last_reply(sessions), prose


def test_one_letter_off() -> None:
    """Insertions, deletions, changes and one swap of neighbours count; anything more does not."""
    assert one_letter_off("joni", "join") and one_letter_off("jion", "join") and one_letter_off("jon", "join")
    assert one_letter_off("joins", "join") and one_letter_off("jain", "join")
    assert not one_letter_off("join", "join") and not one_letter_off("ojni", "join")
    assert not one_letter_off("leave", "join")


def test_refusals_say_it_in_words(sessions: S, tmp_path: Path) -> None:
    """An ECCAR join without fields is refused in words, with no rule identifier."""
    cfg = network(tmp_path, "eccar")
    slug = make_group(sessions, cfg, name=NAME)
    feed(sessions, cfg, mail(f"join {slug}", msgid="<j@x.org>"))
    body = body_of(queued(sessions, "reply")[-1][1])
    assert "Organisation:" in body and "Rule:" not in body and "joining." not in body


def test_no_template_for_members_shows_a_rule_identifier() -> None:
    """No template but the approvers' request prints a rule's identifier (`joining.organisation_required`,
    `deliverables[0]`): members read why in words."""
    from wgbot.render import template_names
    from wgbot.resources import data_dir

    for name in template_names():
        source = (data_dir("templates") / name).read_text()
        if name != "notices/approval_request.txt":
            assert "Rule:" not in source and ".rule }}" not in source and "{{ rule }}" not in source, name
