"""The read queries the engine needs, each a function of a ``sqlite3.Connection``.

WAL mode: a read never waits for the writer and sees the last committed state.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime

from engine.domain import EngineState
from engine.records import Intent, MirrorRecord
from engine.store.rows import MIRROR_COLUMNS, intent_from, mirror_from
from engine.store.serialization import parse_datetime


def engine_state(db: sqlite3.Connection) -> tuple[EngineState, str] | None:
    row = db.execute("SELECT state, reason FROM engine_state WHERE id = 1").fetchone()
    return None if row is None else (EngineState(row["state"]), row["reason"])


def leader_order_texts(db: sqlite3.Connection) -> list[str]:
    """Every stored leader-order snapshot (JSON), in the order they were first stored."""
    return [r[0] for r in db.execute("SELECT snapshot FROM leader_orders ORDER BY rowid")]


def mirrors(db: sqlite3.Connection) -> list[MirrorRecord]:
    rows = db.execute(f"SELECT {MIRROR_COLUMNS} FROM mirrors ORDER BY rowid")
    return [mirror_from(r) for r in rows]


def unfinished_intents(db: sqlite3.Connection) -> list[Intent]:
    """Intents whose outcome is PENDING or AMBIGUOUS, oldest first."""
    rows = db.execute("SELECT * FROM intents WHERE outcome IN ('PENDING', 'AMBIGUOUS') ORDER BY id")
    return [intent_from(r) for r in rows]


def intent_times_since(db: sqlite3.Connection, since: datetime) -> list[tuple[str, str]]:
    """(follower, created_at text) of every intent written since ``since``, newest first."""
    out: list[tuple[str, str]] = []
    rows = db.execute("SELECT follower, created_at FROM intents ORDER BY id DESC")
    for follower, created in rows:
        if parse_datetime(created) < since:
            break  # ids grow with time: everything older follows
        out.append((follower, created))
    return out


def last_seq(db: sqlite3.Connection) -> int:
    """The highest sequence number given to an intent or a journal line (0 if none)."""
    row = db.execute(
        "SELECT max(coalesce((SELECT max(seq) FROM intents), 0),"
        " coalesce((SELECT max(seq) FROM journal), 0))"
    ).fetchone()
    return int(row[0])
