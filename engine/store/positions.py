"""Position ledgers and follower attach points (issue 10): the tables, their reads and writes.

The store keeps them as text the engine made (``engine.live.position_codec`` serialises
them), one row per follower per (segment, security, product), rewritten whole when it
changed: a ledger is one instrument's day for one follower, a few legs.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection, Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import aiosqlite

from engine.domain import OrderStatus
from engine.store.connection import transaction
from engine.store.intent_journal import journal_path, read_entries
from engine.store.rows import MIRROR_COLUMN_NAMES, MIRROR_COLUMNS

# Appended to engine.store.schema.MIGRATIONS as one step.
MIGRATION: tuple[str, ...] = (
    """CREATE TABLE follower_attach (
        follower         TEXT PRIMARY KEY,
        attached_at      TEXT NOT NULL,
        enabled          INTEGER NOT NULL,
        sizing           TEXT NOT NULL,
        leader_positions TEXT NOT NULL
    )""",
    """CREATE TABLE position_ledgers (
        follower    TEXT NOT NULL,
        segment     TEXT NOT NULL,
        security_id TEXT NOT NULL,
        product     TEXT NOT NULL,
        body        TEXT NOT NULL,
        updated_at  TEXT NOT NULL,
        PRIMARY KEY (follower, segment, security_id, product)
    )""",
)


@dataclass(frozen=True, slots=True)
class AttachRow:
    follower: str
    attached_at: str  # ISO time
    enabled: bool
    sizing: str  # the follower's sizing settings (JSON) when last run
    leader_positions: str  # the leader's net positions at the attach point (JSON)


LedgerRow = tuple[str, str, str, str, str, str]  # follower, segment, security, product, body, at

UPSERT_ATTACH = (
    "INSERT INTO follower_attach (follower, attached_at, enabled, sizing, leader_positions)"
    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (follower) DO UPDATE SET"
    " attached_at = excluded.attached_at, enabled = excluded.enabled,"
    " sizing = excluded.sizing, leader_positions = excluded.leader_positions"
)
UPSERT_LEDGER = (
    "INSERT INTO position_ledgers (follower, segment, security_id, product, body, updated_at)"
    " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (follower, segment, security_id, product)"
    " DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at"
)


async def attach_rows(db: aiosqlite.Connection) -> list[AttachRow]:
    rows = await db.execute_fetchall(
        "SELECT follower, attached_at, enabled, sizing, leader_positions FROM follower_attach"
    )
    return [AttachRow(r[0], r[1], bool(r[2]), r[3], r[4]) for r in rows]


async def ledger_rows(db: aiosqlite.Connection) -> list[LedgerRow]:
    rows = await db.execute_fetchall(
        "SELECT follower, segment, security_id, product, body, updated_at"
        " FROM position_ledgers ORDER BY rowid"
    )
    return [(r[0], r[1], r[2], r[3], r[4], r[5]) for r in rows]


async def save(
    db: aiosqlite.Connection,
    attach: Sequence[AttachRow],
    ledgers: Sequence[LedgerRow],
    dropped_followers: Sequence[str] = (),
) -> None:
    """Attach points and ledgers in one transaction; a follower re-attached (re-enabled)
    loses its old ledgers first."""
    async with transaction(db):
        for name in dropped_followers:
            await db.execute("DELETE FROM position_ledgers WHERE follower = ?", (name,))
        if attach:
            await db.executemany(
                UPSERT_ATTACH,
                [
                    (a.follower, a.attached_at, int(a.enabled), a.sizing, a.leader_positions)
                    for a in attach
                ],
            )
        if ledgers:
            await db.executemany(UPSERT_LEDGER, list(ledgers))


def orphaned_copies(db_path: Path | str, followers: Collection[str]) -> list[str]:
    """Copies still open at Dhan for followers the configuration no longer names (the engine
    no longer holds their tokens, so nothing follows the leader for them): one line each.
    Read-only; a database that does not exist has none.

    The database may lack the newest copies: after a crash between an intent's journal record
    and its rows, they are only in the intents' journal until the engine next opens the store
    (``engine.store.intent_writer``). So the journal is read too, and a mirror row journaled with
    an intent the database does not have is the copy's latest state."""
    path = Path(db_path)
    if not path.exists():
        return []
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        try:
            rows = db.execute(
                f"SELECT {MIRROR_COLUMNS} FROM mirrors WHERE state IN ('PLACING', 'LIVE')"
                " ORDER BY rowid"
            ).fetchall()
        except sqlite3.OperationalError:  # a database from before the mirrors table
            return []
        open_copies = {(row[_FOLLOWER], row[_LEADER]): row for row in rows}
        for row in _journal_only_mirrors(db, str(path)):
            key = (row[_FOLLOWER], row[_LEADER])
            if row[_STATE] in ("PLACING", "LIVE"):
                open_copies[key] = row
            else:  # journaled after the database's row: no longer open
                open_copies.pop(key, None)
    lines = []
    for row in open_copies.values():
        follower, leader_id, order_id = row[_FOLLOWER], row[_LEADER], row[_ORDER_ID]
        status, symbol = row[_STATUS], row[_SYMBOL]
        if follower in followers or (status is not None and not OrderStatus(status).is_open):
            continue
        lines.append(
            f"{follower}: copy {order_id or '(placing)'} of leader order {leader_id}"
            + (f" ({symbol})" if symbol else "")
            + (f" {status}" if status else "")
        )
    return lines


_FOLLOWER, _LEADER, _STATE, _ORDER_ID, _STATUS, _SYMBOL = (
    MIRROR_COLUMN_NAMES.index(c)
    for c in (
        "follower",
        "leader_order_id",
        "state",
        "follower_order_id",
        "broker_status",
        "symbol",
    )
)


def _journal_only_mirrors(db: sqlite3.Connection, db_path: str) -> list[tuple[object, ...]]:
    """The mirror rows journaled with intents the database does not have, in journal order."""
    entries = [e for e in read_entries(journal_path(db_path)) if e.mirror is not None]
    if not entries:
        return []
    stored = {
        intent_id
        for (intent_id,) in db.execute(
            "SELECT id FROM intents WHERE id IN (SELECT value FROM json_each(?))",
            (json.dumps([e.intent_id for e in entries]),),
        )
    }
    return [e.mirror for e in entries if e.mirror is not None and e.intent_id not in stored]
