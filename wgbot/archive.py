"""archive: the list archive as the public pages read it — one row per accepted post, threads, full-text search.

It sits just above the store (lists.distribute calls `record` in the transaction that queues the list copy;
the web pages and the migration's backfill read through it). It never sends mail and never renders a page;
addresses are masked here, once, so no page can show one in full (SPEC §9).
"""

from __future__ import annotations

import datetime as dt
import email
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from typing import Any, Protocol

from sqlalchemy import bindparam, insert, select, text, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session, load_only

from wgbot.parse import clean_header_text, clean_text, html_to_text
from wgbot.store import ArchivedPost, Group

# Anything shaped like an address (RFC 5322 addr-spec, loosely): masked wherever it appears in a post.
_ADDRESS = re.compile(r"([A-Za-z0-9._%+!#$&'*/=?^`{|}~-]+)@([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)")
_MSGID = re.compile(r"<[^<>\s]+>")
_WORD = re.compile(r"\w+", re.UNICODE)
# What a sanitised HTML post may keep: structure and links, nothing that loads, runs or styles (no img, no
# style attribute, no javascript: URL). nh3 drops the content of script and style elements as well.
HTML_TAGS = {"a", "p", "br", "div", "span", "blockquote", "pre", "code", "ul", "ol", "li", "b", "strong", "i", "em",
             "u", "h1", "h2", "h3", "h4", "h5", "h6", "table", "thead", "tbody", "tr", "td", "th", "hr"}
HTML_ATTRIBUTES = {"a": {"href", "title"}}
URL_SCHEMES = {"http", "https", "mailto"}


def mask(value: str) -> str:
    """Every address in `value` shortened to its first letter and domain: alice@example.org → a…@example.org."""
    return _ADDRESS.sub(lambda m: f"{m.group(1)[:1]}…@{m.group(2)}", value)


def sanitise_html(markup: str) -> str:
    """HTML from a post made safe for a page (nh3, an allow-list): links get rel=noopener noreferrer nofollow."""
    import nh3

    return nh3.clean(markup, tags=HTML_TAGS, attributes=HTML_ATTRIBUTES, url_schemes=URL_SCHEMES,
                     link_rel="noopener noreferrer nofollow")


@dataclass(frozen=True)
class Content:
    """What the archive keeps of one message's body."""

    body: str
    html: str
    attachments: list[dict[str, Any]]


def _decoded(part: EmailMessage) -> str:
    try:
        return str(part.get_content())
    except (LookupError, ValueError, AssertionError):
        payload = part.get_payload(decode=True)
        return payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""


def content(raw: bytes) -> Content:
    """The first text/plain part (else the sanitised first text/html part, and its text), and the attachments
    by their position in the MIME tree (RFC 2046), which is how the download URL names them."""
    msg = email.message_from_bytes(raw, policy=policy.default)
    plain = html = ""
    attachments: list[dict[str, Any]] = []
    for n, part in enumerate(msg.walk()):
        if part.is_multipart():
            continue
        assert isinstance(part, EmailMessage)
        filename = part.get_filename()
        ctype = part.get_content_type()
        if filename or part.get_content_disposition() == "attachment":
            payload = part.get_payload(decode=True)
            attachments.append({"n": n, "name": clean_header_text(filename or f"attachment-{n}", 120),
                                "type": ctype, "size": len(payload) if isinstance(payload, bytes) else 0})
        elif ctype == "text/plain" and not plain:
            plain = _decoded(part)
        elif ctype == "text/html" and not html:
            html = _decoded(part)
    if plain:
        return Content(mask(clean_text(plain)).strip("\n"), "", attachments)
    if html:
        return Content(mask(html_to_text(html)), mask(sanitise_html(html)), attachments)
    return Content("", "", attachments)


def attachment(raw: bytes, n: int) -> tuple[str, bytes] | None:
    """(file name, bytes) of the attachment at MIME position `n`, or None."""
    msg = email.message_from_bytes(raw, policy=policy.default)
    for i, part in enumerate(msg.walk()):
        if i == n and not part.is_multipart() and (part.get_filename() or part.get_content_disposition()
                                                   == "attachment"):
            payload = part.get_payload(decode=True)
            return clean_header_text(part.get_filename() or f"attachment-{n}", 120), (
                payload if isinstance(payload, bytes) else b"")
    return None


