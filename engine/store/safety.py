"""The safety tables: freezes (per engine and per follower, with their causes) and the copies
the trader manages by hand. Both survive a restart; both change rarely."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import aiosqlite

from engine.store.connection import transaction

Row = tuple[Any, ...]

UPSERT_FREEZE = (
    "INSERT INTO freezes (account, cause, reason, since) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (account, cause) DO UPDATE SET reason = excluded.reason"
)
UPSERT_HAND = (
    "INSERT INTO hand_managed (follower, leader_order_id, detached, reason, since)"
    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (follower, leader_order_id) DO UPDATE SET"
    " detached = MAX(detached, excluded.detached), reason = excluded.reason"
)


async def set_freeze(db: aiosqlite.Connection, row: Row) -> None:
    async with transaction(db):
        await db.execute(UPSERT_FREEZE, row)


async def clear_freeze(db: aiosqlite.Connection, account: str, cause: str) -> None:
    async with transaction(db):
        await db.execute("DELETE FROM freezes WHERE account = ? AND cause = ?", (account, cause))


async def freezes(db: aiosqlite.Connection) -> list[tuple[str, str, str]]:
    rows = await db.execute_fetchall(
        "SELECT account, cause, reason FROM freezes ORDER BY since, account, cause"
    )
    return [(r[0], r[1], r[2]) for r in rows]


async def set_hand_managed(db: aiosqlite.Connection, row: Row) -> None:
    async with transaction(db):
        await db.execute(UPSERT_HAND, row)


async def hand_managed(db: aiosqlite.Connection) -> list[tuple[str, str, bool, str]]:
    rows = await db.execute_fetchall(
        "SELECT follower, leader_order_id, detached, reason FROM hand_managed ORDER BY rowid"
    )
    return [(r[0], r[1], bool(r[2]), r[3]) for r in rows]


def persisted_safety(db_path: Path | str) -> tuple[tuple[str, str] | None, list[tuple[str, str]]]:
    """Read-only, for `copytrade check`: the stored engine state (state, reason) and every
    freeze (account, reason) a start would come back with. A missing database has none."""
    path = Path(db_path)
    if not path.exists():
        return None, []
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        try:
            row = db.execute("SELECT state, reason FROM engine_state WHERE id = 1").fetchone()
        except sqlite3.OperationalError:  # a database from before that table
            row = None
        try:
            freezes = db.execute(
                "SELECT account, reason FROM freezes ORDER BY since, account"
            ).fetchall()
        except sqlite3.OperationalError:  # a database from before safety's migration
            freezes = []
    state = None if row is None else (str(row[0]), str(row[1]))
    return state, [(str(a), str(r)) for a, r in freezes]
