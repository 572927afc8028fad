"""One SQLite connection on a thread of its own, driven from asyncio.

``run(fn)`` calls ``fn(db)`` on the connection's thread and returns its result: one thread hop
for a whole transaction, and no other task's statements can land inside it. Calls run one at a
time in the order they were made (a single-worker executor is a FIFO queue). A call whose caller
is cancelled still runs to the end: a write that was handed over is never half-dropped.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TypeVar

from engine.store.errors import StoreError

BUSY_TIMEOUT_MS = 5000

_T = TypeVar("_T")


class Connection:
    """Open with ``await Connection.open(path, synchronous)``; ``close`` when done."""

    def __init__(self, executor: ThreadPoolExecutor, db: sqlite3.Connection) -> None:
        self._executor = executor
        self._db = db
        self._closed = False

    @classmethod
    async def open(cls, path: str, synchronous: str) -> Connection:
        """A WAL connection with ``busy_timeout`` and the given ``synchronous`` level."""
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store-db")
        try:
            # Created on the worker thread: sqlite3 then checks every later use is there too.
            db = await asyncio.get_running_loop().run_in_executor(
                executor, _connect, path, synchronous
            )
        except BaseException:
            executor.shutdown(wait=False)
            raise
        return cls(executor, db)

    def submit(self, fn: Callable[[sqlite3.Connection], _T]) -> asyncio.Future[_T]:
        """Queue ``fn(db)`` now; the returned future completes when it has run."""
        return asyncio.get_running_loop().run_in_executor(self._executor, fn, self._db)

    async def run(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        """``fn(db)`` on the connection's thread, after everything queued before it."""
        # shield: cancelling the caller must not take back work the thread may be doing.
        return await asyncio.shield(self.submit(fn))

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            await self.run(_close)
        finally:
            self._executor.shutdown(wait=False)


def _close(db: sqlite3.Connection) -> None:
    db.close()


def _connect(path: str, synchronous: str) -> sqlite3.Connection:
    # isolation_level=None: no implicit transactions; the store's own BEGIN/COMMIT decide.
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.row_factory = sqlite3.Row
        db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreError(f"could not switch the database to WAL mode (got {mode})")
        db.execute(f"PRAGMA synchronous = {synchronous}")
        db.execute("PRAGMA foreign_keys = ON")
    except BaseException:
        db.close()
        raise
    return db


@contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[None]:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any error."""
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
