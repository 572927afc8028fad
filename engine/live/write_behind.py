"""Persistence: the write-behind line to the store.

Two paths. Durable writes (an intent before its broker call, the engine state) go to the store
at once and are awaited by their callers. Everything else is marked changed in the book or
buffered here and stored by one flusher in a single transaction a few milliseconds later,
writing the *current* state of each leader order and copy: a late flush is never stale, and a
burst of a hundred orders costs a few commits instead of hundreds, so intents never queue
behind journal lines.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable
from datetime import datetime

from engine.domain import Alert
from engine.live.book import ReplicationBook
from engine.records import Intent, IntentOutcome, MirrorRecord
from engine.secrets import redact
from engine.store import Store, StoreError, WriteBatch

log = logging.getLogger(__name__)

# What a store call raises when the database refuses (locked, disk full, I/O, our own checks).
STORE_FAILURES = (sqlite3.Error, OSError, StoreError)
FLUSH_DELAY_S = 0.02
STORE_RETRY_S = 1.0


class WriteBehind:
    def __init__(self, book: ReplicationBook, on_failure: Callable[[Exception], None]) -> None:
        self._book = book
        self._on_failure = on_failure  # raises the alert
        self._store: Store | None = None
        self._batch = WriteBatch()
        self._flush_wanted = asyncio.Event()

    def attach(self, store: Store) -> None:
        self._store = store

    @property
    def store(self) -> Store | None:
        return self._store

    def require_store(self) -> Store:
        assert self._store is not None, "engine not started"
        return self._store

    def flush_soon(self) -> None:
        self._flush_wanted.set()

    def journal(
        self, at: datetime, kind: str, text: str, follower: str | None, leader_id: str | None
    ) -> None:
        self._batch.journal.append((at, kind, follower, leader_id, redact(text)))
        self.flush_soon()

    def add_alert(self, alert: Alert) -> None:
        self._batch.alerts.append(alert)
        self.flush_soon()

    def finish_intent(
        self,
        intent: Intent,
        outcome: IntentOutcome,
        detail: str,
        mirror: MirrorRecord | None = None,
    ) -> None:
        """The intent's answer, stored with the copy's state in the next batch."""
        order_id = mirror.follower_order_id if mirror is not None else ""
        self._batch.completions.append((intent.id, outcome, redact(detail), order_id))
        if mirror is not None:
            self._book.mark_unstored([], [(mirror.follower, mirror.leader_order_id)])
        self.flush_soon()

    def _take_batch(self) -> WriteBatch:
        batch, self._batch = self._batch, WriteBatch()
        batch.leaders, batch.mirrors, batch.deleted_mirrors = self._book.take_changes()
        return batch

    async def flush(self) -> bool:
        """Store what is buffered; False when the store refused it (it is kept for later)."""
        batch = self._take_batch()
        if not batch or self._store is None:
            return True
        try:
            await self._store.write_batch(batch)
        except STORE_FAILURES as exc:  # kept and retried
            log.exception("store write failed")
            self._requeue(batch)
            self._on_failure(exc)
            return False
        return True

    def _requeue(self, batch: WriteBatch) -> None:
        """A batch the store refused goes back in front of what came since; leader orders and
        copies are re-marked, so their *current* state is written."""
        self._book.mark_unstored(
            [s.order_id for s in batch.leaders],
            [(m.follower, m.leader_order_id) for m in batch.mirrors] + batch.deleted_mirrors,
        )
        newer = self._batch
        newer.completions[:0] = batch.completions
        newer.journal[:0] = batch.journal
        newer.alerts[:0] = batch.alerts
        self.flush_soon()

    async def run(self) -> None:
        """The flusher: one task for the engine's life."""
        while True:
            await self._flush_wanted.wait()
            await asyncio.sleep(FLUSH_DELAY_S)  # gather a batch; hot work runs first
            self._flush_wanted.clear()
            # A stop must not cut a batch in half.
            if not await asyncio.shield(self.flush()):
                await asyncio.sleep(STORE_RETRY_S)  # the store is refusing: do not spin
