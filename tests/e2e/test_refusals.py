"""What Dhan refuses, and what it shows: no follower order is left resting untracked.

A modification Dhan refuses leaves the follower's order resting as it was: still open, so it
must still follow the leader's cancel and the kill switch, and must not be asked again and again.
beta (sizing x2) can afford its copy of 10 RELIANCE but not of 20: when the leader enlarges its
order, beta's modification is refused for margin (the simulator answers as Dhan's RMS does).

A placement Dhan refuses in words but shows in its book or stream exists (no source says Dhan
does this; the simulator can): the copy follows the leader from the moment Dhan shows it.
"""

from __future__ import annotations

import sqlite3

from engine.domain import MirrorState
from engine.events import AlertRaised
from tests.e2e.conftest import ALPHA, RELIANCE, World, WorldFactory

QTY = 10


def _alerted(world: World, code: str) -> bool:
    return any(isinstance(e, AlertRaised) and e.alert.code == code for e in world.events)


async def _beta_refused_an_enlargement(make_world: WorldFactory) -> tuple[World, str]:
    world = await make_world()
    price = round(world.sim.price(*RELIANCE) - 50.0)
    # Enough for beta's copy of 10 (20 shares), not for one of 20 (40 shares).
    world.sim.add_account("1000000003", "tok-beta-e2e", funds=price * 2 * QTY * 1.5)
    leader_id = world.place(key=RELIANCE, qty=QTY, price=price)
    await world.follower_order("beta")
    await world.settle()
    world.modify(leader_id, quantity=2 * QTY)
    await world.until(
        lambda: world.orders("alpha")[0]["quantity"] == 2 * QTY, what="alpha enlarged"
    )
    await world.until(lambda: len(world.modifies("beta")) == 1, what="beta's modify sent")
    await world.settle()
    return world, leader_id


async def test_a_refused_modification_leaves_the_copy_following_the_leader(
    make_world: WorldFactory,
) -> None:
    world, leader_id = await _beta_refused_an_enlargement(make_world)
    beta = world.orders("beta")
    assert len(beta) == 1 and beta[0]["quantity"] == 2 * QTY
    assert beta[0]["orderStatus"] == "PENDING"
    mirror = world.eng.mirror("beta", leader_id)
    assert mirror is not None and mirror.is_open_at_broker, mirror
    assert mirror.params is not None and mirror.params.quantity == 2 * QTY
    assert "modify refused" in mirror.reason and "Insufficient funds" in mirror.reason
    assert _alerted(world, "MODIFY_REFUSED")
    # Asked once: neither the next reconcile nor the R key sends the same refused request again.
    await world.eng.resync()
    await world.settle()
    assert len(world.modifies("beta")) == 1

    world.cancel(leader_id)
    await world.until(
        lambda: world.orders("beta")[0]["orderStatus"] == "CANCELLED", what="beta cancelled"
    )
    assert world.orders("alpha")[0]["orderStatus"] == "CANCELLED"
    await world.settle()
    mirror = world.eng.mirror("beta", leader_id)
    assert mirror is not None and mirror.state is MirrorState.DONE


async def test_a_refusal_is_remembered_across_a_restart(make_world: WorldFactory) -> None:
    world, leader_id = await _beta_refused_an_enlargement(make_world)
    await world.stop_engine()
    await world.start_engine()
    await world.settle()
    assert len(world.modifies("beta")) == 1  # the refused request is not made again
    mirror = world.eng.mirror("beta", leader_id)
    assert mirror is not None and mirror.is_open_at_broker and mirror.refused_params is not None
    world.cancel(leader_id)
    await world.until(
        lambda: world.orders("beta")[0]["orderStatus"] == "CANCELLED", what="beta cancelled"
    )


async def test_a_copy_an_earlier_version_marked_failed_follows_the_leader_again(
    make_world: WorldFactory,
) -> None:
    """Versions before this one recorded a refused modification as a FAILED copy, which
    nothing touched again, not the leader's cancel, not the kill. Such a database, opened now:
    the follower's book shows the order open, so the copy follows the leader again."""
    world, leader_id = await _beta_refused_an_enlargement(make_world)
    await world.stop_engine()
    with sqlite3.connect(world.db) as db:  # what that version left
        db.execute(
            "UPDATE mirrors SET state = 'FAILED', refused_params = NULL"
            " WHERE follower = 'beta' AND leader_order_id = ?",
            (leader_id,),
        )
    await world.start_engine()
    await world.settle()
    mirror = world.eng.mirror("beta", leader_id)
    assert mirror is not None and mirror.is_open_at_broker, mirror
    world.cancel(leader_id)
    await world.until(
        lambda: world.orders("beta")[0]["orderStatus"] == "CANCELLED", what="beta cancelled"
    )
    assert len(world.orders("beta")) == 1


