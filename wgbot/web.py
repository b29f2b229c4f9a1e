"""web: the public pages (SPEC §9) — a Starlette application served by uvicorn inside `wgbot run`.

Top layer: it reads through webdata, archive, groups, reports and the store, and it is started by app.py; nothing
below imports it. Handlers are plain functions, which Starlette runs in its thread pool, so a slow query never
holds up the SMTP listener on the shared event loop. Everything from mail reaches a page through Jinja2's
autoescape or nh3 (wgbot.archive), and a strict Content-Security-Policy is the second line. The only thing a
request can change is a membership, through the RFC 8058 one-click endpoint (`unsubscribe`).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hmac
import json
import logging
import mimetypes
import re
import socket
import threading
import time
from collections.abc import Callable, Generator
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

import anyio.to_thread
import jinja2
import uvicorn
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from wgbot import archive, leaving, webdata
from wgbot.config import Config
from wgbot.resources import data_dir
from wgbot.route import verp_decode
from wgbot.rules import Rules, cached_rules
from wgbot.store import ArchivedPost, Group, Post, get_member, membership, secret_key

log = logging.getLogger("wgbot.web")
_UNSUBSCRIBE = "/unsubscribe/{slug:str}/{verp:str}/{token:str}"
_SLUG = re.compile(r"^[a-z0-9-]{1,40}$")
_TOKEN = re.compile(r"^[0-9a-f]{32}$")
MAX_BODY = 4096
PAGE_THREADS = 4
CACHE_SECONDS = 5.0   # the heaviest pages may lag the store by this much
# No script, no inline style, no remote anything; forms post only to us (CSP Level 3).
CSP = ("default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; base-uri 'none'; "
       "frame-ancestors 'none'")
SECURITY_HEADERS = [(b"content-security-policy", CSP.encode()), (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"), (b"x-frame-options", b"DENY")]


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@lru_cache(maxsize=8)
def _environment(override: str) -> jinja2.Environment:
    paths = ([override + "/web"] if override else []) + [str(data_dir("templates") / "web")]
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(paths), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["blocks"] = archive.blocks
    env.filters["mask"] = archive.mask
    env.filters["plural"] = lambda w: w[:-1] + "ies" if w.endswith("y") and w[-2:-1] not in "aeiou" else w + "s"
    env.filters["kib"] = lambda n: f"{max(1, round(int(n) / 1024))} KiB"
    env.globals["month_name"] = lambda m: dt.date(int(m[:4]), int(m[5:7]), 1).strftime("%B %Y")
    return env


class SharedPage(Response):
    """A page whose bytes every request shares (a cached page, a static file), sent in pieces: uvicorn waits for
    a slow client between pieces, so each connection holds one piece instead of its own copy of the page."""

    PIECE = 64 * 1024

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        body = memoryview(self.body)
        for start in range(0, len(body), self.PIECE):
            await send({"type": "http.response.body", "body": bytes(body[start:start + self.PIECE]),
                        "more_body": True})
        await send({"type": "http.response.body", "body": b""})


class Site:
    """What every handler needs: the configuration, the rules, the store."""

    def __init__(self, cfg: Config, sessions: sessionmaker[Session]) -> None:
        self.cfg, self.sessions = cfg, sessions
        self.base = urlsplit(cfg.network.base_url).path.rstrip("/") if cfg.network.base_url else ""
        override = str(cfg.resolve(cfg.paths.templates)) if cfg.paths.templates else ""
        self.env = _environment(override)
        self._cache: dict[str, tuple[float, bytes]] = {}
        self._render = threading.Lock()
        self.static = ([cfg.resolve(cfg.paths.templates) / "web" / "static"] if override else []) + [
            data_dir("templates") / "web" / "static"]

    def cached(self, key: str, build: Callable[[], HTMLResponse]) -> Response:
        """The page at `key` as rendered less than CACHE_SECONDS ago, else `build()` (only a 200 is kept): the
        directory of a thousand groups and a busy month take a few hundred milliseconds to render."""
        hit = self._cache.get(key)
        if hit is not None and hit[0] > time.monotonic():
            return SharedPage(hit[1], media_type="text/html")
        with self._render:   # one thread renders; the requests that came meanwhile take its page
            hit = self._cache.get(key)
            if hit is not None and hit[0] > time.monotonic():
                return SharedPage(hit[1], media_type="text/html")
            page = build()
            if page.status_code == 200:
                if len(self._cache) >= 256:
                    self._cache.clear()
                self._cache[key] = (time.monotonic() + CACHE_SECONDS, bytes(page.body))
        return page

    @property
    def rules(self) -> Rules:
        return cached_rules(str(self.cfg.rules_path))

    def page(self, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        html = self.env.get_template(name).render(network=self.cfg.network.name, base=self.base, cfg=self.cfg,
                                                  rules=self.rules, **context)
        return HTMLResponse(html, status_code=status)

    def absolute(self, request: Request, path: str) -> str:
        """A full URL for feeds and calendars: base_url when set, else the address the request came to."""
        root = self.cfg.network.base_url.rstrip("/") or str(request.base_url).rstrip("/")
        return root + path

    def group(self, session: Session, slug: str) -> Group:
        group = session.scalar(select(Group).where(Group.slug == slug)) if _SLUG.match(slug) else None
        if group is None:
            raise HTTPException(404)
        return group

    def public_group(self, session: Session, slug: str) -> Group:
        """The group, if its archive is published; a private archive is simply not there (404)."""
        group = self.group(session, slug)
        if not archive.is_public(group, self.cfg.web.archives):
            raise HTTPException(404)
        return group


# ---------------------------------------------------------------------------------------------------------
# Pages


def directory(site: Site, request: Request) -> Response:
    def build() -> HTMLResponse:
        with site.sessions() as session:
            views = webdata.group_views(session, site.cfg, site.rules, now().date())
            return site.page("directory.html", views=views)
    return site.cached("/", build)


def group_page(site: Site, request: Request) -> Response:
    with site.sessions() as session:
        views = webdata.group_views(session, site.cfg, site.rules, now().date(), request.path_params["slug"])
        if not views:
            raise HTTPException(404)
        view = views[0]
        found = webdata.reports(session, view.group)
        coming, past = webdata.meetings(session, view.group, now())
        return site.page("group.html", view=view, reports=[(r, webdata.days_left(r, now())) for r in found],
                         coming=coming, past=past)


def report_page(site: Site, request: Request) -> Response:
    with site.sessions() as session:
        group = site.group(session, request.path_params["slug"])
        report = next((r for r in webdata.reports(session, group) if r.id == request.path_params["id"]), None)
        if report is None:
            raise HTTPException(404)
        return site.page("report.html", group=group, report=report, content=archive.content(report.raw),
                         days_left=webdata.days_left(report, now()))


def archive_index(site: Site, request: Request) -> Response:
    def build() -> HTMLResponse:
        with site.sessions() as session:
            group = site.public_group(session, request.path_params["slug"])
            return site.page("archive.html", group=group, months=webdata.months(session, group))
    return site.cached(request.url.path, build)


def archive_month(site: Site, request: Request) -> Response:
    month = request.path_params["month"]

    def build() -> HTMLResponse:
        with site.sessions() as session:
            group = site.public_group(session, request.path_params["slug"])
            posts = webdata.month_posts(session, group, month)
            if not posts:
                raise HTTPException(404)
            return site.page("month.html", group=group, month=month, nodes=archive.threaded(posts))
    return site.cached(request.url.path, build)


def _archived(site: Site, session: Session, request: Request) -> tuple[Group, ArchivedPost]:
    group = site.public_group(session, request.path_params["slug"])
    post = session.get(ArchivedPost, request.path_params["id"])
    if post is None or post.group_id != group.id:
        raise HTTPException(404)
    return group, post


def message_page(site: Site, request: Request) -> Response:
    with site.sessions() as session:
        group, post = _archived(site, session, request)
        thread = archive.threaded(webdata.thread_of(session, post))
        return site.page("message.html", group=group, post=post, thread=thread)


def attachment_file(site: Site, request: Request) -> Response:
    """An attachment, always as a download of opaque bytes: a post's HTML or SVG must never run as our page."""
    with site.sessions() as session:
        group, post = _archived(site, session, request)
        raw = session.scalar(select(Post.raw).where(Post.id == post.post_id))
    found = archive.attachment(raw or b"", request.path_params["n"])
    if found is None:
        raise HTTPException(404)
    name, data = found
    ascii_name = re.sub(r"[^A-Za-z0-9._-]", "_", name) or "attachment"
    return Response(data, media_type="application/octet-stream",
                    headers={"Content-Disposition": f'attachment; filename="{ascii_name}"'})


