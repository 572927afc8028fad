"""Chaos in the database: locked by another process for longer than the busy timeout, and full.

"Disk full" here: no tiny filesystem can be mounted in this sandbox, and `PRAGMA max_page_count`
is per connection, so it is set on the engine's own two connections to their current page count:
every write that needs a new page then fails with SQLITE_FULL ("database or disk is full"),
which is what a full disk gives SQLite."""

from __future__ import annotations

import asyncio
import random
import sys

import pytest

from bench.soak import RandomLeader
from engine.domain import EngineState
from engine.events import EngineStateChanged
from tests.chaos.conftest import ChaosFactory, ChaosWorld, assert_converged, start_engine
from tests.e2e.conftest import LEADER
from tests.store_helpers import cap_every_connection

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

LOCKER = """
import sqlite3, sys, time
c = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
c.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
c.execute("ROLLBACK")
"""


async def hold_write_lock(world: ChaosWorld, seconds: float) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", LOCKER, str(world.db), str(seconds), stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    assert (await proc.stdout.readline()).strip() == b"locked"
    return proc


async def with_copies(world: ChaosWorld, *, seed: int, placed: int, copies: int) -> RandomLeader:
    """The leader places `placed` buy limits; once alpha holds `copies` copies and the engine
    is settled, the leader (to trade on)."""
    leader = RandomLeader(world.sim, random.Random(seed), LEADER[0])
    for _ in range(placed):
        leader.place("LIMIT")
    await world.until(lambda: len(world.orders("alpha")) >= copies, what="copies")
    await world.settle()
    return leader


async def test_database_locked_by_another_process_loses_and_duplicates_nothing(
    chaos_world: ChaosFactory,
) -> None:
    world = await chaos_world()
    leader = await with_copies(world, seed=31, placed=4, copies=3)
    locker = await hold_write_lock(world, 7.0)  # past the engine's 5 s busy timeout
    for _ in range(6):
        leader.step()
        await asyncio.sleep(0.2)
    await locker.wait()
    await assert_converged(world, "database locked 7 s by another process", timeout=40)
    # And what it stored is enough to restart from: nothing placed twice after a restart.
    await world.crash_engine()
    await start_engine(world)
    await assert_converged(world, "restart after the lock", timeout=30)


async def fill_up(world: ChaosWorld, full: bool = True) -> None:
    store = world.eng.store
    assert store is not None
    await cap_every_connection(store, full)


async def test_database_full_loses_and_duplicates_nothing(chaos_world: ChaosFactory) -> None:
    world = await chaos_world()
    leader = await with_copies(world, seed=32, placed=3, copies=2)
    await fill_up(world)
    for _ in range(20):
        leader.step()
        await asyncio.sleep(0.05)
    await asyncio.sleep(1.0)
    assert any(a.code.startswith("STORE") for a in world.eng.recent_alerts()), "no alert"
    await fill_up(world, full=False)
    await assert_converged(world, "database full, then space again", timeout=40)
    await world.crash_engine()
    await start_engine(world)
    await assert_converged(world, "restart after disk full", timeout=30)


async def test_kill_switch_wins_while_the_database_is_locked(chaos_world: ChaosFactory) -> None:
    """The cancels do not wait for a database another process holds (its busy timeout, and a
    write queued before the kill's, would hold them for 5-10 s); the kill is stored once it
    can be, and the trader is told both."""
    world = await chaos_world()
    await with_copies(world, seed=33, placed=8, copies=6)

    def copies_open() -> int:
        return sum(
            o["orderStatus"] in ("PENDING", "TRANSIT", "PART_TRADED")
            for who in ("alpha", "beta")
            for o in world.orders(who)
        )

    assert copies_open() > 0
    locker = await hold_write_lock(world, 7.0)
    await asyncio.wait_for(world.kill("chaos, db locked"), 15)  # must not raise
    assert world.eng.state is EngineState.KILLED
    assert any(a.code == "KILL_NOT_STORED" for a in world.eng.recent_alerts())

    await world.until(lambda: copies_open() == 0, timeout=5.0, what="copies cancelled")
    assert locker.returncode is None, "the cancels waited for the database"
    await locker.wait()
    await world.until(
        lambda: any(a.code == "KILL_STORED" for a in world.eng.recent_alerts()),
        timeout=15.0,
        what="the kill stored once the database is free",
    )
    store = world.eng.store
    assert store is not None
    stored = await store.get_engine_state()
    assert stored is not None and stored[0] is EngineState.KILLED
    await assert_converged(world, "kill while the database is locked", allow_explained=True)


