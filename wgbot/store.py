"""The store: SQLAlchemy 2 typed models, the engine, and the small queries every step shares.

It sits under every step of the flow and knows nothing of mail: no parsing, no rendering, no sockets.
All times are timezone-aware UTC; SQLite runs in WAL mode with foreign keys on.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import unicodedata
from collections.abc import Callable
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    bindparam,
    create_engine,
    event,
    select,
    true,
)
from sqlalchemy.engine import Connection, Dialect, Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, object_session, relationship, sessionmaker
from sqlalchemy.pool import StaticPool

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, whatever the backend keeps."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; pass an aware UTC datetime")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class GroupStatus(enum.StrEnum):
    FORMING = "forming"
    PENDING = "pending"
    ACTIVE = "active"
    CLOSED = "closed"


class Role(enum.StrEnum):
    CONTACT = "contact"
    MEMBER = "member"


class Delivery(enum.StrEnum):
    REGULAR = "regular"
    DIGEST = "digest"
    NOMAIL = "nomail"


class InboundStatus(enum.StrEnum):
    PENDING = "pending"          # stored, not yet processed
    DONE = "done"                # processed; its effects and replies are committed
    IGNORED = "ignored"          # processed and deliberately left alone (automated mail, loops)
    QUARANTINED = "quarantined"  # could not be processed; kept for the operator


class OutboxStatus(enum.StrEnum):
    QUEUED = "queued"
    SENT = "sent"
    FAILED = "failed"


def address_key(address: str) -> str:
    """The form addresses are compared in: lower-cased (RFC 5321 §2.4 allows case-sensitive local parts, but
    mlmmj, Gmail and every list manager compare case-insensitively); the original is kept for sending."""
    return unicodedata.normalize("NFC", address.strip()).lower()


class Member(Base):
    __tablename__ = "members"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    address: Mapped[str] = mapped_column(String(320))
    address_key: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    organisation: Mapped[str] = mapped_column(String(200), default="")
    country: Mapped[str] = mapped_column(String(2), default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())

    memberships: Mapped[list[Membership]] = relationship(back_populates="member")


class Group(Base):
    __tablename__ = "groups"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    slug: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default=GroupStatus.ACTIVE.value)
    introduction: Mapped[str] = mapped_column(Text, default="")
    proposer: Mapped[str] = mapped_column(String(320), default="")
    proposal_ref: Mapped[str] = mapped_column(String(16), default="", index=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    activated_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    closed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    closed_reason: Mapped[str] = mapped_column(String(500), default="")
    from_policy: Mapped[str] = mapped_column(String(8), default="")   # "" = the network's [lists] from_policy
    archive: Mapped[str] = mapped_column(String(8), default="")       # "" = [web] archives; "public" or "private"

    memberships: Mapped[list[Membership]] = relationship(back_populates="group")


class Membership(Base):
    __tablename__ = "memberships"
    __table_args__ = (UniqueConstraint("group_id", "member_id"), Index("ix_memberships_group_role", "group_id", "role"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("groups.id", ondelete="CASCADE"))
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(16), default=Role.MEMBER.value)
    delivery: Mapped[str] = mapped_column(String(16), default=Delivery.REGULAR.value)
    delivery_reason: Mapped[str] = mapped_column(String(200), default="")
    moderated: Mapped[bool] = mapped_column(Boolean, default=False)
    digest_format: Mapped[str] = mapped_column(String(8), default="mime")   # mime (RFC 2046) or plain (RFC 1153)
    joined_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    # False while a support's organisation waits for the office (wgbot.organisations): it does not count.
    verified: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())

    group: Mapped[Group] = relationship(back_populates="memberships")
    member: Mapped[Member] = relationship(back_populates="memberships")


class PendingAction(Base):
    """A state change waiting for confirmation or approval; found by the SHA-256 of its token."""

    __tablename__ = "pending_actions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    public_ref: Mapped[str] = mapped_column(String(16), unique=True)
    action: Mapped[str] = mapped_column(String(32))
    address_key: Mapped[str] = mapped_column(String(320), index=True)
    group_id: Mapped[int | None] = mapped_column(ForeignKey("groups.id", ondelete="CASCADE"), nullable=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), index=True)
    used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    outcome: Mapped[str] = mapped_column(String(200), default="")
    reminded_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class InboundMessage(Base):
    """A raw message as received, stored before it is acknowledged, one row per recipient."""

    __tablename__ = "inbound_messages"
    __table_args__ = (UniqueConstraint("dedupe_hash", "recipient"), Index("ix_inbound_status", "status", "id"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dedupe_hash: Mapped[str] = mapped_column(String(64))
    recipient: Mapped[str] = mapped_column(String(320))
    envelope_from: Mapped[str] = mapped_column(String(320), default="")
    source: Mapped[str] = mapped_column(String(16), default="cli")
    message_id: Mapped[str] = mapped_column(String(998), default="")
    # One message to many of our addresses is stored once: the first recipient's row holds the bytes, the others
    # name it in raw_of and hold none (issue 11 item 8: a message to hundreds of recipients was stored hundreds
    # of times). Read `raw`, which follows the reference.
    raw_bytes: Mapped[bytes] = mapped_column("raw", LargeBinary)
    raw_of: Mapped[int | None] = mapped_column(Integer, nullable=True)
    status: Mapped[str] = mapped_column(String(16), default=InboundStatus.PENDING.value)
    outcome: Mapped[str] = mapped_column(String(200), default="")
    error: Mapped[str] = mapped_column(Text, default="")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    processed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    @property
    def raw(self) -> bytes:
        """The message's bytes, wherever they are stored."""
        if self.raw_of is None:
            return self.raw_bytes
        session = object_session(self)
        holder = session.get(InboundMessage, self.raw_of) if session is not None else None
        return holder.raw_bytes if holder is not None else self.raw_bytes

    @raw.setter
    def raw(self, value: bytes) -> None:
        self.raw_bytes = value
        self.raw_of = None