def search_page(site: Site, request: Request) -> Response:
    words = request.query_params.get("q", "")[:200]
    slug = request.query_params.get("group", "")
    with site.sessions() as session:
        groups = webdata.archive_groups(session, site.cfg)
        public = [g for g in groups.values() if g.public]
        results = []
        if words.strip():
            if slug:
                results = archive.search(session, words, [g.id for g in public if g.slug == slug])
            else:
                results = archive.search(session, words, None, exclude=[g.id for g in groups.values() if not g.public])
        # A list of a hundred groups is a choice; a longer one is not (each archive page searches its own group).
        return site.page("search.html", words=words, slug=slug, results=results, groups=groups,
                         choices=public if len(public) <= 100 else [])


def static_file(site: Site, request: Request) -> Response:
    """A file of templates/web/static, the operator's own folder ([paths] templates) first; kept in memory
    (these are a style sheet and the like), read again when it changes."""
    name = request.path_params["name"]
    if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,100}", name):
        for folder in site.static:
            path = folder / name
            if path.is_file():
                data = _read(str(path), path.stat().st_mtime_ns)
                kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
                return SharedPage(data, media_type=kind, headers={"Cache-Control": "public, max-age=3600"})
    raise HTTPException(404)


@lru_cache(maxsize=64)
def _read(path: str, mtime: int) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()


