"""The command line (SPEC §8): init, run, status, process, tick, deliver, quarantine, archive, check-rules, audit,
and `main`; the commands about groups and members are in wgbot.cligroups, what both share in wgbot.clibase.
It parses arguments, opens the store and calls the steps; it holds no domain logic.

Imports are made inside each command, so `wgbot --help` and `wgbot process` start fast (an MTA pipe starts one
process per message). Exit codes: 0 success, 2 bad usage or configuration, 1 other failures.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wgbot.clibase import (
    EX_TEMPFAIL,
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    Fail,
    config_path,
    delivery,
    load,
    open_store,
    opened,
    print_rows,
    store_engine,
    utcnow,
)
from wgbot.cligroups import add_group_commands

if TYPE_CHECKING:

    from wgbot.config import Config

# ------------------------------------------------------------------------------------------------ commands


def cmd_init(args: argparse.Namespace) -> int:
    import shutil

    from wgbot.db import migrate
    from wgbot.resources import data_dir

    path = config_path(args.config)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(data_dir("config.example.toml"), path)
        print(f"wrote {path} from the example configuration; edit its [network] table for your network")
    cfg = load(args)
    engine = store_engine(cfg)
    migrate(engine)
    _check_run_files(cfg, tls=False)   # the certificate may come later; the Maildir is made here
    if cfg.outbound.transport == "maildir":
        for sub in ("tmp", "new", "cur"):
            (cfg.resolve(cfg.outbound.maildir) / sub).mkdir(parents=True, exist_ok=True)
    print(f"database ready: {engine.url.render_as_string(hide_password=True)}")
    return EXIT_OK


def _read_inputs(files: Sequence[str]) -> list[tuple[str, bytes]]:
    if not files or files == ["-"]:
        return [("<stdin>", sys.stdin.buffer.read())]
    out = []
    for name in files:
        try:
            out.append((name, Path(name).read_bytes()))
        except OSError as exc:
            raise Fail(f"{name}: cannot read: {exc.strerror}") from exc
    return out


def cmd_run(args: argparse.Namespace) -> int:
    from wgbot import preflight
    from wgbot.app import run
    from wgbot.errors import ConfigError

    cfg = load(args)
    _check_run_files(cfg)
    sessions = open_store(cfg)
    try:
        lock = preflight.single_sqlite_run(cfg)
    except ConfigError as exc:
        raise Fail(f"configuration error: {exc}", EXIT_USAGE) from None
    try:
        return run(cfg, sessions, args.role)
    except OSError as exc:
        raise Fail(f"cannot start: {exc}") from exc
    finally:
        if lock is not None:
            lock.close()


def _check_run_files(cfg: Config, tls: bool = True) -> None:
    from wgbot import preflight
    from wgbot.errors import ConfigError

    try:
        preflight.check_run_files(cfg, tls)
    except ConfigError as exc:
        raise Fail(f"configuration error: {exc}", EXIT_USAGE) from None


def cmd_status(args: argparse.Namespace) -> int:
    from wgbot.status import collect

    cfg = load(args)
    data = collect(open_store(cfg), cfg, utcnow())
    if args.json:
        print(json.dumps(data, indent=2, default=str))
        return EXIT_OK
    inbound, out = data["inbound"], data["outbox"]
    print(f"inbound:    {inbound['pending']} waiting, {inbound['quarantined']} quarantined, "
          f"{inbound['done']} done, {inbound['ignored']} ignored")
    oldest = inbound["oldest_pending"]
    print(f"            oldest unprocessed: {oldest or 'none'}")
    print(f"outbox:     {out['due']} due, {out['waiting_retry']} waiting to retry, {out['sent']} sent, "
          f"{out['failed']} failed")
    if out["oldest_queued"]:
        print(f"            oldest queued: {out['oldest_queued']}")
    for cursor in data["imap"]:
        error = f", last error: {cursor['last_error']}" if cursor["last_error"] else ""
        print(f"IMAP:       {cursor['folder']} last poll {cursor['last_poll'] or 'never'}, "
              f"last UID {cursor['last_uid']}{error}")
    if not data["imap"]:
        print("IMAP:       " + ("enabled, not polled yet" if cfg.inbound.imap.enabled else "disabled"))
    print(f"groups:     {data['groups']}")
    return EXIT_OK


def cmd_process(args: argparse.Namespace) -> int:
    inputs = _read_inputs(args.files)
    if not args.local:
        from wgbot.handoff import find_listener, process_via

        cfg = load(args, rules=False)   # the running bot checked its rules when it started
        listener = find_listener(cfg)
        if listener is not None:
            return process_via(listener, cfg, inputs, args.sender, args.to, not args.no_deliver, sys.stderr,
                               sys.stdout)
    return _process_here(args, inputs)


def _process_here(args: argparse.Namespace, inputs: list[tuple[str, bytes]]) -> int:
    """`wgbot process` without a running bot: accept, process and deliver in this process."""
    from wgbot import inbox, outbox
    from wgbot.handoff import envelope_sender, header_recipients
    from wgbot.route import route

    cfg = load(args)
    try:
        sessions = open_store(cfg)
    except Fail as exc:
        # An MTA pipe retries on 75 (sysexits EX_TEMPFAIL) but bounces the mail on other codes: a store that
        # cannot be opened now is our fault, never the sender's.
        raise Fail(str(exc), EX_TEMPFAIL) from None
    failures = 0
    for name, raw in inputs:
        if not raw.strip():
            print(f"{name}: empty message, nothing to do", file=sys.stderr)
            failures += 1
            continue
        recipients = args.to or header_recipients(raw)
        envelope = args.sender if args.sender is not None else envelope_sender(raw)
        with sessions.begin() as session:
            exists = inbox.group_exists(session)
            ours = [r for r in recipients if route(r, cfg, exists) is not None]
            for other in sorted(set(recipients) - set(ours)):
                print(f"{name}: {other} is not one of our addresses (550 5.1.1); skipped", file=sys.stderr)
            if not ours:
                print(f"{name}: no recipient is ours; the message was not accepted", file=sys.stderr)
                failures += 1
                continue
            ids = inbox.accept(session, raw, ours, envelope, utcnow(), source="cli")
        results = inbox.process_pending(sessions, cfg, utcnow, ids=ids)
        # A row this command did not process was claimed by a running bot on the same store (PostgreSQL), or is
        # an earlier delivery of the same message: report what became of it, once it is finished.
        elsewhere = [row_id for row_id in ids if row_id not in results]
        finished = _wait_elsewhere(cfg, elsewhere) if elsewhere else {}
        for row_id in ids:
            outcome = results.get(row_id)
            if outcome is not None:
                state = f"{outcome.status}: {outcome.outcome}"
            else:
                status, text = finished.get(row_id, ("pending", ""))
                state = f"{status}: {text} (processed by another wgbot, or an earlier copy of this message)"
            print(f"{name}: inbound {row_id}: {state}")
    if not args.no_deliver:
        report = outbox.deliver_due(delivery(cfg), cfg, utcnow)
        if report.sent or report.deferred or report.failed:
            print(f"delivery: {report}")
    return EXIT_FAILURE if failures else EXIT_OK


def _wait_elsewhere(cfg: Config, ids: list[int]) -> dict[int, tuple[str, str]]:
    from wgbot.handoff import wait_for

    rows, _ = wait_for(cfg, ids, deliver=False)
    return rows


def cmd_deliver(args: argparse.Namespace) -> int:
    from wgbot import outbox

    cfg = load(args)
    open_store(cfg)
    report = outbox.deliver_due(delivery(cfg), cfg, utcnow)
    print(f"delivery: {report}")
    return EXIT_OK


def cmd_tick(args: argparse.Namespace) -> int:
    from wgbot import outbox
    from wgbot.schedule import tick

    cfg = load(args)
    if args.now:
        try:
            now = dt.datetime.fromisoformat(args.now)
        except ValueError:
            raise Fail(f"--now {args.now!r}: expected an ISO date and time, e.g. 2027-11-01T08:00",
                       EXIT_USAGE) from None
        if now.tzinfo is None:
            import zoneinfo

            now = now.replace(tzinfo=zoneinfo.ZoneInfo(cfg.network.timezone))
    else:
        now = utcnow()
    sessions = open_store(cfg)
    report = tick(sessions, cfg, now.astimezone(dt.UTC))
    print(f"tick {now.isoformat(timespec='minutes')}: {report}")
    delivered = outbox.deliver_due(delivery(cfg), cfg, lambda: max(now.astimezone(dt.UTC), utcnow()))
    if delivered.sent or delivered.deferred or delivered.failed:
        print(f"delivery: {delivered}")
    return EXIT_OK


def cmd_quarantine(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from wgbot import inbox, outbox
    from wgbot.store import InboundMessage, InboundStatus

    cfg, sessions = opened(args)
    if args.action == "list":
        with sessions() as session:
            rows = session.execute(select(InboundMessage.id, InboundMessage.received_at, InboundMessage.envelope_from,
                                          InboundMessage.recipient, InboundMessage.outcome)
                                   .where(InboundMessage.status == InboundStatus.QUARANTINED.value)
                                   .order_by(InboundMessage.id)).all()
        data = [{"id": r.id, "received": r.received_at.isoformat(timespec="seconds"), "from": r.envelope_from,
                 "to": r.recipient, "reason": r.outcome.removeprefix("quarantined: ")} for r in rows]
        print_rows(data, ["id", "received", "from", "to", "reason"], args.json, "the quarantine is empty",
                   ensure_ascii=True)
        return EXIT_OK
    if args.action == "show":
        if len(args.ids) != 1:
            raise Fail("usage: wgbot quarantine show ID", EXIT_USAGE)
        with sessions() as session:
            row = session.get(InboundMessage, args.ids[0])
            if row is None:
                raise Fail(f"no inbound message {args.ids[0]}")
            print(f"id: {row.id}\nstatus: {row.status}\nreceived: {row.received_at.isoformat()}\n"
                  f"from: {row.envelope_from}\nto: {row.recipient}\noutcome: {row.outcome}\n\n{row.error}")
            if args.raw:
                sys.stdout.flush()
                sys.stdout.buffer.write(b"\n" + row.raw)
        return EXIT_OK
    # retry
    with sessions() as session:
        ids = args.ids if not args.all else list(session.scalars(
            select(InboundMessage.id).where(InboundMessage.status == InboundStatus.QUARANTINED.value)))
    if not ids:
        raise Fail("name the messages to retry (wgbot quarantine retry ID...) or pass --all", EXIT_USAGE)
    count = inbox.requeue(sessions, ids)
    results = inbox.process_pending(sessions, cfg, utcnow, ids=ids)
    for row_id, outcome in sorted(results.items()):
        print(f"inbound {row_id}: {outcome.status}: {outcome.outcome}")
    outbox.deliver_due(delivery(cfg), cfg, utcnow)
    left = sum(1 for o in results.values() if o.status is not InboundStatus.QUARANTINED)
    print(f"{count} message(s) re-run, {left} left quarantine")
    return EXIT_OK


def cmd_archive(args: argparse.Namespace) -> int:
    import mailbox

    from sqlalchemy import select

    from wgbot.context import find_group
    from wgbot.store import Post

    cfg = load(args)
    output = Path(args.output) if args.output else None
    with open_store(cfg)() as session:
        group = find_group(session, args.group)
        if group is None:
            raise Fail(f"no group {args.group!r}; `wgbot groups` lists them")
        output = output or Path(f"{group.slug}.mbox")
        if output.exists():
            raise Fail(f"{output} exists already; choose another file with --output", EXIT_USAGE)
        box = mailbox.mbox(str(output), create=True)
        box.lock()
        count = 0
        try:
            last = 0
            while True:  # in pages, so a large archive never sits in memory at once
                posts = session.scalars(select(Post).where(Post.group_id == group.id, Post.id > last)
                                        .order_by(Post.id).limit(500)).all()
                if not posts:
                    break
                for post in posts:
                    message = mailbox.mboxMessage(post.raw.replace(b"\r\n", b"\n"))
                    message.set_from(post.sender, post.posted_at.timetuple())
                    box.add(message)
                    count += 1
                last = posts[-1].id
                session.expunge_all()
            box.flush()
        finally:
            box.unlock()
            box.close()
    print(f"{output}: {count} post(s) of {group.slug}")
    return EXIT_OK


def cmd_check_rules(args: argparse.Namespace) -> int:
    from wgbot.errors import RulesError
    from wgbot.rules import load_rules

    try:
        rules = load_rules(args.file)
    except RulesError as exc:
        raise Fail(f"{exc}", EXIT_USAGE) from exc
    f = rules.formation
    print(f"{args.file}: valid rules for {rules.network.name}: {f.min_organisations} {rules.network.organisation}(s)"
          + (f" in {f.min_countries} countries" if f.min_countries else "")
          + f" form a group, constituted by {f.constituted_by}; joining is {rules.joining.policy}"
          + (f"; {len(rules.deliverables)} deliverable(s)" if rules.deliverables else ""))
    return EXIT_OK


def cmd_audit(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from wgbot.store import AuditEntry

    cfg = load(args)
    with open_store(cfg)() as session:
        q = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(args.limit)
        if args.group:
            q = q.where(AuditEntry.group_slug == args.group)
        rows = list(reversed(session.scalars(q).all()))
    data: list[dict[str, Any]] = [{"at": r.at.isoformat(timespec="seconds"), "actor": r.actor, "action": r.action,
                                   "group": r.group_slug,
             "rule": r.rule, "detail": r.detail} for r in rows]
    if args.json:
        print(json.dumps(data, indent=2, ensure_ascii=False))
    else:
        for d in data:
            detail = " ".join(f"{k}={v}" for k, v in d["detail"].items())
            rule = f" rule={d['rule']}" if d["rule"] else ""
            print(f"{d['at']}  {d['actor']}  {d['action']}  {d['group'] or '-'}{rule}  {detail}".rstrip())
    return EXIT_OK


# ------------------------------------------------------------------------------------------------ parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wgbot", description="wgbot: an email-first secretariat for networks that run working groups.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="configuration: --config PATH, else ./config.toml, else $WGBOT_CONFIG\n"
               "exit codes: 0 success, 2 bad usage or configuration, 1 other failures\n"
               "`wgbot COMMAND --help` explains each command.")
    parser.add_argument("--config", metavar="PATH", help="the configuration file (default ./config.toml)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    _running_commands(sub)
    add_group_commands(sub)
    _record_commands(sub)
    return parser


def _running_commands(sub: Any) -> None:
    """init, run, status, process, tick, deliver."""
    p = sub.add_parser("init", help="create the database (and config.toml from the example, if missing)",
                       description="Create config.toml from the example if it is missing, then create or upgrade "
                                   "the database with its migrations.")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("run", help="run everything: listener, IMAP poller, processing and delivery",
                       description="Run the SMTP/LMTP listener, the IMAP poller, processing and delivery in one "
                                   "process, until SIGTERM or SIGINT (then it finishes the message in hand and "
                                   "exits 0). Several processes may share one PostgreSQL database: each delivers "
                                   "and processes; one at a time (the leader) runs the IMAP poller and the "
                                   "scheduler, and another takes over when it dies.")
    p.add_argument("--role", choices=["all", "delivery"], default="all",
                   help="all: everything (default); delivery: no listener, only processing, delivery and "
                        "leadership")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("status", help="queue depths, the last poll, the oldest unprocessed message",
                       description="Show queue depths, the last IMAP poll, the oldest unprocessed message and "
                                   "the quarantine count.")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("process", help="process raw messages from files or stdin, as if received",
                       description="Process raw RFC 5322 messages from files (or stdin) as if received, then "
                                   "deliver the replies. Without --to the recipients come from Delivered-To / "
                                   "X-Original-To, then To and Cc; without --from the sender from Return-Path, "
                                   "then From. Exit 0 once the message is accepted. When `wgbot run` is "
                                   "listening ([inbound.smtp]), the message is handed to it (much faster than "
                                   "starting the bot here) and the command waits for its outcome; --local "
                                   "processes it in this process all the same.")
    p.add_argument("--from", dest="sender", metavar="ADDR", help="the envelope sender ('' for the null sender)")
    p.add_argument("--to", action="append", metavar="ADDR", help="an envelope recipient (repeatable)")
    p.add_argument("--no-deliver", action="store_true", help="only queue the replies; `wgbot deliver` sends them "
                   "(a running bot sends them anyway: the command just does not wait)")
    p.add_argument("--local", action="store_true", help="process here even when a running wgbot listens")
    p.add_argument("files", nargs="*", metavar="FILE", help="message files (default: stdin)")
    p.set_defaults(func=cmd_process)

    p = sub.add_parser("tick", help="run the scheduled jobs due now (or at --now), deliver, then exit",
                       description="Run every scheduled job that is due at that time (digests, deadline reminders, "
                                   "comment periods, expiries, the weekly roll-up), deliver what they queued, then "
                                   "exit. Two ticks for the same time send nothing twice.")
    p.add_argument("--now", metavar="ISO-DATETIME",
                   help="the time to run at (default: now); without a zone, the network's timezone")
    p.set_defaults(func=cmd_tick)

    p = sub.add_parser("deliver", help="send what is queued, then exit",
                       description="Send every queued message that is due, then exit. 4xx answers and connection "
                                   "failures are retried later with backoff; 5xx answers are permanent.")
    p.set_defaults(func=cmd_deliver)


def _record_commands(sub: Any) -> None:
    """quarantine, archive, check-rules, audit."""
    p = sub.add_parser("quarantine", help="list, show or re-run messages that could not be processed",
                       description="Messages that could not be processed are kept here with their error.")
    p.add_argument("action", choices=["list", "show", "retry"], help="what to do")
    p.add_argument("ids", nargs="*", type=int, metavar="ID", help="inbound message ids")
    p.add_argument("--all", action="store_true", help="retry: every quarantined message")
    p.add_argument("--raw", action="store_true", help="show: print the raw message too")
    p.add_argument("--json", action="store_true", help="list: print JSON")
    p.set_defaults(func=cmd_quarantine)

    p = sub.add_parser("archive", help="export a group's list archive as an mbox file",
                       description="Write every post accepted to a group's list, with its original headers, to an "
                                   "mbox file (default SLUG.mbox).")
    p.add_argument("group", metavar="GROUP", help="the group's slug or name")
    p.add_argument("--output", metavar="FILE", help="the mbox file to write (must not exist)")
    p.set_defaults(func=cmd_archive)

    p = sub.add_parser("check-rules", help="validate a rules file",
                       description="Validate a network rules file (rules/*.toml); errors name the file, the rule "
                                   "and the field.")
    p.add_argument("file", metavar="FILE", help="the rules file")
    p.set_defaults(func=cmd_check_rules)

    p = sub.add_parser("audit", help="read the audit log", description="Who did what, and which rule decided.")
    p.add_argument("--group", metavar="SLUG", help="only this group")
    p.add_argument("--limit", type=int, default=100, help="the last N entries (default 100)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_audit)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(args.func(args))
    except Fail as exc:
        print(f"wgbot: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130
