"""web: the one-click unsubscribe endpoint of RFC 8058, served by `wgbot run` when [web] is enabled.

POST /unsubscribe/SLUG/ADDR/TOKEN with `List-Unsubscribe=One-Click` removes the member at once; a GET only
shows a page with a button, because link scanners fetch every URL in a message (Sympa #168, GitLab MR 156414).
TOKEN is an HMAC keyed with the installation's secret, compared in constant time. No redirects, no cookies.
It is deliberately tiny: it speaks just enough HTTP/1.1 for these two requests behind an https proxy.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hmac
import html
import logging
import re

from sqlalchemy.orm import Session, sessionmaker

from wgbot.config import Config
from wgbot.route import verp_decode
from wgbot.store import Group, get_member, membership, secret_key

log = logging.getLogger("wgbot.web")
_PATH = re.compile(r"^/unsubscribe/([a-z0-9-]{1,40})/([^/\s]{3,400})/([0-9a-f]{32})$")
MAX_HEAD = 8192
MAX_BODY = 4096


def _page(title: str, text: str, form: str = "") -> bytes:
    return (f"<!doctype html><html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title></head>"
            f"<body><h1>{html.escape(title)}</h1><p>{html.escape(text)}</p>{form}</body></html>").encode()


def _response(status: str, body: bytes) -> bytes:
    return (f"HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {len(body)}\r\n"
            "Cache-Control: no-store\r\nConnection: close\r\n\r\n").encode() + body


def handle(sessions: sessionmaker[Session], cfg: Config, method: str, path: str, body: bytes,
           now: dt.datetime) -> tuple[str, bytes]:
    """(HTTP status, page) for one request; only a valid POST changes anything."""
    m = _PATH.match(path)
    if m is None or method not in ("GET", "HEAD", "POST"):
        return "404 Not Found", _page("Not found", "There is nothing here.")
    slug, verp, token = m.groups()
    address = verp_decode(verp)
    with sessions.begin() as session:
        from wgbot.lists import unsubscribe_token

        expected = unsubscribe_token(secret_key(session), slug, address)
        if not address or not hmac.compare_digest(expected, token):
            return "404 Not Found", _page("Not found", "This unsubscribe link is not valid.")
        group = session.query(Group).filter(Group.slug == slug).one_or_none()
        member = get_member(session, address)
        ms = membership(session, group, member) if group is not None and member is not None else None
        name = group.name if group is not None else slug
        if ms is None:
            return "200 OK", _page(f"Not a member of {name}", f"{address} does not receive {name}.")
        if method != "POST":
            form = (f'<form method="post"><input type="hidden" name="List-Unsubscribe" value="One-Click">'
                    f'<button type="submit">Leave {html.escape(name)}</button></form>')
            return "200 OK", _page(f"Leave {name}?", f"Press the button to stop {name} mail to {address}.", form)
        if b"List-Unsubscribe=One-Click" not in body:
            return "400 Bad Request", _page("Bad request", "The request did not ask to unsubscribe.")
        assert group is not None
        from wgbot.leaving import unsubscribe

        if unsubscribe(session, cfg, group, address, now) == "last_contact":
            return "200 OK", _page(f"You are the last contact of {name}", "Leave by email instead, naming a "
                                   f"replacement: send 'leave {slug}' with a line 'Replacement: ADDRESS'.")
    log.info("one-click unsubscribe: %s left %s", address, slug)
    return "200 OK", _page(f"You have left {name}", f"{address} will receive no more mail from {name}.")


async def serve_client(sessions: sessionmaker[Session], cfg: Config, reader: asyncio.StreamReader,
                       writer: asyncio.StreamWriter) -> None:
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
        if len(head) > MAX_HEAD:
            raise ValueError("header too large")
        lines = head.decode("latin-1").split("\r\n")
        method, path, _ = (lines[0].split(" ", 2) + ["", ""])[:3]
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        if length > MAX_BODY:
            raise ValueError("body too large")
        body = await asyncio.wait_for(reader.readexactly(length), timeout=10) if length else b""
        status, page = await asyncio.to_thread(handle, sessions, cfg, method, path.split("?", 1)[0], body,
                                               dt.datetime.now(dt.UTC))
        writer.write(_response(status, b"" if method == "HEAD" else page))
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ValueError):
        writer.write(_response("400 Bad Request", _page("Bad request", "That request could not be read.")))
    except Exception:
        log.exception("web request failed")
        writer.write(_response("500 Internal Server Error", _page("Sorry", "Please try again later.")))
    finally:
        try:
            await writer.drain()
            writer.close()
        except ConnectionError:
            pass


async def start(sessions: sessionmaker[Session], cfg: Config) -> asyncio.AbstractServer:
    server = await asyncio.start_server(lambda r, w: serve_client(sessions, cfg, r, w), host=cfg.web.host,
                                        port=cfg.web.port, limit=MAX_HEAD)
    log.info("one-click unsubscribe served on http://%s:%d (public: %s)", cfg.web.host, cfg.web.port,
             cfg.network.base_url)
    return server
