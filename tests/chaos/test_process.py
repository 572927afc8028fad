"""The engine process SIGKILLed at the worst moments and started again (bench.engine_proc):
between intent and send, between send and answer, in the middle of a cancel storm, at random
points of a session; and a restart after the leader's book changed while it was down. The
simulator runs in this process; the checker reads the engine's database after the fact."""

from __future__ import annotations

import asyncio
import json
import random
import sqlite3
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench.convergence import (
    CallLog,
    Report,
    Snapshot,
    engine_state_from_db,
    lots_from_sim_state,
    mirrors_from_db,
    wait_converged,
)
from bench.engine_proc import EngineProcess
from bench.soak import RandomLeader
from engine.simulator.server import DhanSimulator
from tests.chaos.conftest import FOLLOWERS, record
from tests.e2e.conftest import ALPHA, BETA, LEADER
from tests.sim_profile import sim_profile

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150)]


@dataclass
class ProcWorld:
    sim: DhanSimulator
    eng: EngineProcess
    db: Path
    calls: Path

    def snapshot(self) -> Snapshot:
        return Snapshot(
            leader_orders=self.sim.orders(LEADER[0]),
            follower_orders={f.name: self.sim.orders(f.client_id) for f in FOLLOWERS},
            placements={f.name: self.sim.placements(f.client_id) for f in FOLLOWERS},
            mirrors=mirrors_from_db(self.db),
            calls=CallLog.read(self.calls),
            engine_killed=engine_state_from_db(self.db) == "KILLED",
        )

    def places_started(self) -> int:
        return sum(1 for c in CallLog.read(self.calls).calls if c["kind"] == "place")

    async def until(self, pred: object, timeout: float = 15, what: str = "") -> None:
        assert callable(pred)
        deadline = asyncio.get_running_loop().time() + timeout
        while not pred():
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            await asyncio.sleep(0.02)

    async def converged(self, case: str, allow_explained: bool = False) -> Report:
        async def snap() -> Snapshot:
            return self.snapshot()

        lots = lots_from_sim_state(self.sim.state()["prices"])
        rep = await wait_converged(snap, FOLLOWERS, lots, timeout=40)
        record(case, rep, {"engine_starts": self.eng.starts})
        assert rep.ok, rep.summary()
        if not allow_explained:
            assert not rep.explained, rep.summary()
        return rep


@pytest.fixture
async def proc_world(tmp_path: Path) -> AsyncIterator[ProcWorld]:
    accounts = {LEADER[0]: LEADER[1], ALPHA[0]: ALPHA[1], BETA[0]: BETA[1]}
    sim = DhanSimulator(accounts=accounts, funds=1e11, profile=sim_profile())
    await sim.start(host="127.0.0.1", port=0)
    followers = [
        {"name": "alpha", "client_id": ALPHA[0], "access_token": ALPHA[1]},
        {
            "name": "beta",
            "client_id": BETA[0],
            "access_token": BETA[1],
            "sizing": {"kind": "multiplier", "multiplier": 2},
        },
    ]
    env = {
        "COPYTRADE_LEADER__CLIENT_ID": LEADER[0],
        "COPYTRADE_LEADER__ACCESS_TOKEN": LEADER[1],
        "COPYTRADE_FOLLOWERS": json.dumps(followers),
        "COPYTRADE_DHAN__REST_URL": sim.rest_url,
        "COPYTRADE_DHAN__ORDER_WS_URL": sim.ws_url,
        "COPYTRADE_DHAN__TIMEOUT_S": "2",
        "COPYTRADE_INSTRUMENTS_URL": sim.scrip_master_detailed_url,
        "COPYTRADE_DB_PATH": str(tmp_path / "engine.db"),
        "COPYTRADE_ENFORCE_MARKET_HOURS": "false",
        "COPYTRADE_RECONCILE_INTERVAL_S": "3600",
        "COPYTRADE_LOG_LEVEL": "WARNING",
    }
    calls = tmp_path / "calls.jsonl"
    eng = EngineProcess(env, calls, tmp_path / "engine.stderr")
    world = ProcWorld(sim, eng, tmp_path / "engine.db", calls)
    try:
        yield world
    finally:
        await eng.stop()
        await sim.stop()


async def test_sigkill_between_intent_and_send(proc_world: ProcWorld) -> None:
    w = proc_world
    await w.eng.start({"CHAOS_HOLD_PLACE_S": "30"})  # every place: intent durable, then held
    leader = RandomLeader(w.sim, random.Random(41), LEADER[0])
    for _ in range(6):
        leader.place("LIMIT")
    await w.until(lambda: w.places_started() >= 6, what="places decided and held")
    await w.eng.sigkill()
    assert not w.sim.orders(ALPHA[0]) and not w.sim.orders(BETA[0])  # none was sent
    await w.eng.start()
    await w.converged("SIGKILL between intent and send")


