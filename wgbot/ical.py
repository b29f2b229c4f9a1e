"""ical: meeting times and iCalendar (RFC 5545) with its scheduling methods (iTIP, RFC 5546), through the
`icalendar` library: reading `When:` and `Duration:`, writing an invitation (REQUEST) or a cancellation (CANCEL)
and the MIME alternative that carries it, and reading the REPLY a calendar sends when someone clicks Accept.

Pure: text and bytes in, values out. It knows nothing of the store, sends nothing, and decides nothing about
who may answer (wgbot.meetings does).
"""

from __future__ import annotations

import datetime as dt
import email
import re
import zoneinfo
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage, Message

MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
          "november", "december")
WHEN_EXAMPLE = "2027-01-12 14:00"
WHEN_FORMATS = ("2027-01-12 14:00", "12 January 2027 14:00", "12 Jan 2027 2pm",
                "2027-01-12 14:00 Europe/Lisbon", "2027-01-12 14:00 +01:00", "2027-01-12 13:00 UTC")
# PARTSTAT (RFC 5545 §3.2.12) → the email answer it counts as.
PARTSTATS = {"ACCEPTED": "attend", "TENTATIVE": "maybe", "DECLINED": "decline"}
MAX_CALENDAR_BYTES = 256 * 1024      # a reply's calendar part; real ones are a few KB even with a VTIMEZONE
_CALENDAR_TYPES = ("text/calendar", "application/ics", "text/x-vcalendar", "application/x-ics")
_TIME = r"(?P<hour>\d{1,2})(?:[:.h](?P<minute>\d{2}))?\s*(?P<ampm>[ap]\.?m\.?)?"
_DATE_FORMS = (
    re.compile(r"^(?P<year>\d{4})-(?P<month>\d{1,2})-(?P<day>\d{1,2})(?:T|\s+|,\s*)(?:at\s+)?" + _TIME + r"$", re.I),
    re.compile(r"^(?:[a-z]+,?\s+)?(?P<day>\d{1,2})\.?\s+(?P<mname>[a-z]+)\.?,?\s+(?P<year>\d{4}),?\s+(?:at\s+)?"
               + _TIME + r"$", re.I),
    re.compile(r"^(?:[a-z]+,?\s+)?(?P<mname>[a-z]+)\.?\s+(?P<day>\d{1,2})(?:st|nd|rd|th)?,?\s+(?P<year>\d{4}),?\s+"
               r"(?:at\s+)?" + _TIME + r"$", re.I),
)
_OFFSET = re.compile(r"^(?:UTC|GMT)?([+-])(\d{1,2}):?(\d{2})?$", re.I)
_POLICY = policy.SMTP.clone(max_line_length=78)     # as wgbot.render writes mail
_HAS_CALENDAR = re.compile(rb"text/calendar|application/(?:x-)?ics|\.ics\b", re.I)
_LINK = re.compile(r"^(https?://\S+)$", re.I)


class WhenError(ValueError):
    """A `When:` or `Duration:` that cannot be read; the text says why, for the reply."""


def zone(name: str) -> dt.tzinfo:
    """The time zone a meeting is stored with: an IANA name, "UTC", or a fixed offset such as "+01:00"."""
    if name.upper() in ("UTC", "GMT", "Z"):
        return dt.UTC
    m = _OFFSET.match(name)
    if m:
        minutes = int(m.group(2)) * 60 + int(m.group(3) or 0)
        return dt.timezone(dt.timedelta(minutes=minutes if m.group(1) == "+" else -minutes))
    return zoneinfo.ZoneInfo(name)


def _split_zone(text: str, default: str) -> tuple[str, str]:
    """(the date and time, the zone's name) from `When:`; the network's zone when none is written."""
    words = text.rsplit(None, 1)
    if len(words) == 2:
        last = words[1]
        if last.upper() in ("UTC", "GMT", "Z"):
            return words[0], "UTC"
        m = _OFFSET.match(last)
        if m and (m.group(3) or last[:1] in "+-"):
            hours, minutes = int(m.group(2)), int(m.group(3) or 0)
            if hours > 14 or minutes > 59:
                raise WhenError(f"{last!r} is not a time zone offset (write it as +01:00)")
            return words[0], f"{m.group(1)}{hours:02d}:{minutes:02d}"
        if "/" in last:
            try:
                zoneinfo.ZoneInfo(last)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                raise WhenError(f"{last!r} is not a time zone we know (write it as Europe/Lisbon, +01:00 or UTC)") \
                    from None
            return words[0], last
    return text, default


