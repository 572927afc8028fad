"""The write-behind path, ``Store.write_batch``, and the line every write goes through."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import aiosqlite
import pytest

from engine import secrets
from engine.clock import ManualClock
from engine.domain import Alert, MirrorState, OrderStatus, Severity
from engine.records import IntentOutcome
from engine.store import Store, WriteBatch
from engine.store.intent_journal import decode, journal_path
from tests.store_helpers import (
    T0,
    cap_pages,
    get_intent,
    get_leader_order,
    get_mirror,
    intent,
    mirror,
    one_value,
    params,
    read,
    recent_alerts,
    snapshot,
    uncap_pages,
)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
async def store(tmp_path: Path, clock: ManualClock) -> AsyncIterator[Store]:
    s = await Store.open(tmp_path / "copytrade.db", clock=clock)
    yield s
    await s.close()


async def rows_in(store: Store, table: str) -> int:
    async def query(db: aiosqlite.Connection) -> int:
        return int(await one_value(db, f"SELECT count(*) FROM {table}"))

    return await read(store, query)


async def test_every_kind_of_row_round_trips(tmp_path: Path, clock: ManualClock) -> None:
    path = tmp_path / "rt.db"
    leader = snapshot(status=OrderStatus.PART_TRADED, filled_qty=25, avg_price=101.4)
    live = mirror(
        state=MirrorState.LIVE,
        follower_order_id="F1",
        broker_status=OrderStatus.PENDING,
        params=params(notes=("MARKET sent as LIMIT",)),
        latency_ms=3.5,
        prior_filled=10,
        skip_code="",
    )
    alert = Alert("FOLLOWER_REJECTED", Severity.ERROR, "DH-906", T0, "alice", "L1", count=2)
    async with await Store.open(path, clock=clock) as s:
        stored = await s.record_intent(intent(), mirror())
        clock.advance(0.5)
        await s.write_batch(
            WriteBatch(
                leaders=[leader],
                mirrors=[live],
                completions=[(stored.id, IntentOutcome.ACKED, "placed", "F1")],
                journal=[(clock.now(), "broker", "alice", "L1", "placed F1")],
                alerts=[alert],
            )
        )
    async with await Store.open(path, clock=clock) as s:
        assert await s.leader_orders() == [leader]
        assert await s.mirrors() == [live]
        assert await s.unfinished_intents() == []
        done = await get_intent(s, stored.id)
        assert done is not None
        assert (done.outcome, done.detail, done.follower_order_id) == (
            IntentOutcome.ACKED,
            "placed",
            "F1",
        )
        assert await recent_alerts(s) == [alert]
        [first, second] = await s.timeline("L1")
        assert (first.kind, second.kind, second.text) == ("intent", "broker", "placed F1")
        assert second.at == clock.now()


async def test_an_answer_without_an_end_leaves_the_intent_unfinished(store: Store) -> None:
    stored = await store.record_intent(intent())
    await store.write_batch(
        WriteBatch(completions=[(stored.id, IntentOutcome.AMBIGUOUS, "timeout", "")])
    )
    [unfinished] = await store.unfinished_intents()
    assert (unfinished.outcome, unfinished.detail) == (IntentOutcome.AMBIGUOUS, "timeout")

    async def completed_at(db: aiosqlite.Connection) -> object:
        return await one_value(db, "SELECT completed_at FROM intents")

    assert await read(store, completed_at) is None


async def test_a_batch_deletes_before_it_upserts(store: Store) -> None:
    await store.write_batch(WriteBatch(mirrors=[mirror("alice"), mirror("bob")]))
    again = mirror("alice", state=MirrorState.LIVE)
    await store.write_batch(
        WriteBatch(mirrors=[again], deleted_mirrors=[("alice", "L1"), ("bob", "L1")])
    )
    assert await store.mirrors() == [again]


async def test_an_empty_batch_touches_nothing(store: Store) -> None:
    assert not WriteBatch()
    await store.write_batch(WriteBatch())
    assert await rows_in(store, "journal") == 0


async def test_batches_and_intents_land_in_call_order(store: Store, clock: ManualClock) -> None:
    v1 = mirror(state=MirrorState.PLACING, modifications=1)
    v2 = mirror(state=MirrorState.LIVE, modifications=2)
    v3 = mirror(state=MirrorState.DONE, modifications=3)
    first = WriteBatch(mirrors=[v1], journal=[(T0, "leader", None, "L1", "first")])
    third = WriteBatch(mirrors=[v3], journal=[(T0, "broker", None, "L1", "third")])
    await asyncio.gather(
        store.write_batch(first),
        store.record_intent(intent(), v2),  # journaled, its rows on the other connection
        store.write_batch(third),
    )
    assert await get_mirror(store, "alice", "L1") == v3
    # One instant, three writes: the timeline keeps the order they were called in.
    assert [e.text[:5] for e in await store.timeline("L1")] == ["first", "PLACE", "third"]


async def test_concurrent_intents_share_one_record_and_one_commit(
    store: Store, tmp_path: Path
) -> None:
    commits: list[str] = []

    def trace(db: sqlite3.Connection) -> None:
        db.set_trace_callback(lambda sql: commits.append(sql) if sql == "COMMIT" else None)

    await store._intent_writer.run(trace)
    stored = await asyncio.gather(
        *(store.record_intent(intent(f"f{n}"), mirror(f"f{n}")) for n in range(10))
    )
    assert len({i.id for i in stored}) == 10
    journal = Path(journal_path(str(tmp_path / "copytrade.db")))
    records, _ = decode(journal.read_bytes())  # noqa: ASYNC240 (a small file, in a test)
    assert [[e.intent_id for e in r] for r in records] == [[i.id for i in stored]]  # one fsync
    await store.written()
    assert commits == ["COMMIT"]  # and their rows in one transaction
    assert len(await store.mirrors()) == 10


async def test_a_refused_batch_writes_nothing_and_lands_whole_when_retried(store: Store) -> None:
    await store.write_batch(WriteBatch(leaders=[snapshot("L0")]))
    stored = await store.record_intent(intent(), mirror())
    batch = WriteBatch(
        leaders=[snapshot(f"L{n}") for n in range(1, 40)],
        mirrors=[mirror(f"f{n}") for n in range(40)],
        completions=[(stored.id, IntentOutcome.ACKED, "placed", "F1")],
        journal=[(T0, "leader", None, "L1", "x" * 500) for _ in range(40)],
        alerts=[Alert("X", Severity.WARNING, "y" * 200, T0) for _ in range(20)],
    )
    await store._db.run(cap_pages)
    with pytest.raises(sqlite3.OperationalError, match="full"):
        await store.write_batch(batch)
    # All or nothing: the refused batch left no trace, and the line is not stuck.
    assert [s.order_id for s in await store.leader_orders()] == ["L0"]
    assert await store.mirrors() == [mirror()]
    assert len(await store.unfinished_intents()) == 1
    assert await rows_in(store, "journal") == 0
    later = await asyncio.wait_for(store.record_intent(intent("bob")), timeout=5)
    assert later.id > stored.id

    await store._db.run(uncap_pages)
    await store.write_batch(batch)  # what the write-behind does a second later
    assert len(await store.leader_orders()) == 40
    assert len(await store.mirrors()) == 41  # alice's and the batch's forty
    assert [i.id for i in await store.unfinished_intents()] == [later.id]
    assert await rows_in(store, "journal") == 40  # once, not twice
    assert await rows_in(store, "alerts") == 20
    assert await get_leader_order(store, "L39") == snapshot("L39")


async def test_a_cancelled_caller_still_writes_and_keeps_its_place(store: Store) -> None:
    cancelled = WriteBatch(
        mirrors=[mirror(modifications=1)], journal=[(T0, "leader", None, "L1", "kept")]
    )
    first = asyncio.create_task(store.write_batch(cancelled))
    await asyncio.sleep(0)  # handed to the database thread
    first.cancel()
    await store.write_batch(WriteBatch(mirrors=[mirror(modifications=2)]))
    with pytest.raises(asyncio.CancelledError):
        await first
    assert await get_mirror(store, "alice", "L1") == mirror(modifications=2)
    assert [e.text for e in await store.timeline("L1")] == ["kept"]


async def test_no_secret_reaches_the_database_through_a_batch(
    tmp_path: Path, clock: ManualClock
) -> None:
    token = "test-access-token-BATCH-0123456789"
    secrets.register_secret(token)
    try:
        leak = f"token={token}"
        async with await Store.open(tmp_path / "b.db", clock=clock) as s:
            stored = await s.record_intent(intent())
            await s.write_batch(
                WriteBatch(
                    leaders=[snapshot(reason=leak)],
                    mirrors=[mirror(reason=leak, params=params(notes=(leak,)))],
                    completions=[(stored.id, IntentOutcome.REFUSED, leak, "")],
                    journal=[(T0, "broker", "alice", "L1", leak)],
                    alerts=[Alert("X", Severity.ERROR, leak, T0)],
                )
            )
            assert token not in str(await s.timeline("L1"))
        for name, data in _read_all(tmp_path).items():
            assert token.encode() not in data, name
    finally:
        secrets.clear_secrets()


def _read_all(directory: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in directory.iterdir()}