async def test_a_resume_while_the_kill_is_not_stored_is_what_the_database_keeps(
    chaos_world: ChaosFactory,
) -> None:
    """The kill's store goes on trying only while that kill stands: resumed meanwhile, the
    database ends ARMED, never KILLED from a retry after the resume."""
    world = await chaos_world()
    locker = await hold_write_lock(world, 7.0)
    await asyncio.wait_for(world.kill("chaos, db locked"), 15)
    assert any(a.code == "KILL_NOT_STORED" for a in world.eng.recent_alerts())
    await asyncio.wait_for(world.resume(), 30)  # its write waits for the lock
    assert world.eng.state is EngineState.ARMED
    await locker.wait()
    await asyncio.sleep(3.0)  # past the kill's next retry
    store = world.eng.store
    assert store is not None
    stored = await store.get_engine_state()
    assert stored is not None and stored[0] is EngineState.ARMED
    assert not any(a.code == "KILL_STORED" for a in world.eng.recent_alerts())


async def test_a_resume_while_the_kill_waits_for_the_database_is_never_shown_killed(
    chaos_world: ChaosFactory,
) -> None:
    """Resumed while the kill still waited for a locked database: the kill does not take
    effect afterwards (no KILLED shown over an engine copying again, no cancels)."""
    world = await chaos_world()
    await with_copies(world, seed=35, placed=4, copies=3)
    locker = await hold_write_lock(world, 7.0)
    kill = asyncio.create_task(world.eng.kill("chaos, db locked"))
    await asyncio.sleep(0.2)  # the kill is waiting for the database
    resumed_at = len(world.events)
    resume = asyncio.create_task(world.eng.resume())
    await asyncio.wait_for(kill, 15)
    await asyncio.wait_for(resume, 30)
    assert world.eng.state is EngineState.ARMED
    shown = [e.state for e in world.events[resumed_at:] if isinstance(e, EngineStateChanged)]
    assert EngineState.KILLED not in shown, shown
    await locker.wait()
    await assert_converged(world, "resumed while the kill waited for the database")


async def test_what_could_not_be_stored_is_stored_once_space_is_back(
    chaos_world: ChaosFactory,
) -> None:
    """Writes refused while the disk was full are kept and retried, not dropped: once there
    is space again the database says what the engine knows (a SIGKILL then loses nothing)."""
    world = await chaos_world()
    leader = await with_copies(world, seed=34, placed=3, copies=2)
    await fill_up(world)
    for _ in range(15):
        leader.step()
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)
    await fill_up(world, full=False)
    await assert_converged(world, "database full, refused writes retried", timeout=30)
    await asyncio.sleep(2.5)  # a retry or two of the flusher
    store = world.eng.store
    assert store is not None
    stored = {(m.follower, m.leader_order_id): m for m in await store.mirrors()}
    known = {(m.follower, m.leader_order_id): m for m in world.eng.mirrors()}
    assert stored.keys() == known.keys()
    stale = [k for k in known if stored[k].state != known[k].state]
    assert not stale, f"{len(stale)} mirror rows stale in the database: {stale[:3]}"
    leaders = {s.order_id: s for s in await store.leader_orders()}
    assert all(
        leaders[i].status == s.status
        for i, s in ((s.order_id, s) for s in world.eng.leader_orders())
    )
