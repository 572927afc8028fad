"""The durable store: round-trips, intents across a crash, migrations, PRAGMAs, no tokens."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sqlite3
import textwrap
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from engine import secrets
from engine.clock import IST, ManualClock
from engine.domain import (
    Alert,
    AmoTime,
    EngineState,
    MirrorState,
    OrderParams,
    OrderSnapshot,
    OrderStatus,
    OrderType,
    Product,
    Segment,
    Severity,
    Side,
    SnapshotSource,
    Validity,
)
from engine.records import Intent, IntentKind, IntentOutcome, SliceState
from engine.store import MIGRATIONS, SCHEMA_VERSION, Store, StoreError, parse_datetime
from engine.store.serialization import from_json, to_json
from tests.store_helpers import (
    T0,
    append_journal,
    durability,
    get_intent,
    get_leader_order,
    get_mirror,
    intent,
    malformed_messages,
    mirror,
    mirror_by_correlation,
    mirrors_for_leader,
    params,
    recent_alerts,
    record_alert,
    run_until_killed,
    save_mirror,
    schema_version,
    snapshot,
    upsert_leader_order,
)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
async def store(tmp_path: Path, clock: ManualClock) -> AsyncIterator[Store]:
    s = await Store.open(tmp_path / "copytrade.db", clock=clock)
    yield s
    await s.close()


# --- codec -----------------------------------------------------------------------------------


def test_snapshot_json_round_trip_is_exact() -> None:
    full = snapshot(
        status=OrderStatus.PART_TRADED,
        side=Side.SELL,
        order_type=OrderType.STOP_LOSS,
        product=Product.BO,
        validity=Validity.IOC,
        segment=Segment.MCX_COMM,
        filled_qty=25,
        trigger_price=100.25,
        disclosed_qty=30,
        avg_price=100.3,
        correlation_id="CPY-X",
        amo=True,
        amo_time=AmoTime.OPEN_30,
        leg="ENTRY_LEG",
        parent_order_id="P1",
        is_super_order=True,
        reason='remark with unicode ₹ and "quotes"',
        updated_at=T0 + timedelta(seconds=1, microseconds=7),
        source=SnapshotSource.ORDER_BOOK,
    )
    back = from_json(OrderSnapshot, to_json(full))
    assert back == full
    assert back.updated_at is not None and back.created_at is not None
    assert back.updated_at.tzinfo is not None
    assert back.updated_at.tzinfo.zone == "Asia/Kolkata"  # type: ignore[attr-defined]
    assert back.updated_at.utcoffset() == timedelta(hours=5, minutes=30)
    assert isinstance(back.price, float) and isinstance(back.status, OrderStatus)

    minimal = snapshot(created_at=None, updated_at=None, amo_time=None)
    assert from_json(OrderSnapshot, to_json(minimal)) == minimal


def test_params_round_trip_with_notes_and_amo() -> None:
    p = params(amo=True, amo_time=AmoTime.PRE_OPEN, notes=("MARKET sent as LIMIT", "x"))
    back = from_json(OrderParams, to_json(p))
    assert back == p
    assert isinstance(back.notes, tuple)


def test_datetime_parsing_keeps_zones() -> None:
    utc = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert parse_datetime(utc.isoformat()) == utc
    assert parse_datetime(utc.isoformat()).utcoffset() == timedelta(0)
    naive = datetime(2026, 1, 2, 3, 4, 5)
    assert parse_datetime(naive.isoformat()) == naive


def test_unknown_keys_are_ignored_for_forward_compatibility() -> None:
    raw = json.loads(to_json(params()))
    raw["some_future_field"] = 1
    assert from_json(OrderParams, json.dumps(raw)) == params()


# --- engine state ----------------------------------------------------------------------------


async def test_engine_state_round_trip_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    async with await Store.open(path) as s:
        assert await s.get_engine_state() is None
        await s.set_engine_state(EngineState.ARMED, "started")
        await s.set_engine_state(EngineState.KILLED, "K pressed")
        assert await s.get_engine_state() == (EngineState.KILLED, "K pressed")
    async with await Store.open(path) as s:
        assert await s.get_engine_state() == (EngineState.KILLED, "K pressed")


# --- leader orders, mirrors ------------------------------------------------------------------


async def test_leader_orders_upsert_is_idempotent_and_keeps_latest(store: Store) -> None:
    a = snapshot("L1")
    b = snapshot("L2", side=Side.SELL)
    await upsert_leader_order(store, a)
    await upsert_leader_order(store, b)
    await upsert_leader_order(store, a)
    assert await store.leader_orders() == [a, b]
    filled = a.with_changes(status=OrderStatus.TRADED, filled_qty=75, avg_price=101.45)
    await upsert_leader_order(store, filled)
    assert await get_leader_order(store, "L1") == filled
    assert await get_leader_order(store, "nope") is None
    assert [s.order_id for s in await store.leader_orders()] == ["L1", "L2"]


async def test_mirror_round_trip_and_upsert(store: Store) -> None:
    m = mirror(
        state=MirrorState.LIVE,
        generation=2,
        follower_order_id="F9",
        broker_status=OrderStatus.PART_TRADED,
        filled_qty=25,
        avg_price=101.55,
        modifications=3,
        reason="why",
        symbol="NIFTY",
        leader_seen_mono=1234.5,
        latency_ms=41.25,
        slippage=-0.05,
    )
    await save_mirror(store, m)
    assert await get_mirror(store, "alice", "L1") == m
    bare = mirror("bob", params=None, updated_at=None)
    await save_mirror(store, bare)
    assert await get_mirror(store, "bob", "L1") == bare
    done = m.with_changes(state=MirrorState.DONE, broker_status=OrderStatus.TRADED)
    await save_mirror(store, done)
    await save_mirror(store, done)
    await save_mirror(store, mirror("alice", "L2"))
    assert await store.mirrors() == [done, bare, mirror("alice", "L2")]
    assert await mirrors_for_leader(store, "L1") == [done, bare]
    assert await get_mirror(store, "alice", "L3") is None
    assert await mirror_by_correlation(store, "CPY-alice-L2") == mirror("alice", "L2")


async def test_a_sliced_copys_orders_round_trip(store: Store) -> None:
    sliced = mirror(
        state=MirrorState.LIVE,
        follower_order_id="S1",
        broker_status=OrderStatus.PART_TRADED,
        slices=(
            SliceState("S1", 1755, 1755, 221.45, OrderStatus.TRADED),
            SliceState("S2", 1755, 65, 221.5, OrderStatus.PART_TRADED),
            SliceState("S3"),
        ),
    )
    await save_mirror(store, sliced)
    assert await get_mirror(store, "alice", "L1") == sliced
    await save_mirror(store, sliced.with_changes(slices=()))
    assert (await get_mirror(store, "alice", "L1")) == sliced.with_changes(slices=())


async def test_a_refused_modification_round_trips(store: Store) -> None:
    refused = mirror(
        state=MirrorState.LIVE,
        follower_order_id="F1",
        broker_status=OrderStatus.PENDING,
        reason="modify refused: RMS",
        refused_params=params(quantity=150),
    )
    await save_mirror(store, refused)
    assert await get_mirror(store, "alice", "L1") == refused
    await save_mirror(store, refused.with_changes(refused_params=None))
    assert await get_mirror(store, "alice", "L1") == refused.with_changes(refused_params=None)


# --- intents ---------------------------------------------------------------------------------


async def test_record_intent_assigns_id_and_time_and_writes_mirror(
    store: Store, clock: ManualClock
) -> None:
    m = mirror()
    stored = await store.record_intent(intent(), m)
    assert stored.id > 0
    assert stored.created_at == T0
    assert stored == dataclasses.replace(intent(), id=stored.id, created_at=T0)
    assert await get_mirror(store, "alice", "L1") == m
    assert await store.unfinished_intents() == [stored]
    assert await get_intent(store, stored.id) == stored

    clock.advance(0.2)
    live = m.with_changes(state=MirrorState.LIVE, follower_order_id="F1")
    await store.complete_intent(stored.id, IntentOutcome.ACKED, "placed", live)
    assert await store.unfinished_intents() == []
    assert await get_mirror(store, "alice", "L1") == live
    done = await get_intent(store, stored.id)
    assert done is not None
    assert (done.outcome, done.detail, done.follower_order_id) == (
        IntentOutcome.ACKED,
        "placed",
        "F1",
    )


async def test_ambiguous_intents_stay_unfinished(store: Store) -> None:
    a = await store.record_intent(intent("alice"))
    b = await store.record_intent(intent("bob", kind=IntentKind.CANCEL, params=None))
    c = await store.record_intent(intent("carol"))
    await store.complete_intent(a.id, IntentOutcome.AMBIGUOUS, "timeout")
    await store.complete_intent(b.id, IntentOutcome.REFUSED, "DH-906")
    unfinished = await store.unfinished_intents()
    assert [i.id for i in unfinished] == [a.id, c.id]
    assert unfinished[0].outcome is IntentOutcome.AMBIGUOUS
    assert unfinished[0].detail == "timeout"


async def test_intent_times_say_when_each_request_was_written_and_answered(
    store: Store, clock: ManualClock
) -> None:
    """What a restarted engine counts against Dhan's order limits: an answered request from
    its answer, an unanswered one (no answer recorded, or an unclear one) from its writing."""
    a = await store.record_intent(intent("alice"))
    clock.advance(0.02)
    await store.complete_intent(a.id, IntentOutcome.ACKED, "placed")
    b = await store.record_intent(intent("bob"))
    clock.advance(0.5)
    await store.complete_intent(b.id, IntentOutcome.AMBIGUOUS, "timeout")
    await store.record_intent(intent("bob"))
    times = await store.intent_times(T0 - timedelta(days=1))
    assert times == {
        "alice": [(T0, T0 + timedelta(seconds=0.02))],
        "bob": [(T0 + timedelta(seconds=0.52), None), (T0 + timedelta(seconds=0.02), None)],
    }


async def test_record_intent_rejects_recorded_and_complete_rejects_unknown(store: Store) -> None:
    stored = await store.record_intent(intent())
    with pytest.raises(StoreError):
        await store.record_intent(stored)
    with pytest.raises(StoreError):
        await store.complete_intent(9999, IntentOutcome.ACKED)


async def test_failed_transaction_leaves_nothing(store: Store) -> None:
    bad = mirror()
    object.__setattr__(bad, "follower", None)  # the mirror upsert fails after the insert
    with pytest.raises(sqlite3.IntegrityError):
        await store.record_intent(intent(), bad)
    assert await store.unfinished_intents() == []  # the intent insert was rolled back
    assert await store.mirrors() == []
    ok = await store.record_intent(intent(), mirror())  # and the connection still works
    assert await store.unfinished_intents() == [ok]


async def test_concurrent_intents_share_a_commit_but_fail_alone(store: Store) -> None:
    bad = mirror("bad")
    object.__setattr__(bad, "follower", None)
    results = await asyncio.gather(
        store.record_intent(intent("alice"), mirror("alice")),
        store.record_intent(intent("bad"), bad),
        store.record_intent(intent("carol"), mirror("carol")),
        return_exceptions=True,
    )
    assert isinstance(results[1], sqlite3.IntegrityError)
    ok = [r for r in results if isinstance(r, Intent)]
    assert [i.follower for i in ok] == ["alice", "carol"]
    assert await store.unfinished_intents() == ok
    assert [m.follower for m in await store.mirrors()] == ["alice", "carol"]


async def test_writes_of_one_mirror_land_in_call_order(store: Store) -> None:
    for _ in range(20):
        v1 = mirror(state=MirrorState.PLACING, modifications=1)
        v2 = mirror(state=MirrorState.LIVE, modifications=2)
        v3 = mirror(state=MirrorState.DONE, modifications=3)
        # Started in this order, on two different connections, without waiting.
        await asyncio.gather(
            save_mirror(store, v1), store.record_intent(intent(), v2), save_mirror(store, v3)
        )
        assert await get_mirror(store, "alice", "L1") == v3
        await asyncio.gather(save_mirror(store, v1), store.record_intent(intent(), v2))
        assert await get_mirror(store, "alice", "L1") == v2


async def test_close_waits_for_writes_already_called(tmp_path: Path) -> None:
    path = tmp_path / "w.db"
    s = await Store.open(path)
    tasks = [
        asyncio.create_task(save_mirror(s, mirror("alice"))),
        asyncio.create_task(s.record_intent(intent("bob"))),
        asyncio.create_task(append_journal(s, "leader", "x", leader_order_id="L1")),
    ]
    await asyncio.sleep(0)  # started, not finished
    await s.close()
    await asyncio.gather(*tasks)
    async with await Store.open(path) as s:
        assert await get_mirror(s, "alice", "L1") == mirror("alice")
        assert len(await s.unfinished_intents()) == 1
        assert len(await s.timeline("L1")) == 2


async def test_a_cancelled_caller_does_not_block_later_writes(store: Store) -> None:
    slow = asyncio.create_task(save_mirror(store, mirror("a")))
    cancelled = asyncio.create_task(store.record_intent(intent("b"), mirror("b")))
    await asyncio.sleep(0)
    cancelled.cancel()
    later = await asyncio.wait_for(store.record_intent(intent("c"), mirror("c")), timeout=5)
    await slow
    assert later.id > 0
    assert await get_mirror(store, "c", "L1") == mirror("c")


async def test_intents_survive_close_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    async with await Store.open(path) as s:
        a = await s.record_intent(intent("alice"), mirror("alice"))
        b = await s.record_intent(intent("bob"), mirror("bob"))
        await s.complete_intent(b.id, IntentOutcome.ACKED, "ok")
    async with await Store.open(path) as s:
        assert await s.unfinished_intents() == [a]
        assert (await get_mirror(s, "alice", "L1")) == mirror("alice")


CRASH_SCRIPT = textwrap.dedent(
    """
    import asyncio, os, signal, sys
    from engine.records import Intent, IntentKind, IntentOutcome
    from engine.store import Store

    async def main():
        store = await Store.open(sys.argv[1])
        done = await store.record_intent(Intent("alice", "L1", IntentKind.PLACE, "C1", None))
        await store.complete_intent(done.id, IntentOutcome.ACKED, "ok")
        for n in range(3):
            await store.record_intent(Intent("bob", f"L{n}", IntentKind.PLACE, f"C{n}", None))
        await store.set_engine_state(__import__("engine.domain").domain.EngineState.KILLED, "k")
        os.kill(os.getpid(), signal.SIGKILL)  # die mid-flight: nothing closed, nothing flushed

    asyncio.run(main())
    """
)


def test_intents_survive_a_kill_9(tmp_path: Path) -> None:
    path = tmp_path / "crash.db"
    run_until_killed(CRASH_SCRIPT, path)

    async def check() -> None:
        async with await Store.open(path) as s:
            pending = await s.unfinished_intents()
            assert [(i.follower, i.leader_order_id) for i in pending] == [
                ("bob", "L0"),
                ("bob", "L1"),
                ("bob", "L2"),
            ]
            assert all(i.outcome is IntentOutcome.PENDING for i in pending)
            assert await s.get_engine_state() == (EngineState.KILLED, "k")

    asyncio.run(check())


async def test_concurrent_tasks(store: Store) -> None:
    async def worker(n: int) -> int:
        follower = f"f{n % 5}"
        leader = f"L{n}"
        rec = mirror(follower, leader)
        stored = await store.record_intent(intent(follower, leader), rec)
        await append_journal(store, "broker", f"sent {n}", follower, leader)
        if n % 3:
            live = rec.with_changes(state=MirrorState.LIVE, follower_order_id=f"F{n}")
            await store.complete_intent(stored.id, IntentOutcome.ACKED, "ok", live)
        await upsert_leader_order(store, snapshot(leader))
        return stored.id

    ids = await asyncio.gather(*(worker(n) for n in range(60)))
    assert len(set(ids)) == 60
    assert len(await store.mirrors()) == 60
    assert len(await store.leader_orders()) == 60
    assert len(await store.unfinished_intents()) == 20
    live = [m for m in await store.mirrors() if m.state is MirrorState.LIVE]
    assert len(live) == 40
    assert all(m.follower_order_id for m in live)


# --- journal, timeline, alerts, malformed ----------------------------------------------------


async def test_timeline_merges_journal_and_intents_oldest_first(
    store: Store, clock: ManualClock
) -> None:
    await append_journal(store, "leader", "BUY 75 NIFTY LIMIT 101.5 seen", leader_order_id="L1")
    stored = await store.record_intent(intent("alice"))  # same instant: insertion order
    clock.advance(0.05)
    await append_journal(store, "broker", "placed F1", "alice", "L1")
    await store.complete_intent(stored.id, IntentOutcome.ACKED, "placed")
    await append_journal(store, "fill", "earlier fill", "alice", "L1", at=T0 - timedelta(1))
    await append_journal(store, "leader", "another order", leader_order_id="L2")
    naive = T0.replace(tzinfo=None) + timedelta(seconds=10)
    await append_journal(store, "fill", "naive time is IST", "alice", "L1", at=naive)

    entries = await store.timeline("L1")
    assert [e.kind for e in entries] == ["fill", "leader", "intent", "broker", "fill"]
    assert entries[0].at == T0 - timedelta(1)
    assert entries[2].follower == "alice"
    assert entries[2].text.startswith("PLACE BUY 75 NSE_FNO:52175 LIMIT @ 101.5")
    assert entries[2].text.endswith("-> ACKED: placed")
    assert entries[4].at == IST.localize(naive)
    assert await store.timeline("nope") == []


async def test_timeline_order_survives_reopen(tmp_path: Path, clock: ManualClock) -> None:
    path = tmp_path / "t.db"
    async with await Store.open(path, clock=clock) as s:
        await append_journal(s, "leader", "first", leader_order_id="L1")
    async with await Store.open(path, clock=clock) as s:
        await s.record_intent(intent())
        await append_journal(s, "broker", "third", leader_order_id="L1")
        assert [e.text[:5] for e in await s.timeline("L1")] == ["first", "PLACE", "third"]


async def test_alerts_and_malformed(store: Store) -> None:
    alert = Alert("SIZED_TO_ZERO", Severity.WARNING, "0.1 x 75 rounds to 0 lots", T0, "bob", "L1")
    await record_alert(store, alert)
    await record_alert(store, dataclasses.replace(alert, count=4, follower=None))
    assert await recent_alerts(store) == [
        alert,
        dataclasses.replace(alert, count=4, follower=None),
    ]
    assert await recent_alerts(store, limit=1) == [
        dataclasses.replace(alert, count=4, follower=None)
    ]
    await store.record_malformed('{"Type":"order_alert","Data":', "truncated JSON")
    [(at, raw, error)] = await malformed_messages(store)
    assert (at, raw, error) == (T0, '{"Type":"order_alert","Data":', "truncated JSON")


# --- schema, PRAGMAs -------------------------------------------------------------------------


async def test_wal_and_synchronous_settings(store: Store, tmp_path: Path) -> None:
    d = await durability(store)
    # The intents' rows: their journal is what is fsynced (engine.store.intent_journal).
    assert d["intents"] == {"journal_mode": "wal", "synchronous": "NORMAL", "busy_timeout": 5000}
    assert d["state"] == {"journal_mode": "wal", "synchronous": "FULL", "busy_timeout": 5000}
    assert d["main"] == {"journal_mode": "wal", "synchronous": "NORMAL", "busy_timeout": 5000}
    with sqlite3.connect(tmp_path / "copytrade.db") as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"  # persistent


async def test_fresh_database_is_at_latest_version(store: Store) -> None:
    assert await schema_version(store) == SCHEMA_VERSION == len(MIGRATIONS)


async def test_migrates_an_older_database(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as raw:  # what version 1 of the program left behind
        raw.execute("CREATE TABLE schema_version (id INTEGER PRIMARY KEY, version INTEGER)")
        for statement in MIGRATIONS[0]:
            raw.execute(statement)
        raw.execute("INSERT INTO schema_version VALUES (1, 1)")
        raw.execute(
            "INSERT INTO engine_state VALUES (1, 'KILLED', 'before upgrade', ?)", (T0.isoformat(),)
        )
        raw.execute(
            "INSERT INTO intents (follower, leader_order_id, kind, correlation_id, params,"
            " outcome, created_at) VALUES ('alice', 'L1', 'PLACE', 'C1', NULL, 'PENDING', ?)",
            (T0.isoformat(),),
        )
    raw.close()
    async with await Store.open(path) as s:
        assert await schema_version(s) == SCHEMA_VERSION
        assert await s.get_engine_state() == (EngineState.KILLED, "before upgrade")
        [old] = await s.unfinished_intents()
        assert (old.follower, old.correlation_id, old.created_at) == ("alice", "C1", T0)
        await append_journal(s, "leader", "v2 table works", leader_order_id="L1")
        assert [e.kind for e in await s.timeline("L1")] == ["intent", "leader"]
    async with await Store.open(path) as s:  # reopening applies nothing twice
        assert await schema_version(s) == SCHEMA_VERSION


async def test_refuses_a_newer_database(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    async with await Store.open(path):
        pass
    with sqlite3.connect(path) as raw:
        raw.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    raw.close()
    with pytest.raises(StoreError, match="newer"):
        await Store.open(path)


async def test_memory_path_refused() -> None:
    with pytest.raises(StoreError):
        await Store.open(":memory:")


# --- secrets ---------------------------------------------------------------------------------


def _read_all(directory: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in directory.iterdir()}


async def test_no_token_reaches_the_database(tmp_path: Path, clock: ManualClock) -> None:
    token = "test-access-token-ZZZZ-9876543210"
    jwt = "eyJhbGciOiJIUzUxMiJ9.eyJjbGllbnQiOiIxMDAwMDAwMDAxIn0.c2lnbmF0dXJlc2ln"
    secrets.register_secret(token)
    path = tmp_path / "secret.db"
    leak = f"token={token} jwt={jwt}"
    async with await Store.open(path, clock=clock) as s:
        await s.set_engine_state(EngineState.KILLED, leak)
        await upsert_leader_order(s, snapshot(reason=leak))
        rec = mirror(reason=leak, params=params(notes=(leak,)))
        stored = await s.record_intent(intent(detail=leak, params=params(notes=(leak,))), rec)
        await s.complete_intent(stored.id, IntentOutcome.REFUSED, leak, rec)
        await save_mirror(s, rec)
        await append_journal(s, "broker", leak, "alice", "L1")
        await record_alert(s, Alert("X", Severity.ERROR, leak, T0))
        await s.record_malformed('{"LoginReq":{"Token":"' + token + '"}}', leak)
        await s.record_malformed(jwt, "bad")
        assert token not in str(await s.timeline("L1"))
        stored_reason = (await get_leader_order(s, "L1")).reason  # type: ignore[union-attr]
        assert stored_reason == "token=*** jwt=***"
        files_while_open = _read_all(tmp_path)  # the WAL holds everything so far
        assert sum(len(b) for b in files_while_open.values()) > 0
    files_after = _read_all(tmp_path)
    for files in (files_while_open, files_after):
        for p, data in files.items():
            assert token.encode() not in data, p
            assert jwt.encode() not in data, p
            assert b"ZZZZ-9876543210" not in data, p


async def test_a_write_cancelled_while_waiting_for_its_turn_does_not_hold_the_line(
    tmp_path: Path, clock: ManualClock
) -> None:
    """A write waits for the one before it (here: the database held by another connection);
    cancelled while it waits (a task stopped at shutdown), its place must still pass on, or
    every later write, and the store's close, would wait forever."""
    path = tmp_path / "copytrade.db"
    s = await Store.open(path, clock=clock)
    locker = sqlite3.connect(path, isolation_level=None)
    try:
        locker.execute("BEGIN IMMEDIATE")  # the first write waits in the busy handler
        first = asyncio.create_task(s.set_freeze("alpha", "TOKEN_REFUSED", "first"))
        waiting = asyncio.create_task(s.set_freeze("beta", "TOKEN_REFUSED", "cancelled"))
        await asyncio.sleep(0.05)
        assert not first.done() and not waiting.done()
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        locker.execute("COMMIT")
        await asyncio.wait_for(first, 5)
        await asyncio.wait_for(s.set_freeze("gamma", "TOKEN_REFUSED", "later"), 5)
        assert {account for account, _, _ in await s.freezes()} == {"alpha", "gamma"}
    finally:
        locker.close()
        await asyncio.wait_for(s.close(), 5)