async def _killed_while_answers_held(
    w: ProcWorld, seed: int, places: int, until: Callable[[], bool], what: str
) -> RandomLeader:
    """The leader places `places` LIMIT orders; the exchange takes every copy at once and Dhan
    holds the answers 10 s (timeout 2 s x3+5). Once `until`, the engine is SIGKILLed and
    started again."""
    await w.eng.start()
    w.sim.faults.delay_next(100, 10.0, after_accept=True, match="POST /v2/orders")
    leader = RandomLeader(w.sim, random.Random(seed), LEADER[0])
    for _ in range(places):
        leader.place("LIMIT")
    await w.until(until, what=what)
    await w.eng.sigkill()
    w.sim.faults.clear()
    await w.eng.start()
    return leader


async def test_sigkill_between_send_and_answer(proc_world: ProcWorld) -> None:
    w = proc_world
    await _killed_while_answers_held(
        w, 42, 6, lambda: len(w.sim.orders(ALPHA[0])) >= 4, "placements executed"
    )
    await w.converged("SIGKILL between send and answer")


def _in_flight_at_dhan(db: Path) -> int:
    """Copies the database holds as in flight (PLACING) whose order Dhan has shown (an order
    id from the follower's stream): what a process killed before the answers leaves."""
    if not db.exists():
        return 0
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        row = conn.execute(
            "SELECT COUNT(*) FROM mirrors WHERE state = 'PLACING' AND follower_order_id != ''"
        ).fetchone()
        return int(row[0])
    finally:
        conn.close()


async def test_a_copy_dhan_showed_before_the_answer_and_a_crash_still_follows_the_leader(
    proc_world: ProcWorld,
) -> None:
    """The follower's stream showed the copies, their answers never came, and the process died.
    At the restart they are Dhan's orders, not placements in flight: the leader's cancel
    afterwards cancels them (held as in flight, nothing would ever touch them again)."""
    w = proc_world
    leader = await _killed_while_answers_held(
        w, 47, 3, lambda: _in_flight_at_dhan(w.db) >= 4, "copies shown, answers held"
    )
    await w.converged("SIGKILL with copies shown on the stream, answers held")
    assert _in_flight_at_dhan(w.db) == 0
    opened = leader.open_orders()
    assert opened  # resting orders, so their copies rest too
    for order in opened:
        w.sim.cancel_manual_order(LEADER[0], order["orderId"])
    await w.converged("the leader cancels after that restart")


async def test_sigkill_in_the_middle_of_a_cancel_storm(proc_world: ProcWorld) -> None:
    w = proc_world
    await w.eng.start()
    leader = RandomLeader(w.sim, random.Random(43), LEADER[0])
    for _ in range(30):
        leader.place("LIMIT")
    await w.converged("before the cancel storm")
    before = len(w.sim.requests)
    await w.eng.command("kill storm")
    await w.until(
        lambda: sum(1 for r in w.sim.requests[before:] if r["method"] == "DELETE") >= 5,
        what="cancels under way",
    )
    await w.eng.sigkill()
    await w.eng.start()  # comes back KILLED and finishes the cancels
    rep = await w.converged("SIGKILL mid cancel storm", allow_explained=True)
    assert engine_state_from_db(w.db) == "KILLED" and rep.explained


async def test_sigkill_at_random_points_of_a_session(proc_world: ProcWorld) -> None:
    w = proc_world
    rng = random.Random(44)
    leader = RandomLeader(w.sim, random.Random(45), LEADER[0])
    await w.eng.start()
    for _ in range(5):
        for _ in range(rng.randint(5, 15)):
            leader.step()
            await asyncio.sleep(rng.uniform(0.0, 0.05))
        await asyncio.sleep(rng.uniform(0.0, 0.3))
        await w.eng.sigkill()
        for _ in range(rng.randint(0, 5)):  # the leader trades on while the engine is down
            leader.step()
        await w.eng.start()
    await w.converged("SIGKILL at random points (5x)")


async def test_restart_with_the_leader_book_changed_meanwhile(proc_world: ProcWorld) -> None:
    w = proc_world
    leader = RandomLeader(w.sim, random.Random(46), LEADER[0])
    await w.eng.start()
    for _ in range(12):
        leader.place()
    await w.converged("before the restart")
    await w.eng.sigkill()
    for _ in range(40):  # edits, cancels, fills, price moves and new orders while down
        leader.step()
    await w.eng.start()
    await w.converged("restart with the leader's book changed meanwhile")
