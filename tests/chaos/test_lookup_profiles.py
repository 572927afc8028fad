"""Ambiguous placements under every answer Dhan might give to a correlation-id lookup of an
unknown id (facts §8b L1, still unsettled): DH-905 400 (live default), DH-907 404, an empty 200,
an empty list. Placements that were executed but answered too late, and placements that never
arrived, must each end with exactly one copy per follower: never zero, never two."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import AsyncIterator

import pytest

from bench.soak import INSTRUMENTS, tick
from engine.events import AlertRaised
from engine.simulator.server import DhanSimulator
from tests.chaos.conftest import CLIENT_OF, ChaosFactory, ChaosWorld, assert_converged
from tests.e2e.conftest import ALPHA, BETA, LEADER

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

LOOKUP_PROFILES = ["live", "lookup-dh907", "lookup-empty200", "lookup-emptylist"]
LEADER_ORDERS = 6


@pytest.fixture(params=LOOKUP_PROFILES)
async def sim(request: pytest.FixtureRequest) -> AsyncIterator[DhanSimulator]:
    """Overrides the chaos harness's simulator: one per lookup dialect."""
    accounts = {LEADER[0]: LEADER[1], ALPHA[0]: ALPHA[1], BETA[0]: BETA[1]}
    simulator = DhanSimulator(accounts=accounts, funds=1_000_000_000.0, profile=request.param)
    await simulator.start(host="127.0.0.1", port=0)
    try:
        yield simulator
    finally:
        await simulator.stop()


def profile_of(request: pytest.FixtureRequest) -> str:
    return str(request.node.callspec.params["sim"])


def copies_per_leader_order(world: ChaosWorld) -> dict[str, Counter[str]]:
    """For each follower: how many orders carry each correlationId."""
    return {
        name: Counter(o["correlationId"] for o in world.sim.orders(client))
        for name, client in CLIENT_OF.items()
    }


async def place_resting(world: ChaosWorld, seed: int) -> None:
    """Buy orders resting well below the market: each leader order wants one copy, whatever
    the others do (no fills, so no position-true resizing between them)."""
    rng = random.Random(seed)
    for _ in range(LEADER_ORDERS):
        seg, sec, lot = rng.choice(INSTRUMENTS)
        ltp = world.sim.price(seg, sec)
        world.sim.place_manual_order(
            LEADER[0],
            transactionType="BUY",
            exchangeSegment=seg,
            securityId=sec,
            quantity=lot * rng.randint(1, 3),
            orderType="LIMIT",
            productType="INTRADAY",
            validity="DAY",
            price=tick(ltp * (1 - rng.uniform(0.02, 0.05))),
        )
        await asyncio.sleep(0.02)


def assert_one_copy_each(world: ChaosWorld) -> None:
    for name, counts in copies_per_leader_order(world).items():
        assert len(counts) == LEADER_ORDERS, f"{name}: {len(counts)} copies of {LEADER_ORDERS}"
        doubled = {cid: n for cid, n in counts.items() if n != 1}
        assert not doubled, f"{name}: placed more than once: {doubled}"


async def test_accepted_then_timed_out(
    chaos_world: ChaosFactory, request: pytest.FixtureRequest
) -> None:
    """Dhan executes each placement but answers after the client gave up: the engine must find
    each one (lookup or order book) and never place it again."""
    world = await chaos_world(dhan__timeout_s="1", circuit_cooldown_s="1")
    world.sim.faults.delay_next(8, 1.6, after_accept=True, match="POST /v2/orders")
    await place_resting(world, 61)
    await assert_converged(world, f"accepted then timed out [{profile_of(request)}]", timeout=60)
    assert_one_copy_each(world)
    assert not [f for f in world.sim.faults.request_faults if f.remaining]


async def test_truly_lost(chaos_world: ChaosFactory, request: pytest.FixtureRequest) -> None:
    """The placements never reach the exchange (held past the client's timeout, then dropped;
    or the connection reset before execution): the engine must place each again, once, after
    the follower's order book shows it absent twice."""
    world = await chaos_world(dhan__timeout_s="1", circuit_cooldown_s="1")
    world.sim.faults.delay_next(4, 1.6, after_accept=False, match="POST /v2/orders")
    world.sim.faults.reset_next(4, after_accept=False, match="POST /v2/orders")
    await place_resting(world, 62)
    await assert_converged(world, f"truly lost [{profile_of(request)}]", timeout=60)
    assert_one_copy_each(world)
    assert not [f for f in world.sim.faults.request_faults if f.remaining]


# The book is unreadable here, so the lookup's dialect plays no part: one profile suffices.
@pytest.mark.parametrize("sim", ["live"], indirect=True)
async def test_unknown_holds_alerts_then_settles(
    chaos_world: ChaosFactory, request: pytest.FixtureRequest
) -> None:
    """A lost placement while alpha's order book cannot be read: nothing is re-sent, an alert
    says the copy is unresolved, and once the book reads again the copy is placed exactly
    once."""
    world = await chaos_world(dhan__timeout_s="1", circuit_cooldown_s="1")
    world.sim.faults.reset_next(1, match="POST /v2/orders", client_id=ALPHA[0])
    world.sim.faults.fail_next(10_000, 500, match="GET /v2/orders", client_id=ALPHA[0])
    placed_before = len(alpha_posts(world))
    rng = random.Random(64)
    seg, sec, lot = rng.choice(INSTRUMENTS)
    world.sim.place_manual_order(
        LEADER[0],
        transactionType="BUY",
        exchangeSegment=seg,
        securityId=sec,
        quantity=lot,
        orderType="LIMIT",
        productType="INTRADAY",
        validity="DAY",
        price=tick(world.sim.price(seg, sec) * 0.97),
    )
    await world.until(
        lambda: any(
            isinstance(e, AlertRaised) and e.alert.code == "PLACE_UNRESOLVED" for e in world.events
        ),
        timeout=20,
        what="the unresolved alert",
    )
    assert len(alpha_posts(world)) == placed_before + 1  # the lost one; nothing re-sent
    assert not world.sim.orders(ALPHA[0])
    world.sim.faults.clear()
    await world.until(lambda: len(world.sim.orders(ALPHA[0])) == 1, timeout=20, what="one copy")
    await asyncio.sleep(1.0)  # a second placement, if any, would show by now
    assert len(world.sim.orders(ALPHA[0])) == 1
    assert len(alpha_posts(world)) == placed_before + 2
    assert len(world.sim.orders(BETA[0])) == 1, profile_of(request)


def alpha_posts(world: ChaosWorld) -> list[dict[str, object]]:
    return [
        r
        for r in world.sim.requests
        if r["client_id"] == ALPHA[0] and r["method"] == "POST" and r["path"] == "/v2/orders"
    ]
