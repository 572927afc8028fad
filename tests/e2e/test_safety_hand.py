"""Hand-made changes are respected, and a ghost leader order is caught, end to end with the
real dhanhq SDK against the simulator."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from engine.events import AlertRaised
from tests.e2e.conftest import ALPHA, LEADER, RELIANCE, World

pytestmark = pytest.mark.e2e


def alerts(world: World, code: str) -> list[AlertRaised]:
    return [e for e in world.events if isinstance(e, AlertRaised) and e.alert.code == code]


def copy_of(world: World, who: str, leader_id: str) -> dict[str, Any]:
    mirror = world.eng.mirror(who, leader_id)
    assert mirror is not None and mirror.follower_order_id
    [order] = [o for o in world.orders(who) if o["orderId"] == mirror.follower_order_id]
    return order


async def test_a_copy_modified_by_hand_is_shown_as_it_is_alerted_once_and_never_modified(
    world: World,
) -> None:
    leader_id = world.place(price=200.0)
    await world.follower_order("alpha")
    await world.follower_order("beta")
    await world.settle()
    alpha = copy_of(world, "alpha", leader_id)

    # The trader doubles alpha's copy in Dhan's app.
    world.sim.modify_manual_order(ALPHA[0], alpha["orderId"], quantity=130, price=200.0)
    await world.until(lambda: bool(alerts(world, "COPY_CHANGED_BY_HAND")), what="noticed")
    [noticed] = alerts(world, "COPY_CHANGED_BY_HAND")
    assert "quantity 65 -> 130" in noticed.alert.message
    [view] = [v for v in world.eng.follower_views() if v.follower == "alpha"]
    assert view.by_hand and view.quantity == 130  # shown as it really is
    mirror = world.eng.mirror("alpha", leader_id)
    assert mirror is not None and mirror.by_hand

    # The leader moves its price: beta follows, alpha's hand-made copy is left as it is.
    modifies_before = [r for r in world.sim.requests if r["method"] == "PUT"]
    world.modify(leader_id, price=201.0, quantity=65)
    await world.until(lambda: copy_of(world, "beta", leader_id)["price"] == 201.0, what="beta")
    await asyncio.sleep(0.3)
    await world.settle()
    alpha = copy_of(world, "alpha", leader_id)
    assert (alpha["price"], alpha["quantity"]) == (200.0, 130)
    puts = [r for r in world.sim.requests if r["method"] == "PUT"][len(modifies_before) :]
    assert all(r["client_id"] != ALPHA[0] for r in puts)
    assert len(alerts(world, "COPY_CHANGED_BY_HAND")) == 1  # said once

    # The leader's cancel still cancels it.
    world.cancel(leader_id)
    await world.until(
        lambda: copy_of(world, "alpha", leader_id)["orderStatus"] == "CANCELLED", what="cancel"
    )

    # A restart still knows it is managed by hand.
    await world.stop_engine()
    await world.start_engine()
    restarted = world.eng.mirror("alpha", leader_id)
    assert restarted is not None and restarted.by_hand


async def test_a_detached_copy_is_left_alone_by_the_leader_cancel_and_the_kill(
    world: World,
) -> None:
    leader_id = world.place(price=200.0)
    await world.follower_order("alpha")
    await world.follower_order("beta")
    await world.settle()
    line = await world.eng.detach("alpha", leader_id)
    assert "detached" in line
    world.cancel(leader_id)
    await world.until(
        lambda: copy_of(world, "beta", leader_id)["orderStatus"] == "CANCELLED", what="beta"
    )
    await asyncio.sleep(0.3)
    await world.settle()
    assert copy_of(world, "alpha", leader_id)["orderStatus"] == "PENDING"

    await world.stop_engine()  # remembered across a restart
    await world.start_engine()
    # (Another instrument: the detached buy still counts toward alpha's position.)
    second = world.place(RELIANCE, qty=5, price=1200.0)
    await world.follower_order("alpha", 2)
    await world.eng.kill("test")
    await world.until(
        lambda: copy_of(world, "alpha", second)["orderStatus"] == "CANCELLED", what="killed"
    )
    await world.settle()
    assert copy_of(world, "alpha", leader_id)["orderStatus"] == "PENDING"


async def test_a_copy_cancelled_by_hand_stays_cancelled(world: World) -> None:
    leader_id = world.place(price=200.0)
    await world.follower_order("alpha")
    await world.settle()
    alpha = copy_of(world, "alpha", leader_id)
    world.sim.cancel_manual_order(ALPHA[0], alpha["orderId"])
    await world.until(lambda: bool(alerts(world, "FOLLOWER_CANCELLED_OUTSIDE")), what="alert")
    world.modify(leader_id, price=201.0, quantity=65)
    await world.until(lambda: copy_of(world, "beta", leader_id)["price"] == 201.0, what="beta")
    await world.eng.resync()
    await asyncio.sleep(0.3)
    await world.settle()
    assert len(world.orders("alpha")) == 1  # not re-placed
    assert await world.eng.uncopied_orders() == []  # nor offered for re-placing


async def test_a_ghost_leader_order_is_flagged_and_its_copies_cancelled(world: World) -> None:
    real = world.place(price=200.0)
    await world.follower_order("alpha")
    await world.settle()
    ghost = world.sim.send_ghost_alert(LEADER[0], real)
    await world.until(lambda: world.eng.mirror("alpha", ghost) is not None, what="ghost copied")
    await world.follower_order("alpha", 2)
    await world.settle()

    report = await world.eng.resync()  # the next reconcile reads the leader's book
    assert any("ghost" in d for d in report.discrepancies)
    [flag] = alerts(world, "GHOST_LEADER_ORDER")
    assert ghost in flag.alert.message and flag.alert.severity.value == "CRITICAL"
    await world.until(
        lambda: copy_of(world, "alpha", ghost)["orderStatus"] == "CANCELLED", what="cancelled"
    )
    await world.until(
        lambda: copy_of(world, "beta", ghost)["orderStatus"] == "CANCELLED", what="cancelled"
    )
    assert copy_of(world, "alpha", real)["orderStatus"] == "PENDING"  # the real one stays
