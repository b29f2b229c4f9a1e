"""The one engine for requests that wait for a person (wgbot.pending): kinds registered by their modules, one
single-use claim, and stored rows read as they always were."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tests.helpers import NOW
from wgbot import (
    inbox,  # noqa: F401  (the place that imports the features: every kind registers)
    pending,
)
from wgbot.config import Config
from wgbot.store import PendingAction, token_hash

CONFIRMED = {"set", "propose", "support", "contact-add", "contact-remove", "continue", "close", "withdraw", "join",
             "leave", "report", "meeting", "meeting-move", "meeting-cancel", "minutes"}
DECIDED = {"group", "join", "keep_group", "post", "report", "organisation", "invitations"}


def test_every_kind_the_code_asks_for_is_registered() -> None:
    """Each confirmation and approval the features open has what applies it, once the features are imported."""
    assert {name for name, kind in pending.KINDS.items() if kind.confirm is not None} == CONFIRMED
    assert {name for name, kind in pending.KINDS.items() if kind.decide is not None} == DECIDED


def test_a_kind_is_registered_once() -> None:
    """A second confirmation or decision for the same kind is refused at import time, not silently replaced."""
    with pytest.raises(ValueError, match="registered twice"):
        pending.confirmed("set")(lambda ctx, row, group: None)  # type: ignore[arg-type,return-value]
    with pytest.raises(ValueError, match="registered twice"):
        pending.decided("post")(lambda ctx, row, group, decision, reason: "")


def test_the_claim_is_single_use_and_find_reads_an_old_row(sqlite_sessions: sessionmaker[Session]) -> None:
    """A row stored as before (action and a dict payload) is found by its token's hash and claimed once only."""
    with sqlite_sessions.begin() as session:
        session.add(PendingAction(token_hash=token_hash("t" * 32), public_ref="R-OLDROW1", action="approval",
                                  address_key="a@example.org", group_id=None,
                                  payload={"kind": "post", "requester": "a@example.org", "approvers": []},
                                  created_at=NOW, expires_at=NOW + dt.timedelta(days=14)))
    with sqlite_sessions.begin() as session:
        row = pending.find(session, token_hash("t" * 32), "approval")
        assert row is not None and row.payload["kind"] == "post"
        assert pending.find(session, token_hash("t" * 32), "set") is None
        assert pending.claim(session, row, NOW, "approved by b@example.org")
        assert not pending.claim(session, row, NOW, "approved by c@example.org")
    with sqlite_sessions.begin() as session:
        stored = session.scalars(select(PendingAction)).one()
        assert (stored.used_at is not None, stored.outcome) == (True, "approved by b@example.org")


def test_payloads_are_typed_and_read_rows_stored_before_they_were() -> None:
    """Each kind registers its payload class; a row written by an older wgbot (a plain dict, with keys the class
    no longer knows and without fields added since) reads into it with defaults."""
    from wgbot.held import HeldPost
    from wgbot.workgroups import JoinRequest

    assert pending.KINDS["post"].decide_payload is HeldPost
    assert pending.KINDS["join"].confirm_payload is JoinRequest
    old = PendingAction(action="approval", payload={"kind": "post", "requester": "a@example.org",
                                                    "approvers": ["c@example.org"], "inbound_id": 7,
                                                    "retired_key": "ignored"})
    post = pending.read(old, HeldPost)
    assert (post.kind, post.requester, post.approvers, post.inbound_id) == ("post", "a@example.org",
                                                                           ["c@example.org"], 7)
    assert (post.excerpt, post.digest) == ("", False)
    join = pending.read(PendingAction(action="join", payload={"address": "b@example.org"}), JoinRequest)
    assert (join.address, join.delivery, join.organisation) == ("b@example.org", "regular", "")
    assert pending.read(PendingAction(action="join", payload=join.dump()), JoinRequest) == join


def test_a_payload_of_another_kind_is_refused(sqlite_sessions: sessionmaker[Session], cfg: Config) -> None:
    """Writing a request with a payload class other than the one its kind registered fails loudly, before
    anything is stored or mailed: the writer and the reader of a kind cannot drift apart."""
    from wgbot.context import job_context
    from wgbot.held import HeldPost
    from wgbot.store import Group

    with sqlite_sessions.begin() as session:
        group = Group(slug="dance", name="Dance", status="active", created_at=NOW)
        session.add(group)
        session.flush()
        ctx = job_context(session, cfg, NOW)
        with pytest.raises(TypeError, match="not the registered"):
            pending.request_approval(ctx, "report", group, "a@example.org", ["b@example.org"], "rule", "summary",
                                     HeldPost(inbound_id=1))
        with pytest.raises(TypeError, match="not the registered"):
            pending.request_confirmation(ctx, "leave", group, pending.Confirmation(), "leave")
        assert session.scalars(select(PendingAction)).all() == []
