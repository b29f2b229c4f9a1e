"""leader: exactly one process runs the IMAP poller and the scheduler at a time.

With PostgreSQL the leader holds a session advisory lock on a connection of its own; when its process dies
the server drops the connection and the lock, and another process takes over at its next try. With SQLite
(one machine) an exclusive file lock beside the database does the same. It decides who leads, nothing else.
"""

from __future__ import annotations

import fcntl
import logging
import os
from pathlib import Path
from typing import IO, Any

from sqlalchemy import text
from sqlalchemy.engine import Engine

log = logging.getLogger("wgbot.leader")
LOCK_KEY = 0x77676274  # "wgbt": the advisory lock id (one per database)


class Leadership:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.conn: Any = None
        self.file: IO[str] | None = None

    @property
    def held(self) -> bool:
        return self.conn is not None or self.file is not None

    def try_acquire(self) -> bool:
        """Become the leader if nobody is; True while this process leads."""
        if self.held:
            return self.still_held()
        if self.engine.dialect.name == "postgresql":
            conn = self.engine.connect()
            got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": LOCK_KEY}).scalar()
            conn.commit()
            if got:
                self.conn = conn
                return True
            conn.close()
            return False
        path = Path(str(self.engine.url.database or "wgbot")).with_suffix(".leader")
        handle = open(path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self.file = handle
        return True

    def still_held(self) -> bool:
        if self.conn is not None:
            try:
                self.conn.execute(text("SELECT 1")).scalar()
                self.conn.commit()
            except Exception:
                log.warning("lost the connection that holds the leader lock; stepping down")
                self.release()
                return False
        return self.held

    def release(self) -> None:
        if self.conn is not None:
            try:
                self.conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": LOCK_KEY})
                self.conn.commit()
                self.conn.close()
            except Exception:
                pass
            self.conn = None
        if self.file is not None:
            fcntl.flock(self.file, fcntl.LOCK_UN)
            self.file.close()
            self.file = None
