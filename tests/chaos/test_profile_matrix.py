"""CI's share of the profile matrix: the core guarantees under a representative set of the
dialects live Dhan may speak (socket casing, PART_TRADED, a modification without its own alert,
an empty 202 cancel, SL-M accepted and filled, the pre-issue-11 "classic" answers). The whole
matrix (every profile, all of tests/e2e and the ambiguous chaos cases) is
``python -m tests.matrix``.

One session per profile: resting orders copied, one modified, one cancelled, one filled, then
the engine killed and the leader trading on: no copy lost, none doubled, none wrong, nothing
sent while killed."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import pytest

from bench.soak import INSTRUMENTS, tick
from engine.simulator.server import DhanSimulator
from tests.chaos.conftest import ChaosFactory, assert_converged
from tests.e2e.conftest import ALPHA, BETA, LEADER

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

REPRESENTATIVE = [
    "classic",
    "pascal-upper",
    "part-traded",
    "no-modify-alert",
    "cancel-202",
    "slm-accept-fill",
]


@pytest.fixture(params=REPRESENTATIVE)
async def sim(request: pytest.FixtureRequest) -> AsyncIterator[DhanSimulator]:
    accounts = {LEADER[0]: LEADER[1], ALPHA[0]: ALPHA[1], BETA[0]: BETA[1]}
    simulator = DhanSimulator(accounts=accounts, funds=1_000_000_000.0, profile=request.param)
    await simulator.start(host="127.0.0.1", port=0)
    try:
        yield simulator
    finally:
        await simulator.stop()


def leader_buy(sim: DhanSimulator, rng: random.Random, below: float) -> str:
    """A leader BUY LIMIT `below` (fraction) under the market; negative: marketable."""
    seg, sec, lot = rng.choice(INSTRUMENTS)
    return sim.place_manual_order(
        LEADER[0],
        transactionType="BUY",
        exchangeSegment=seg,
        securityId=sec,
        quantity=lot * rng.randint(1, 2),
        orderType="LIMIT",
        productType="INTRADAY",
        validity="DAY",
        price=tick(sim.price(seg, sec) * (1 - below)),
    )


def follower_mutations(sim: DhanSimulator, since: int) -> list[dict[str, object]]:
    return [
        r
        for r in sim.requests[since:]
        if r["client_id"] in (ALPHA[0], BETA[0]) and r["method"] in ("POST", "PUT")
    ]


async def test_guarantees_under_profile(
    chaos_world: ChaosFactory, request: pytest.FixtureRequest
) -> None:
    profile = request.node.callspec.params["sim"]
    # A leader modification may show only in the order book (no-modify-alert): reconcile often.
    world = await chaos_world(reconcile_interval_s="1")
    rng = random.Random(91)
    resting = [leader_buy(world.sim, rng, 0.03) for _ in range(4)]
    await asyncio.sleep(0.3)
    world.sim.modify_manual_order(
        LEADER[0], resting[0], price=tick(float(world.sim.orders(LEADER[0])[0]["price"]) * 0.99)
    )
    world.sim.cancel_manual_order(LEADER[0], resting[1])
    leader_buy(world.sim, rng, -0.01)  # marketable: fills, so do its copies
    await assert_converged(world, f"profile {profile}: place/modify/cancel/fill", timeout=30)

    await world.kill("matrix")
    since = len(world.sim.requests)
    leader_buy(world.sim, rng, 0.03)
    world.sim.modify_manual_order(
        LEADER[0], resting[2], price=tick(float(world.sim.orders(LEADER[0])[2]["price"]) * 0.99)
    )
    await asyncio.sleep(1.5)
    assert not follower_mutations(world.sim, since), f"sent while killed under {profile}"
    await assert_converged(world, f"profile {profile}: killed", timeout=30, allow_explained=True)
