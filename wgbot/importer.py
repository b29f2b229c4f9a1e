"""importer: `wgbot import GROUP FILE.csv` — members from a CSV file, all or nothing, idempotent (SPEC §8).

Every row is checked before anything is written; a bad row is reported with its line number and nothing is
imported. The rows then go in with bulk statements, a few per thousand rows, in one transaction.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from wgbot.countries import normalise_country
from wgbot.store import Delivery, Group, Member, Membership, address_key, audit

COLUMNS = ("address", "name", "organisation", "country", "delivery")
_ADDRESS = re.compile(r"^[^@\s<>()\[\],;:\"]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)+$")
CHUNK = 1000


@dataclass(frozen=True)
class Row:
    line: int
    address: str
    name: str
    organisation: str
    country: str
    delivery: str


@dataclass
class ImportResult:
    rows: int = 0
    new_members: int = 0
    joined: int = 0
    updated: int = 0


class ImportError_(Exception):
    """The file has bad rows; nothing was imported."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def read_rows(text: str) -> list[Row]:
    """Parse and check every row; raises ImportError_ listing each bad row by line number."""
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip().lower() for h in (reader.fieldnames or [])]
    if "address" not in header:
        raise ImportError_(["line 1: the header row must name an 'address' column "
                            f"(columns: {', '.join(COLUMNS)})"])
    unknown = [h for h in header if h not in COLUMNS]
    if unknown:
        raise ImportError_([f"line 1: unknown column(s) {', '.join(unknown)}; known: {', '.join(COLUMNS)}"])
    reader.fieldnames = header
    problems: list[str] = []
    rows: list[Row] = []
    seen: dict[str, int] = {}
    countries: dict[str, str | None] = {}
    for record in reader:
        line = reader.line_num
        if None in record:
            problems.append(f"line {line}: more fields than the header has")
            continue
        values = {k: (v or "").strip() for k, v in record.items() if isinstance(k, str)}
        address = values.get("address", "")
        if not _ADDRESS.match(address):
            problems.append(f"line {line}: {address!r} is not an email address")
            continue
        key = address_key(address)
        if key in seen:
            problems.append(f"line {line}: {address} appears already on line {seen[key]}")
            continue
        seen[key] = line
        country = values.get("country", "")
        if country:
            if country not in countries:
                countries[country] = normalise_country(country)
            code = countries[country]
            if code is None:
                problems.append(f"line {line}: {country!r} is not a country (use a code such as IT or a name)")
                continue
            country = code
        delivery = values.get("delivery", "").lower() or Delivery.REGULAR.value
        if delivery not in {d.value for d in Delivery}:
            problems.append(f"line {line}: delivery {delivery!r} must be regular, digest or nomail")
            continue
        name, organisation = values.get("name", ""), values.get("organisation", "")
        if len(name) > 200 or len(organisation) > 200:
            problems.append(f"line {line}: name and organisation may have at most 200 characters")
            continue
        rows.append(Row(line, address, name, organisation, country, delivery))
    if problems:
        raise ImportError_(problems)
    return rows


def import_rows(session: Session, group: Group, rows: list[Row], now: dt.datetime,
                progress: Callable[[int], None] = lambda n: None) -> ImportResult:
    """Add the rows as members of `group` in the caller's transaction; existing members are updated, not
    doubled, so importing the same file twice changes nothing the second time."""
    result = ImportResult(rows=len(rows))
    for start in range(0, len(rows), CHUNK):
        chunk = rows[start:start + CHUNK]
        keys = [address_key(r.address) for r in chunk]
        existing = dict(session.execute(select(Member.address_key, Member.id)
                                        .where(Member.address_key.in_(keys))).all())
        new = [r for r, k in zip(chunk, keys, strict=True) if k not in existing]
        new_keys = {address_key(r.address) for r in new}
        if new:
            session.execute(insert(Member), [{"address": r.address, "address_key": address_key(r.address),
                                              "name": r.name, "organisation": r.organisation, "country": r.country,
                                              "created_at": now} for r in new])
            existing.update(session.execute(select(Member.address_key, Member.id)
                                            .where(Member.address_key.in_([address_key(r.address) for r in new])))
                            .all())
            result.new_members += len(new)
        for r in chunk:
            if address_key(r.address) not in new_keys and (r.name or r.organisation or r.country):
                values = {k: v for k, v in (("name", r.name), ("organisation", r.organisation),
                                            ("country", r.country)) if v}
                session.execute(update(Member).where(Member.id == existing[address_key(r.address)]).values(**values))
                result.updated += 1
        ids = [existing[k] for k in keys]
        joined = set(session.scalars(select(Membership.member_id).where(Membership.group_id == group.id,
                                                                        Membership.member_id.in_(ids))))
        fresh = [{"group_id": group.id, "member_id": existing[address_key(r.address)], "role": "member",
                  "delivery": r.delivery, "delivery_reason": "", "moderated": False, "digest_format": "mime",
                  "joined_at": now} for r in chunk if existing[address_key(r.address)] not in joined]
        if fresh:
            session.execute(insert(Membership), fresh)
            result.joined += len(fresh)
        progress(len(chunk))
    audit(session, now, "operator", "import", group.slug, rows=result.rows, joined=result.joined,
          new_members=result.new_members)
    return result
