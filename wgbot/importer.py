"""importer: `wgbot import GROUP FILE.csv` — members from a CSV file, all or nothing, idempotent (SPEC §8).

Every row is checked before anything is written (a first pass over the file); a bad row is reported with its
line number and nothing is imported. A second pass then puts the rows in with bulk statements, a few per
thousand rows, in one transaction. Neither pass holds the file in memory.
"""

from __future__ import annotations

import csv
import datetime as dt
import itertools
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from wgbot.countries import normalise_country
from wgbot.errors import FileProblems
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


class ImportError_(FileProblems):
    """The members file has bad rows; nothing was imported."""


def _parse(fh: TextIO) -> Iterator[Row | str]:
    """Each data row of the CSV, checked: a Row, or a problem naming its line."""
    reader = csv.DictReader(fh)
    header = [h.strip().lower() for h in (reader.fieldnames or [])]
    if "address" not in header:
        yield ("line 1: the header row must name an 'address' column "
               f"(columns: {', '.join(COLUMNS)})")
        return
    unknown = [h for h in header if h not in COLUMNS]
    if unknown:
        yield f"line 1: unknown column(s) {', '.join(unknown)}; known: {', '.join(COLUMNS)}"
        return
    reader.fieldnames = header
    seen: dict[str, int] = {}
    countries: dict[str, str | None] = {}
    deliveries = {d.value for d in Delivery}
    for record in reader:
        line = reader.line_num
        if None in record:
            yield f"line {line}: more fields than the header has"
            continue
        values = {k: (v or "").strip() for k, v in record.items() if isinstance(k, str)}
        address = values.get("address", "")
        if not _ADDRESS.match(address):
            yield f"line {line}: {address!r} is not an email address"
            continue
        key = address_key(address)
        if key in seen:
            yield f"line {line}: {address} appears already on line {seen[key]}"
            continue
        seen[key] = line
        country = values.get("country", "")
        if country:
            if country not in countries:
                countries[country] = normalise_country(country)
            code = countries[country]
            if code is None:
                yield f"line {line}: {country!r} is not a country (use a code such as IT or a name)"
                continue
            country = code
        delivery = values.get("delivery", "").lower() or Delivery.REGULAR.value
        if delivery not in deliveries:
            yield f"line {line}: delivery {delivery!r} must be regular, digest or nomail"
            continue
        name, organisation = values.get("name", ""), values.get("organisation", "")
        if len(name) > 200 or len(organisation) > 200:
            yield f"line {line}: name and organisation may have at most 200 characters"
            continue
        yield Row(line, address, name, organisation, country, delivery)


def check_file(path: Path) -> int:
    """Check every row of the CSV file at `path` (streaming: a file of any size in little memory); raises
    ImportError_ listing each bad row by line number, else returns the number of rows."""
    count = 0
    problems: list[str] = []
    with open(path, newline="", encoding="utf-8-sig") as fh:
        for item in _parse(fh):
            if isinstance(item, str):
                problems.append(item)
            else:
                count += 1
    if problems:
        raise ImportError_(problems)
    return count


def rows_of(path: Path) -> Iterator[Row]:
    """The rows of a file check_file passed, read again; a file changed in between raises ImportError_."""
    with open(path, newline="", encoding="utf-8-sig") as fh:
        for item in _parse(fh):
            if isinstance(item, str):
                raise ImportError_([f"the file changed while it was imported: {item}"])
            yield item


def import_rows(session: Session, group: Group, rows: Iterable[Row], now: dt.datetime,
                progress: Callable[[int], None] = lambda n: None) -> ImportResult:
    """Add the rows as members of `group` in the caller's transaction, a chunk at a time; existing members are
    updated, not doubled, so importing the same file twice changes nothing the second time."""
    result = ImportResult()
    source = iter(rows)
    while chunk := list(itertools.islice(source, CHUNK)):
        result.rows += len(chunk)
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