async def test_the_kill_switch_cancels_a_copy_whose_modification_was_refused(
    make_world: WorldFactory,
) -> None:
    world, _ = await _beta_refused_an_enlargement(make_world)
    await world.eng.kill("trader pressed K")
    await world.until(
        lambda: world.orders("beta")[0]["orderStatus"] == "CANCELLED", what="beta cancelled"
    )
    assert world.orders("alpha")[0]["orderStatus"] == "CANCELLED"


async def test_a_later_leader_change_is_tried_again(make_world: WorldFactory) -> None:
    """The refusal was of one request: the leader's next change is a new one (here a price
    edit, which beta can afford at its resting quantity)."""
    world, leader_id = await _beta_refused_an_enlargement(make_world)
    new_price = world.orders("leader")[0]["price"] - 1.0
    world.modify(leader_id, quantity=QTY, price=new_price)
    await world.until(lambda: world.orders("beta")[0]["price"] == new_price, what="beta re-priced")
    await world.settle()
    assert world.orders("beta")[0]["quantity"] == 2 * QTY
    mirror = world.eng.mirror("beta", leader_id)
    assert mirror is not None and mirror.is_open_at_broker and mirror.reason == ""


async def test_a_refused_reduction_is_cancelled_and_the_rest_placed_anew(
    make_world: WorldFactory,
) -> None:
    """A copy Dhan will not make smaller is larger than the leader's order: left so, it could
    fill beyond the leader. It is cancelled and the rest placed as a new order."""
    world = await make_world()
    leader_id = world.place(qty=130, price=200.0)
    await world.follower_order("alpha")
    await world.settle()
    world.sim.faults.fail_next(
        1, status=400, code="DH-906", match="PUT /v2/orders", client_id=ALPHA[0]
    )
    world.modify(leader_id, quantity=65)
    await world.until(
        lambda: [o["orderStatus"] for o in world.orders("alpha")] == ["CANCELLED", "PENDING"],
        what="alpha's copy cancelled and placed anew",
    )
    await world.settle()
    first, second = world.orders("alpha")
    assert (first["quantity"], second["quantity"]) == (130, 65)
    assert len(world.modifies("alpha")) == 1
    mirror = world.eng.mirror("alpha", leader_id)
    assert mirror is not None and mirror.is_open_at_broker and mirror.generation == 1
    assert mirror.refused_params is None  # the refusal was of the old order's modification


async def _alpha_refused_in_words(world: World) -> str:
    world.sim.faults.fail_next(
        1, status=400, code="DH-906", after_accept=True, match="POST /v2/orders", client_id=ALPHA[0]
    )
    leader_id = world.place(price=200.0)
    await world.follower_order("alpha")
    await world.follower_order("beta")
    return leader_id


async def test_a_placement_refused_in_words_but_shown_follows_the_leader(
    make_world: WorldFactory,
) -> None:
    world = await make_world()
    leader_id = await _alpha_refused_in_words(world)
    await world.until(
        lambda: (m := world.eng.mirror("alpha", leader_id)) is not None and m.is_open_at_broker,
        what="alpha's copy taken as shown",
    )
    assert _alerted(world, "REFUSED_COPY_AT_DHAN")
    world.cancel(leader_id)
    await world.until(
        lambda: world.orders("alpha")[0]["orderStatus"] == "CANCELLED", what="alpha cancelled"
    )
    await world.settle()
    assert len(world.orders("alpha")) == 1  # nothing placed a second time


async def test_a_refused_placement_found_only_in_the_book_is_cancelled_by_the_kill(
    make_world: WorldFactory,
) -> None:
    world = await make_world()
    world.sim.faults.pause_delivery(ALPHA[0])  # alpha's stream says nothing of it
    leader_id = await _alpha_refused_in_words(world)
    await world.settle()
    mirror = world.eng.mirror("alpha", leader_id)
    assert mirror is not None and mirror.state is MirrorState.FAILED
    await world.eng.resync()  # R: the follower's book shows the order
    mirror = world.eng.mirror("alpha", leader_id)
    assert mirror is not None and mirror.is_open_at_broker, mirror
    await world.eng.kill("trader pressed K")
    await world.until(
        lambda: world.orders("alpha")[0]["orderStatus"] == "CANCELLED", what="alpha cancelled"
    )
    assert len(world.orders("alpha")) == 1
