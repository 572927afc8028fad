"""``Store``: the engine's durable memory in SQLite, the one thing the engine talks to.

Intent before side effect: ``record_intent`` returns only once the intent is on disk, so a
crash at any point after it leaves a PENDING intent that the engine resolves on restart by
asking Dhan for the order's correlationId, instead of placing it again.

- WAL mode, so readers never block the writer and a killed process loses nothing committed.
- Intents are durable through their journal (``engine.store.intent_journal``: one fdatasynced
  append for all the intents of a fan-out) and reach the database right after, through a plain
  sqlite3 connection on the journal's own thread (``engine.store.intent_writer``), which puts
  back from the journal, when the store opens, whatever the database lost.
- Durable and lazy connections: the engine state, freezes and hand marks through one with
  ``synchronous=FULL``; everything else, including an intent's completion, through one with
  ``synchronous=NORMAL`` (safe against a process crash; a power cut may drop the last few
  commits, which the engine re-derives: a PENDING intent is looked up at the broker). All set
  ``busy_timeout``.
- Writes go through one line, in call order (``engine.store.write_line``); a read first waits
  for the writes already called. Schema: ``engine.store.schema``; rows: ``engine.store.rows``;
  JSON: ``engine.store.serialization`` (every free text is redacted: no token is written).
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import TypeVar

import aiosqlite

from engine.clock import Clock, SystemClock
from engine.domain import EngineState, OrderSnapshot
from engine.records import Intent, IntentOutcome, MirrorRecord
from engine.secrets import redact
from engine.store import positions, reads, safety, timeline, writes
from engine.store.connection import Connection
from engine.store.errors import StoreError
from engine.store.intent_writer import IntentWriter
from engine.store.rows import (
    alert_row,
    completion_row,
    intent_row,
    journal_row,
    leader_row,
    mirror_row,
    snapshot_from,
)
from engine.store.schema import migrate
from engine.store.serialization import format_datetime, parse_datetime, parse_optional_datetime
from engine.store.write_line import WriteLine
from engine.store.writes import BatchRows, WriteBatch
from engine.views import TimelineEntry

MALFORMED_MAX_CHARS = 20_000

log = logging.getLogger(__name__)

_T = TypeVar("_T")


class Store:
    """Open with ``await Store.open(path)``; close when done."""

    def __init__(
        self,
        intents_db: Connection,
        main_db: Connection,
        intent_writer: IntentWriter,
        clock: Clock,
    ) -> None:
        self._intents_db = intents_db  # synchronous=FULL: engine state, freezes, hand marks
        self._db = main_db  # synchronous=NORMAL: everything else
        self._intent_writer = intent_writer  # intents: their journal, then their rows
        self._clock = clock
        self._seq = itertools.count(1)  # orders journal and intents written at the same time
        self._line = WriteLine(intent_writer)
        self._closed = False

    @classmethod
    async def open(cls, path: Path | str, *, clock: Clock | None = None) -> Store:
        """Open (creating if needed) and migrate the database at ``path``."""
        target = str(path)
        if target == ":memory:" or target.startswith("file:"):
            raise StoreError("the store needs a file path (several connections share it)")
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        intents_db = await Connection.open(target, "FULL")
        main_db: Connection | None = None
        intent_writer: IntentWriter | None = None
        try:
            await intents_db.run(migrate)
            main_db = await Connection.open(target, "NORMAL")
            intent_writer = await IntentWriter.open(target)
            last_seq = await main_db.run(reads.last_seq)
        except BaseException:  # nothing opened is left behind (its thread would live on)
            if intent_writer is not None:
                await intent_writer.close()
            if main_db is not None:
                await main_db.close()
            await intents_db.close()
            raise
        store = cls(intents_db, main_db, intent_writer, clock or SystemClock())
        store._seq = itertools.count(last_seq + 1)
        return store

    async def written(self) -> None:
        """Until every write already called is done (intents: their rows too)."""
        await self._line.drain()

    async def _read(self, fn: Callable[[aiosqlite.Connection], Awaitable[_T]]) -> _T:
        """``fn(db)`` once every write already called is done: a caller reads what it wrote."""
        await self.written()
        return await self._db.run(fn)

    async def close(self) -> None:
        """Let the writes already called finish, then close both connections."""
        if self._closed:
            return
        self._closed = True
        await self._line.drain()
        if self._line.unstored:
            log.warning(
                "%d intents are in the intents journal only: put back when the store next opens",
                self._line.unstored,
            )
        try:
            await self._db.close()
        finally:
            try:
                await self._intent_writer.close()
            finally:
                await self._intents_db.close()

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- engine state ---------------------------------------------------------------------

    async def get_engine_state(self) -> tuple[EngineState, str] | None:
        return await self._read(reads.engine_state)

    async def set_engine_state(self, state: EngineState, reason: str) -> None:
        """Durable on return (the kill switch must survive a crash)."""
        row = (state.value, redact(reason), format_datetime(self._clock.now()))
        await self._line.write(self._intents_db, lambda db: writes.set_engine_state(db, row))

    # --- safety: freezes and copies managed by hand (durable on return) ---------------------

    async def freezes(self) -> list[tuple[str, str, str]]:
        """Every freeze held: (account, "" for the engine; cause; reason)."""
        return await self._read(safety.freezes)

    async def set_freeze(self, account: str, cause: str, reason: str) -> None:
        row = (account, cause, redact(reason), format_datetime(self._clock.now()))
        await self._line.write(self._intents_db, lambda db: safety.set_freeze(db, row))

    async def clear_freeze(self, account: str, cause: str) -> None:
        await self._line.write(self._intents_db, lambda db: safety.clear_freeze(db, account, cause))

    async def hand_managed(self) -> list[tuple[str, str, bool, str]]:
        """Copies the trader changed by hand: (follower, leader order id, detached, reason)."""
        return await self._read(safety.hand_managed)

    async def set_hand_managed(
        self, follower: str, leader_order_id: str, *, detached: bool, reason: str
    ) -> None:
        now = format_datetime(self._clock.now())
        row = (follower, leader_order_id, int(detached), redact(reason), now)
        await self._line.write(self._intents_db, lambda db: safety.set_hand_managed(db, row))

    # --- the write-behind path ------------------------------------------------------------

    async def write_batch(self, batch: WriteBatch) -> None:
        """Everything in ``batch`` in one transaction (one commit instead of one per row)."""
        if not batch:
            return
        now = self._clock.now()
        rows = BatchRows(
            leaders=[leader_row(s, now) for s in batch.leaders],
            deleted_mirrors=list(batch.deleted_mirrors),
            mirrors=[mirror_row(m) for m in batch.mirrors],
            completions=[
                completion_row(intent_id, outcome, detail, order_id, now)
                for intent_id, outcome, detail, order_id in batch.completions
            ],
            journal=[journal_row(*line, next(self._seq)) for line in batch.journal],
            alerts=[alert_row(a) for a in batch.alerts],
        )
        await self._line.write(self._db, lambda db: writes.write_batch(db, rows))

    # --- intents --------------------------------------------------------------------------

    async def record_intent(self, intent: Intent, mirror: MirrorRecord | None = None) -> Intent:
        """Journal the intent (and the mirror row written with it); on disk on return.

        Returns the intent with its ``id`` and ``created_at`` (kept if already set).
        Intents recorded concurrently (several followers at once) share one journal record and
        one fdatasync, and their rows one transaction right after; one the database would
        refuse (an empty required column) fails alone, before anything is journaled.
        """
        if intent.id:
            raise StoreError(f"intent {intent.id} is already recorded")
        created = intent.created_at or self._clock.now()
        row = intent_row(intent, created, next(self._seq))
        intent_id = await self._line.record_intent(
            row, None if mirror is None else mirror_row(mirror)
        )
        return dataclasses.replace(intent, id=intent_id, created_at=created)

    async def complete_intent(
        self,
        intent_id: int,
        outcome: IntentOutcome,
        detail: str = "",
        mirror: MirrorRecord | None = None,
    ) -> None:
        """Record how the broker call ended (and the mirror row, in the same transaction).

        ACKED / REFUSED / EXPIRED set ``completed_at``; PENDING / AMBIGUOUS leave it unfinished.
        A mirror with a follower order id fills in the intent's if it had none (a placement).
        """
        order_id = mirror.follower_order_id if mirror is not None else ""
        completion = completion_row(intent_id, outcome, detail, order_id, self._clock.now())
        mirror_values = None if mirror is None else mirror_row(mirror)
        await self._line.write(
            self._db, lambda db: writes.complete_intent(db, completion, mirror_values)
        )

    async def unfinished_intents(self) -> list[Intent]:
        """Intents whose outcome is PENDING or AMBIGUOUS, oldest first."""
        return await self._read(reads.unfinished_intents)

    async def intent_times(
        self, since: datetime
    ) -> dict[str, list[tuple[datetime, datetime | None]]]:
        """When each follower's intents (order requests) since ``since`` were written and
        their answers recorded (None: never): what a restarted engine counts against Dhan's
        order-API budgets."""
        times: dict[str, list[tuple[datetime, datetime | None]]] = {}
        rows = await self._read(lambda db: reads.intent_times_since(db, since))
        for follower, created, completed in rows:
            times.setdefault(follower, []).append(
                (parse_datetime(created), parse_optional_datetime(completed))
            )
        return times

    # --- what the engine restarts from ----------------------------------------------------

    async def leader_orders(self) -> list[OrderSnapshot]:
        """Every stored leader order, in the order they were first stored."""
        return [snapshot_from(t) for t in await self._read(reads.leader_order_texts)]

    async def mirrors(self) -> list[MirrorRecord]:
        return await self._read(reads.mirrors)

    # --- read side ------------------------------------------------------------------------

    async def timeline(self, leader_order_id: str) -> list[TimelineEntry]:
        """Journal entries and intents of one leader order, oldest first."""
        rows = await self._read(lambda db: timeline.timeline_rows(db, leader_order_id))
        return timeline.in_order(rows)

    # --- malformed input ------------------------------------------------------------------

    async def record_malformed(self, raw: str, error: str) -> None:
        """Keep an input the codec could not read (the newest ``MALFORMED_KEPT`` are kept)."""
        row = (
            format_datetime(self._clock.now()),
            redact(raw[:MALFORMED_MAX_CHARS]),
            redact(error),
        )
        await self._line.write(self._db, lambda db: writes.record_malformed(db, row))

    # --- position ledgers and attach points (engine.live.positions) ------------------------

    async def attach_points(self) -> list[positions.AttachRow]:
        return await self._read(positions.attach_rows)

    async def position_ledgers(self) -> list[positions.LedgerRow]:
        return await self._read(positions.ledger_rows)

    async def save_positions(
        self,
        attach: list[positions.AttachRow],
        ledgers: list[positions.LedgerRow],
        dropped_followers: list[str] | None = None,
    ) -> None:
        """Attach points and changed ledgers, in one transaction, after the writes already
        called (so a ledger never lands before the copies it counts)."""
        dropped = list(dropped_followers or ())
        await self._line.write(self._db, lambda db: positions.save(db, attach, ledgers, dropped))
