"""A copy above the exchange's freeze quantity goes out through ``POST /orders/slicing`` and is
tracked, modified (price, and a new total spread over the slices) and cancelled as one copy
made of several orders."""

from __future__ import annotations

import pytest

from engine.domain import MirrorState
from tests.e2e.conftest import NIFTY_CE, World

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