class OutgoingMessage(Base):
    """The bytes of one message we send; its recipients are Outbox rows (one body, many recipients)."""

    __tablename__ = "outgoing_messages"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    message_id: Mapped[str] = mapped_column(String(998))
    kind: Mapped[str] = mapped_column(String(32), default="reply")
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    inbound_id: Mapped[int | None] = mapped_column(ForeignKey("inbound_messages.id", ondelete="SET NULL"),
                                                   nullable=True, index=True)


class OutboxEntry(Base):
    """One recipient of one outgoing message, with its delivery state."""

    __tablename__ = "outbox"
    # (status, id): a claim walks the queue in id order instead of sorting all of it on every claim, so the
    # time per recipient stays flat as lists grow (an index on next_attempt_at made SQLite sort each time).
    __table_args__ = (Index("ix_outbox_status_id", "status", "id"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    message_fk: Mapped[int] = mapped_column(ForeignKey("outgoing_messages.id", ondelete="CASCADE"), index=True)
    recipient: Mapped[str] = mapped_column(String(320))
    envelope_from: Mapped[str] = mapped_column(String(320))
    # Header lines for this recipient only (a one-click unsubscribe URL), put before the shared message.
    headers: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), default=OutboxStatus.QUEUED.value)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    last_error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    sent_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # A deliverer claims rows by writing its token and a lease; a crashed deliverer's lease runs out.
    lease_owner: Mapped[str] = mapped_column(String(120), default="", index=True)
    lease_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    message: Mapped[OutgoingMessage] = relationship()


