"""Durable storage in SQLite: leader orders, follower copies, intents, journal, alerts.

Intent before side effect: ``record_intent`` returns only once the intent is on disk, so a
crash at any point after it leaves a PENDING intent that the engine resolves on restart by
asking Dhan for the order's correlationId, instead of placing it again.

- WAL mode, so readers never block the writer and a killed process loses nothing committed.
- Two connections. Intents and the engine state go through one with ``synchronous=FULL``
  (the commit is fsynced before the call returns); everything else, including an intent's
  completion, goes through one with ``synchronous=NORMAL`` (safe against a process crash;
  a power cut may drop the last few commits, which the engine re-derives: a PENDING intent
  is looked up at the broker). Both set ``busy_timeout``.
- Each public call runs as one function on its connection's thread (one thread hop per call,
  and a multi-statement transaction cannot interleave with another task's statements).
- Writes are applied one at a time in the order they were called, whichever connection
  they use (so two writes of one mirror row never land reversed, and the connections never
  wait on SQLite's busy handler). Intents recorded while a commit is under way share the
  next transaction and its fsync (group commit): a leader order fanned out to ten followers
  costs about one fsync, not ten.
- Versioned schema with forward migrations (``MIGRATIONS``), applied in order on open.
- Values are serialised as JSON by this module (enums by value, datetimes as ISO 8601),
  and every free text is passed through ``engine.secrets.redact``: no token is ever written.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import sqlite3
import types
import typing
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar, Union

import aiosqlite

from engine.clock import IST, Clock, SystemClock, to_ist
from engine.domain import (
    Alert,
    EngineState,
    MirrorState,
    OrderParams,
    OrderSnapshot,
    OrderStatus,
    Severity,
)
from engine.records import Intent, IntentKind, IntentOutcome, MirrorRecord
from engine.secrets import redact
from engine.views import TimelineEntry

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "Store",
    "StoreError",
    "WriteBatch",
    "decode_dataclass",
    "encode_value",
    "format_datetime",
    "parse_datetime",
]

BUSY_TIMEOUT_MS = 5000
MALFORMED_KEPT = 1000  # newest malformed messages kept for inspection
MALFORMED_MAX_CHARS = 20_000


class StoreError(Exception):
    pass


# --- schema ----------------------------------------------------------------------------------

# MIGRATIONS[i] brings a database from version i to version i + 1. Append, never edit.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # v1: replication state.
    (
        """CREATE TABLE leader_orders (
            order_id       TEXT PRIMARY KEY,
            client_id      TEXT NOT NULL,
            status         TEXT NOT NULL,
            segment        TEXT NOT NULL,
            security_id    TEXT NOT NULL,
            correlation_id TEXT NOT NULL DEFAULT '',
            quantity       INTEGER NOT NULL,
            filled_qty     INTEGER NOT NULL,
            updated_at     TEXT,
            snapshot       TEXT NOT NULL,
            stored_at      TEXT NOT NULL
        )""",
        """CREATE TABLE mirrors (
            follower          TEXT NOT NULL,
            leader_order_id   TEXT NOT NULL,
            correlation_id    TEXT NOT NULL,
            state             TEXT NOT NULL,
            generation        INTEGER NOT NULL DEFAULT 0,
            follower_order_id TEXT NOT NULL DEFAULT '',
            broker_status     TEXT,
            params            TEXT,
            filled_qty        INTEGER NOT NULL DEFAULT 0,
            avg_price         REAL NOT NULL DEFAULT 0,
            modifications     INTEGER NOT NULL DEFAULT 0,
            reason            TEXT NOT NULL DEFAULT '',
            symbol            TEXT NOT NULL DEFAULT '',
            leader_seen_mono  REAL,
            latency_ms        REAL,
            slippage          REAL,
            updated_at        TEXT,
            PRIMARY KEY (follower, leader_order_id)
        )""",
        "CREATE INDEX mirrors_by_leader ON mirrors (leader_order_id)",
        "CREATE INDEX mirrors_by_correlation ON mirrors (correlation_id)",
        """CREATE TABLE intents (
            id                INTEGER PRIMARY KEY AUTOINCREMENT,
            follower          TEXT NOT NULL,
            leader_order_id   TEXT NOT NULL,
            kind              TEXT NOT NULL,
            correlation_id    TEXT NOT NULL,
            params            TEXT,
            follower_order_id TEXT NOT NULL DEFAULT '',
            outcome           TEXT NOT NULL,
            detail            TEXT NOT NULL DEFAULT '',
            created_at        TEXT NOT NULL,
            completed_at      TEXT,
            seq               INTEGER NOT NULL DEFAULT 0
        )""",
        "CREATE INDEX intents_by_leader ON intents (leader_order_id)",
        """CREATE INDEX intents_unfinished ON intents (id)
            WHERE outcome IN ('PENDING', 'AMBIGUOUS')""",
        """CREATE TABLE engine_state (
            id         INTEGER PRIMARY KEY CHECK (id = 1),
            state      TEXT NOT NULL,
            reason     TEXT NOT NULL DEFAULT '',
            updated_at TEXT NOT NULL
        )""",
    ),
    # v2: what the trader inspects afterwards.
    (
        """CREATE TABLE journal (
            id              INTEGER PRIMARY KEY AUTOINCREMENT,
            at              TEXT NOT NULL,
            kind            TEXT NOT NULL,
            follower        TEXT,
            leader_order_id TEXT,
            text            TEXT NOT NULL,
            seq             INTEGER NOT NULL DEFAULT 0
        )""",
        "CREATE INDEX journal_by_leader ON journal (leader_order_id)",
        """CREATE TABLE alerts (
            id              INTEGER PRIMARY KEY AUTOINCREMENT,
            at              TEXT NOT NULL,
            code            TEXT NOT NULL,
            severity        TEXT NOT NULL,
            message         TEXT NOT NULL,
            follower        TEXT,
            leader_order_id TEXT,
            count           INTEGER NOT NULL DEFAULT 1
        )""",
        """CREATE TABLE malformed_messages (
            id    INTEGER PRIMARY KEY AUTOINCREMENT,
            at    TEXT NOT NULL,
            raw   TEXT NOT NULL,
            error TEXT NOT NULL
        )""",
    ),
    # v3: fills of earlier generations of a copy that was cancelled and re-placed.
    ("ALTER TABLE mirrors ADD COLUMN prior_filled INTEGER NOT NULL DEFAULT 0",),
    # v4: why a skipped copy was skipped (some skips are reconsidered, one is not).
    ("ALTER TABLE mirrors ADD COLUMN skip_code TEXT NOT NULL DEFAULT ''",),
)

SCHEMA_VERSION = len(MIGRATIONS)

_VERSION_TABLE = """CREATE TABLE IF NOT EXISTS schema_version (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL
)"""


def _migrate(db: sqlite3.Connection, migrations: Sequence[Sequence[str]] = MIGRATIONS) -> int:
    """Apply the missing migrations, each in its own transaction; returns the version."""
    db.execute(_VERSION_TABLE)
    while True:
        with _transaction(db):
            row = db.execute("SELECT version FROM schema_version WHERE id = 1").fetchone()
            version = int(row[0]) if row else 0
            if version > len(migrations):
                raise StoreError(
                    f"the database is at schema version {version}, newer than this program"
                    f" knows ({len(migrations)}); upgrade the program"
                )
            if version == len(migrations):
                return version
            for statement in migrations[version]:
                db.execute(statement)
            db.execute(
                "INSERT INTO schema_version (id, version) VALUES (1, ?)"
                " ON CONFLICT (id) DO UPDATE SET version = excluded.version",
                (version + 1,),
            )


@contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    # IMMEDIATE takes the write lock up front (waiting up to busy_timeout), so a transaction
    # never fails half-way on a lock upgrade.
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    try:
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


# --- JSON codec ------------------------------------------------------------------------------

_IST_OFFSET = timedelta(hours=5, minutes=30)


def format_datetime(value: datetime) -> str:
    return value.isoformat()


def parse_datetime(text: str) -> datetime:
    """ISO 8601 back to a datetime; +05:30 comes back in the engine's IST zone."""
    value = datetime.fromisoformat(text)
    if value.utcoffset() == _IST_OFFSET:
        return value.astimezone(IST)
    return value


