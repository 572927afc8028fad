"""One SQLite connection through aiosqlite, and the lock that keeps a task's statements together.

aiosqlite runs each statement on the connection's own thread, one hop per call, so two tasks'
statements could interleave: a read could see another task's uncommitted rows, or land inside
its transaction. ``run(fn)`` therefore holds the connection's lock around all of ``fn(db)``
(for a write, BEGIN IMMEDIATE ... COMMIT). It runs ``fn`` in a task of its own: a caller
cancelled half-way does not take back a write it has handed over.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

import aiosqlite

from engine.store.errors import StoreError

BUSY_TIMEOUT_MS = 5000

_T = TypeVar("_T")


class Connection:
    """Open with ``await Connection.open(path, synchronous)``; ``close`` when done."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db
        self._lock = asyncio.Lock()  # one task's statements at a time
        self._closed = False

    @classmethod
    async def open(cls, path: str, synchronous: str) -> Connection:
        """A WAL connection with ``busy_timeout`` and the given ``synchronous`` level."""
        # isolation_level=None: no implicit transactions; the store's own BEGIN/COMMIT decide.
        db = await aiosqlite.connect(path, isolation_level=None)
        try:
            db.row_factory = sqlite3.Row
            # execute_fetchall reads every row a PRAGMA answers with: a statement left unread
            # keeps a read snapshot open, and a later BEGIN IMMEDIATE on this connection then
            # fails at once with "database is locked" once the other connection has committed.
            await db.execute_fetchall(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            [(mode,)] = await db.execute_fetchall("PRAGMA journal_mode = WAL")
            if str(mode).lower() != "wal":
                raise StoreError(f"could not switch the database to WAL mode (got {mode})")
            await db.execute_fetchall(f"PRAGMA synchronous = {synchronous}")
            await db.execute_fetchall("PRAGMA foreign_keys = ON")
        except BaseException:
            await db.close()
            raise
        return cls(db)

    def submit(self, fn: Callable[[aiosqlite.Connection], Awaitable[_T]]) -> asyncio.Task[_T]:
        """Start ``fn(db)`` now (alone on the connection); the task completes when it has run."""
        return asyncio.ensure_future(self._alone(fn))

    async def run(self, fn: Callable[[aiosqlite.Connection], Awaitable[_T]]) -> _T:
        """``fn(db)`` alone on the connection, to its end even if the caller is cancelled."""
        return await asyncio.shield(self.submit(fn))

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        async with self._lock:  # after whatever is running on it
            await self._db.close()

    async def _alone(self, fn: Callable[[aiosqlite.Connection], Awaitable[_T]]) -> _T:
        async with self._lock:
            return await fn(self._db)


@asynccontextmanager
async def transaction(db: aiosqlite.Connection) -> AsyncIterator[None]:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any error. The caller holds the connection
    alone (``Connection.run``): no other task's statement can land in between."""
    # IMMEDIATE takes the write lock up front (waiting up to busy_timeout), so a transaction
    # never fails half-way on a lock upgrade.
    await db.execute("BEGIN IMMEDIATE")
    try:
        yield
        await db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            await db.rollback()
        raise
