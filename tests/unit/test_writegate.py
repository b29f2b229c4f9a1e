"""writegate: threads of one process take turns writing to a SQLite file on a lock, not in SQLite's sleeps."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from wgbot.store import make_engine
from wgbot.writegate import gate_for


def test_a_writer_waits_for_the_other_threads_commit_and_readers_do_not(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/g.sqlite3")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (x INTEGER PRIMARY KEY)"))
    gate = gate_for(str(tmp_path / "g.sqlite3"))
    assert not gate.locked()
    events: list[str] = []
    first_wrote = threading.Event()

    def second() -> None:
        first_wrote.wait()
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM t")).scalar() == 0   # a read does not wait
            events.append("second read")
            conn.execute(text("INSERT INTO t VALUES (2)"))                        # a write waits for the commit
            events.append("second wrote")
            conn.commit()

    thread = threading.Thread(target=second)
    thread.start()
    with engine.connect() as conn:
        conn.execute(text("INSERT INTO t VALUES (1)"))
        assert gate.locked()
        first_wrote.set()
        time.sleep(0.3)
        events.append("first commits")
        conn.commit()
    thread.join(10)
    assert events == ["second read", "first commits", "second wrote"]
    assert not gate.locked()
    engine.dispose()


def test_the_gate_is_given_back_on_rollback_and_on_errors(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/g.sqlite3")
    gate = gate_for(str(tmp_path / "g.sqlite3"))
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (x INTEGER PRIMARY KEY)"))
        conn.execute(text("INSERT INTO t VALUES (1)"))
    assert not gate.locked()
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(text("INSERT INTO t VALUES (1)"))
    assert not gate.locked()
    with engine.connect() as conn:
        conn.execute(text("INSERT INTO t VALUES (2)"))
        conn.rollback()
        assert not gate.locked()
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM t")).scalar() == 1
    engine.dispose()