def author(sender: str, display_name: str) -> str:
    return mask(clean_header_text(display_name, 200)) if display_name else mask(sender)


def _parent(conn: Connection | Session, group_id: int, in_reply_to: str, references: str) -> tuple[int, int] | None:
    """(id, thread id) of the archived post this one answers: In-Reply-To, else the last of References
    (RFC 5322 §3.6.4)."""
    candidates = _MSGID.findall(in_reply_to)[:1] + list(reversed(_MSGID.findall(references)))
    for msgid in candidates[:20]:
        row = conn.execute(select(ArchivedPost.id, ArchivedPost.thread_id).where(
            ArchivedPost.group_id == group_id, ArchivedPost.message_id == msgid).limit(1)).first()
        if row is not None:
            return int(row[0]), int(row[1])
    return None


def shown_subject(subject: str, slug: str) -> str:
    """The subject as the archive shows it: one line, addresses masked, without the list's own `[slug]` tag
    (which replies carry from the list copy)."""
    text = clean_header_text(subject, 998).replace(f"[{slug}] ", "").replace(f"[{slug}]", "").strip()
    return mask(text) or "(no subject)"


def record(conn: Connection | Session, *, post_id: int, group_id: int, slug: str, raw: bytes, message_id: str,
           in_reply_to: str, references: str, sender: str, display_name: str, subject: str,
           posted_at: dt.datetime) -> int:
    """Add one accepted post to the archive (and to the search index); returns its archive id."""
    found = content(raw)
    shown = shown_subject(subject, slug)
    parent = _parent(conn, group_id, in_reply_to, references)
    new_id = conn.execute(insert(ArchivedPost).values(
        post_id=post_id, group_id=group_id, message_id=message_id[:998], parent_id=parent[0] if parent else None,
        thread_id=parent[1] if parent else 0, month=posted_at.strftime("%Y-%m"), author=author(sender, display_name),
        subject=shown, body=found.body, html=found.html,
        attachments=found.attachments, posted_at=posted_at).returning(ArchivedPost.id)).scalar_one()
    if parent is None:
        conn.execute(update(ArchivedPost).where(ArchivedPost.id == new_id).values(thread_id=new_id))
    if _dialect(conn) == "sqlite":
        conn.execute(text("INSERT INTO archive_fts(rowid, subject, body) VALUES (:id, :subject, :body)"),
                     {"id": new_id, "subject": shown, "body": found.body})
    return int(new_id)


def _dialect(conn: Connection | Session) -> str:
    return conn.dialect.name if isinstance(conn, Connection) else conn.get_bind().dialect.name


def is_public(group: Group, default: str) -> bool:
    """A group's archive is published when its own setting says so, else when [web] archives does."""
    return (group.archive or default) == "public"


def fts_query(words: str) -> str:
    """User words → an FTS5 query of quoted terms (all must match), so no FTS syntax from a visitor is run."""
    return " ".join(f'"{w}"' for w in _WORD.findall(words)[:12])