def groups_json(site: Site, request: Request) -> Response:
    from wgbot.groups import list_groups

    with site.sessions() as session:
        rows = list_groups(session)
    return Response(json.dumps(rows, indent=2, ensure_ascii=False), media_type="application/json")


def atom_feed(site: Site, request: Request) -> Response:
    """RFC 4287: the group's newest posts (when its archive is public) and its approved reports."""
    with site.sessions() as session:
        group = site.group(session, request.path_params["slug"])
        posts: list[ArchivedPost] = []
        if archive.is_public(group, site.cfg.web.archives):
            posts = list(session.scalars(select(ArchivedPost).where(ArchivedPost.group_id == group.id)
                                         .order_by(ArchivedPost.id.desc()).limit(30)))
        found = webdata.reports(session, group)[:10]
        entries = sorted([("post", p.posted_at, p) for p in posts] + [("report", r.decided_at or r.submitted_at, r)
                                                                        for r in found],
                         key=lambda e: e[1], reverse=True)
        root = site.absolute(request, f"/groups/{group.slug}/")
        xml = site.env.get_template("feed.atom").render(group=group, entries=entries, root=root,
                                                        network=site.cfg.network.name,
                                                        updated=entries[0][1] if entries else group.created_at)
    return Response(xml, media_type="application/atom+xml; charset=utf-8")


