"""The read queries the engine needs, each an async function of an ``aiosqlite.Connection``.

WAL mode: a read never waits for the writer and sees the last committed state.
"""

from __future__ import annotations

from datetime import datetime

import aiosqlite

from engine.domain import EngineState
from engine.records import Intent, MirrorRecord
from engine.store.rows import MIRROR_COLUMNS, intent_from, mirror_from
from engine.store.serialization import parse_datetime


async def engine_state(db: aiosqlite.Connection) -> tuple[EngineState, str] | None:
    rows = await db.execute_fetchall("SELECT state, reason FROM engine_state WHERE id = 1")
    row = next(iter(rows), None)
    return None if row is None else (EngineState(row["state"]), row["reason"])


async def leader_order_texts(db: aiosqlite.Connection) -> list[str]:
    """Every stored leader-order snapshot (JSON), in the order they were first stored."""
    rows = await db.execute_fetchall("SELECT snapshot FROM leader_orders ORDER BY rowid")
    return [r[0] for r in rows]


async def mirrors(db: aiosqlite.Connection) -> list[MirrorRecord]:
    rows = await db.execute_fetchall(f"SELECT {MIRROR_COLUMNS} FROM mirrors ORDER BY rowid")
    return [mirror_from(r) for r in rows]


async def unfinished_intents(db: aiosqlite.Connection) -> list[Intent]:
    """Intents whose outcome is PENDING or AMBIGUOUS, oldest first."""
    rows = await db.execute_fetchall(
        "SELECT * FROM intents WHERE outcome IN ('PENDING', 'AMBIGUOUS') ORDER BY id"
    )
    return [intent_from(r) for r in rows]


async def intent_times_since(
    db: aiosqlite.Connection, since: datetime
) -> list[tuple[str, str, str | None]]:
    """(follower, created_at, completed_at) texts of every intent written since ``since``,
    newest first (completed_at None: its answer was never recorded)."""
    out: list[tuple[str, str, str | None]] = []
    async with db.execute(
        "SELECT follower, created_at, completed_at FROM intents ORDER BY id DESC"
    ) as rows:
        async for follower, created, completed in rows:
            if parse_datetime(created) < since:
                break  # ids grow with time: everything older follows
            out.append((follower, created, completed))
    return out


async def last_seq(db: aiosqlite.Connection) -> int:
    """The highest sequence number given to an intent or a journal line (0 if none)."""
    [(seq,)] = await db.execute_fetchall(
        "SELECT max(coalesce((SELECT max(seq) FROM intents), 0),"
        " coalesce((SELECT max(seq) FROM journal), 0))"
    )
    return int(seq)
