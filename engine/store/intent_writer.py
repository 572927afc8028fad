"""The intents' thread: their journal, and their rows in the database, on one thread of our own.

Every copy of a leader order waits for its intent to be durable before it is sent, so that
write sits on the critical path of every copy. It is one append to the intents' journal
(``engine.store.intent_journal``), fdatasynced: a fan-out's intents in one record. Their rows
(and the mirror rows written with them) go into the database afterwards, on the same thread,
through a plain ``sqlite3`` connection: one hop for the whole transaction, where aiosqlite
would take one per statement while the loop is busiest.

That connection commits with ``synchronous=NORMAL``: the journal, not the commit, is what
makes an intent durable. When the store opens, the journal is read back and every intent the
database lacks (a crash or a power cut between the append and the commit) is put back, with
its mirror row, in one fsynced transaction; then the journal starts empty. The write line
keeps every later write behind an intent's rows, so an intent the database lacks is one that
nothing written after it reached either: its mirror row is then the newest one.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TypeVar

from engine.store.connection import BUSY_TIMEOUT_MS
from engine.store.errors import StoreError
from engine.store.intent_journal import IntentJournal, JournalEntry, journal_path
from engine.store.rows import MIRROR_COLUMN_NAMES
from engine.store.writes import (
    INSERT_INTENT,
    INSERT_INTENT_IF_MISSING,
    INTENT_COLUMNS,
    UPSERT_MIRROR,
)

log = logging.getLogger(__name__)

_T = TypeVar("_T")

# The journal is emptied, once the database durably holds all of it, past this size (about a
# thousand intents): it is also read back whole whenever the store opens.
COMPACT_AT_BYTES = 1 << 20


class IntentWriter:
    """Open with ``await IntentWriter.open(path)``; ``close`` when done."""

    def __init__(
        self,
        executor: ThreadPoolExecutor,
        db: sqlite3.Connection,
        journal: IntentJournal,
        next_id: int,
        required: RequiredColumns,
        wal_path: str,
    ) -> None:
        self._executor = executor  # one thread: the connection and the file are only used on it
        self._db = db
        self._journal = journal
        self._next_id = next_id  # the id the next intent gets (ids are never reused)
        self.required = required
        self._closed = False
        self._wal_path = wal_path
        self._uninserted = 0  # journaled, not yet in the database (used on the thread only)

    @classmethod
    async def open(cls, path: str) -> IntentWriter:
        """Connect, and put back into the database whatever of the journal it lacks."""
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="copytrade-intents")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(executor, _open_on_thread, executor, path)
        except BaseException:
            executor.shutdown(wait=False)
            raise

    def new_id(self) -> int:
        """An intent's id, given before its row is written (on the loop, in call order)."""
        self._next_id += 1
        return self._next_id - 1

    def journal(self, entries: Sequence[JournalEntry]) -> asyncio.Future[None]:
        """Append ``entries`` to the journal; done once they are on disk."""
        return self._submit(lambda: self._append(entries))

    def insert(self, entries: Sequence[JournalEntry]) -> asyncio.Future[None]:
        """Write journaled intents (and their mirror rows) into the database, in one
        transaction. Raises, writing nothing, when the database cannot take them now (locked,
        full); a row the database refuses for itself is logged and left out."""
        return self._submit(lambda: self._insert(entries))

    def run(self, fn: Callable[[sqlite3.Connection], _T]) -> asyncio.Future[_T]:
        """``fn(db)`` on the connection's thread, after what was submitted before."""
        return self._submit(lambda: fn(self._db))

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        # Queued behind whatever was submitted: those run first.
        await asyncio.get_running_loop().run_in_executor(self._executor, self._close_on_thread)
        self._executor.shutdown(wait=False)  # idle now: its thread ends at once

    def _submit(self, fn: Callable[[], _T]) -> asyncio.Future[_T]:
        if self._closed:
            raise StoreError("the intents connection is closed")
        return asyncio.get_running_loop().run_in_executor(self._executor, fn)

    # --- on the thread ---------------------------------------------------------------------

    def _append(self, entries: Sequence[JournalEntry]) -> None:
        self._journal.append(entries)
        self._uninserted += len(entries)

    def _insert(self, entries: Sequence[JournalEntry]) -> None:
        insert_journaled(self._db, entries)
        self._uninserted -= len(entries)
        if self._uninserted == 0 and self._journal.size > COMPACT_AT_BYTES:
            self._compact()

    def _compact(self) -> None:
        """Empty the journal once every intent in it is durably in the database: an fsync of
        the WAL, which holds every commit since the last checkpoint (a checkpoint fsyncs what
        it copies into the database file)."""
        try:
            wal = os.open(self._wal_path, os.O_RDONLY)
        except FileNotFoundError:
            wal = -1  # checkpointed and removed: all of it is in the database file, synced
        try:
            if wal >= 0:
                os.fsync(wal)
            self._journal.reset()
        except (OSError, StoreError):
            log.exception("the intents journal could not be emptied (kept as it is)")
        finally:
            if wal >= 0:
                os.close(wal)

    def _close_on_thread(self) -> None:
        try:
            self._db.close()
        finally:
            self._journal.close()


