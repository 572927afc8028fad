"""What the store tests need beyond the engine's API: single writes through the real write path
(``Store.write_batch``) and reads of what is stored, on the store's own connection."""

from __future__ import annotations

import dataclasses
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from engine.clock import IST, to_ist
from engine.domain import (
    Alert,
    MirrorState,
    OrderParams,
    OrderSnapshot,
    OrderStatus,
    OrderType,
    Product,
    Segment,
    Side,
    Validity,
)
from engine.records import Intent, IntentKind, MirrorRecord
from engine.store import Store, WriteBatch
from engine.store.rows import MIRROR_COLUMNS, alert_from, intent_from, mirror_from, snapshot_from
from engine.store.serialization import parse_datetime

_T = TypeVar("_T")

# Written by the previous, hand-written codec (a leader-order row of a v4 database).
V4_SNAPSHOT = (
    '{"order_id":"L1","client_id":"1000000001","status":"PENDING","side":"BUY",'
    '"order_type":"LIMIT","product":"INTRADAY","validity":"DAY","segment":"NSE_FNO",'
    '"security_id":"52175","quantity":75,"filled_qty":0,"price":101.5,"trigger_price":0.0,'
    '"disclosed_qty":0,"avg_price":0.0,"trading_symbol":"NIFTY 25NOV 24000 CE",'
    '"correlation_id":"","amo":false,"amo_time":"OPEN_30","leg":"","parent_order_id":"",'
    '"is_super_order":false,"lot_size":75,"reason":"₹ remark \\"q\\"","ref_ltp":0.0,'
    '"is_option":true,"created_at":"2026-11-23T09:15:00.123456+05:30",'
    '"updated_at":"2026-11-23T03:45:01+00:00","source":"stream"}'
)
V4_PARAMS = (
    '{"side":"BUY","order_type":"LIMIT","product":"INTRADAY","validity":"DAY",'
    '"segment":"NSE_FNO","security_id":"52175","quantity":75,"price":101.5,'
    '"trigger_price":0.0,"disclosed_qty":0,"amo":true,"amo_time":"PRE_OPEN",'
    '"correlation_id":"CPY-ABCDEFGHIJKLMNOP-0","notes":["MARKET sent as LIMIT"]}'
)


# --- records to store ------------------------------------------------------------------------

T0 = IST.localize(datetime(2026, 11, 23, 9, 15, 0, 123456))


def snapshot(order_id: str = "L1", **changes: object) -> OrderSnapshot:
    snap = OrderSnapshot(
        order_id=order_id,
        client_id="1000000001",
        status=OrderStatus.PENDING,
        side=Side.BUY,
        order_type=OrderType.LIMIT,
        product=Product.INTRADAY,
        validity=Validity.DAY,
        segment=Segment.NSE_FNO,
        security_id="52175",
        quantity=75,
        price=101.5,
        trading_symbol="NIFTY 25NOV 24000 CE",
        lot_size=75,
        created_at=T0,
        updated_at=T0,
    )
    return snap.with_changes(**changes)


def params(qty: int = 75, **changes: object) -> OrderParams:
    p = OrderParams(
        side=Side.BUY,
        order_type=OrderType.LIMIT,
        product=Product.INTRADAY,
        validity=Validity.DAY,
        segment=Segment.NSE_FNO,
        security_id="52175",
        quantity=qty,
        price=101.5,
        correlation_id="CPY-ABCDEFGHIJKLMNOP-0",
    )
    return dataclasses.replace(p, **changes)  # type: ignore[arg-type]


def mirror(follower: str = "alice", leader: str = "L1", **changes: object) -> MirrorRecord:
    rec = MirrorRecord(
        follower=follower,
        leader_order_id=leader,
        correlation_id=f"CPY-{follower}-{leader}",
        state=MirrorState.PLACING,
        params=params(),
        updated_at=T0,
    )
    return rec.with_changes(**changes)


def intent(follower: str = "alice", leader: str = "L1", **changes: object) -> Intent:
    i = Intent(
        follower=follower,
        leader_order_id=leader,
        kind=IntentKind.PLACE,
        correlation_id=f"CPY-{follower}-{leader}",
        params=params(),
    )
    return dataclasses.replace(i, **changes)  # type: ignore[arg-type]


async def read(store: Store, fn: Callable[[aiosqlite.Connection], Awaitable[_T]]) -> _T:
    """``fn(db)`` on the store's main connection, once every write already called is done."""
    await store.written()
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
    async def query(db: aiosqlite.Connection) -> MirrorRecord | None:
        rows = await db.execute_fetchall(
            f"SELECT {MIRROR_COLUMNS} FROM mirrors WHERE follower = ? AND leader_order_id = ?",
            (follower, leader_order_id),
        )
        return next((mirror_from(r) for r in rows), None)

    return await read(store, query)


async def mirror_by_correlation(store: Store, correlation_id: str) -> MirrorRecord | None:
    async def query(db: aiosqlite.Connection) -> MirrorRecord | None:
        rows = await db.execute_fetchall(
            f"SELECT {MIRROR_COLUMNS} FROM mirrors WHERE correlation_id = ?"
            " ORDER BY generation DESC LIMIT 1",
            (correlation_id,),
        )
        return next((mirror_from(r) for r in rows), None)

    return await read(store, query)


