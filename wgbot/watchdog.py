"""watchdog: the time limit on processing one stored message inside `wgbot run` (issue 11 item 5).

A thread processing a message cannot be interrupted from outside (a regular expression or the C parts of a
parser hold the interpreter), so when one message takes longer than `[limits] process_seconds` the watchdog
notes why on that row and restarts the whole process in place (exec): every message is stored before its 250,
so nothing is lost, and the row's attempt counter, committed before processing began, quarantines it after
`inbox.MAX_ATTEMPTS` tries. It never touches a row's status itself and is installed only by `wgbot run`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator

log = logging.getLogger("wgbot.watchdog")


class Watchdog:
    """Watches every thread's message in hand; `expired(row_id, seconds)` is called once when one overruns."""

    def __init__(self, limit: float, expired: Callable[[int, float], None], interval: float = 0.2) -> None:
        self.limit = limit
        self.expired = expired
        self.interval = interval
        self.busy: dict[int, tuple[int, float]] = {}    # thread id -> (row id, monotonic start)
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="watchdog", daemon=True)

    def start(self) -> Watchdog:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()

    @contextlib.contextmanager
    def watch(self, row_id: int) -> Iterator[None]:
        key = threading.get_ident()
        with self.lock:
            self.busy[key] = (row_id, time.monotonic())
        try:
            yield
        finally:
            with self.lock:
                self.busy.pop(key, None)

    def _run(self) -> None:
        while not self.stopping.wait(self.interval):
            now = time.monotonic()
            with self.lock:
                late = [(row, now - start) for row, start in self.busy.values() if now - start > self.limit]
            if late:
                row, seconds = late[0]
                self.expired(row, seconds)
                return


_current: Watchdog | None = None


def install(watchdog: Watchdog | None) -> None:
    """Make `watchdog` the one `watching` reports to (None removes it)."""
    global _current
    _current = watchdog


def watching(row_id: int) -> contextlib.AbstractContextManager[None]:
    """Processing of `row_id` starts; the context ends when it ends. A no-op outside `wgbot run`."""
    return _current.watch(row_id) if _current is not None else contextlib.nullcontext()


_NOTE = "WGBOT_WATCHDOG_NOTE"


def restart_in_place(row_id: int, reason: str) -> None:
    """Replace this process by a fresh `wgbot run` with the same command line (the hung thread goes with it).

    The reason travels in the environment: the hung thread may hold the database's write lock, so it is written
    on the row by the fresh process (`take_note`), before it processes anything."""
    for handler in logging.getLogger().handlers:
        with contextlib.suppress(Exception):
            handler.flush()
    env = {**os.environ, _NOTE: f"{row_id} {reason}"}
    try:
        os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)
    except OSError:
        log.critical("could not restart in place; exiting so that a supervisor restarts wgbot run", exc_info=True)
        os._exit(75)


def take_note() -> tuple[int, str] | None:
    """(row id, reason) left by `restart_in_place` for this process, once; None after an ordinary start."""
    row, _, reason = os.environ.pop(_NOTE, "").partition(" ")
    return (int(row), reason) if row.isdigit() else None
