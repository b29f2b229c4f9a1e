"""cligroups: the operator's commands about groups and members (SPEC §8): group create|set, import,
organisations, groups, members; their arguments are declared in `add_group_commands`, called by wgbot.cli.
It holds no domain logic, and imports inside each command so that the command line starts fast.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from wgbot.clibase import EXIT_OK, EXIT_USAGE, Fail, load, open_store, opened, print_rows, utcnow


def cmd_import(args: argparse.Namespace) -> int:
    from wgbot.context import find_group
    from wgbot.importer import ImportError_, check_file, import_rows, rows_of

    cfg = load(args)
    path = Path(args.file)

    def refused(problems: list[str]) -> Fail:
        shown = problems[:20]
        more = f"\n... and {len(problems) - 20} more" if len(problems) > 20 else ""
        return Fail(f"{args.file}: nothing was imported:\n" + "\n".join(f"  {args.file}: {p}" for p in shown) + more)

    try:
        count = check_file(path)
        sessions = open_store(cfg)
        with sessions.begin() as session:
            group = find_group(session, args.group)
            if group is None:
                raise Fail(f"no group {args.group!r}; `wgbot groups` lists them")
            if sys.stderr.isatty() and count > 2000:
                from rich.progress import Progress

                with Progress(transient=True) as bar:
                    task = bar.add_task(f"importing into {group.slug}", total=count)
                    result = import_rows(session, group, rows_of(path), utcnow(), lambda n: bar.advance(task, n))
            else:
                result = import_rows(session, group, rows_of(path), utcnow())
            slug = group.slug
    except (OSError, UnicodeDecodeError) as exc:
        raise Fail(f"{args.file}: cannot read: {exc}") from exc
    except ImportError_ as exc:
        raise refused(exc.problems) from exc
    print(f"{args.file}: {result.rows} row(s): {result.joined} joined {slug}, {result.new_members} new member(s), "
          f"{result.updated} updated, {result.rows - result.joined} already members")
    return EXIT_OK


def cmd_organisations(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from wgbot.organisations import RegisterError, import_register
    from wgbot.store import Organisation

    cfg, sessions = opened(args)
    if args.action == "list":
        with sessions() as session:
            rows = [{"name": o.name, "country": o.country, "domains": o.domains}
                    for o in session.scalars(select(Organisation).order_by(Organisation.name))]
        print_rows(rows, ["name", "country", "domains"], args.json)
        return EXIT_OK
    if not args.file:
        raise Fail("organisations import: give the CSV file (columns name,country,domains)", EXIT_USAGE)
    try:
        with sessions.begin() as session:
            result = import_register(session, Path(args.file), utcnow())
    except (OSError, UnicodeDecodeError) as exc:
        raise Fail(f"{args.file}: cannot read: {exc}") from exc
    except RegisterError as exc:
        problems = "\n".join(f"  {args.file}: {p}" for p in exc.problems[:20])
        raise Fail(f"{args.file}: nothing was imported:\n{problems}") from None
    print(f"{args.file}: {result.rows} organisation(s): {result.added} added, {result.updated} updated, "
          f"{result.rows - result.added - result.updated} unchanged")
    return EXIT_OK


def cmd_group_create(args: argparse.Namespace) -> int:
    from wgbot import groups
    from wgbot.errors import UsageError

    cfg, sessions = opened(args)
    try:
        with sessions.begin() as session:
            group = groups.create_group(session, cfg, args.name, contact=args.contact,
                                        organisation=args.organisation or "", country=args.country or "",
                                        introduction=args.introduction or "", now=utcnow())
            slug = group.slug
    except UsageError as exc:
        raise Fail(str(exc), EXIT_USAGE) from exc
    print(f"created group {args.name!r}: list {slug}@{cfg.network.list_domain}, contact {args.contact}")
    return EXIT_OK


def cmd_group_set(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from wgbot.context import find_group
    from wgbot.store import Membership, audit, get_member

    cfg = load(args)
    with open_store(cfg).begin() as session:
        group = find_group(session, args.group)
        if group is None:
            raise Fail(f"no group {args.group!r}; `wgbot groups` lists them")
        changes = []
        if args.from_policy is not None:
            group.from_policy = "" if args.from_policy == "default" else args.from_policy
            changes.append(f"from_policy={args.from_policy}")
        if args.archive is not None:
            group.archive = "" if args.archive == "default" else args.archive
            changes.append(f"archive={args.archive}")
        for address, flag in [(a, True) for a in args.moderate or []] + [(a, False) for a in args.unmoderate or []]:
            member = get_member(session, address)
            ms = session.scalar(select(Membership).where(Membership.group_id == group.id,
                                                         Membership.member_id == member.id)) if member else None
            if ms is None:
                raise Fail(f"{address} is not a member of {group.slug}")
            ms.moderated = flag
            changes.append(f"{'moderate' if flag else 'unmoderate'} {address}")
        if not changes:
            raise Fail("nothing to change; see `wgbot group set --help`", EXIT_USAGE)
        audit(session, utcnow(), "operator", "group-set", group.slug, changes=changes)
        print(f"{group.slug}: " + ", ".join(changes))
    return EXIT_OK


def cmd_groups(args: argparse.Namespace) -> int:
    from wgbot import groups

    cfg = load(args)
    with open_store(cfg)() as session:
        rows = groups.list_groups(session)
    print_rows(rows, ["slug", "name", "status", "members", "contacts", "countries"], args.json,
               "no groups yet; create one with `wgbot group create NAME --contact ADDRESS`")
    return EXIT_OK


def cmd_members(args: argparse.Namespace) -> int:
    from wgbot import groups
    from wgbot.context import find_group

    cfg = load(args)
    with open_store(cfg)() as session:
        group = find_group(session, args.group)
        if group is None:
            raise Fail(f"no group {args.group!r}; `wgbot groups` lists them")
        rows = groups.list_members(session, group)
    print_rows(rows, ["address", "organisation", "country", "role", "delivery"], args.json,
               f"{group.slug} has no members")
    return EXIT_OK


def add_group_commands(sub: Any) -> None:
    """group create|set, import, organisations, groups, members."""
    p = sub.add_parser("group", help="manage groups as the operator", description="Manage groups as the operator.")
    gsub = p.add_subparsers(dest="group_command", metavar="ACTION")
    gsub.required = True
    c = gsub.add_parser("create", help="create an active group directly",
                        description="Create an active group with one contact (recorded in the audit log).")
    c.add_argument("name", metavar="NAME", help="the group's name; its slug is derived from it")
    c.add_argument("--contact", required=True, metavar="ADDRESS", help="the group's first contact")
    c.add_argument("--organisation", metavar="ORG", help="the contact's organisation")
    c.add_argument("--country", metavar="CC", help="the contact's country (code or name)")
    c.add_argument("--introduction", metavar="TEXT", help="the group's introduction text")
    c.set_defaults(func=cmd_group_create)
    c = gsub.add_parser("set", help="change a group's list settings",
                        description="Change a group's From policy for DMARC, or put members under moderation.")
    c.add_argument("group", metavar="GROUP", help="the group's slug or name")
    c.add_argument("--archive", choices=["public", "private", "default"],
                   help="publish the group's list archive on the web pages, or not (default: [web] archives)")
    c.add_argument("--from-policy", choices=["munge", "wrap", "keep", "default"],
                   help="how the list rewrites From (default: the network's [lists] from_policy)")
    c.add_argument("--moderate", action="append", metavar="ADDRESS", help="hold this member's posts (repeatable)")
    c.add_argument("--unmoderate", action="append", metavar="ADDRESS", help="stop holding this member's posts")
    c.set_defaults(func=cmd_group_set)

    p = sub.add_parser("import", help="add members to a group from a CSV file",
                       description="Add members from a CSV file with a header row and the columns address, name, "
                                   "organisation, country, delivery (only address is required). No confirmation is "
                                   "asked; importing again changes nothing; a bad row is reported with its line "
                                   "number and then nothing is imported.")
    p.add_argument("group", metavar="GROUP", help="the group's slug or name")
    p.add_argument("file", metavar="FILE.csv", help="the CSV file (UTF-8)")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("organisations", help="the register of member organisations and their mail domains",
                       description="The network's register of member organisations. `import FILE.csv` adds or "
                                   "updates organisations from a CSV file with a header row name,country,domains "
                                   "(domains separated by spaces, e.g. \"comune.bologna.it bologna.it\"); all or "
                                   "nothing; importing again changes nothing. With a register, a support of a "
                                   "proposal counts only when the sender's mail domain belongs to the organisation "
                                   "named; otherwise the secretariat is asked to accept it first.")
    p.add_argument("action", choices=["import", "list"], help="import a CSV file, or list the register")
    p.add_argument("file", nargs="?", metavar="FILE.csv", help="import: the CSV file (UTF-8)")
    p.add_argument("--json", action="store_true", help="list: print JSON")
    p.set_defaults(func=cmd_organisations)

    p = sub.add_parser("groups", help="list the groups", description="List the groups.")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_groups)

    p = sub.add_parser("members", help="list a group's members",
                       description="List a group's members, contacts included.")
    p.add_argument("group", metavar="GROUP", help="the group's slug or name")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_members)