def encode_value(value: Any) -> Any:
    """A JSON-ready form of a dataclass, enum, datetime, tuple or plain value."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime):
        return format_datetime(value)
    if isinstance(value, tuple | list):
        return [encode_value(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: encode_value(getattr(value, f.name)) for f in dataclasses.fields(value)}
    return value


_hints: dict[type, dict[str, Any]] = {}


def _type_hints(cls: type) -> dict[str, Any]:
    hints = _hints.get(cls)
    if hints is None:
        hints = typing.get_type_hints(cls)
        _hints[cls] = hints
    return hints


def _decode(tp: Any, raw: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin is Union or origin is types.UnionType:
        members = [a for a in typing.get_args(tp) if a is not type(None)]
        if raw is None:
            return None
        if len(members) != 1:
            raise TypeError(f"cannot decode union {tp}")
        return _decode(members[0], raw)
    if origin is tuple:
        args = typing.get_args(tp)
        return tuple(_decode(args[0], r) for r in raw)
    if raw is None:
        return None
    if isinstance(tp, type):
        if issubclass(tp, Enum):
            return tp(raw)
        if tp is datetime:
            return parse_datetime(raw)
        if tp is bool:
            return bool(raw)
        if tp is float:
            return float(raw)
        if tp is int:
            return int(raw)
        if tp is str:
            return str(raw)
        if dataclasses.is_dataclass(tp):
            return decode_dataclass(tp, raw)
    raise TypeError(f"cannot decode {tp}")


_D = TypeVar("_D")


def decode_dataclass(cls: type[_D], raw: dict[str, Any]) -> _D:
    """The inverse of ``encode_value`` for a dataclass; unknown keys are ignored."""
    hints = _type_hints(cls)
    kwargs = {name: _decode(hints[name], value) for name, value in raw.items() if name in hints}
    return cls(**kwargs)


def _dumps(value: Any) -> str:
    return redact(json.dumps(encode_value(value), separators=(",", ":"), ensure_ascii=False))


def _dt(value: datetime | None) -> str | None:
    return None if value is None else format_datetime(value)


def _parse_opt(text: str | None) -> datetime | None:
    return None if text is None else parse_datetime(text)


# --- rows ------------------------------------------------------------------------------------

_MIRROR_COLUMNS = (
    "follower, leader_order_id, correlation_id, state, generation, follower_order_id,"
    " broker_status, params, filled_qty, avg_price, modifications, reason, symbol,"
    " leader_seen_mono, latency_ms, slippage, updated_at, prior_filled, skip_code"
)
_UPSERT_MIRROR = (
    f"INSERT INTO mirrors ({_MIRROR_COLUMNS}) VALUES ({', '.join('?' * 19)})"
    " ON CONFLICT (follower, leader_order_id) DO UPDATE SET"
    " correlation_id = excluded.correlation_id, state = excluded.state,"
    " generation = excluded.generation, follower_order_id = excluded.follower_order_id,"
    " broker_status = excluded.broker_status, params = excluded.params,"
    " filled_qty = excluded.filled_qty, avg_price = excluded.avg_price,"
    " modifications = excluded.modifications, reason = excluded.reason,"
    " symbol = excluded.symbol, leader_seen_mono = excluded.leader_seen_mono,"
    " latency_ms = excluded.latency_ms, slippage = excluded.slippage,"
    " updated_at = excluded.updated_at, prior_filled = excluded.prior_filled,"
    " skip_code = excluded.skip_code"
)


_INSERT_INTENT = (
    "INSERT INTO intents (follower, leader_order_id, kind, correlation_id, params,"
    " follower_order_id, outcome, detail, created_at, seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


class _Turn:
    """``async with turn:`` waits for the previous write, and lets the next one go after."""

    __slots__ = ("_mine", "_previous")

    def __init__(self, previous: asyncio.Future[None] | None, mine: asyncio.Future[None]) -> None:
        self._previous = previous
        self._mine = mine

    async def __aenter__(self) -> None:
        if self._previous is not None and not self._previous.done():
            # asyncio.wait: being cancelled here must not cancel the previous write's turn.
            await asyncio.wait([self._previous])

    async def __aexit__(self, *exc: object) -> None:
        previous = self._previous
        if previous is None or previous.done():
            self._done()
        else:  # cancelled while waiting: the next write must still wait for the previous
            previous.add_done_callback(lambda _: self._done())

    def _done(self) -> None:
        if not self._mine.done():
            self._mine.set_result(None)


@dataclasses.dataclass(slots=True)
class _PendingIntent:
    values: tuple[Any, ...]
    mirror_row: tuple[Any, ...] | None
    future: asyncio.Future[int]


_UPSERT_LEADER = (
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
_COMPLETE_INTENT = (
    "UPDATE intents SET outcome = ?, detail = ?, completed_at = ?,"
    " follower_order_id = CASE WHEN follower_order_id = '' THEN ?"
    " ELSE follower_order_id END WHERE id = ?"
)
_INSERT_JOURNAL = (
    "INSERT INTO journal (at, kind, follower, leader_order_id, text, seq) VALUES (?, ?, ?, ?, ?, ?)"
)
_INSERT_ALERT = (
    "INSERT INTO alerts (at, code, severity, message, follower, leader_order_id,"
    " count) VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_DELETE_MIRROR = "DELETE FROM mirrors WHERE follower = ? AND leader_order_id = ?"


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


def _mirror_row(rec: MirrorRecord) -> tuple[Any, ...]:
    return (
        rec.follower,
        rec.leader_order_id,
        rec.correlation_id,
        rec.state.value,
        rec.generation,
        rec.follower_order_id,
        rec.broker_status.value if rec.broker_status else None,
        None if rec.params is None else _dumps(rec.params),
        rec.filled_qty,
        float(rec.avg_price),
        rec.modifications,
        redact(rec.reason),
        rec.symbol,
        rec.leader_seen_mono,
        rec.latency_ms,
        rec.slippage,
        _dt(rec.updated_at),
        rec.prior_filled,
        rec.skip_code,
    )


def _mirror_from(row: sqlite3.Row) -> MirrorRecord:
    params = row["params"]
    return MirrorRecord(
        follower=row["follower"],
        leader_order_id=row["leader_order_id"],
        correlation_id=row["correlation_id"],
        state=MirrorState(row["state"]),
        generation=row["generation"],
        follower_order_id=row["follower_order_id"],
        broker_status=OrderStatus(row["broker_status"]) if row["broker_status"] else None,
        params=None if params is None else decode_dataclass(OrderParams, json.loads(params)),
        filled_qty=row["filled_qty"],
        avg_price=row["avg_price"],
        modifications=row["modifications"],
        reason=row["reason"],
        symbol=row["symbol"],
        leader_seen_mono=row["leader_seen_mono"],
        latency_ms=row["latency_ms"],
        slippage=row["slippage"],
        updated_at=_parse_opt(row["updated_at"]),
        prior_filled=row["prior_filled"],
        skip_code=row["skip_code"],
    )


def _intent_from(row: sqlite3.Row) -> Intent:
    params = row["params"]
    return Intent(
        follower=row["follower"],
        leader_order_id=row["leader_order_id"],
        kind=IntentKind(row["kind"]),
        correlation_id=row["correlation_id"],
        params=None if params is None else decode_dataclass(OrderParams, json.loads(params)),
        follower_order_id=row["follower_order_id"],
        id=row["id"],
        outcome=IntentOutcome(row["outcome"]),
        detail=row["detail"],
        created_at=parse_datetime(row["created_at"]),
    )


def _snapshot_from(text: str) -> OrderSnapshot:
    return decode_dataclass(OrderSnapshot, json.loads(text))


def _intent_text(intent: Intent) -> str:
    p = intent.params
    parts = [intent.kind.value]
    if p is not None:
        parts.append(f"{p.side.value} {p.quantity} {p.segment.value}:{p.security_id}")
        price = f" @ {p.price:g}" if p.price else ""
        trigger = f" trigger {p.trigger_price:g}" if p.trigger_price else ""
        parts.append(f"{p.order_type.value}{price}{trigger} {p.product.value} {p.validity.value}")
        if p.amo:
            parts.append(f"AMO {p.amo_time.value if p.amo_time else ''}".rstrip())
    if intent.follower_order_id:
        parts.append(f"order {intent.follower_order_id}")
    parts.append(f"[{intent.correlation_id}]")
    text = " ".join(parts) + f" -> {intent.outcome.value}"
    if intent.detail:
        text += f": {intent.detail}"
    return text


# --- the store -------------------------------------------------------------------------------

_T = TypeVar("_T")


async def _run(conn: aiosqlite.Connection, fn: Callable[[sqlite3.Connection], _T]) -> _T:
    """Run ``fn(db)`` on the connection's own thread, after anything queued before it.

    aiosqlite serialises every call on one thread per connection; handing it one function
    for a whole transaction costs one thread hop instead of one per statement, and keeps
    other tasks' statements out of the transaction. ``_execute`` is aiosqlite's (private)
    queueing primitive; the version is pinned in pyproject.toml and the tests cover it.
    """
    execute: Callable[..., Awaitable[_T]] = conn._execute
    return await execute(fn, conn._conn)


async def _connect(path: str, synchronous: str) -> aiosqlite.Connection:
    conn = await aiosqlite.connect(path, isolation_level=None)
    try:
        conn.row_factory = sqlite3.Row

        def setup(db: sqlite3.Connection) -> None:
            db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(f"could not switch the database to WAL mode (got {mode})")
            db.execute(f"PRAGMA synchronous = {synchronous}")
            db.execute("PRAGMA foreign_keys = ON")

        await _run(conn, setup)
    except BaseException:
        await conn.close()
        raise
    return conn


class Store:
    """The engine's durable memory. Open with ``await Store.open(path)``; close when done."""

    def __init__(
        self, intents_db: aiosqlite.Connection, main_db: aiosqlite.Connection, clock: Clock
    ) -> None:
        self._intents_db = intents_db  # synchronous=FULL: intents, engine state
        self._db = main_db  # synchronous=NORMAL: everything else
        self._clock = clock
        self._seq = itertools.count(1)  # orders journal and intents written at the same time
        self._closed = False
        # One writer at a time, in call order, across both connections: SQLite allows one
        # writer anyway, and without this the two connections would race for its lock (its
        # busy handler sleeps for milliseconds) and could commit two writes of one mirror
        # row in the opposite order to the calls. Each write takes its place in the line
        # synchronously, when it is called, and waits for the write before it to finish.
        self._last_write: asyncio.Future[None] | None = None
        # Group commit: intents recorded while an earlier fsync is under way share the next
        # transaction (one fsync for a leader order fanned out to every follower).
        self._open_batch: list[_PendingIntent] | None = None
        self._flushes: set[asyncio.Task[None]] = set()

    def _take_turn(self) -> _Turn:
        """A place in the line of writes, behind every write called before this one."""
        mine: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        turn = _Turn(self._last_write, mine)
        self._last_write = mine
        return turn

    async def _write(
        self, conn: aiosqlite.Connection, fn: Callable[[sqlite3.Connection], _T]
    ) -> _T:
        self._open_batch = None  # intents recorded from now on commit after this write
        async with self._take_turn():
            return await _run(conn, fn)

    async def _flush_intents(self, batch: list[_PendingIntent], turn: _Turn) -> None:
        async with turn:
            if self._open_batch is batch:
                self._open_batch = None

            def write(db: sqlite3.Connection) -> list[int | Exception]:
                results: list[int | Exception] = []
                with _transaction(db):
                    for item in batch:
                        # A savepoint each, so one bad intent cannot fail the others.
                        db.execute("SAVEPOINT intent")
                        try:
                            cur = db.execute(_INSERT_INTENT, item.values)
                            if item.mirror_row is not None:
                                db.execute(_UPSERT_MIRROR, item.mirror_row)
                        except Exception as exc:
                            db.execute("ROLLBACK TO intent")
                            db.execute("RELEASE intent")
                            results.append(exc)
                            continue
                        db.execute("RELEASE intent")
                        assert cur.lastrowid is not None
                        results.append(cur.lastrowid)
                return results

            try:
                results = await _run(self._intents_db, write)
            except BaseException as exc:  # the commit itself failed: none is durable
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise
                return
        for item, result in zip(batch, results, strict=True):
            if item.future.done():  # the caller was cancelled; its intent is stored anyway
                continue
            if isinstance(result, Exception):
                item.future.set_exception(result)
            else:
                item.future.set_result(result)

    @classmethod
    async def open(cls, path: Path | str, *, clock: Clock | None = None) -> Store:
        """Open (creating if needed) and migrate the database at ``path``."""
        target = str(path)
        if target == ":memory:" or target.startswith("file:"):
            raise StoreError("the store needs a file path (two connections share it)")
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        intents_db = await _connect(target, "FULL")
        try:
            await _run(intents_db, _migrate)
            main_db = await _connect(target, "NORMAL")
        except BaseException:
            await intents_db.close()
            raise
        store = cls(intents_db, main_db, clock or SystemClock())

        def last_seq(db: sqlite3.Connection) -> int:
            row = db.execute(
                "SELECT max(coalesce((SELECT max(seq) FROM intents), 0),"
                " coalesce((SELECT max(seq) FROM journal), 0))"
            ).fetchone()
            return int(row[0])

        store._seq = itertools.count(await _run(main_db, last_seq) + 1)
        return store

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._flushes:
            await asyncio.gather(*self._flushes, return_exceptions=True)
        if self._last_write is not None and not self._last_write.done():
            await asyncio.wait([self._last_write])  # let writes already called finish
        try:
            await self._db.close()
        finally:
            await self._intents_db.close()

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- diagnostics ----------------------------------------------------------------------

    async def schema_version(self) -> int:
        def read(db: sqlite3.Connection) -> int:
            return int(db.execute("SELECT version FROM schema_version").fetchone()[0])

        return await _run(self._db, read)

    async def durability(self) -> dict[str, dict[str, Any]]:
        """The durability PRAGMAs of each connection, as SQLite reports them."""

        def read(db: sqlite3.Connection) -> dict[str, Any]:
            sync = int(db.execute("PRAGMA synchronous").fetchone()[0])
            return {
                "journal_mode": str(db.execute("PRAGMA journal_mode").fetchone()[0]),
                "synchronous": {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}.get(sync, sync),
                "busy_timeout": int(db.execute("PRAGMA busy_timeout").fetchone()[0]),
            }

        return {"intents": await _run(self._intents_db, read), "main": await _run(self._db, read)}

    # --- engine state ---------------------------------------------------------------------

    async def get_engine_state(self) -> tuple[EngineState, str] | None:
        def read(db: sqlite3.Connection) -> tuple[EngineState, str] | None:
            row = db.execute("SELECT state, reason FROM engine_state WHERE id = 1").fetchone()
            return None if row is None else (EngineState(row["state"]), row["reason"])

        return await _run(self._db, read)

    async def set_engine_state(self, state: EngineState, reason: str) -> None:
        """Durable on return (the kill switch must survive a crash)."""
        params = (state.value, redact(reason), format_datetime(self._clock.now()))

        def write(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT INTO engine_state (id, state, reason, updated_at) VALUES (1, ?, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET state = excluded.state,"
                " reason = excluded.reason, updated_at = excluded.updated_at",
                params,
            )

        await self._write(self._intents_db, write)

    # --- leader orders --------------------------------------------------------------------

    async def upsert_leader_order(self, snap: OrderSnapshot) -> None:
        """Store ``snap`` as the latest known state of its order (the caller decides staleness)."""
        params = self._leader_row(snap)

        def write(db: sqlite3.Connection) -> None:
            db.execute(_UPSERT_LEADER, params)

        await self._write(self._db, write)

    def _leader_row(self, snap: OrderSnapshot) -> tuple[Any, ...]:
        return (
            snap.order_id,
            snap.client_id,
            snap.status.value,
            snap.segment.value,
            snap.security_id,
            snap.correlation_id,
            snap.quantity,
            snap.filled_qty,
            _dt(snap.updated_at),
            _dumps(snap),
            format_datetime(self._clock.now()),
        )

    async def write_batch(self, batch: WriteBatch) -> None:
        """Everything in ``batch`` in one transaction (one commit instead of one per row)."""
        if not batch:
            return
        now = format_datetime(self._clock.now())
        leaders = [self._leader_row(s) for s in batch.leaders]
        mirrors = [_mirror_row(m) for m in batch.mirrors]
        completions = [
            (
                outcome.value,
                redact(detail),
                now if outcome in (IntentOutcome.ACKED, IntentOutcome.REFUSED) else None,
                order_id,
                intent_id,
            )
            for intent_id, outcome, detail, order_id in batch.completions
        ]
        journal = [
            (format_datetime(at), kind, follower, leader_id, redact(text), next(self._seq))
            for at, kind, follower, leader_id, text in batch.journal
        ]
        alerts = [
            (
                format_datetime(a.at),
                a.code,
                a.severity.value,
                redact(a.message),
                a.follower,
                a.leader_order_id,
                a.count,
            )
            for a in batch.alerts
        ]
        deleted = list(batch.deleted_mirrors)

        def write(db: sqlite3.Connection) -> None:
            with _transaction(db):
                db.executemany(_UPSERT_LEADER, leaders)
                db.executemany(_DELETE_MIRROR, deleted)
                db.executemany(_UPSERT_MIRROR, mirrors)
                db.executemany(_COMPLETE_INTENT, completions)
                db.executemany(_INSERT_JOURNAL, journal)
                db.executemany(_INSERT_ALERT, alerts)

        await self._write(self._db, write)

    async def get_leader_order(self, order_id: str) -> OrderSnapshot | None:
        def read(db: sqlite3.Connection) -> str | None:
            row = db.execute(
                "SELECT snapshot FROM leader_orders WHERE order_id = ?", (order_id,)
            ).fetchone()
            return None if row is None else str(row[0])

        text = await _run(self._db, read)
        return None if text is None else _snapshot_from(text)

    async def leader_orders(self) -> list[OrderSnapshot]:
        """Every stored leader order, in the order they were first stored."""

        def read(db: sqlite3.Connection) -> list[str]:
            return [r[0] for r in db.execute("SELECT snapshot FROM leader_orders ORDER BY rowid")]

        return [_snapshot_from(t) for t in await _run(self._db, read)]

    # --- mirrors --------------------------------------------------------------------------

    async def get_mirror(self, follower: str, leader_order_id: str) -> MirrorRecord | None:
        def read(db: sqlite3.Connection) -> MirrorRecord | None:
            row = db.execute(
                f"SELECT {_MIRROR_COLUMNS} FROM mirrors WHERE follower = ? AND leader_order_id = ?",
                (follower, leader_order_id),
            ).fetchone()
            return None if row is None else _mirror_from(row)

        return await _run(self._db, read)

    async def mirror_by_correlation(self, correlation_id: str) -> MirrorRecord | None:
        def read(db: sqlite3.Connection) -> MirrorRecord | None:
            row = db.execute(
                f"SELECT {_MIRROR_COLUMNS} FROM mirrors WHERE correlation_id = ?"
                " ORDER BY generation DESC LIMIT 1",
                (correlation_id,),
            ).fetchone()
            return None if row is None else _mirror_from(row)

        return await _run(self._db, read)

    async def save_mirror(self, rec: MirrorRecord) -> None:
        row = _mirror_row(rec)

        def write(db: sqlite3.Connection) -> None:
            db.execute(_UPSERT_MIRROR, row)

        await self._write(self._db, write)

    async def delete_mirror(self, follower: str, leader_order_id: str) -> None:
        """Forget a copy that never reached Dhan, so it is decided again from scratch."""

        def write(db: sqlite3.Connection) -> None:
            db.execute(_DELETE_MIRROR, (follower, leader_order_id))

        await self._write(self._db, write)

    async def mirrors(self) -> list[MirrorRecord]:
        def read(db: sqlite3.Connection) -> list[MirrorRecord]:
            rows = db.execute(f"SELECT {_MIRROR_COLUMNS} FROM mirrors ORDER BY rowid")
            return [_mirror_from(r) for r in rows]

        return await _run(self._db, read)

    async def mirrors_for_leader(self, leader_order_id: str) -> list[MirrorRecord]:
        def read(db: sqlite3.Connection) -> list[MirrorRecord]:
            rows = db.execute(
                f"SELECT {_MIRROR_COLUMNS} FROM mirrors WHERE leader_order_id = ? ORDER BY rowid",
                (leader_order_id,),
            )
            return [_mirror_from(r) for r in rows]

        return await _run(self._db, read)

    # --- intents --------------------------------------------------------------------------

    async def record_intent(self, intent: Intent, mirror: MirrorRecord | None = None) -> Intent:
        """Write the intent (and the mirror row, atomically with it); fsynced on return.

        Returns the intent with its ``id`` and ``created_at`` (kept if already set).
        Intents recorded concurrently (several followers at once) share one transaction and
        one fsync; each keeps its own savepoint, so one failure does not fail the others.
        """
        if intent.id:
            raise StoreError(f"intent {intent.id} is already recorded")
        created = intent.created_at or self._clock.now()
        values = (
            intent.follower,
            intent.leader_order_id,
            intent.kind.value,
            intent.correlation_id,
            None if intent.params is None else _dumps(intent.params),
            intent.follower_order_id,
            intent.outcome.value,
            redact(intent.detail),
            format_datetime(created),
            next(self._seq),
        )
        mirror_row = None if mirror is None else _mirror_row(mirror)
        item = _PendingIntent(values, mirror_row, asyncio.get_running_loop().create_future())
        if self._open_batch is not None:
            self._open_batch.append(item)
        else:
            self._open_batch = [item]
            flush = asyncio.create_task(self._flush_intents(self._open_batch, self._take_turn()))
            self._flushes.add(flush)
            flush.add_done_callback(self._flushes.discard)
        intent_id = await item.future
        return dataclasses.replace(intent, id=intent_id, created_at=created)

    async def complete_intent(
        self,
        intent_id: int,
        outcome: IntentOutcome,
        detail: str = "",
        mirror: MirrorRecord | None = None,
    ) -> None:
        """Record how the broker call ended (and the mirror row, in the same transaction).

        ACKED / REFUSED set ``completed_at``; PENDING / AMBIGUOUS leave the intent unfinished.
        A mirror with a follower order id fills in the intent's if it had none (a placement).
        """
        finished = outcome in (IntentOutcome.ACKED, IntentOutcome.REFUSED)
        completed = format_datetime(self._clock.now()) if finished else None
        mirror_row = None if mirror is None else _mirror_row(mirror)
        order_id = mirror.follower_order_id if mirror is not None else ""

        def write(db: sqlite3.Connection) -> None:
            with _transaction(db):
                cur = db.execute(
                    _COMPLETE_INTENT,
                    (outcome.value, redact(detail), completed, order_id, intent_id),
                )
                if cur.rowcount != 1:
                    raise StoreError(f"no intent with id {intent_id}")
                if mirror_row is not None:
                    db.execute(_UPSERT_MIRROR, mirror_row)

        await self._write(self._db, write)

    async def get_intent(self, intent_id: int) -> Intent | None:
        def read(db: sqlite3.Connection) -> Intent | None:
            row = db.execute("SELECT * FROM intents WHERE id = ?", (intent_id,)).fetchone()
            return None if row is None else _intent_from(row)

        return await _run(self._db, read)

    async def intent_times(self, since: datetime) -> dict[str, list[datetime]]:
        """When each follower's intents (order requests) were written, since ``since``: what a
        restarted engine counts against Dhan's hourly and daily order-API budgets."""

        def read(db: sqlite3.Connection) -> list[tuple[str, str]]:
            rows = db.execute("SELECT follower, created_at FROM intents ORDER BY id DESC")
            out: list[tuple[str, str]] = []
            for follower, created in rows:
                if parse_datetime(created) < since:
                    break  # ids grow with time: everything older follows
                out.append((follower, created))
            return out

        times: dict[str, list[datetime]] = {}
        for follower, created in await _run(self._db, read):
            times.setdefault(follower, []).append(parse_datetime(created))
        return times

    async def unfinished_intents(self) -> list[Intent]:
        """Intents whose outcome is PENDING or AMBIGUOUS, oldest first."""

        def read(db: sqlite3.Connection) -> list[Intent]:
            rows = db.execute(
                "SELECT * FROM intents WHERE outcome IN ('PENDING', 'AMBIGUOUS') ORDER BY id"
            )
            return [_intent_from(r) for r in rows]

        return await _run(self._db, read)

    # --- journal, timeline ----------------------------------------------------------------

    async def append_journal(
        self,
        kind: str,
        text: str,
        follower: str | None = None,
        leader_order_id: str | None = None,
        at: datetime | None = None,
    ) -> None:
        when = self._clock.now() if at is None else to_ist(at) if at.tzinfo is None else at
        values = (format_datetime(when), kind, follower, leader_order_id, redact(text))
        seq = next(self._seq)

        def write(db: sqlite3.Connection) -> None:
            db.execute(_INSERT_JOURNAL, (*values, seq))

        await self._write(self._db, write)

    async def timeline(self, leader_order_id: str) -> list[TimelineEntry]:
        """Journal entries and intents of one leader order, oldest first."""

        def read(db: sqlite3.Connection) -> list[tuple[datetime, int, TimelineEntry]]:
            out: list[tuple[datetime, int, TimelineEntry]] = []
            for row in db.execute(
                "SELECT at, kind, follower, text, seq FROM journal WHERE leader_order_id = ?",
                (leader_order_id,),
            ):
                at = parse_datetime(row["at"])
                entry = TimelineEntry(
                    at=at, kind=row["kind"], follower=row["follower"], text=row["text"]
                )
                out.append((at, row["seq"], entry))
            for row in db.execute(
                "SELECT * FROM intents WHERE leader_order_id = ?", (leader_order_id,)
            ):
                intent = _intent_from(row)
                assert intent.created_at is not None
                entry = TimelineEntry(
                    at=intent.created_at,
                    kind="intent",
                    follower=intent.follower,
                    text=_intent_text(intent),
                )
                out.append((intent.created_at, row["seq"], entry))
            return out

        rows = await _run(self._db, read)
        rows.sort(key=lambda r: (_sort_key(r[0]), r[1]))
        return [entry for _, _, entry in rows]

    # --- alerts, malformed input ----------------------------------------------------------

    async def record_alert(self, alert: Alert) -> None:
        values = (
            format_datetime(alert.at),
            alert.code,
            alert.severity.value,
            redact(alert.message),
            alert.follower,
            alert.leader_order_id,
            alert.count,
        )

        def write(db: sqlite3.Connection) -> None:
            db.execute(_INSERT_ALERT, values)

        await self._write(self._db, write)

    async def recent_alerts(self, limit: int = 100) -> list[Alert]:
        """The newest ``limit`` alerts, oldest first."""

        def read(db: sqlite3.Connection) -> list[Alert]:
            rows = db.execute(
                "SELECT * FROM (SELECT * FROM alerts ORDER BY id DESC LIMIT ?) ORDER BY id",
                (limit,),
            )
            return [
                Alert(
                    code=r["code"],
                    severity=Severity(r["severity"]),
                    message=r["message"],
                    at=parse_datetime(r["at"]),
                    follower=r["follower"],
                    leader_order_id=r["leader_order_id"],
                    count=r["count"],
                )
                for r in rows
            ]

        return await _run(self._db, read)

    async def record_malformed(self, raw: str, error: str) -> None:
        """Keep an input the codec could not read (the newest MALFORMED_KEPT are kept)."""
        values = (
            format_datetime(self._clock.now()),
            redact(raw[:MALFORMED_MAX_CHARS]),
            redact(error),
        )

        def write(db: sqlite3.Connection) -> None:
            with _transaction(db):
                cur = db.execute(
                    "INSERT INTO malformed_messages (at, raw, error) VALUES (?, ?, ?)", values
                )
                assert cur.lastrowid is not None
                db.execute(
                    "DELETE FROM malformed_messages WHERE id <= ?",
                    (cur.lastrowid - MALFORMED_KEPT,),
                )

        await self._write(self._db, write)

    async def malformed_messages(self, limit: int = 100) -> list[tuple[datetime, str, str]]:
        """The newest ``limit`` malformed inputs as (at, raw, error), oldest first."""

        def read(db: sqlite3.Connection) -> list[tuple[datetime, str, str]]:
            rows = db.execute(
                "SELECT * FROM (SELECT * FROM malformed_messages ORDER BY id DESC LIMIT ?)"
                " ORDER BY id",
                (limit,),
            )
            return [(parse_datetime(r["at"]), r["raw"], r["error"]) for r in rows]

        return await _run(self._db, read)


def _sort_key(at: datetime) -> float:
    return at.timestamp() if at.tzinfo is not None else to_ist(at).timestamp()
