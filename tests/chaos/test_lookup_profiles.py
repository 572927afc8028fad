"""Ambiguous placements under every answer Dhan might give to a correlation-id lookup of an
unknown id (facts §8b L1, still unsettled): DH-905 400 (live default), DH-907 404, an empty 200,
an empty list (the lookup-* profiles; under ``--sim-profile P``, each on top of P).
Placements that were executed but answered too late, and placements that never arrived, must
each end with exactly one copy per follower: never zero, never two."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import AsyncIterator

import pytest

from bench.soak import INSTRUMENTS, tick
from engine.events import AlertRaised
from engine.simulator.profile import load_profile
from engine.simulator.server import DhanSimulator
from tests.chaos.conftest import CLIENT_OF, ChaosFactory, ChaosWorld, assert_converged
from tests.e2e.conftest import ALPHA, BETA, LEADER
from tests.sim_profile import sim_profile

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

# What GET /orders/external/{unknown correlationId} answers: each one, on top of the profile
# the run uses (--sim-profile; live by default), as the lookup-* profiles do on top of live.
LOOKUP_ANSWERS = ["dh905_400", "dh907_404", "empty_200", "empty_list_200"]
LEADER_ORDERS = 6


@pytest.fixture(params=LOOKUP_ANSWERS)
async def sim(request: pytest.FixtureRequest) -> AsyncIterator[DhanSimulator]:
    """Overrides the chaos harness's simulator: one per lookup answer."""
    accounts = {LEADER[0]: LEADER[1], ALPHA[0]: ALPHA[1], BETA[0]: BETA[1]}
    profile = load_profile(sim_profile()).model_copy(
        update={"unknown_correlation_id": request.param}
    )
    simulator = DhanSimulator(accounts=accounts, funds=1_000_000_000.0, profile=profile)
    await simulator.start(host="127.0.0.1", port=0)
    try:
        yield simulator
    finally:
        await simulator.stop()


def profile_of(request: pytest.FixtureRequest) -> str:
    return f"{sim_profile()}, lookup {request.node.callspec.params['sim']}"


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
@pytest.mark.parametrize("sim", ["dh905_400"], indirect=True)
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