def _month(name: str) -> int:
    key = name.lower().rstrip(".")
    found = [i for i, month in enumerate(MONTHS, 1) if len(key) >= 3 and month.startswith(key)]
    if len(found) != 1:
        raise WhenError(f"{name!r} is not a month")
    return found[0]


def parse_when(text: str, default_zone: str) -> tuple[dt.datetime, str]:
    """(the moment, aware, in its zone; the zone's name) from a `When:` field, or WhenError saying why not."""
    cleaned = " ".join(text.replace("\u202f", " ").split())
    if not cleaned:
        raise WhenError("it is empty")
    rest, zone_name = _split_zone(cleaned, default_zone)
    for form in _DATE_FORMS:
        m = form.match(rest)
        if m is None:
            continue
        parts = m.groupdict()
        if parts["minute"] is None and parts["ampm"] is None:
            raise WhenError("it has no minutes: write the time as 14:00 or 2pm")
        hour, minute = int(parts["hour"]), int(parts["minute"] or 0)
        if parts["ampm"]:
            if not 1 <= hour <= 12:
                raise WhenError(f"{hour} is not an hour on a 12-hour clock")
            hour = hour % 12 + (12 if parts["ampm"].lower().startswith("p") else 0)
        month = int(parts["month"]) if parts.get("month") else _month(parts["mname"])
        try:
            naive = dt.datetime(int(parts["year"]), month, int(parts["day"]), hour, minute)
        except ValueError as exc:
            raise WhenError(f"that date or time does not exist ({exc})") from None
        tz = zone(zone_name)
        moment = naive.replace(tzinfo=tz)
        # A local time skipped by a daylight-saving change (02:30 on the last Sunday of March in Brussels)
        # does not survive the round trip through UTC.
        if moment.astimezone(dt.UTC).astimezone(tz).replace(tzinfo=None) != naive:
            raise WhenError(f"{naive:%H:%M} does not exist on {naive:%Y-%m-%d} in {zone_name} (the clocks change)")
        return moment, zone_name
    raise WhenError("it is not a date and time we can read")


def parse_duration(text: str, default: int) -> int:
    """Minutes, from `90`, `90 minutes`, `1h30`, `1:30`, `2 hours` or `1.5 hours` (`default` when empty)."""
    value = " ".join(text.lower().split())
    if not value:
        return default
    m = (re.fullmatch(r"(\d{1,4})\s*(?:m|min|mins|minutes?)?", value)
         or re.fullmatch(r"(?P<h>\d{1,2}(?:[.,]\d+)?)\s*(?:h|hr|hrs|hours?)", value)
         or re.fullmatch(r"(?P<h>\d{1,2})\s*(?:h|hr|hrs|hours?|:)\s*(?P<m>\d{1,2})\s*(?:m|min|mins|minutes?)?", value))
    if m is None:
        raise WhenError(f"{text.strip()!r} is not a duration (write 90, 90 minutes, 1h30 or 2 hours)")
    groups = m.groupdict()
    if "h" in groups:
        minutes = round(float(groups["h"].replace(",", ".")) * 60) + int(groups.get("m") or 0)
    else:
        minutes = int(m.group(1))
    if not 5 <= minutes <= 24 * 60:
        raise WhenError(f"a meeting lasts between 5 minutes and 24 hours, not {minutes} minutes")
    return minutes


def link(where: str) -> str:
    """The URL when `Where:` is a link to an online meeting, else ""."""
    m = _LINK.match(where.strip())
    return m.group(1) if m else ""


# ---------------------------------------------------------------------------------------------------------
# Writing: an invitation (METHOD:REQUEST) or a cancellation (METHOD:CANCEL)


@dataclass(frozen=True)
class Event:
    """What one invitation says about the meeting, for one attendee."""

    uid: str
    sequence: int
    method: str                 # REQUEST or CANCEL
    starts_at: dt.datetime      # aware
    minutes: int
    zone: str                   # the meeting's zone (wgbot.ical.zone)
    summary: str
    location: str
    description: str
    organizer: str              # the group's list address
    organizer_name: str
    attendee: str
    attendee_name: str
    stamp: dt.datetime
    prodid: str