def deadlines_ics(site: Site, request: Request) -> Response:
    """RFC 5545, written by the icalendar library: every deadline, every open comment period and the meetings."""
    import icalendar

    cal = icalendar.Calendar()
    cal.add("prodid", f"-//wgbot//{site.cfg.network.name}//EN")
    cal.add("version", "2.0")
    cal.add("x-wr-calname", f"{site.cfg.network.name}: working group deadlines")
    stamp = now()
    with site.sessions() as session:
        events = webdata.calendar_events(session, site.cfg, site.rules, stamp)
    for e in events:
        event = icalendar.Event()
        event.add("uid", e["uid"] if "@" in e["uid"] else f"{e['uid']}@{site.cfg.network.list_domain}")
        event.add("dtstamp", stamp)
        event.add("summary", e["summary"])
        event.add("dtstart", e["start"])
        event.add("dtend", e["end"])
        event.add("url", site.absolute(request, f"/groups/{e['slug']}/"))
        for name in ("location", "description"):
            if e.get(name):
                event.add(name, e[name])
        cal.add_component(event)
    return Response(cal.to_ical(), media_type="text/calendar; charset=utf-8")


# ---------------------------------------------------------------------------------------------------------
# RFC 8058 one-click unsubscribe: a GET only shows a button, because link scanners fetch every URL in a message
# (Sympa #168, GitLab MR 156414); a POST with List-Unsubscribe=One-Click removes the member at once. The token
# is an HMAC keyed with the installation's secret, compared in constant time. No redirects, no cookies.


async def unsubscribe(site: Site, request: Request) -> Response:
    body = b""
    if request.method == "POST":
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY:
                return site.page("message_only.html", 400, title="Bad request", text="That request is too large.")
    p = request.path_params
    return await asyncio.to_thread(_unsubscribe, site, request.method, p["slug"], p["verp"], p["token"], body)


def _unsubscribe(site: Site, method: str, slug: str, verp: str, token: str, body: bytes) -> Response:
    def say(title: str, text: str, status: int = 200, **more: Any) -> Response:
        return site.page("unsubscribe.html", status, title=title, text=text, **more)

    address = verp_decode(verp) if _SLUG.match(slug) and _TOKEN.match(token) and len(verp) <= 400 else ""
    with site.sessions.begin() as session:
        from wgbot.lists import unsubscribe_token

        expected = unsubscribe_token(secret_key(session), slug, address) if address else ""
        if not address or not hmac.compare_digest(expected, token):
            return say("Not found", "This unsubscribe link is not valid.", 404)
        group = session.scalar(select(Group).where(Group.slug == slug))
        member = get_member(session, address)
        ms = membership(session, group, member) if group is not None and member is not None else None
        name = group.name if group is not None else slug
        if ms is None or group is None or member is None:
            return say(f"Not a member of {name}", f"{archive.mask(address)} does not receive {name}.")
        if method != "POST":
            return say(f"Leave {name}?", f"Press the button to stop {name} mail to {archive.mask(address)}.",
                       button=f"Leave {name}")
        if b"List-Unsubscribe=One-Click" not in body:
            return say("Bad request", "The request did not ask to unsubscribe.", 400)
        if leaving.unsubscribe(session, site.cfg, group, address, now()) == "last_contact":
            return say(f"You are the last contact of {name}", "Leave by email instead, naming a replacement: "
                       f"send 'leave {slug}' with a line 'Replacement: ADDRESS'.")
    log.info("one-click unsubscribe: %s left %s", address, slug)
    return say(f"You have left {name}", f"{archive.mask(address)} will receive no more mail from {name}.")


# ---------------------------------------------------------------------------------------------------------
# The application


