"""The write transactions: each an async function of an ``aiosqlite.Connection``, run alone on
it (``Connection.run``).

They take rows already made (``engine.store.rows``), so the database thread only executes.
``WriteBatch`` is what the engine hands over for the write-behind path: everything that need not
be durable before anything else happens.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import aiosqlite

from engine.domain import Alert, OrderSnapshot
from engine.records import IntentOutcome, MirrorRecord
from engine.store.connection import transaction
from engine.store.errors import StoreError
from engine.store.rows import MIRROR_COLUMN_COUNT, MIRROR_COLUMNS

MALFORMED_KEPT = 1000  # newest malformed messages kept for inspection

UPSERT_MIRROR = (
    f"INSERT INTO mirrors ({MIRROR_COLUMNS}) VALUES ({', '.join('?' * MIRROR_COLUMN_COUNT)})"
    " ON CONFLICT (follower, leader_order_id) DO UPDATE SET"
    " correlation_id = excluded.correlation_id, state = excluded.state,"
    " generation = excluded.generation, follower_order_id = excluded.follower_order_id,"
    " broker_status = excluded.broker_status, params = excluded.params,"
    " filled_qty = excluded.filled_qty, avg_price = excluded.avg_price,"
    " modifications = excluded.modifications, reason = excluded.reason,"
    " symbol = excluded.symbol, leader_seen_mono = excluded.leader_seen_mono,"
    " latency_ms = excluded.latency_ms, slippage = excluded.slippage,"
    " updated_at = excluded.updated_at, prior_filled = excluded.prior_filled,"
    " skip_code = excluded.skip_code, slices = excluded.slices"
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
INSERT_INTENTS_INTO = (
    "INSERT INTO intents (follower, leader_order_id, kind, correlation_id, params,"
    " follower_order_id, outcome, detail, created_at, seq) VALUES "
)
INTENT_VALUES = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
INSERT_INTENT = INSERT_INTENTS_INTO + INTENT_VALUES
INTENT_SEQ_INDEX = 9  # an intent row's seq: unique, so it names the row in a RETURNING
INTENTS_PER_INSERT = 500  # 5,000 bound values per statement, well under SQLite's limit
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


async def insert_intents(
    db: aiosqlite.Connection, intents: Sequence[tuple[Row, Row | None]]
) -> list[int | Exception]:
    """Each (intent row, mirror row or None) in one transaction; the new id, or the error of
    the one that failed (a savepoint each, so one bad intent cannot fail the others)."""
    if len(intents) == 1:
        return [await _insert_one_intent(db, *intents[0])]
    try:
        return list(await _insert_intents_together(db, intents))
    except (
        _SeqsNotUnique,
        sqlite3.IntegrityError,
        sqlite3.InterfaceError,
        sqlite3.ProgrammingError,
    ):
        pass  # one of them is refused (rolled back, nothing kept): each in its own savepoint
    results: list[int | Exception] = []
    async with transaction(db):
        for intent, mirror in intents:
            await db.execute("SAVEPOINT intent")
            try:
                intent_id = await _insert_intent(db, intent, mirror)
            except Exception as exc:
                await db.execute("ROLLBACK TO intent")
                await db.execute("RELEASE intent")
                results.append(exc)
                continue
            await db.execute("RELEASE intent")
            results.append(intent_id)
    return results


class _SeqsNotUnique(Exception):
    """Two intents of one batch carry the same seq: their new ids cannot be told apart."""


async def _insert_intents_together(
    db: aiosqlite.Connection, intents: Sequence[tuple[Row, Row | None]]
) -> list[int]:
    """All the intents in a few statements (a multi-row INSERT ... RETURNING, one executemany
    for the mirrors): a leader order fanned out to 200 followers is a handful of hops to the
    database thread, not 800. Raises if any row is refused; then nothing is kept."""
    rows = [intent for intent, _ in intents]
    mirrors = [mirror for _, mirror in intents if mirror is not None]
    ids_by_seq: dict[Any, int] = {}
    async with transaction(db):
        for start in range(0, len(rows), INTENTS_PER_INSERT):
            chunk = rows[start : start + INTENTS_PER_INSERT]
            sql = (
                INSERT_INTENTS_INTO + ", ".join([INTENT_VALUES] * len(chunk)) + " RETURNING id, seq"
            )
            values = [value for row in chunk for value in row]
            for intent_id, seq in await db.execute_fetchall(sql, values):
                ids_by_seq[seq] = intent_id
        if len(ids_by_seq) != len(rows):  # seq not unique: the ids cannot be told apart
            raise _SeqsNotUnique()
        if mirrors:
            await db.executemany(UPSERT_MIRROR, mirrors)
    return [ids_by_seq[row[INTENT_SEQ_INDEX]] for row in rows]


async def _insert_one_intent(
    db: aiosqlite.Connection, intent: Row, mirror: Row | None
) -> int | Exception:
    """One intent alone: no other to protect, so no savepoint (two hops fewer); its failure
    rolls back the whole transaction, which held nothing else."""
    try:
        async with transaction(db):
            return await _insert_intent(db, intent, mirror)
    except Exception as exc:
        return exc


async def _insert_intent(db: aiosqlite.Connection, intent: Row, mirror: Row | None) -> int:
    cur = await db.execute(INSERT_INTENT, intent)
    if mirror is not None:
        await db.execute(UPSERT_MIRROR, mirror)
    assert cur.lastrowid is not None
    return cur.lastrowid


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
