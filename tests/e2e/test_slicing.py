"""A copy above the exchange's freeze quantity goes out through ``POST /orders/slicing`` and is
tracked, modified (price, and a new total spread over the slices) and cancelled as one copy
made of several orders."""

from __future__ import annotations

import asyncio

import pytest

from engine.domain import MirrorState
from tests.e2e.conftest import BETA, NIFTY_CE, World, WorldFactory

pytestmark = pytest.mark.e2e

AT_FREEZE = 1755  # NIFTY: freeze 1756, lot 65 -> the largest single order is 27 lots


def open_orders(world: World, who: str) -> list[dict[str, object]]:
    return [o for o in world.orders(who) if o["orderStatus"] in ("PENDING", "TRANSIT")]


async def test_x2_copy_at_the_freeze_quantity_is_sliced_modified_and_cancelled_as_one(
    world: World,
) -> None:
    price = round(world.sim.price(*NIFTY_CE) * 0.95, 1)
    leader_id = world.place(qty=AT_FREEZE, price=price)
    await world.until(lambda: len(open_orders(world, "beta")) == 2, what="beta's two slices")
    await world.until(lambda: len(open_orders(world, "alpha")) == 1, what="alpha's copy")
    beta = open_orders(world, "beta")
    assert sorted(int(str(o["quantity"])) for o in beta) == [AT_FREEZE, AT_FREEZE]
    assert len({o["correlationId"] for o in beta}) == 1  # one copy
    assert [r["path"] for r in world.posts("beta")] == ["/v2/orders/slicing"]
    assert [r["path"] for r in world.posts("alpha")] == ["/v2/orders"]
    await world.settle()
    copy = next(m for m in world.eng.follower_views() if m.follower == "beta")
    assert copy.quantity == 2 * AT_FREEZE and copy.mirror_state is MirrorState.LIVE

    world.modify(leader_id, price=price - 1)
    await world.until(
        lambda: all(float(str(o["price"])) == price - 1 for o in open_orders(world, "beta")),
        what="both slices at the new price",
    )

    world.modify(leader_id, quantity=1300, price=price - 1)  # 20 lots: beta 2600 in all
    await world.until(
        lambda: sum(int(str(o["quantity"])) for o in open_orders(world, "beta")) == 2600,
        what="the new total spread over the slices",
    )
    assert len(open_orders(world, "beta")) == 2

    world.cancel(leader_id)
    await world.until(lambda: not open_orders(world, "beta"), what="every slice cancelled")
    assert all(o["orderStatus"] == "CANCELLED" for o in world.orders("beta"))
    await world.settle()
    copy = next(m for m in world.eng.follower_views() if m.follower == "beta")
    assert copy.mirror_state is MirrorState.DONE and copy.broker_status == "CANCELLED"
    assert len(world.orders("beta")) == 2  # nothing re-placed


def order_requests(world: World, client_id: str) -> list[dict[str, object]]:
    """Every order-API request (place, modify, cancel) the simulator received from an account."""
    return [
        r
        for r in world.sim.requests
        if r["client_id"] == client_id
        and r["method"] in ("POST", "PUT", "DELETE")
        and str(r["path"]).startswith("/v2/orders")
    ]


def most_in_one_second(times: list[float]) -> int:
    times = sorted(times)
    return max(
        (sum(1 for t in times[i:] if t - start < 1.0) for i, start in enumerate(times)),
        default=0,
    )


# beta copies 12x: 27 lots of NIFTY at the freeze quantity become twelve slices.
TWELVE_SLICES = [
    {
        "name": "beta",
        "client_id": BETA[0],
        "access_token": BETA[1],
        "sizing": {"kind": "multiplier", "multiplier": 12},
    }
]


async def twelve_slices(make_world: WorldFactory) -> tuple[World, str, float]:
    world = await make_world(TWELVE_SLICES)
    price = round(world.sim.price(*NIFTY_CE) * 0.95, 1)
    leader_id = world.place(qty=AT_FREEZE, price=price)
    await world.until(lambda: len(open_orders(world, "beta")) == 12, what="beta's twelve slices")
    await world.settle()
    return world, leader_id, price


def modifies(world: World) -> list[dict[str, object]]:
    return [r for r in order_requests(world, BETA[0]) if r["method"] == "PUT"]


async def test_a_copy_of_twelve_slices_is_modified_and_cancelled_within_dhans_10_a_second(
    make_world: WorldFactory,
) -> None:
    # Each slice is its own order at Dhan: its modify and its cancel are each one request of
    # the 10 a second, not one for the copy.
    world, leader_id, price = await twelve_slices(make_world)

    world.modify(leader_id, price=price - 1)
    await world.until(
        lambda: all(float(str(o["price"])) == price - 1 for o in open_orders(world, "beta")),
        timeout=15,
        what="every slice at the new price",
    )
    world.cancel(leader_id)
    await world.until(lambda: not open_orders(world, "beta"), timeout=15, what="every slice gone")
    await world.settle()

    sent = order_requests(world, BETA[0])
    assert [r["method"] for r in sent].count("PUT") == 12
    assert [r["method"] for r in sent].count("DELETE") == 12
    assert all(r["error_code"] != "DH-904" for r in sent)
    assert most_in_one_second([float(str(r["monotonic"])) for r in sent]) <= 10
    assert len(world.orders("beta")) == 12  # nothing re-placed
    copy = next(m for m in world.eng.follower_views() if m.follower == "beta")
    assert copy.mirror_state is MirrorState.DONE and copy.broker_status == "CANCELLED"


async def test_the_kill_switch_stops_a_sliced_copys_modification_between_slices(
    make_world: WorldFactory,
) -> None:
    world, leader_id, price = await twelve_slices(make_world)
    world.modify(leader_id, price=price - 1)
    # At most 10 of the twelve go out in the first second; the rest wait for their turn. The
    # kill comes once the count has stood still (nothing in flight, the rest waiting).
    await world.until(lambda: len(modifies(world)) >= 8, what="most slices modified")
    before = -1
    while len(modifies(world)) != before:
        before = len(modifies(world))
        await asyncio.sleep(0.2)
    await world.eng.kill("test")
    await world.settle()
    await asyncio.sleep(1.5)  # past the second the waiting slices would have gone in

    sent = modifies(world)
    assert len(sent) == before < 12  # nothing after the kill
    assert all(r["error_code"] != "DH-904" for r in sent)
    said = [a.message for a in world.eng.recent_alerts() if a.code == "MODIFY_INTERRUPTED"]
    assert said == [
        f"beta: engine killed after {len(sent)} of 12 slices were modified for the copy of "
        f"leader order {leader_id}; the others are left as they were"
    ]
