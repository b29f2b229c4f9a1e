"""organisations: one spelling per organisation, and the network's register of member organisations with their
mail domains (`wgbot organisations import FILE.csv`), against which supports of a proposal are verified.

Where a register exists, a support counts only when the sender's domain belongs to the organisation named;
otherwise the office is asked to accept it first (an approval of kind "organisation"). Without a register,
supports count as given. It works in the caller's transaction and only queues mail (through wgbot.workgroups).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from wgbot.countries import normalise_country
from wgbot.errors import FileProblems
from wgbot.rules import org_key
from wgbot.store import Member, Membership, Organisation, audit

if TYPE_CHECKING:
    from wgbot.store import Group

COLUMNS = ("name", "country", "domains")
_DOMAIN = re.compile(r"^(?=.{3,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)+$")


def tidy(name: str) -> str:
    """An organisation's name as typed, with its spacing made single (`COMUNE  di bologna` → `COMUNE di bologna`)."""
    return " ".join(name.split())


def spellings(session: Session) -> dict[str, str]:
    """The one spelling shown for each organisation (by org_key: case and spacing ignored): the register's,
    else the first one given (the oldest member who gave it)."""
    found: dict[str, str] = {}
    for name in session.scalars(select(Organisation.name).order_by(Organisation.id)):
        found.setdefault(org_key(name), name)
    rows = session.execute(select(Member.organisation, func.min(Member.id)).where(Member.organisation != "")
                           .group_by(Member.organisation).order_by(func.min(Member.id))).all()
    for name, _ in rows:
        found.setdefault(org_key(name), tidy(name))
    return found


def spelt(table: dict[str, str], name: str) -> str:
    """`name` in its one spelling (from `spellings`)."""
    return table.get(org_key(name), tidy(name)) if name else ""


def canonical(session: Session, name: str) -> str:
    """The spelling to keep for an organisation someone names now: the register's or the first one given."""
    if not name:
        return ""
    key = org_key(name)
    for known in session.scalars(select(Organisation.name)):
        if org_key(known) == key:
            return known
    rows = session.execute(select(Member.organisation, func.min(Member.id)).where(Member.organisation != "")
                           .group_by(Member.organisation).order_by(func.min(Member.id))).all()
    for known, _ in rows:
        if org_key(known) == key:
            return tidy(known)
    return tidy(name)


# ---------------------------------------------------------------------------------------------------------
# The register


def has_register(session: Session) -> bool:
    return session.scalar(select(Organisation.id).limit(1)) is not None


def _domain_of(address: str) -> str:
    return address.rpartition("@")[2].strip().lower().rstrip(".")


def domain_registered(session: Session, address: str) -> bool:
    """Is the address at a mail domain (or a subdomain of one) of a registered member organisation?"""
    domain = _domain_of(address)
    return any(domain == d or domain.endswith("." + d)
               for domains in session.scalars(select(Organisation.domains)) for d in domains.split())


def registered(session: Session, name: str) -> Organisation | None:
    key = org_key(name)
    return session.scalar(select(Organisation).where(Organisation.name_key == key))


def verify(session: Session, address: str, name: str) -> tuple[bool, str]:
    """(verified, why not): does the sender's mail domain (or a parent domain) belong to the organisation named?"""
    org = registered(session, name)
    domain = _domain_of(address)
    if org is None:
        return False, f"{name or '(no organisation)'} is not in the register of member organisations"
    domains = org.domains.split()
    if any(domain == d or domain.endswith("." + d) for d in domains):
        return True, ""
    return False, f"{domain} is not a mail domain of {org.name} (" + (", ".join(domains) or "none known") + ")"


@dataclass
class RegisterImport:
    rows: int = 0
    added: int = 0
    updated: int = 0


class RegisterError(FileProblems):
    """The register of organisations has bad rows; nothing was imported."""


def _rows(path: Path) -> tuple[list[tuple[str, str, list[str]]], list[str]]:
    """(name, country code, domains) for each row, and the problems, each naming its line."""
    rows: list[tuple[str, str, list[str]]] = []
    problems: list[str] = []
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        header = [h.strip().lower() for h in (reader.fieldnames or [])]
        if header[:1] != ["name"] or any(h not in COLUMNS for h in header) or "domains" not in header:
            return [], [f"line 1: the header row must be {','.join(COLUMNS)} (country may be left out)"]
        reader.fieldnames = header
        keys: dict[str, int] = {}
        for record in reader:
            line = reader.line_num
            name = tidy(record.get("name") or "")
            country = (record.get("country") or "").strip()
            code = normalise_country(country) if country else ""
            domains = [d.lower().rstrip(".") for d in re.split(r"[\s,;]+", record.get("domains") or "") if d]
            if not name or len(name) > 200 or not name.isprintable():
                problems.append(f"line {line}: the name must be 1 to 200 printable characters")
            elif code is None:
                problems.append(f"line {line}: {country!r} is not a country")
            elif not domains or any(not _DOMAIN.match(d) for d in domains):
                problems.append(f"line {line}: domains must be mail domains separated by spaces, such as "
                                f"'comune.bologna.it' (got {record.get('domains')!r})")
            elif org_key(name) in keys:
                problems.append(f"line {line}: {name!r} is already on line {keys[org_key(name)]}")
            else:
                keys[org_key(name)] = line
                rows.append((name, code or "", domains))
    return rows, problems


def import_register(session: Session, path: Path, now: object, actor: str = "operator") -> RegisterImport:
    """Add or update the organisations of a CSV file (name,country,domains); all or nothing; idempotent."""
    rows, problems = _rows(path)
    if problems:
        raise RegisterError(problems)
    result = RegisterImport(rows=len(rows))
    for name, code, domains in rows:
        org = registered(session, name)
        if org is None:
            session.add(Organisation(name=name, name_key=org_key(name), country=code, domains=" ".join(domains)))
            result.added += 1
        elif (org.name, org.country, org.domains) != (name, code, " ".join(domains)):
            org.name, org.country, org.domains = name, code, " ".join(domains)
            result.updated += 1
    session.flush()
    audit(session, now, actor, "organisations-import", "", file=str(path.name), rows=result.rows,  # type: ignore[arg-type]
          added=result.added, updated=result.updated)
    return result


def unverified(session: Session, group: Group) -> list[str]:
    """'address (organisation)' of each support of `group` that waits for the office."""
    rows = session.execute(select(Member.address, Member.organisation).join(Membership)
                           .where(Membership.group_id == group.id, Membership.verified.is_(False))
                           .order_by(Membership.id)).all()
    return [f"{a} ({o or 'no organisation'})" for a, o in rows]


def names(values: Iterable[str], table: dict[str, str]) -> list[str]:
    """Distinct organisations in their one spelling, sorted."""
    return sorted({spelt(table, v) for v in values if v})
