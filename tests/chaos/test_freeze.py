"""Chaos with the automatic freezes: a refused leader token, a dark leader feed and a loss
limit in the middle of a random leader session, and the trader's kill during a freeze.

Every case ends with the shared convergence check (bench.convergence): nothing lost,
duplicated, mismatched or sent while KILLED. While frozen no copy is cancelled by the freeze
itself (only the leader's own cancels, seen once it is visible again).
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from bench.soak import INSTRUMENTS, OPEN, RandomLeader, tick
from engine.domain import EngineState
from engine.events import AlertRaised
from engine.simulator.server import DhanSimulator
from tests.chaos.conftest import ChaosFactory, ChaosWorld, assert_converged, start_engine
from tests.e2e.conftest import ALPHA, BETA, LEADER
from tests.e2e.test_safety_freeze import Gate

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


class PassiveLeader:
    """A leader that only rests buy limits below the market, moves their price and size, and
    cancels some: every copy's target is then the leader's order times the follower's
    multiplier, so the check measures the freeze, not the position sizing."""

    def __init__(self, sim: DhanSimulator, seed: int) -> None:
        self.sim = sim
        self.rng = random.Random(seed)

    def open_orders(self) -> list[dict[str, Any]]:
        return [o for o in self.sim.orders(LEADER[0]) if o["orderStatus"] in OPEN]

    def step(self) -> None:
        opened = self.open_orders()
        r = self.rng.random()
        if r < 0.45 or not opened:
            seg, sec, lot = self.rng.choice(INSTRUMENTS)
            ltp = self.sim.price(seg, sec)
            self.sim.place_manual_order(
                LEADER[0],
                transactionType="BUY",
                exchangeSegment=seg,
                securityId=sec,
                quantity=lot * self.rng.randint(1, 3),
                orderType="LIMIT",
                price=tick(ltp * (1 - self.rng.uniform(0.02, 0.05))),
                productType="INTRADAY" if seg != "NSE_EQ" else "CNC",
            )
        elif r < 0.8:
            order = self.rng.choice(opened)
            lot = next(x for s_, c, x in INSTRUMENTS if c == str(order["securityId"]))
            self.sim.modify_manual_order(
                LEADER[0],
                str(order["orderId"]),
                price=tick(float(order["price"]) * self.rng.uniform(0.99, 1.01)),
                quantity=lot * self.rng.randint(1, 3),
            )
        else:
            self.sim.cancel_manual_order(LEADER[0], str(self.rng.choice(opened)["orderId"]))


def cleared(world: ChaosWorld) -> int:
    return sum(
        1 for e in world.events if isinstance(e, AlertRaised) and e.alert.code == "FREEZE_CLEARED"
    )


def stripped_while_frozen(world: ChaosWorld, since: int) -> list[str]:
    """Copies cancelled since `since` whose leader order is still open: what a freeze must
    never do (following the leader's own cancel, once seen, is fine)."""
    leader_open = {
        str(o["orderId"]) for o in world.sim.orders(LEADER[0]) if o["orderStatus"] in OPEN
    }
    leader_of = {m.follower_order_id: m.leader_order_id for m in world.eng.mirrors()}
    stripped = []
    for r in world.sim.requests[since:]:
        if r["method"] != "DELETE" or r["client_id"] not in (ALPHA[0], BETA[0]):
            continue
        order_id = str(r["path"]).rstrip("/").rsplit("/", 1)[-1]
        if leader_of.get(order_id) in leader_open:
            stripped.append(order_id)
    return stripped


async def test_freeze_on_a_refused_leader_token_mid_session_then_renewed(
    chaos_world: ChaosFactory,
) -> None:
    world = await chaos_world(risk_check_interval_s="0.2")
    leader = PassiveLeader(world.sim, 31)
    for _ in range(12):
        leader.step()
        await asyncio.sleep(0.02)
    await world.settle()
    world.sim.expire_token(LEADER[0])
    await world.until(lambda: world.eng.state is EngineState.FROZEN, 15, "frozen")
    frozen_at = len(world.sim.requests)
    for _ in range(12):  # the leader trades on, unseen
        leader.step()
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.5)
    assert stripped_while_frozen(world, frozen_at) == []  # the freeze itself strips nothing
    world.sim.renew_token(LEADER[0], LEADER[1])
    await world.until(lambda: cleared(world) > 0, 20, "freeze cleared")
    await assert_converged(
        world, "freeze: leader token refused, then renewed", timeout=40, allow_explained=True
    )


async def test_freeze_on_a_dark_leader_feed_mid_session_then_back(
    chaos_world: ChaosFactory,
) -> None:
    world = await chaos_world(start=False)
    gate = Gate(world.sim.port)
    await gate.start()
    try:
        world.extra.update(
            dhan__order_ws_url=f"ws://127.0.0.1:{gate.port}/",
            leader_dark_kill_after_s="0.5",
            risk_check_interval_s="0.1",
        )
        await start_engine(world)
        leader = PassiveLeader(world.sim, 32)
        for _ in range(12):
            leader.step()
            await asyncio.sleep(0.02)
        await world.settle()
        gate.shut()
        await world.until(lambda: world.eng.state is EngineState.FROZEN, 15, "frozen")
        frozen_at = len(world.sim.requests)
        for _ in range(12):
            leader.step()
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.5)
        assert stripped_while_frozen(world, frozen_at) == []
        gate.open = True
        await world.until(lambda: cleared(world) > 0, 40, "feed back")
        await assert_converged(
            world, "freeze: leader feed dark, then back", timeout=40, allow_explained=True
        )
    finally:
        await world.stop_engine()
        await gate.stop()


async def test_kill_during_a_freeze_wins_and_resume_replaces_after(
    chaos_world: ChaosFactory,
) -> None:
    world = await chaos_world(risk_check_interval_s="0.2")
    leader = RandomLeader(world.sim, random.Random(33), LEADER[0])
    for _ in range(10):
        leader.place("LIMIT")
    await world.until(lambda: len(world.orders("alpha")) >= 6, what="copies")
    await world.settle()
    world.sim.expire_token(LEADER[0])
    await world.until(lambda: world.eng.state is EngineState.FROZEN, 15, "frozen")
    await world.kill("trader kills during the freeze")
    assert world.eng.state is EngineState.KILLED
    await assert_converged(world, "kill during a freeze", allow_explained=True)
    world.sim.renew_token(LEADER[0], LEADER[1])
    await world.until(lambda: cleared(world) > 0, 20, "freeze cleared while killed")
    assert world.eng.state is EngineState.KILLED  # clearing a freeze never resumes a kill
    await world.resume()
    report = await world.eng.resume(replace_open=True)
    assert report.uncopied == ()
    await assert_converged(world, "resume with re-place after a freeze", allow_explained=True)
