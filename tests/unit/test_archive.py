"""The archive the public pages read: masking, sanitising, quoting, threading, search, and the backfill migration."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import select, text

from tests.integration.website import HOSTILE, KICKOFF, REPLY
from wgbot import archive
from wgbot.config import load_config
from wgbot.db import current_revision, head_revision, migrate
from wgbot.errors import ConfigError
from wgbot.resources import data_dir
from wgbot.store import ArchivedPost, Post, make_engine, make_sessionmaker

WHEN = dt.datetime(2026, 11, 21, 9, 0, tzinfo=dt.UTC)


def test_addresses_are_masked_wherever_they_appear() -> None:
    """Any address in a text keeps only its first letter and its domain."""
    assert archive.mask("Write to bob.smith+wg@example.net or <a@b.example>.") == \
        "Write to b…@example.net or <a…@b.example>."
    assert archive.author("alice@example.com", "") == "a…@example.com"
    assert archive.author("alice@example.com", "Alice <alice@example.com>") == "Alice <a…@example.com>"


def test_html_post_is_sanitised_and_plain_text_preferred() -> None:
    """An HTML-only post keeps text and https links only; a multipart post shows its text/plain part and lists
    its attachment by MIME position."""
    found = archive.content(HOSTILE)
    for bad in ("<script", "javascript:", "data:", "style", "onclick", "<img", "tracker", "<iframe", "<form", "<svg"):
        assert bad not in found.html, bad
    assert '<a href="https://example.org/report" rel="noopener noreferrer nofollow">' in found.html
    assert "Read the hostile report." in found.body and "alert" not in found.body
    reply = archive.content(REPLY)
    assert reply.html == "" and reply.body.startswith("Thanks, the agenda is attached.")
    assert reply.attachments == [{"n": 2, "name": "agenda.pdf", "type": "application/pdf", "size": 85}]
    name, data = archive.attachment(REPLY, 2) or ("", b"")
    assert name == "agenda.pdf" and data.startswith(b"%PDF")
    assert archive.attachment(REPLY, 1) is None   # the text part is not an attachment


def test_quoted_text_and_its_attribution_are_folded() -> None:
    """Lines starting with '>' (RFC 3676 §4.5) and the 'wrote:' line before them form one quoted block."""
    body = "Yes.\n\nOn Monday, Alice wrote:\n> first\n> second\n\nThanks\n> tail"
    assert archive.blocks(body) == [(False, "Yes."), (True, "On Monday, Alice wrote:\n> first\n> second"),
                                    (False, "Thanks"), (True, "> tail")]


def test_search_words_never_reach_fts_as_syntax() -> None:
    """Visitors' words become quoted FTS5 terms; operators and punctuation are dropped."""
    assert archive.fts_query('housing" OR NEAR(x* ^col:') == '"housing" "OR" "NEAR" "x" "col"'
    assert archive.fts_query("()*") == ""


def _post(raw: bytes, post_id: int, parent: int | None) -> ArchivedPost:
    return ArchivedPost(id=post_id, parent_id=parent, posted_at=WHEN + dt.timedelta(minutes=post_id), subject=str(raw))


def test_threads_put_replies_under_what_they_answer() -> None:
    """Replies follow their parent, one level deeper; a reply whose parent is not shown starts its own thread."""
    posts = [_post(b"a", 1, None), _post(b"b", 2, None), _post(b"c", 3, 1), _post(b"d", 4, 3), _post(b"e", 5, 99)]
    assert [(n.post.id, n.depth) for n in archive.threaded(posts)] == [(1, 0), (3, 1), (4, 2), (2, 0), (5, 0)]


def test_migration_backfills_posts_stored_before_it(db_url: str) -> None:
    """Posts kept before the archive table existed are archived by the migration, threaded and searchable."""
    engine = make_engine(db_url)
    migrate(engine, "0001")
    with engine.begin() as conn:
        # The 0001 schema, written in SQL: today's models already have the new column.
        conn.execute(text("INSERT INTO groups (id, slug, name, status, introduction, proposer, proposal_ref, "
                          "created_at, closed_reason, from_policy) VALUES (1, 'grp', 'Grp', 'active', '', '', '', "
                          ":at, '', '')"), {"at": WHEN})
        for i, raw in enumerate((KICKOFF, REPLY), start=1):
            conn.execute(Post.__table__.insert().values(id=i, group_id=1, message_id="", sender="x@example.com",
                                                        subject="", raw=raw, posted_at=WHEN))
    migrate(engine)
    assert current_revision(engine) == head_revision()
    sessions = make_sessionmaker(engine)
    with sessions() as session:
        rows = session.scalars(select(ArchivedPost).order_by(ArchivedPost.post_id)).all()
        assert [(r.message_id, r.parent_id) for r in rows] == [("<kickoff@example.com>", None),
                                                                ("<reply1@example.net>", rows[0].id)]
        assert rows[1].thread_id == rows[0].id and rows[0].month == "2026-11"
        assert [p.id for p in archive.search(session, "integration indicators", [1])] == [rows[0].id]
        assert [p.id for p in archive.search(session, "agenda", [1])] == [rows[1].id]
        assert archive.search(session, "agenda", [2]) == []
    engine.dispose()


def test_web_is_on_by_default_and_archives_setting_is_checked(tmp_path: Path) -> None:
    """The example configuration serves the pages at 127.0.0.1:8080 with public archives; a wrong
    `archives` value is refused with the key named."""
    cfg = load_config(data_dir("config.example.toml"))
    assert (cfg.web.enabled, cfg.web.host, cfg.web.port, cfg.web.archives) == (True, "127.0.0.1", 8080, "public")
    bad = tmp_path / "config.toml"
    bad.write_text('[network]\nname = "N"\nlist_domain = "l.example.org"\nbot_address = "w@l.example.org"\n'
                   '[web]\narchives = "secret"\n')
    with pytest.raises(ConfigError, match="web.archives"):
        load_config(bad)