def calendar(event: Event) -> bytes:
    """The VCALENDAR of one invitation or cancellation: the attendee alone (members never see each other), the
    time with its zone's VTIMEZONE (a fixed offset is written in UTC), a stable UID and the SEQUENCE."""
    import icalendar

    cal = icalendar.Calendar()
    cal.add("prodid", event.prodid)
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("method", event.method)
    tz = zone(event.zone)
    start = event.starts_at.astimezone(tz if isinstance(tz, zoneinfo.ZoneInfo) else dt.UTC)
    vevent = icalendar.Event()
    vevent.add("uid", event.uid)
    vevent.add("sequence", event.sequence)
    vevent.add("dtstamp", event.stamp.astimezone(dt.UTC))
    vevent.add("dtstart", start)
    vevent.add("dtend", start + dt.timedelta(minutes=event.minutes))
    vevent.add("summary", event.summary)
    if event.location:
        vevent.add("location", event.location)
    if link(event.location):
        vevent.add("url", link(event.location))
    if event.description:
        vevent.add("description", event.description)
    vevent.add("organizer", f"mailto:{event.organizer}", parameters={"CN": event.organizer_name})
    params = {"CUTYPE": "INDIVIDUAL", "ROLE": "REQ-PARTICIPANT", "PARTSTAT": "NEEDS-ACTION", "RSVP": "TRUE"}
    if event.attendee_name:
        params["CN"] = event.attendee_name
    vevent.add("attendee", f"mailto:{event.attendee}", parameters=params)
    vevent.add("status", "CANCELLED" if event.method == "CANCEL" else "CONFIRMED")
    vevent.add("transp", "OPAQUE")
    cal.add_component(vevent)
    # Only the years around the meeting: a VTIMEZONE for 1970-2038 is 5 KB of RDATEs for nothing.
    cal.add_missing_timezones(first_date=dt.date(start.year - 1, 1, 1), last_date=dt.date(start.year + 2, 1, 1))
    return bytes(cal.to_ical())


def with_calendar(raw: bytes, ics: bytes, method: str) -> bytes:
    """A composed text/plain message turned into multipart/alternative: the text, then the calendar as
    `text/calendar; method=...; charset=utf-8` (RFC 6047 §2.4), which is how calendars recognise an invitation."""
    msg = email.message_from_bytes(raw, _class=EmailMessage, policy=_POLICY)
    assert isinstance(msg, EmailMessage)
    msg.make_alternative()
    msg.add_alternative(ics.decode("utf-8"), subtype="calendar", params={"method": method})
    for part in msg.iter_parts():
        del part["MIME-Version"]        # only the message's own header says it (RFC 2045 §4)
    # The email package quotes every parameter; write `method=REQUEST` as Outlook and Google Calendar do.
    quoted = f'; method="{method}"'.encode()
    return msg.as_bytes(policy=_POLICY).replace(quoted, f"; method={method}".encode(), 1)


# ---------------------------------------------------------------------------------------------------------
# Reading a calendar's REPLY


@dataclass(frozen=True)
class CalendarReply:
    """An iTIP REPLY: the event's UID and SEQUENCE, and each ATTENDEE's address and PARTSTAT as written."""

    uid: str
    sequence: int
    attendees: tuple[tuple[str, str], ...]


def _calendar_parts(raw: bytes) -> list[Message]:
    parsed = email.message_from_bytes(raw, policy=policy.compat32)
    parts = []
    for part in parsed.walk():
        ctype = part.get_content_type()
        filename = (part.get_filename() or "").lower()
        if ctype in _CALENDAR_TYPES or (ctype == "application/octet-stream" and filename.endswith(".ics")):
            parts.append(part)
    return parts


def _reply_of(part: Message) -> CalendarReply | None:
    import icalendar

    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes) or len(payload) > MAX_CALENDAR_BYTES:
        return None
    try:
        cal = icalendar.Calendar.from_ical(payload)
    except Exception:     # icalendar raises ValueError and others on broken input; a broken part is no reply
        return None
    method = str(cal.get("method", "") or part.get_param("method", "") or "").upper()
    if method != "REPLY":
        return None
    for vevent in cal.walk("VEVENT"):
        uid = str(vevent.get("uid", "")).strip()
        if not uid:
            continue
        found = vevent.get("attendee", [])
        attendees = found if isinstance(found, list) else [found]
        answers = tuple((re.sub(r"^mailto:", "", str(a).strip(), flags=re.I), str(a.params.get("PARTSTAT", "")).upper())
                        for a in attendees)
        try:
            sequence = int(vevent.get("sequence", 0))
        except (TypeError, ValueError):
            sequence = 0
        return CalendarReply(uid, sequence, answers)
    return None


def calendar_reply(raw: bytes) -> CalendarReply | None:
    """The iTIP REPLY a message carries (METHOD:REPLY in a text/calendar or .ics part), else None. Clients that
    send it twice (Google: an alternative and an invite.ics attachment) send the same answer."""
    if _HAS_CALENDAR.search(raw) is None:     # most mail: no parse at all
        return None
    for part in _calendar_parts(raw):
        found = _reply_of(part)
        if found is not None:
            return found
    return None
