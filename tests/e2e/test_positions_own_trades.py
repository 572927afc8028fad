"""A follower's own trades: never ours to close, but what they closed of the holding our
copies built, no exit copied from the leader may close again.

A follower (a family member watching the market) sells by hand the option its copy bought.
When the leader then exits, copying the exit in full would sell again what the account no
longer holds: a short option the leader never had. Intraday positions are not carried
overnight, so there the account's position is exactly our copies' fills plus its own (MARGIN:
tests/e2e/test_positions_carried.py). alpha copies 1:1, beta 2:1 (conftest); NIFTY_CE's lot is
65.
"""

from __future__ import annotations

from engine.domain import OrderStatus
from tests.e2e.conftest import ALPHA, BETA, NIFTY_CE, World, WorldFactory
from tests.e2e.hand_trades import (
    LOT,
    alert_codes,
    alphas_resting_exit_goes_and_beta_exits,
    both_copy_the_leaders_lot,
    by_hand,
    net_of,
)


async def test_a_follower_that_sold_by_hand_is_not_turned_short_by_the_leaders_exit(
    world: World,
) -> None:
    await both_copy_the_leaders_lot(world)
    by_hand(world, ALPHA, "SELL", LOT)  # alpha is out
    by_hand(world, BETA, "SELL", LOT)  # beta halves its 2 lots
    await world.until(lambda: net_of(world, BETA) == LOT, what="beta's own sale")
    await world.until(lambda: "FOLLOWER_OWN_TRADE" in alert_codes(world), what="the alert")
    await world.settle()

    leader_exit = world.place(key=NIFTY_CE, side="SELL", qty=LOT, order_type="MARKET")
    await world.follower_order("beta", 3)
    await world.settle()
    assert (net_of(world, ALPHA), net_of(world, BETA)) == (0, 0)  # flat, like the leader
    copy = world.eng.mirror("alpha", leader_exit)
    assert copy is not None and "closed by the follower's own trades" in copy.reason
    assert [o["quantity"] for o in world.orders("beta")][-1] == LOT  # only what it held


async def test_a_resting_exit_is_cut_when_the_follower_exits_by_hand(world: World) -> None:
    """The leader rests his exit above the market; so does each copy. alpha then sells by
    hand: its resting exit would sell again once the market reaches it, so it goes."""
    await both_copy_the_leaders_lot(world)
    price = round(world.sim.price(*NIFTY_CE) + 20)
    leader_exit = world.place(key=NIFTY_CE, side="SELL", qty=LOT, price=price)
    await world.follower_order("alpha", 2)
    await world.settle()
    by_hand(world, ALPHA, "SELL", LOT)
    await alphas_resting_exit_goes_and_beta_exits(world, price)
    copy = world.eng.mirror("alpha", leader_exit)
    assert copy is not None and copy.broker_status is OrderStatus.CANCELLED


async def test_what_the_follower_adds_by_hand_is_its_own_to_keep(world: World) -> None:
    await both_copy_the_leaders_lot(world)
    by_hand(world, ALPHA, "BUY", LOT)
    await world.until(lambda: net_of(world, ALPHA) == 2 * LOT, what="alpha's own buy")
    await world.settle()
    world.place(key=NIFTY_CE, side="SELL", qty=LOT, order_type="MARKET")
    await world.follower_order("alpha", 3)
    await world.settle()
    assert net_of(world, ALPHA) == LOT  # our lot closed, its own kept


async def test_own_trades_are_read_again_after_a_restart(make_world: WorldFactory) -> None:
    world = await make_world()
    await both_copy_the_leaders_lot(world)
    await world.stop_engine()
    by_hand(world, ALPHA, "SELL", LOT)  # while the engine is down
    await world.start_engine()
    await world.settle()
    world.place(key=NIFTY_CE, side="SELL", qty=LOT, order_type="MARKET")
    await world.follower_order("beta", 2)
    await world.settle()
    assert (net_of(world, ALPHA), net_of(world, BETA)) == (0, 0)
    assert len(world.posts("alpha")) == 1  # the entry's copy only
