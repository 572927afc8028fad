"""A copy changed by hand in Dhan's app is seen even when Dhan sends no order alert for a
modification (facts §9 q2; the simulator's ``no-modify-alert`` profile, whatever profile the
run was given): the follower poll reads the book of each follower with copies open, long
before the next reconcile (an hour here), and stops reading once none is open."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from engine.events import AlertRaised
from engine.simulator.server import DhanSimulator
from tests.e2e.conftest import ALPHA, BETA, LEADER, World, WorldFactory

pytestmark = pytest.mark.e2e


@pytest.fixture
async def sim() -> AsyncIterator[DhanSimulator]:
    simulator = DhanSimulator(
        accounts={LEADER[0]: LEADER[1], ALPHA[0]: ALPHA[1], BETA[0]: BETA[1]},
        profile="no-modify-alert",
    )
    await simulator.start(host="127.0.0.1", port=0)
    try:
        yield simulator
    finally:
        await simulator.stop()


def hand_alerts(world: World) -> list[AlertRaised]:
    return [
        e
        for e in world.events
        if isinstance(e, AlertRaised) and e.alert.code == "COPY_CHANGED_BY_HAND"
    ]


def book_reads(world: World, client_id: str, since: int = 0) -> int:
    return sum(
        1
        for r in world.sim.requests[since:]
        if r["client_id"] == client_id and r["method"] == "GET" and r["path"] == "/v2/orders"
    )


def alpha_copy(world: World, leader_id: str) -> dict[str, Any]:
    mirror = world.eng.mirror("alpha", leader_id)
    assert mirror is not None and mirror.follower_order_id
    [order] = [o for o in world.orders("alpha") if o["orderId"] == mirror.follower_order_id]
    return order


async def test_a_hand_edit_without_an_alert_is_seen_by_the_poll_not_the_reconcile(
    make_world: WorldFactory,
) -> None:
    world = await make_world(follower_poll_s="0.3")
    recoveries = len(world.recoveries())
    leader_id = world.place(price=200.0)
    await world.follower_order("alpha")
    await world.settle()
    copy = alpha_copy(world, leader_id)

    world.sim.modify_manual_order(ALPHA[0], copy["orderId"], quantity=130, price=200.0)
    await world.until(lambda: bool(hand_alerts(world)), timeout=5, what="hand edit noticed")
    [noticed] = hand_alerts(world)
    assert "quantity 65 -> 130" in noticed.alert.message
    mirror = world.eng.mirror("alpha", leader_id)
    assert mirror is not None and mirror.by_hand
    assert len(world.recoveries()) == recoveries  # no reconcile ran: the poll saw it
    assert book_reads(world, ALPHA[0]) > 0

    # Nothing open any more: the follower's book is no longer read.
    world.cancel(leader_id)
    await world.until(lambda: alpha_copy(world, leader_id)["orderStatus"] == "CANCELLED")
    await world.settle()
    await asyncio.sleep(0.4)  # one poll round for the engine to see nothing is open
    since = len(world.sim.requests)
    await asyncio.sleep(1.0)  # over three poll intervals
    assert book_reads(world, ALPHA[0], since) == 0
