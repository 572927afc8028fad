"""The intents' group commit, in one hop to a database thread of our own.

Every copy of a leader order waits for its intent to be durable (``synchronous=FULL``) before
it is sent, so this commit sits on the critical path of every copy. Through aiosqlite a
transaction costs a hop to its thread, and back through the event loop, per statement (BEGIN,
the INSERT ... RETURNING, the mirrors, COMMIT); the loop is busiest exactly then, deciding the
other followers' copies, so each hop waits its turn. Here the whole transaction is one plain
``sqlite3`` function run on a single thread that owns the connection: one hop.

The rest of the store stays on aiosqlite; this connection only inserts intents (and their
mirror rows), in the write line's order (``engine.store.write_line``).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

from engine.store.connection import BUSY_TIMEOUT_MS
from engine.store.errors import StoreError
from engine.store.writes import (
    INSERT_INTENT,
    INSERT_INTENTS_INTO,
    INTENT_SEQ_INDEX,
    INTENT_VALUES,
    INTENTS_PER_INSERT,
    UPSERT_MIRROR,
    Row,
)

_T = TypeVar("_T")


class IntentWriter:
    """Open with ``await IntentWriter.open(path)``; ``close`` when done."""

    def __init__(self, executor: ThreadPoolExecutor, db: sqlite3.Connection) -> None:
        self._executor = executor  # one thread: the connection is only ever used on it
        self._db = db
        self._closed = False

    @classmethod
    async def open(cls, path: str) -> IntentWriter:
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="copytrade-intents")
        try:
            db = await asyncio.get_running_loop().run_in_executor(executor, _connect, path)
        except BaseException:
            executor.shutdown(wait=False)
            raise
        return cls(executor, db)

    def submit(self, fn: Callable[[sqlite3.Connection], _T]) -> asyncio.Future[_T]:
        """Start ``fn(db)`` on the connection's thread, after what was submitted before."""
        if self._closed:
            raise StoreError("the intents connection is closed")
        return asyncio.get_running_loop().run_in_executor(self._executor, fn, self._db)

    async def run(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        """``fn(db)`` to its end even if the caller is cancelled."""
        return await asyncio.shield(self.submit(fn))

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        # Queued behind whatever was submitted: those run first.
        await asyncio.get_running_loop().run_in_executor(self._executor, self._db.close)
        self._executor.shutdown(wait=False)  # idle now: its thread ends at once


def _connect(path: str) -> sqlite3.Connection:
    # isolation_level=None: no implicit transactions; ours say BEGIN IMMEDIATE ... COMMIT.
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        (mode,) = db.execute("PRAGMA journal_mode = WAL").fetchone()
        if str(mode).lower() != "wal":
            raise StoreError(f"could not switch the database to WAL mode (got {mode})")
        db.execute("PRAGMA synchronous = FULL")
        db.execute("PRAGMA foreign_keys = ON")
        # The commit that crosses the WAL's size limit copies it into the database (and
        # fsyncs that too): never an intent's, which a copy waits for. The store's other
        # connection, whose writes nothing waits on, does it.
        db.execute("PRAGMA wal_autocheckpoint = 0")
    except BaseException:
        db.close()
        raise
    return db


def insert_intents(
    db: sqlite3.Connection, intents: Sequence[tuple[Row, Row | None]]
) -> list[int | Exception]:
    """Each (intent row, mirror row or None) in one transaction; the new id, or the error of
    the one that failed (then a savepoint each, so one bad intent cannot fail the others)."""
    if len(intents) == 1:
        return [_insert_one(db, *intents[0])]
    try:
        return list(_insert_together(db, intents))
    except (
        _SeqsNotUnique,
        sqlite3.IntegrityError,
        sqlite3.InterfaceError,
        sqlite3.ProgrammingError,
    ):
        pass  # one of them is refused (rolled back, nothing kept): each in its own savepoint
    results: list[int | Exception] = []
    with _transaction(db):
        for intent, mirror in intents:
            db.execute("SAVEPOINT intent")
            try:
                intent_id = _insert(db, intent, mirror)
            except Exception as exc:
                db.execute("ROLLBACK TO intent")
                db.execute("RELEASE intent")
                results.append(exc)
                continue
            db.execute("RELEASE intent")
            results.append(intent_id)
    return results


class _SeqsNotUnique(Exception):
    """Two intents of one batch carry the same seq: their new ids cannot be told apart."""


def _insert_together(
    db: sqlite3.Connection, intents: Sequence[tuple[Row, Row | None]]
) -> list[int]:
    """All the intents in a multi-row INSERT ... RETURNING, the mirrors in one executemany.
    Raises if any row is refused; then nothing is kept."""
    rows = [intent for intent, _ in intents]
    mirrors = [mirror for _, mirror in intents if mirror is not None]
    ids_by_seq: dict[Any, int] = {}
    with _transaction(db):
        for start in range(0, len(rows), INTENTS_PER_INSERT):
            chunk = rows[start : start + INTENTS_PER_INSERT]
            sql = (
                INSERT_INTENTS_INTO + ", ".join([INTENT_VALUES] * len(chunk)) + " RETURNING id, seq"
            )
            values = [value for row in chunk for value in row]
            for intent_id, seq in db.execute(sql, values).fetchall():
                ids_by_seq[seq] = intent_id
        if len(ids_by_seq) != len(rows):  # seq not unique: the ids cannot be told apart
            raise _SeqsNotUnique()
        if mirrors:
            db.executemany(UPSERT_MIRROR, mirrors)
    return [ids_by_seq[row[INTENT_SEQ_INDEX]] for row in rows]


def _insert_one(db: sqlite3.Connection, intent: Row, mirror: Row | None) -> int | Exception:
    """One intent alone: no other to protect, so no savepoint; its failure rolls back the
    whole transaction, which held nothing else."""
    try:
        with _transaction(db):
            return _insert(db, intent, mirror)
    except Exception as exc:
        return exc


def _insert(db: sqlite3.Connection, intent: Row, mirror: Row | None) -> int:
    cur = db.execute(INSERT_INTENT, intent)
    if mirror is not None:
        db.execute(UPSERT_MIRROR, mirror)
    assert cur.lastrowid is not None
    return cur.lastrowid


@contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any error (as engine.store.connection's).
    IMMEDIATE takes the write lock up front (waiting up to busy_timeout)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