async def mirrors_for_leader(store: Store, leader_order_id: str) -> list[MirrorRecord]:
    async def query(db: aiosqlite.Connection) -> list[MirrorRecord]:
        rows = await db.execute_fetchall(
            f"SELECT {MIRROR_COLUMNS} FROM mirrors WHERE leader_order_id = ? ORDER BY rowid",
            (leader_order_id,),
        )
        return [mirror_from(r) for r in rows]

    return await read(store, query)


async def get_leader_order(store: Store, order_id: str) -> OrderSnapshot | None:
    async def query(db: aiosqlite.Connection) -> str | None:
        rows = await db.execute_fetchall(
            "SELECT snapshot FROM leader_orders WHERE order_id = ?", (order_id,)
        )
        return next((str(r[0]) for r in rows), None)

    text = await read(store, query)
    return None if text is None else snapshot_from(text)


async def get_intent(store: Store, intent_id: int) -> Intent | None:
    async def query(db: aiosqlite.Connection) -> Intent | None:
        rows = await db.execute_fetchall("SELECT * FROM intents WHERE id = ?", (intent_id,))
        return next((intent_from(r) for r in rows), None)

    return await read(store, query)


async def recent_alerts(store: Store, limit: int = 100) -> list[Alert]:
    """The newest ``limit`` alerts, oldest first."""

    async def query(db: aiosqlite.Connection) -> list[Alert]:
        rows = await db.execute_fetchall(
            "SELECT * FROM (SELECT * FROM alerts ORDER BY id DESC LIMIT ?) ORDER BY id", (limit,)
        )
        return [alert_from(r) for r in rows]

    return await read(store, query)


async def malformed_messages(store: Store, limit: int = 100) -> list[tuple[datetime, str, str]]:
    """The newest ``limit`` malformed inputs as (at, raw, error), oldest first."""

    async def query(db: aiosqlite.Connection) -> list[tuple[datetime, str, str]]:
        rows = await db.execute_fetchall(
            "SELECT * FROM (SELECT * FROM malformed_messages ORDER BY id DESC LIMIT ?) ORDER BY id",
            (limit,),
        )
        return [(parse_datetime(r["at"]), r["raw"], r["error"]) for r in rows]

    return await read(store, query)


async def one_value(db: aiosqlite.Connection, sql: str) -> Any:
    """The first column of the first row ``sql`` returns."""
    [(value, *_)] = await db.execute_fetchall(sql)
    return value


async def schema_version(store: Store) -> int:
    async def query(db: aiosqlite.Connection) -> int:
        return int(await one_value(db, "SELECT version FROM schema_version"))

    return await read(store, query)


async def durability(store: Store) -> dict[str, dict[str, Any]]:
    """The durability PRAGMAs of each of the store's connections, as SQLite reports them."""

    async def pragmas(db: aiosqlite.Connection) -> dict[str, Any]:
        sync = int(await one_value(db, "PRAGMA synchronous"))
        return {
            "journal_mode": str(await one_value(db, "PRAGMA journal_mode")),
            "synchronous": {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}.get(sync, sync),
            "busy_timeout": int(await one_value(db, "PRAGMA busy_timeout")),
        }

    def pragmas_now(db: sqlite3.Connection) -> dict[str, Any]:
        sync = int(db.execute("PRAGMA synchronous").fetchone()[0])
        return {
            "journal_mode": str(db.execute("PRAGMA journal_mode").fetchone()[0]),
            "synchronous": {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}.get(sync, sync),
            "busy_timeout": int(db.execute("PRAGMA busy_timeout").fetchone()[0]),
        }

    return {
        "intents": await store._intent_writer.run(pragmas_now),
        "state": await store._intents_db.run(pragmas),
        "main": await store._db.run(pragmas),
    }


async def cap_pages(db: aiosqlite.Connection) -> None:
    """Like a full disk: no new page can be had ("database or disk is full")."""
    pages = await one_value(db, "PRAGMA page_count")
    # Fetched: this PRAGMA answers with a row, and an unread one would keep a read open.
    await db.execute_fetchall(f"PRAGMA max_page_count = {pages}")


async def uncap_pages(db: aiosqlite.Connection) -> None:
    await db.execute_fetchall("PRAGMA max_page_count = 1073741823")


async def cap_every_connection(store: Store, full: bool = True) -> None:
    """`cap_pages` (or `uncap_pages`) on each of the store's connections: max_page_count is
    per connection, and the intents have one of their own (engine.store.intent_writer)."""
    for conn in (store._db, store._intents_db):
        await conn.run(cap_pages if full else uncap_pages)

    def pages_now(db: sqlite3.Connection) -> None:
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        db.execute(f"PRAGMA max_page_count = {pages if full else 1073741823}").fetchall()

    await store._intent_writer.run(pages_now)


def run_until_killed(script: str, db: Path) -> None:
    """Run ``script`` (Python source, given ``db`` as its argument) in a process of its own,
    which must end by SIGKILLing itself: a crash with nothing closed or flushed."""
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run(
        [sys.executable, "-c", script, str(db)],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
        timeout=30,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
