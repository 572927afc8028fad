"""The write transactions: each an async function of an ``aiosqlite.Connection``, run alone on
it (``Connection.run``).

They take rows already made (``engine.store.rows``), so the database thread only executes.
``WriteBatch`` is what the engine hands over for the write-behind path: everything that need not
be durable before anything else happens.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import aiosqlite

from engine.domain import Alert, OrderSnapshot
from engine.records import IntentOutcome, MirrorRecord
from engine.store.connection import transaction
from engine.store.errors import StoreError
from engine.store.rows import MIRROR_COLUMN_COUNT, MIRROR_COLUMN_NAMES, MIRROR_COLUMNS

MALFORMED_KEPT = 1000  # newest malformed messages kept for inspection

_MIRROR_KEY = ("follower", "leader_order_id")
# Every other column is updated: built from the column list, so that none added later is missed.
UPSERT_MIRROR = (
    f"INSERT INTO mirrors ({MIRROR_COLUMNS}) VALUES ({', '.join('?' * MIRROR_COLUMN_COUNT)})"
    f" ON CONFLICT ({', '.join(_MIRROR_KEY)}) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in MIRROR_COLUMN_NAMES if c not in _MIRROR_KEY)
)
DELETE_MIRROR = "DELETE FROM mirrors WHERE follower = ? AND leader_order_id = ?"
UPSERT_LEADER = (
    "INSERT INTO leader_orders (order_id, client_id, status, segment, security_id,"
    " correlation_id, quantity, filled_qty, updated_at, snapshot, stored_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (order_id) DO UPDATE SET client_id = excluded.client_id,"
    " status = excluded.status, segment = excluded.segment,"
    " security_id = excluded.security_id, correlation_id = excluded.correlation_id,"
    " quantity = excluded.quantity, filled_qty = excluded.filled_qty,"
    " updated_at = excluded.updated_at, snapshot = excluded.snapshot,"
    " stored_at = excluded.stored_at"
)
# An intent row (engine.store.rows.intent_row), in this order; its id is given by the write
# line before the row is written (engine.store.intent_journal).
INTENT_COLUMNS = (
    "follower",
    "leader_order_id",
    "kind",
    "correlation_id",
    "params",
    "follower_order_id",
    "outcome",
    "detail",
    "created_at",
    "seq",
)
INSERT_INTENT = (
    f"INSERT INTO intents (id, {', '.join(INTENT_COLUMNS)})"
    f" VALUES ({', '.join('?' * (len(INTENT_COLUMNS) + 1))})"
)
INSERT_INTENT_IF_MISSING = INSERT_INTENT.replace("INSERT INTO", "INSERT OR IGNORE INTO", 1)
COMPLETE_INTENT = (
    "UPDATE intents SET outcome = ?, detail = ?, completed_at = ?,"
    " follower_order_id = CASE WHEN follower_order_id = '' THEN ?"
    " ELSE follower_order_id END WHERE id = ?"
)
INSERT_JOURNAL = (
    "INSERT INTO journal (at, kind, follower, leader_order_id, text, seq) VALUES (?, ?, ?, ?, ?, ?)"
)
INSERT_ALERT = (
    "INSERT INTO alerts (at, code, severity, message, follower, leader_order_id,"
    " count) VALUES (?, ?, ?, ?, ?, ?, ?)"
)
UPSERT_ENGINE_STATE = (
    "INSERT INTO engine_state (id, state, reason, updated_at) VALUES (1, ?, ?, ?)"
    " ON CONFLICT (id) DO UPDATE SET state = excluded.state,"
    " reason = excluded.reason, updated_at = excluded.updated_at"
)

Row = tuple[Any, ...]


@dataclass
class WriteBatch:
    """Writes that need not be durable before anything else happens, stored together in one
    transaction: the latest state of leader orders and mirrors, intent outcomes, journal
    lines and alerts. (Intents themselves are written durably, one call each.)"""

    leaders: list[OrderSnapshot] = field(default_factory=list)
    mirrors: list[MirrorRecord] = field(default_factory=list)
    deleted_mirrors: list[tuple[str, str]] = field(default_factory=list)
    completions: list[tuple[int, IntentOutcome, str, str]] = field(default_factory=list)
    journal: list[tuple[datetime, str, str | None, str | None, str]] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(
            self.leaders
            or self.mirrors
            or self.deleted_mirrors
            or self.completions
            or self.journal
            or self.alerts
        )


@dataclass(frozen=True, slots=True)
class BatchRows:
    """A ``WriteBatch`` as rows, in the order its statements run."""

    leaders: list[Row]
    deleted_mirrors: list[tuple[str, str]]
    mirrors: list[Row]
    completions: list[Row]
    journal: list[Row]
    alerts: list[Row]


async def write_batch(db: aiosqlite.Connection, rows: BatchRows) -> None:
    async with transaction(db):
        for sql, values in (
            (UPSERT_LEADER, rows.leaders),
            (DELETE_MIRROR, rows.deleted_mirrors),
            (UPSERT_MIRROR, rows.mirrors),
            (COMPLETE_INTENT, rows.completions),
            (INSERT_JOURNAL, rows.journal),
            (INSERT_ALERT, rows.alerts),
        ):
            if values:  # each statement is a hop to the database thread: skip the empty ones
                await db.executemany(sql, values)


async def complete_intent(db: aiosqlite.Connection, completion: Row, mirror: Row | None) -> None:
    """The intent's outcome (and the mirror row) in one transaction; the intent must exist."""
    async with transaction(db):
        cur = await db.execute(COMPLETE_INTENT, completion)
        if cur.rowcount != 1:
            raise StoreError(f"no intent with id {completion[-1]}")
        if mirror is not None:
            await db.execute(UPSERT_MIRROR, mirror)


async def set_engine_state(db: aiosqlite.Connection, state: Row) -> None:
    await db.execute(UPSERT_ENGINE_STATE, state)


async def record_malformed(db: aiosqlite.Connection, message: Row) -> None:
    """Keep one malformed input (at, raw, error) and drop all but the newest MALFORMED_KEPT."""
    async with transaction(db):
        cur = await db.execute(
            "INSERT INTO malformed_messages (at, raw, error) VALUES (?, ?, ?)", message
        )
        assert cur.lastrowid is not None
        await db.execute(
            "DELETE FROM malformed_messages WHERE id <= ?", (cur.lastrowid - MALFORMED_KEPT,)
        )