class SecurityHeaders:
    """Adds the CSP and its companions to every response (pure ASGI, so it costs one list append)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)
        await self.app(scope, receive, send_with_headers if scope["type"] == "http" else send)


def _bind(site: Site, handler: Any) -> Any:
    if asyncio.iscoroutinefunction(handler):
        async def run_async(request: Request) -> Response:
            return await handler(site, request)  # type: ignore[no-any-return]
        return run_async

    def run(request: Request) -> Response:
        return handler(site, request)  # type: ignore[no-any-return]
    return run


def make_app(cfg: Config, sessions: sessionmaker[Session]) -> ASGIApp:
    site = Site(cfg, sessions)
    pages: list[tuple[str, Any, list[str]]] = [
        ("/", directory, ["GET", "HEAD"]),
        ("/groups/{slug:str}/", group_page, ["GET", "HEAD"]),
        ("/groups/{slug:str}/reports/{id:int}/", report_page, ["GET", "HEAD"]),
        ("/groups/{slug:str}/archive/", archive_index, ["GET", "HEAD"]),
        ("/groups/{slug:str}/archive/{month:str}/", archive_month, ["GET", "HEAD"]),
        ("/groups/{slug:str}/archive/msg/{id:int}/", message_page, ["GET", "HEAD"]),
        ("/groups/{slug:str}/archive/msg/{id:int}/{n:int}/{name:str}", attachment_file, ["GET", "HEAD"]),
        ("/groups/{slug:str}/feed.atom", atom_feed, ["GET", "HEAD"]),
        ("/search", search_page, ["GET", "HEAD"]),
        ("/deadlines.ics", deadlines_ics, ["GET", "HEAD"]),
        ("/api/groups.json", groups_json, ["GET", "HEAD"]),
        (_UNSUBSCRIBE, unsubscribe, ["GET", "HEAD", "POST"]),
    ]
    routes: list[Any] = [Route(path, _bind(site, h), methods=m) for path, h, m in pages]
    routes.append(Route("/static/{name:str}", _bind(site, static_file), methods=["GET", "HEAD"]))

    def error_page(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        if status == 404:
            return site.page("message_only.html", 404, title="Not found", text="There is nothing here.")
        if status == 405:
            return site.page("message_only.html", 405, title="Not allowed", text="That method is not allowed here.")
        return site.page("message_only.html", status, title="Sorry", text="Something went wrong; please try again "
                                                                           "later.")
    handlers: dict[Any, Any] = {HTTPException: error_page, Exception: error_page}
    # Outside Starlette's own error middleware, so that the 500 page carries the headers too.
    return SecurityHeaders(Starlette(routes=routes, exception_handlers=handlers))


class _Server(uvicorn.Server):
    """uvicorn on the bot's own event loop: `wgbot run` owns SIGTERM and SIGINT, so uvicorn must not take them."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class WebServer:
    """The running pages: `close()` asks uvicorn to finish the requests in hand and stop."""

    def __init__(self, server: _Server, task: asyncio.Task[None], sock: socket.socket) -> None:
        self.server, self.task, self.sock = server, task, sock
        self.port = int(sock.getsockname()[1])

    def close(self) -> None:
        self.server.should_exit = True

    async def wait_closed(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(self.task, timeout)
        self.sock.close()


async def start(sessions: sessionmaker[Session], cfg: Config) -> WebServer | None:
    """Serve the pages on [web] host:port; a port that cannot be bound is logged and mail goes on without them."""
    family = socket.AF_INET6 if ":" in cfg.web.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((cfg.web.host, cfg.web.port))
        sock.listen(512)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        log.error("web pages not served: cannot listen on %s:%d (%s); mail goes on", cfg.web.host, cfg.web.port,
                  exc)
        return None
    # Starlette runs the page handlers in anyio's thread pool (40 threads by default): a few are enough on a
    # small machine, and each thread at work holds a page and a database connection, so fewer keep RSS low.
    anyio.to_thread.current_default_thread_limiter().total_tokens = PAGE_THREADS
    config = uvicorn.Config(make_app(cfg, sessions), lifespan="off", access_log=False, log_level="warning",
                            server_header=False, proxy_headers=False, timeout_graceful_shutdown=5)
    server = _Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]), name="web")
    web = WebServer(server, task, sock)
    log.info("web pages on http://%s:%d/ (public: %s)", cfg.web.host, web.port, cfg.network.base_url or "not set")
    return web
