"""The line of writes: one at a time, in call order, across the store's connections; intents
that arrive together share one journal record (group commit).

SQLite allows one writer anyway. Without the line the connections would race for its lock (its
busy handler sleeps for milliseconds) and could commit two writes of one mirror row in the
opposite order to the calls. Each write takes its place synchronously, when it is called, and
waits for the write before it to finish.

An intent is durable once its journal record is on disk (``engine.store.intent_journal``): a
leader order fanned out to ten followers records ten intents in one record and one fdatasync,
and their copies are released then, without waiting for the line. Their rows go into the
database in the place the first of them took in the line, a moment later, once the copies
released have been sent. When the database cannot take them then (locked, full), they are
written before the line's next write, and that write fails as well if they still cannot be:
nothing called after an intent reaches the database before it, so that an intent the database
lacks when the store next opens (``engine.store.intent_writer``) is the latest word on its copy.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import aiosqlite

from engine.secrets import redact
from engine.store.connection import Connection
from engine.store.intent_journal import JournalEntry
from engine.store.intent_writer import IntentWriter
from engine.store.writes import Row

log = logging.getLogger(__name__)

_T = TypeVar("_T")

# Journaled intents go into the database this long after their copies are released: those
# sends come first (a commit beside them on a machine's one free CPU delays them).
ROWS_AFTER_S = 0.002


class _Turn:
    """``async with turn:`` waits for the previous write, and lets the next one go after."""

    __slots__ = ("_held", "_mine", "_previous")

    def __init__(self, previous: asyncio.Future[None] | None, mine: asyncio.Future[None]) -> None:
        self._previous = previous
        self._mine = mine
        self._held = False

    def hold_until(self, job: asyncio.Future[Any]) -> None:
        """Let the next write go only once ``job`` has run, even if our caller is cancelled."""
        self._held = True
        job.add_done_callback(lambda _: self.release())

    async def __aenter__(self) -> None:
        if self._previous is not None and not self._previous.done():
            try:
                # asyncio.wait: being cancelled here must not cancel the previous write's turn.
                await asyncio.wait([self._previous])
            except BaseException:
                # Cancelled while waiting (a task stopped at shutdown, a caller's timeout):
                # ``async with`` calls no __aexit__ then, and a place never passed on would
                # hold every later write, and the store's close, forever.
                self.pass_on()
                raise

    async def __aexit__(self, *exc: object) -> None:
        if not self._held:  # (else released by the job's own completion)
            self.pass_on()

    def pass_on(self) -> None:
        """Let the next write go once the previous one is done (at once if it is)."""
        previous = self._previous
        if previous is None or previous.done():
            self.release()
        else:  # cancelled while waiting: the next write must still wait for the previous
            previous.add_done_callback(lambda _: self.release())

    def release(self) -> None:
        if not self._mine.done():
            self._mine.set_result(None)


@dataclass(slots=True)
class _PendingIntent:
    intent: Row
    mirror: Row | None
    future: asyncio.Future[int]


class WriteLine:
    def __init__(self, intents: IntentWriter) -> None:
        self._intents = intents  # the intents' journal and rows, on their own thread
        self._last_write: asyncio.Future[None] | None = None
        self._open_batch: list[_PendingIntent] | None = None
        self._flushes: set[asyncio.Task[None]] = set()
        self._unstored: list[JournalEntry] = []  # journaled, refused by the database so far

    async def write(
        self, conn: Connection, fn: Callable[[aiosqlite.Connection], Awaitable[_T]]
    ) -> _T:
        """``fn(db)`` on ``conn``, after every write called before this one."""
        self._open_batch = None  # intents recorded from now on commit after this write
        turn = self._take_turn()
        async with turn:
            await self._store_journaled(turn)  # what came before, first (raises: not this)
            job = conn.submit(fn)
            turn.hold_until(job)
            return await asyncio.shield(job)

    async def record_intent(self, intent: Row, mirror: Row | None) -> int:
        """Journal the intent (and the mirror row written with it); its id once on disk."""
        item = _PendingIntent(intent, mirror, asyncio.get_running_loop().create_future())
        if self._open_batch is not None:
            self._open_batch.append(item)
        else:
            self._open_batch = [item]
            flush = asyncio.create_task(self._flush_intents(self._open_batch, self._take_turn()))
            self._flushes.add(flush)
            flush.add_done_callback(self._flushes.discard)
        return await item.future

    async def drain(self) -> None:
        """Wait for every write already called (their outcome goes to their callers)."""
        if self._flushes:
            await asyncio.gather(*self._flushes, return_exceptions=True)
        if self._last_write is not None and not self._last_write.done():
            await asyncio.wait([self._last_write])

    @property
    def unstored(self) -> int:
        """Intents journaled that the database has refused so far (put back when it opens)."""
        return len(self._unstored)

    def _take_turn(self) -> _Turn:
        """A place in the line, behind every write called before this one."""
        mine: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        turn = _Turn(self._last_write, mine)
        self._last_write = mine
        return turn

    async def _flush_intents(self, batch: list[_PendingIntent], turn: _Turn) -> None:
        if self._open_batch is batch:
            self._open_batch = None  # intents from now on go in the next record
        journaled: list[tuple[_PendingIntent, JournalEntry]] = []
        for item in batch:
            refusal = self._intents.required.refusal(item.intent, item.mirror)
            if refusal:  # what the database would refuse is never journaled, nor sent
                item.future.set_exception(sqlite3.IntegrityError(refusal))
                continue
            journaled.append((item, JournalEntry(self._intents.new_id(), item.intent, item.mirror)))
        entries = [entry for _, entry in journaled]
        try:
            if entries:
                await asyncio.shield(self._intents.journal(entries))
        except BaseException as exc:  # not on disk: none of them is durable
            for item, _ in journaled:
                if not item.future.done():
                    item.future.set_exception(exc)
            entries = []
            if not isinstance(exc, Exception):
                turn.pass_on()  # the writes behind this batch still go, in their order
                raise
        for item, entry in journaled:
            if not item.future.done():  # (a caller cancelled: its intent is journaled anyway)
                item.future.set_result(entry.intent_id)
        if entries:
            try:
                await asyncio.sleep(ROWS_AFTER_S)
            except asyncio.CancelledError:  # the loop is ending: the rows wait for the next open
                turn.pass_on()
                raise
        async with turn:
            self._unstored += entries
            try:
                await self._store_journaled(turn)
            except Exception as exc:  # kept, and written before the next write
                log.error(
                    "%d intents are journaled but not yet in the database (%s): they are "
                    "written before the next write",
                    len(self._unstored),
                    redact(str(exc)),
                )

    async def _store_journaled(self, turn: _Turn) -> None:
        """The journaled intents the database has not taken yet, first; raises while it
        cannot take them."""
        if not self._unstored:
            return
        entries = self._unstored
        job = self._intents.insert(entries)

        def stored(done: asyncio.Future[None]) -> None:
            if not done.cancelled() and done.exception() is None and self._unstored is entries:
                self._unstored = []

        job.add_done_callback(stored)
        try:
            await asyncio.shield(job)
        except asyncio.CancelledError:
            turn.hold_until(job)  # the next write still waits for these rows
            raise
