"""Copies left behind by their filled leader (issue 10): a thin market under each lagging
policy, and a stop-loss copy protected at 1% while the leader's SL-M filled through it."""

from __future__ import annotations

from typing import Any

import pytest

from engine.domain import Severity
from tests.e2e.conftest import ALPHA, NIFTY_CE, World, WorldFactory

pytestmark = pytest.mark.e2e

LOT = 65


def alpha(policy: str, **more: Any) -> list[dict[str, Any]]:
    return [
        {
            "name": "alpha",
            "client_id": ALPHA[0],
            "access_token": ALPHA[1],
            "lagging_policy": policy,
            "lagging_after_s": 0.3,
            **more,
        }
    ]


def copy_of(world: World) -> dict[str, Any]:
    return world.orders("alpha")[-1]


def lagging_alerts(world: World) -> list[str]:
    return [
        a.message
        for a in world.eng.recent_alerts()
        if a.code == "COPY_LAGGING" and a.severity is Severity.WARNING
    ]


async def thin_market_leaves_the_copy_behind(world: World) -> tuple[str, float]:
    """The leader's limit buy and its copy rest at the same price; the market comes to it
    with liquidity for one of them: the leader's (earlier) order takes it."""
    ltp = world.sim.price(*NIFTY_CE)
    price = round(ltp - 10, 1)
    leader_id = world.place(side="BUY", qty=LOT, price=price)
    await world.follower_order("alpha")
    await world.settle()
    world.sim.set_liquidity(*NIFTY_CE, LOT)
    world.sim.set_price(*NIFTY_CE, price)
    await world.until(
        lambda: world.orders("leader")[-1]["orderStatus"] == "TRADED", 5, "leader filled"
    )
    assert copy_of(world)["filledQty"] == 0
    return leader_id, price


async def test_lagging_copy_is_alerted_by_default(make_world: WorldFactory) -> None:
    world = await make_world(followers=alpha("alert"))
    _, price = await thin_market_leaves_the_copy_behind(world)
    await world.until(lambda: bool(lagging_alerts(world)), 5, "lagging alert")
    text = lagging_alerts(world)[0]
    order_id = copy_of(world)["orderId"]
    assert f"copy {order_id}" in text and f"LIMIT {price:g}" in text
    assert f"filled at {price:g}" in text and "market" in text
    assert copy_of(world)["orderStatus"] == "PENDING"  # left working


async def test_lagging_copy_is_cancelled_by_the_cancel_policy(make_world: WorldFactory) -> None:
    world = await make_world(followers=alpha("cancel"))
    await thin_market_leaves_the_copy_behind(world)
    await world.until(lambda: copy_of(world)["orderStatus"] == "CANCELLED", 5, "cancelled")
    assert any("cancelled by the lagging policy" in t for t in lagging_alerts(world))
    await world.settle()
    assert len(world.orders("alpha")) == 1  # nothing re-placed


async def test_lagging_copy_is_chased_within_the_slippage_bound(make_world: WorldFactory) -> None:
    world = await make_world(followers=alpha("chase", max_slippage_pct=0.5, max_chases=2))
    _, price = await thin_market_leaves_the_copy_behind(world)
    await world.until(lambda: copy_of(world)["orderStatus"] == "TRADED", 5, "chased and filled")
    chased = copy_of(world)
    assert chased["price"] <= price * 1.005 and chased["price"] > price
    assert chased["orderType"] == "LIMIT"
    await world.settle()
    assert len(world.orders("alpha")) == 1  # modified, never a second order


async def test_stop_loss_copy_left_behind_by_a_gap_is_chased(make_world: WorldFactory) -> None:
    world = await make_world(followers=alpha("chase", max_slippage_pct=1.0))
    world.place(side="BUY", qty=LOT, order_type="MARKET")
    await world.follower_order("alpha")
    await world.until(lambda: copy_of(world)["orderStatus"] == "TRADED", 5, "entry copied")
    ltp = world.sim.price(*NIFTY_CE)
    trigger = round(ltp - 5, 1)
    world.place(side="SELL", qty=LOT, order_type="STOP_LOSS_MARKET", triggerPrice=trigger)
    await world.follower_order("alpha", 2)
    stop = copy_of(world)
    assert stop["orderType"] == "STOP_LOSS" and stop["price"] == pytest.approx(trigger * 0.99, 0.01)
    gap = round(trigger * 0.97, 1)  # the market gaps through the copy's 1% band
    world.sim.set_price(*NIFTY_CE, gap)
    await world.until(
        lambda: world.orders("leader")[-1]["orderStatus"] == "TRADED", 5, "leader's stop filled"
    )
    await world.until(lambda: copy_of(world)["orderStatus"] == "TRADED", 6, "stop copy chased")
    assert copy_of(world)["price"] >= gap * 0.99
    positions = {p["securityId"]: p["netQty"] for p in world.sim.positions(ALPHA[0])}
    assert int(positions[NIFTY_CE[1]]) == 0


async def test_stop_loss_copy_left_behind_by_a_gap_is_alerted(make_world: WorldFactory) -> None:
    world = await make_world(followers=alpha("alert"))
    world.place(side="BUY", qty=LOT, order_type="MARKET")
    await world.follower_order("alpha")
    await world.until(lambda: copy_of(world)["orderStatus"] == "TRADED", 5, "entry copied")
    trigger = round(world.sim.price(*NIFTY_CE) - 5, 1)
    world.place(side="SELL", qty=LOT, order_type="STOP_LOSS_MARKET", triggerPrice=trigger)
    await world.follower_order("alpha", 2)
    world.sim.set_price(*NIFTY_CE, round(trigger * 0.97, 1))
    await world.until(lambda: bool(lagging_alerts(world)), 5, "dead stop alerted")
    assert "STOP_LOSS" in lagging_alerts(world)[0]


async def test_copy_expired_at_the_close_while_its_leader_filled_is_alerted(
    make_world: WorldFactory,
) -> None:
    world = await make_world(followers=alpha("alert", lagging_after_s=600))
    await thin_market_leaves_the_copy_behind(world)
    world.sim.end_of_day()
    await world.until(lambda: copy_of(world)["orderStatus"] == "EXPIRED", 5, "expired")

    def expired_alerts() -> list[str]:
        return [
            a.message for a in world.eng.recent_alerts() if a.code == "COPY_EXPIRED_LEADER_FILLED"
        ]

    await world.until(lambda: bool(expired_alerts()), 5, "expiry alerted")
    assert copy_of(world)["orderId"] in expired_alerts()[0]
    assert "off the leader's position" in expired_alerts()[0]


async def test_a_chase_dhan_refuses_is_not_asked_again(make_world: WorldFactory) -> None:
    """Each refused chase is one request: neither the policy nor the replicator repeats it
    (each repeat would spend one of the follower's order requests, 10 a second at most)."""
    world = await make_world(followers=alpha("chase", max_slippage_pct=0.5, max_chases=2))
    world.sim.faults.fail_next(
        1000, status=400, code="DH-906", match="PUT /v2/orders", client_id=ALPHA[0]
    )
    await thin_market_leaves_the_copy_behind(world)
    await world.until(lambda: bool(world.modifies("alpha")), 5, "a chase sent")
    await world.settle()
    await world.eng.resync()
    await world.settle()
    assert 1 <= len(world.modifies("alpha")) <= 2  # at most one per chase the policy allows
    assert copy_of(world)["orderStatus"] == "PENDING"  # resting as it was, still followed
    assert any(a.code == "MODIFY_REFUSED" for a in world.eng.recent_alerts())