class AuditEntry(Base):
    """Who did what, and which rule decided it; read by `wgbot audit`."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), index=True)
    actor: Mapped[str] = mapped_column(String(320))
    action: Mapped[str] = mapped_column(String(64))
    group_slug: Mapped[str] = mapped_column(String(40), default="", index=True)
    rule: Mapped[str] = mapped_column(String(200), default="")
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class Declaration(Base):
    """A group's yearly declaration: continue or close (ECCAR's General Assembly)."""

    __tablename__ = "declarations"
    __table_args__ = (Index("ix_declarations_group_year", "group_id", "year"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("groups.id", ondelete="CASCADE"))
    year: Mapped[int] = mapped_column(Integer)
    decision: Mapped[str] = mapped_column(String(16))
    declared_by: Mapped[str] = mapped_column(String(320))
    declared_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class Post(Base):
    """A post accepted to a group's list: the archive, and the source of digests."""

    __tablename__ = "posts"
    __table_args__ = (Index("ix_posts_group_posted", "group_id", "posted_at"),
                      Index("ix_posts_group_message", "group_id", "message_id"))   # loop detection

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("groups.id", ondelete="CASCADE"))
    message_id: Mapped[str] = mapped_column(String(998), default="")
    sender: Mapped[str] = mapped_column(String(320))
    subject: Mapped[str] = mapped_column(String(998), default="")
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    posted_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    digested_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class ArchivedPost(Base):
    """A post as the public archive shows it: read once from the raw post, in the same transaction as the list
    copy (wgbot.archive). Only accepted posts get here: held, rejected and moderated ones never do."""

    __tablename__ = "archive_posts"
    __table_args__ = (Index("ix_archive_posts_group_month", "group_id", "month"),
                      Index("ix_archive_posts_group_message", "group_id", "message_id"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    post_id: Mapped[int] = mapped_column(ForeignKey("posts.id", ondelete="CASCADE"), unique=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("groups.id", ondelete="CASCADE"))
    message_id: Mapped[str] = mapped_column(String(998), default="")
    parent_id: Mapped[int | None] = mapped_column(Integer, nullable=True)   # the post it answers, if archived
    thread_id: Mapped[int] = mapped_column(Integer, index=True)           # the first post of its thread
    month: Mapped[str] = mapped_column(String(7))                          # "YYYY-MM", UTC
    author: Mapped[str] = mapped_column(String(200))                       # a display name or a masked address
    subject: Mapped[str] = mapped_column(String(998), default="")
    body: Mapped[str] = mapped_column(Text, default="")                    # plain text, also what search reads
    html: Mapped[str] = mapped_column(Text, default="")                    # nh3-cleaned, for HTML-only posts
    attachments: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    posted_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class BounceScore(Base):
    """One permanent bounce of a member's list mail, at most one a day (SPEC §6)."""

    __tablename__ = "bounce_scores"
    __table_args__ = (UniqueConstraint("group_id", "address_key", "day"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("groups.id", ondelete="CASCADE"))
    address_key: Mapped[str] = mapped_column(String(320))
    day: Mapped[dt.date] = mapped_column(Date)
    reason: Mapped[str] = mapped_column(String(500), default="")


class ImapCursor(Base):
    """Where the IMAP poller is: folder, UIDVALIDITY and the last UID stored (mail-safety.md §2.10)."""

    __tablename__ = "imap_cursors"

    folder: Mapped[str] = mapped_column(String(200), primary_key=True)
    uidvalidity: Mapped[int] = mapped_column(BigInteger, default=0)
    last_uid: Mapped[int] = mapped_column(BigInteger, default=0)
    last_poll_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_error: Mapped[str] = mapped_column(Text, default="")


class Ledger(Base):
    """What a scheduled job has done, by a key naming the job and its moment: a second tick for the same time,
    or a restart between ticks, finds the key and sends nothing twice."""

    __tablename__ = "ledger"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    done_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class Report(Base):
    """A report or draft output submitted by a contact, waiting for approval or approved."""

    __tablename__ = "reports"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("groups.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(64))
    submitted_by: Mapped[str] = mapped_column(String(320))
    subject: Mapped[str] = mapped_column(String(998), default="")
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    status: Mapped[str] = mapped_column(String(16), default="pending")    # pending, approved, rejected
    submitted_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    decided_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    deadline: Mapped[dt.date | None] = mapped_column(Date, nullable=True)   # the deadline this report meets
    comments_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class Comment(Base):
    """A public comment on an approved draft output, sent to SLUG-comments@ during its comment period."""

    __tablename__ = "comments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    report_id: Mapped[int] = mapped_column(ForeignKey("reports.id", ondelete="CASCADE"), index=True)
    sender: Mapped[str] = mapped_column(String(320))
    name: Mapped[str] = mapped_column(String(200), default="")
    text: Mapped[str] = mapped_column(Text)
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    status: Mapped[str] = mapped_column(String(16), default="accepted")   # accepted, held, rejected


class Meeting(Base):
    """A meeting a group's contact called (SPEC §3 `meeting`): one iCalendar event whose UID stays the same when it
    is moved or cancelled (RFC 5546 §2.1.4: a higher SEQUENCE updates it); the minutes once sent."""

    __tablename__ = "meetings"
    __table_args__ = (Index("ix_meetings_group_starts", "group_id", "starts_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("groups.id", ondelete="CASCADE"))
    uid: Mapped[str] = mapped_column(String(200), unique=True)
    public_ref: Mapped[str] = mapped_column(String(16), unique=True)
    sequence: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(16), default="scheduled")       # scheduled, cancelled
    starts_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), index=True)
    minutes_long: Mapped[int] = mapped_column(Integer, default=90)
    timezone: Mapped[str] = mapped_column(String(64))                          # an IANA name, "UTC" or "+01:00"
    location: Mapped[str] = mapped_column(String(500), default="")
    agenda: Mapped[str] = mapped_column(Text, default="")
    called_by: Mapped[str] = mapped_column(String(320))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())              # called, moved or cancelled
    minutes_post_id: Mapped[int | None] = mapped_column(ForeignKey("posts.id", ondelete="SET NULL"), nullable=True)
    minutes_text: Mapped[str] = mapped_column(Text, default="")
    minutes_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class MeetingAnswer(Base):
    """One person's answer to a meeting (attend, maybe, decline), by email or by their calendar; a later one
    replaces it."""

    __tablename__ = "meeting_answers"
    __table_args__ = (UniqueConstraint("meeting_id", "address_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    meeting_id: Mapped[int] = mapped_column(ForeignKey("meetings.id", ondelete="CASCADE"))
    address_key: Mapped[str] = mapped_column(String(320))
    address: Mapped[str] = mapped_column(String(320))
    answer: Mapped[str] = mapped_column(String(8))
    via: Mapped[str] = mapped_column(String(16), default="email")              # email, calendar
    answered_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class Setting(Base):
    """Values the bot keeps for itself, such as the secret behind one-click unsubscribe URLs."""

    __tablename__ = "settings"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


def secret_key(session: Session) -> bytes:
    """The installation's random secret (created on first use, 256 bits), for HMACs in URLs."""
    import secrets

    row = session.get(Setting, "hmac_secret")
    if row is None:
        row = Setting(key="hmac_secret", value=secrets.token_hex(32))
        session.add(row)
        session.flush()
    return bytes.fromhex(row.value)


class Organisation(Base):
    """The network's register of member organisations and their mail domains (`wgbot organisations import`)."""

    __tablename__ = "organisations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    name_key: Mapped[str] = mapped_column(String(200), unique=True)
    country: Mapped[str] = mapped_column(String(2), default="")
    domains: Mapped[str] = mapped_column(Text, default="")     # lower-case domains, separated by spaces


class ReplyCount(Base):
    """How many automatic mails went to one address on one UTC day (the RFC 3834 rate limit)."""

    __tablename__ = "reply_counts"

    address_key: Mapped[str] = mapped_column(String(320), primary_key=True)
    day: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    count: Mapped[int] = mapped_column(Integer, default=0)


def _sqlite_pragmas(durable: bool) -> Any:
    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=10000")
        cur.execute("PRAGMA journal_mode=WAL")
        # FULL fsyncs the WAL at every commit: RFC 5321 §6.1 asks that a message answered 250 survive a host
        # crash. NORMAL (for the outbox's "sent" marks) survives a killed process, not a power cut: at worst a
        # few messages sent just before one are sent again, with the same Message-ID.
        cur.execute("PRAGMA synchronous=FULL" if durable else "PRAGMA synchronous=NORMAL")
        cur.close()
    return on_connect


def make_engine(url: str, durable: bool = True, **kwargs: Any) -> Engine:
    """An engine for `url`; SQLite gets WAL mode and foreign keys, in-memory SQLite one shared connection."""
    if url.startswith("sqlite"):
        connect_args: dict[str, Any] = {"check_same_thread": False, "timeout": 30}
        if url in ("sqlite://", "sqlite:///:memory:"):
            kwargs.setdefault("poolclass", StaticPool)
        else:
            from sqlalchemy.engine import make_url

            from wgbot.writegate import gated_factory

            connect_args["factory"] = gated_factory(str(make_url(url).database))
        kwargs.setdefault("connect_args", connect_args)
        engine = create_engine(url, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas(durable))
        return engine
    return create_engine(url, pool_pre_ping=True, **kwargs)


def upsert_insert(session: Session | Connection) -> Any:
    """The dialect's INSERT, which has ON CONFLICT (SQLite and PostgreSQL spell it the same way)."""
    from sqlalchemy.dialects import postgresql, sqlite

    return postgresql.insert if _dialect(session) == "postgresql" else sqlite.insert


def _dialect(session: Session | Connection) -> str:
    return session.dialect.name if isinstance(session, Connection) else session.get_bind().dialect.name


def prepared(session: Session | Connection, build: Callable[[Any], Any]) -> Any:
    """A statement built once per dialect and reused: on the paths every message takes, building a statement
    and computing its cache key cost more than running it. `build` gets the dialect's INSERT (for ON CONFLICT)
    and must use bindparam() for every value."""
    key = (build, _dialect(session))
    stmt = _PREPARED.get(key)
    if stmt is None:
        stmt = _PREPARED[key] = build(upsert_insert(session))
    return stmt


_PREPARED: dict[tuple[Any, str], Any] = {}


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def token_hash(token: str) -> str:
    """The stored form of a token: SHA-256 hex of its lower-cased, whitespace-free text."""
    cleaned = "".join(token.split()).lower()
    return hashlib.sha256(cleaned.encode("ascii", "replace")).hexdigest()


def audit(session: Session, now: dt.datetime, actor: str, action: str, group_slug: str = "",
          rule: str = "", **detail: Any) -> None:
    session.add(AuditEntry(at=now, actor=actor, action=action, group_slug=group_slug, rule=rule, detail=detail))


def get_member(session: Session, address: str) -> Member | None:
    return session.scalar(prepared(session, _member_by_key), {"b_key": address_key(address)})  # type: ignore[no-any-return]


def _member_by_key(_insert: Any) -> Any:
    return select(Member).where(Member.address_key == bindparam("b_key"))


def get_or_create_member(session: Session, address: str, now: dt.datetime) -> Member:
    member = get_member(session, address)
    if member is None:
        member = Member(address=address, address_key=address_key(address), created_at=now)
        session.add(member)
        session.flush()
    return member


def membership(session: Session, group: Group, member: Member) -> Membership | None:
    return session.scalar(select(Membership).where(Membership.group_id == group.id,
                                                   Membership.member_id == member.id))
