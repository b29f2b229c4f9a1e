"""writegate: one writer at a time per SQLite file within this process, waiting on a lock instead of polling.

SQLite lets one connection write at a time. A connection that finds the file locked waits in SQLite's busy
handler, which sleeps 1, 2, 5, 10, 15, 20, 25… ms between tries: a writer released after 3 ms is noticed after
8. Between the listener's commit, processing and the deliverers' marks, those sleeps were most of the time a
burst of commands took. Here every SQLite connection of the process takes a lock just before its first write
of a transaction (the moment SQLite itself would take its write lock: Python's sqlite3 begins a transaction
only before an INSERT, UPDATE, DELETE or REPLACE) and gives it back when the transaction ends, so a waiting
writer runs the moment the previous one commits. Other processes (a CLI command beside `wgbot run`) still
meet SQLite's own lock and busy handler.
"""

from __future__ import annotations

import collections
import os
import re
import sqlite3
import threading
from typing import Any

_WRITE = re.compile(r"\s*(?:INSERT|UPDATE|DELETE|REPLACE|CREATE|DROP|ALTER)\b", re.IGNORECASE)
TIMEOUT = 30.0  # seconds a writer waits for another thread's transaction (SQLite's busy_timeout is 10 s)


class FairLock:
    """A lock handed to its waiters in the order they came. A plain Lock goes to whichever thread asks first
    after a release, which is nearly always the thread that released it (it holds the GIL): processing took
    the file back message after message while the listener's commit (a 250 a client waits for) waited."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._waiters: collections.deque[threading.Event] = collections.deque()
        self._held = False

    def acquire(self, timeout: float = -1) -> bool:
        with self._mutex:
            if not self._held:
                self._held = True
                return True
            turn = threading.Event()
            self._waiters.append(turn)
        if turn.wait(None if timeout < 0 else timeout):
            return True
        with self._mutex:
            if turn.is_set():          # handed over just as the wait ran out
                return True
            self._waiters.remove(turn)
            return False

    def release(self) -> None:
        with self._mutex:
            if not self._held:
                raise RuntimeError("release of an unheld FairLock")
            if self._waiters:
                self._waiters.popleft().set()   # ownership passes directly: _held stays True
            else:
                self._held = False

    def locked(self) -> bool:
        return self._held


_GATES: dict[str, FairLock] = {}
_GATES_LOCK = threading.Lock()


def gate_for(path: str) -> FairLock:
    key = os.path.realpath(path)
    with _GATES_LOCK:
        return _GATES.setdefault(key, FairLock())


class GatedCursor(sqlite3.Cursor):
    def execute(self, sql: str, parameters: Any = (), /) -> GatedCursor:
        return self._gated(super().execute, sql, parameters)

    def executemany(self, sql: str, seq_of_parameters: Any, /) -> GatedCursor:
        return self._gated(super().executemany, sql, seq_of_parameters)

    def _gated(self, run: Any, sql: str, parameters: Any) -> GatedCursor:
        conn: GatedConnection = self.connection  # type: ignore[assignment]
        if _WRITE.match(sql):
            conn.enter()
        try:
            run(sql, parameters)
        finally:
            conn.settle()
        return self


class GatedConnection(sqlite3.Connection):
    """A sqlite3 connection that holds its file's gate from its first write until commit or rollback."""

    gate: FairLock | None = None
    holding = False

    def cursor(self, factory: Any = None) -> Any:
        return super().cursor(factory or GatedCursor)

    def enter(self) -> None:
        if self.holding or self.gate is None:
            return
        if not self.gate.acquire(timeout=TIMEOUT):
            raise sqlite3.OperationalError(f"database is locked: another thread of this process has been "
                                           f"writing for {TIMEOUT:.0f} s")
        self.holding = True

    def settle(self) -> None:
        """Give the gate back if no transaction is open (an autocommit statement, a failed BEGIN)."""
        if self.holding and not self.in_transaction:
            self.holding = False
            assert self.gate is not None
            self.gate.release()

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self.settle()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self.settle()

    def close(self) -> None:
        try:
            super().close()
        finally:
            if self.holding:
                self.holding = False
                assert self.gate is not None
                self.gate.release()


def gated_factory(path: str) -> type[GatedConnection]:
    """A connection class bound to the gate of the SQLite file at `path` (for sqlite3.connect(factory=…))."""
    return type("GatedConnection", (GatedConnection,), {"gate": gate_for(path)})
