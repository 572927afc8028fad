"""What the store tests need beyond the engine's API: single writes through the real write path
(``Store.write_batch``) and reads of what is stored, on the store's own connection."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from engine.clock import to_ist
from engine.domain import Alert, OrderSnapshot
from engine.records import Intent, MirrorRecord
from engine.store import Store, WriteBatch
from engine.store.rows import MIRROR_COLUMNS, alert_from, intent_from, mirror_from, snapshot_from
from engine.store.serialization import parse_datetime

_T = TypeVar("_T")


async def read(store: Store, fn: Callable[[sqlite3.Connection], _T]) -> _T:
    """``fn(db)`` on the store's main connection (it sees every committed write)."""
    return await store._db.run(fn)


# --- writes, each one batch of the real write-behind path ------------------------------------


async def save_mirror(store: Store, rec: MirrorRecord) -> None:
    await store.write_batch(WriteBatch(mirrors=[rec]))


async def upsert_leader_order(store: Store, snap: OrderSnapshot) -> None:
    await store.write_batch(WriteBatch(leaders=[snap]))


async def record_alert(store: Store, alert: Alert) -> None:
    await store.write_batch(WriteBatch(alerts=[alert]))


async def append_journal(
    store: Store,
    kind: str,
    text: str,
    follower: str | None = None,
    leader_order_id: str | None = None,
    at: datetime | None = None,
) -> None:
    """A journal line at ``at`` (a naive time is IST), or now on the store's clock."""
    when = store._clock.now() if at is None else to_ist(at) if at.tzinfo is None else at
    await store.write_batch(WriteBatch(journal=[(when, kind, follower, leader_order_id, text)]))


# --- reads -----------------------------------------------------------------------------------


async def get_mirror(store: Store, follower: str, leader_order_id: str) -> MirrorRecord | None:
    def query(db: sqlite3.Connection) -> MirrorRecord | None:
        row = db.execute(
            f"SELECT {MIRROR_COLUMNS} FROM mirrors WHERE follower = ? AND leader_order_id = ?",
            (follower, leader_order_id),
        ).fetchone()
        return None if row is None else mirror_from(row)

    return await read(store, query)


async def mirror_by_correlation(store: Store, correlation_id: str) -> MirrorRecord | None:
    def query(db: sqlite3.Connection) -> MirrorRecord | None:
        row = db.execute(
            f"SELECT {MIRROR_COLUMNS} FROM mirrors WHERE correlation_id = ?"
            " ORDER BY generation DESC LIMIT 1",
            (correlation_id,),
        ).fetchone()
        return None if row is None else mirror_from(row)

    return await read(store, query)


async def mirrors_for_leader(store: Store, leader_order_id: str) -> list[MirrorRecord]:
    def query(db: sqlite3.Connection) -> list[MirrorRecord]:
        rows = db.execute(
            f"SELECT {MIRROR_COLUMNS} FROM mirrors WHERE leader_order_id = ? ORDER BY rowid",
            (leader_order_id,),
        )
        return [mirror_from(r) for r in rows]

    return await read(store, query)


async def get_leader_order(store: Store, order_id: str) -> OrderSnapshot | None:
    def query(db: sqlite3.Connection) -> str | None:
        row = db.execute(
            "SELECT snapshot FROM leader_orders WHERE order_id = ?", (order_id,)
        ).fetchone()
        return None if row is None else str(row[0])

    text = await read(store, query)
    return None if text is None else snapshot_from(text)


async def get_intent(store: Store, intent_id: int) -> Intent | None:
    def query(db: sqlite3.Connection) -> Intent | None:
        row = db.execute("SELECT * FROM intents WHERE id = ?", (intent_id,)).fetchone()
        return None if row is None else intent_from(row)

    return await read(store, query)


async def recent_alerts(store: Store, limit: int = 100) -> list[Alert]:
    """The newest ``limit`` alerts, oldest first."""

    def query(db: sqlite3.Connection) -> list[Alert]:
        rows = db.execute(
            "SELECT * FROM (SELECT * FROM alerts ORDER BY id DESC LIMIT ?) ORDER BY id", (limit,)
        )
        return [alert_from(r) for r in rows]

    return await read(store, query)


async def malformed_messages(store: Store, limit: int = 100) -> list[tuple[datetime, str, str]]:
    """The newest ``limit`` malformed inputs as (at, raw, error), oldest first."""

    def query(db: sqlite3.Connection) -> list[tuple[datetime, str, str]]:
        rows = db.execute(
            "SELECT * FROM (SELECT * FROM malformed_messages ORDER BY id DESC LIMIT ?) ORDER BY id",
            (limit,),
        )
        return [(parse_datetime(r["at"]), r["raw"], r["error"]) for r in rows]

    return await read(store, query)


async def schema_version(store: Store) -> int:
    def query(db: sqlite3.Connection) -> int:
        return int(db.execute("SELECT version FROM schema_version").fetchone()[0])

    return await read(store, query)


async def durability(store: Store) -> dict[str, dict[str, Any]]:
    """The durability PRAGMAs of each of the store's connections, as SQLite reports them."""

    def pragmas(db: sqlite3.Connection) -> dict[str, Any]:
        sync = int(db.execute("PRAGMA synchronous").fetchone()[0])
        return {
            "journal_mode": str(db.execute("PRAGMA journal_mode").fetchone()[0]),
            "synchronous": {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}.get(sync, sync),
            "busy_timeout": int(db.execute("PRAGMA busy_timeout").fetchone()[0]),
        }

    return {
        "intents": await store._intents_db.run(pragmas),
        "main": await store._db.run(pragmas),
    }