class RequiredColumns:
    """What the database would refuse in a row for itself (a NOT NULL column left empty),
    checked before the row is journaled: a copy is sent only once its intent is accepted."""

    def __init__(self, intents: Sequence[str], mirrors: Sequence[str]) -> None:
        self._intents = [(i, c) for i, c in enumerate(INTENT_COLUMNS) if c in intents]
        self._mirrors = [(i, c) for i, c in enumerate(MIRROR_COLUMN_NAMES) if c in mirrors]

    def refusal(self, intent: tuple[object, ...], mirror: tuple[object, ...] | None) -> str:
        """SQLite's own words for why it would refuse the pair; "" when it would not."""
        for i, column in self._intents:
            if intent[i] is None:
                return f"NOT NULL constraint failed: intents.{column}"
        if mirror is not None:
            for i, column in self._mirrors:
                if mirror[i] is None:
                    return f"NOT NULL constraint failed: mirrors.{column}"
        return ""


def _open_on_thread(executor: ThreadPoolExecutor, path: str) -> IntentWriter:
    db = _connect(path)
    try:
        journal = IntentJournal.open(journal_path(path))
        try:
            if journal.entries:
                restored = restore(db, journal.entries)
                log.info(
                    "intents journal: %d of %d intents put back into the database",
                    restored,
                    len(journal.entries),
                )
            journal.reset()
            next_id = _last_intent_id(db) + 1
            required = RequiredColumns(_not_null(db, "intents"), _not_null(db, "mirrors"))
        except BaseException:
            journal.close()
            raise
    except BaseException:
        db.close()
        raise
    return IntentWriter(executor, db, journal, next_id, required, path + "-wal")


def _connect(path: str) -> sqlite3.Connection:
    # isolation_level=None: no implicit transactions; ours say BEGIN IMMEDIATE ... COMMIT.
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        (mode,) = db.execute("PRAGMA journal_mode = WAL").fetchone()
        if str(mode).lower() != "wal":
            raise StoreError(f"could not switch the database to WAL mode (got {mode})")
        db.execute("PRAGMA synchronous = NORMAL")  # the intents' journal is fsynced instead
        db.execute("PRAGMA foreign_keys = ON")
        # The commit that crosses the WAL's size limit copies it into the database (and
        # fsyncs that too): never this connection's, whose commits follow the copies' sends.
        # The store's other connection does it.
        db.execute("PRAGMA wal_autocheckpoint = 0")
    except BaseException:
        db.close()
        raise
    return db


def insert_journaled(db: sqlite3.Connection, entries: Sequence[JournalEntry]) -> None:
    """The rows of journaled intents, in one transaction. A row the database refuses for
    itself (a constraint) is logged and left out, so that it cannot hold back the others;
    anything else (locked, full) raises with nothing written."""
    try:
        with _transaction(db):
            db.executemany(INSERT_INTENT, [(e.intent_id, *e.intent) for e in entries])
            mirrors = [e.mirror for e in entries if e.mirror is not None]
            if mirrors:
                db.executemany(UPSERT_MIRROR, mirrors)
        return
    except sqlite3.IntegrityError:
        pass  # one of them is refused (rolled back, nothing kept): each in its own savepoint
    with _transaction(db):
        _each_alone(db, entries, INSERT_INTENT, "left out of the database")


def restore(db: sqlite3.Connection, entries: Sequence[JournalEntry]) -> int:
    """Put back the journaled intents the database lacks, each with its mirror row, in one
    fsynced transaction; how many were put back. An intent the database has is left as it is:
    what was written after it is there too, its mirror row's newer state included."""
    db.execute("PRAGMA synchronous = FULL")
    try:
        with _transaction(db):
            return _each_alone(db, entries, INSERT_INTENT_IF_MISSING, "not put back")
    finally:
        db.execute("PRAGMA synchronous = NORMAL")


def _each_alone(
    db: sqlite3.Connection, entries: Sequence[JournalEntry], insert: str, refused: str
) -> int:
    """Each entry's rows in a savepoint of its own (inside the caller's transaction): one the
    database refuses is logged and left out. Its mirror row goes in only with a new intent
    row. How many intent rows went in."""
    written = 0
    for entry in entries:
        db.execute("SAVEPOINT intent")
        try:
            if db.execute(insert, (entry.intent_id, *entry.intent)).rowcount == 1:
                if entry.mirror is not None:
                    db.execute(UPSERT_MIRROR, entry.mirror)
                written += 1
        except sqlite3.IntegrityError as exc:
            db.execute("ROLLBACK TO intent")
            log.error("intent %d %s: %s", entry.intent_id, refused, exc)
        db.execute("RELEASE intent")
    return written


def _last_intent_id(db: sqlite3.Connection) -> int:
    """The highest id an intent ever had (AUTOINCREMENT's own record included)."""
    (last,) = db.execute(
        "SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'intents'), 0),"
        " coalesce((SELECT max(id) FROM intents), 0))"
    ).fetchone()
    return int(last)


def _not_null(db: sqlite3.Connection, table: str) -> list[str]:
    return [row[1] for row in db.execute(f"PRAGMA table_info({table})") if row[3]]


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