def search(session: Session, words: str, group_ids: Sequence[int] | None, limit: int = 50,
           exclude: Sequence[int] = ()) -> list[ArchivedPost]:
    """Archived posts matching every word, newest first, of `group_ids` (None: every group but `exclude`):
    SQLite FTS5, or PostgreSQL full-text search over the index that the migration creates."""
    if group_ids is not None and not group_ids or not _WORD.search(words):
        return []
    where, params = _group_filter(group_ids, exclude)
    if _dialect(session) == "sqlite":
        sql = ("SELECT f.rowid FROM archive_fts f JOIN archive_posts a ON a.id = f.rowid "
               f"WHERE archive_fts MATCH :q{where} ORDER BY f.rowid DESC LIMIT :n")
        query = fts_query(words)
    else:
        sql = ("SELECT a.id FROM archive_posts a WHERE to_tsvector('simple', a.subject || ' ' || a.body) "
               f"@@ plainto_tsquery('simple', :q){where} ORDER BY a.id DESC LIMIT :n")
        query = " ".join(_WORD.findall(words)[:12])
    statement = text(sql)
    if params:
        statement = statement.bindparams(bindparam("groups", expanding=True))
    ids = session.execute(statement, {"q": query, "n": limit, **params}).scalars().all()
    if not ids:
        return []
    rows = {p.id: p for p in session.scalars(select(ArchivedPost).options(load_only(
        ArchivedPost.id, ArchivedPost.subject, ArchivedPost.author, ArchivedPost.posted_at, ArchivedPost.group_id))
        .where(ArchivedPost.id.in_(ids)))}
    return [rows[i] for i in ids if i in rows]


def _group_filter(group_ids: Sequence[int] | None, exclude: Sequence[int]) -> tuple[str, dict[str, Any]]:
    if group_ids is not None:
        return " AND a.group_id IN :groups", {"groups": list(group_ids)}
    if exclude:
        return " AND a.group_id NOT IN :groups", {"groups": list(exclude)}
    return "", {}


class Listed(Protocol):
    """What threading reads of a post (an ArchivedPost, or a row of its listed columns)."""

    id: int
    parent_id: int | None
    posted_at: dt.datetime


@dataclass(frozen=True)
class Node:
    post: Any
    depth: int


def threaded(posts: Iterable[Listed]) -> list[Node]:
    """Posts in thread order: each thread from its first post, replies under what they answer (depth capped)."""
    posts = sorted(posts, key=lambda p: (p.posted_at, p.id))
    by_id = {p.id: p for p in posts}
    children: dict[int, list[Listed]] = {}
    roots: list[Listed] = []
    for p in posts:
        if p.parent_id in by_id:
            children.setdefault(p.parent_id or 0, []).append(p)
        else:
            roots.append(p)
    out: list[Node] = []
    stack = [(r, 0) for r in reversed(roots)]
    while stack:
        p, depth = stack.pop()
        out.append(Node(p, min(depth, 8)))
        stack.extend((c, depth + 1) for c in reversed(children.get(p.id, [])))
    return out


def blocks(body: str) -> list[tuple[bool, str]]:
    """The body cut into (quoted?, text) runs: lines starting with '>' are quoted (RFC 3676 §4.5), and so is an
    attribution line ("On … wrote:") just before them, so a page can fold them."""
    out: list[tuple[bool, list[str]]] = []
    for line in body.split("\n"):
        quoted = line.startswith(">")
        if out and out[-1][0] == quoted:
            out[-1][1].append(line)
        else:
            if quoted and out and out[-1][1] and out[-1][1][-1].rstrip().endswith("wrote:"):
                attribution = out[-1][1].pop()
                out.append((True, [attribution, line]))
                continue
            out.append((quoted, [line]))
    return [(q, "\n".join(lines).strip("\n")) for q, lines in out if "\n".join(lines).strip()]


def backfill(conn: Connection) -> int:
    """Archive every stored post that is not archived yet (for the migration that adds the archive)."""
    from wgbot.parse import parse
    from wgbot.store import Post

    done = set(conn.execute(select(ArchivedPost.post_id)).scalars())
    slugs = dict(conn.execute(select(Group.id, Group.slug)).all())
    count = 0
    for post in conn.execute(select(Post.id, Post.group_id, Post.raw, Post.posted_at).order_by(Post.id)):
        if post.id in done:
            continue
        try:
            msg = parse(post.raw)
        except Exception:   # a stored post that no longer parses is left out of the pages, not fatal to a migration
            continue
        record(conn, post_id=post.id, group_id=post.group_id, slug=slugs.get(post.group_id, ""), raw=post.raw,
               message_id=msg.message_id,
               in_reply_to=msg.in_reply_to, references=msg.references, sender=msg.sender,
               display_name=msg.display_name, subject=msg.subject, posted_at=post.posted_at)
        count += 1
    return count
