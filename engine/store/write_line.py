"""The line of writes: one at a time, in call order, across both connections; intents that
arrive while a commit is under way share the next one (group commit).

SQLite allows one writer anyway. Without the line the two connections would race for its lock
(its busy handler sleeps for milliseconds) and could commit two writes of one mirror row in the
opposite order to the calls. Each write takes its place synchronously, when it is called, and
waits for the write before it to finish. A leader order fanned out to ten followers records ten
intents; they share one transaction and so one fsync, not ten.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import aiosqlite

from engine.store.connection import Connection
from engine.store.intent_writer import IntentWriter, insert_intents
from engine.store.writes import Row

_T = TypeVar("_T")


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
            # asyncio.wait: being cancelled here must not cancel the previous write's turn.
            await asyncio.wait([self._previous])

    async def __aexit__(self, *exc: object) -> None:
        if self._held:
            return  # released by the job's own completion
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
        self._intents = intents  # where group-committed intents go, in one hop
        self._last_write: asyncio.Future[None] | None = None
        self._open_batch: list[_PendingIntent] | None = None
        self._flushes: set[asyncio.Task[None]] = set()

    async def write(
        self, conn: Connection, fn: Callable[[aiosqlite.Connection], Awaitable[_T]]
    ) -> _T:
        """``fn(db)`` on ``conn``, after every write called before this one."""
        self._open_batch = None  # intents recorded from now on commit after this write
        turn = self._take_turn()
        async with turn:
            job = conn.submit(fn)
            turn.hold_until(job)
            return await asyncio.shield(job)

    async def record_intent(self, intent: Row, mirror: Row | None) -> int:
        """Insert the intent (and upsert the mirror row with it); its id once fsynced."""
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

    def _take_turn(self) -> _Turn:
        """A place in the line, behind every write called before this one."""
        mine: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        turn = _Turn(self._last_write, mine)
        self._last_write = mine
        return turn

    async def _flush_intents(self, batch: list[_PendingIntent], turn: _Turn) -> None:
        async with turn:
            if self._open_batch is batch:
                self._open_batch = None  # intents from now on go in the next commit
            rows = [(item.intent, item.mirror) for item in batch]
            try:
                job = self._intents.submit(lambda db: insert_intents(db, rows))
                turn.hold_until(job)  # the next write waits for this commit, come what may
                results = await asyncio.shield(job)
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
