"""A follower's own trades: never ours to close, but what they closed of the holding our
copies built, no exit copied from the leader may close again.

A follower (a family member watching the market) sells by hand the option its copy bought.
When the leader then exits, copying the exit in full would sell again what the account no
longer holds: a short option the leader never had. Intraday positions are not carried
overnight, so there the account's position is exactly our copies' fills plus its own. A
MARGIN position may be carried: there what the account holds is Dhan's positions as read
(once two reads agree) plus the fills since. alpha copies 1:1, beta 2:1 (conftest);
NIFTY_CE's lot is 65.
"""

from __future__ import annotations

from engine.domain import OrderStatus
from tests.e2e.conftest import ALPHA, BETA, NIFTY_CE, World, WorldFactory

LOT = 65


def _by_hand(
    world: World, who: tuple[str, str], side: str, qty: int, product: str = "INTRADAY"
) -> str:
    """The follower trades at market in Dhan's app: no correlationId."""
    return world.place(
        key=NIFTY_CE, side=side, qty=qty, order_type="MARKET", by=who, productType=product
    )


def _net(world: World, who: tuple[str, str]) -> int:
    positions = world.sim.exchange.account(who[0]).positions.values()
    return sum(p.net_qty for p in positions if p.inst.security_id == NIFTY_CE[1])


def _codes(world: World) -> list[str]:
    return [a.code for a in world.eng.recent_alerts()]


async def _both_hold_the_leaders_lot(world: World) -> None:
    world.place(key=NIFTY_CE, qty=LOT, order_type="MARKET")
    await world.follower_order("alpha")
    await world.follower_order("beta")
    await world.settle()
    assert (_net(world, ALPHA), _net(world, BETA)) == (LOT, 2 * LOT)


async def test_a_follower_that_sold_by_hand_is_not_turned_short_by_the_leaders_exit(
    world: World,
) -> None:
    await _both_hold_the_leaders_lot(world)
    _by_hand(world, ALPHA, "SELL", LOT)  # alpha is out
    _by_hand(world, BETA, "SELL", LOT)  # beta halves its 2 lots
    await world.until(lambda: _net(world, BETA) == LOT, what="beta's own sale")
    await world.until(lambda: "FOLLOWER_OWN_TRADE" in _codes(world), what="the alert")
    await world.settle()

    leader_exit = world.place(key=NIFTY_CE, side="SELL", qty=LOT, order_type="MARKET")
    await world.follower_order("beta", 3)
    await world.settle()
    assert (_net(world, ALPHA), _net(world, BETA)) == (0, 0)  # flat, like the leader
    copy = world.eng.mirror("alpha", leader_exit)
    assert copy is not None and "closed by the follower's own trades" in copy.reason
    assert [o["quantity"] for o in world.orders("beta")][-1] == LOT  # only what it held


async def test_a_resting_exit_is_cut_when_the_follower_exits_by_hand(world: World) -> None:
    """The leader rests his exit above the market; so does each copy. alpha then sells by
    hand: its resting exit would sell again once the market reaches it, so it goes."""
    await _both_hold_the_leaders_lot(world)
    price = round(world.sim.price(*NIFTY_CE) + 20)
    leader_exit = world.place(key=NIFTY_CE, side="SELL", qty=LOT, price=price)
    await world.follower_order("alpha", 2)
    await world.settle()
    _by_hand(world, ALPHA, "SELL", LOT)
    await world.until(
        lambda: world.orders("alpha")[1]["orderStatus"] == "CANCELLED",
        what="alpha's resting exit cancelled",
    )
    world.sim.set_price(*NIFTY_CE, price + 1)  # the leader's exit fills, beta's too
    await world.until(lambda: _net(world, BETA) == 0, what="beta's exit filled")
    await world.settle()
    assert _net(world, ALPHA) == 0
    copy = world.eng.mirror("alpha", leader_exit)
    assert copy is not None and copy.broker_status is OrderStatus.CANCELLED


async def test_what_the_follower_adds_by_hand_is_its_own_to_keep(world: World) -> None:
    await _both_hold_the_leaders_lot(world)
    _by_hand(world, ALPHA, "BUY", LOT)
    await world.until(lambda: _net(world, ALPHA) == 2 * LOT, what="alpha's own buy")
    await world.settle()
    world.place(key=NIFTY_CE, side="SELL", qty=LOT, order_type="MARKET")
    await world.follower_order("alpha", 3)
    await world.settle()
    assert _net(world, ALPHA) == LOT  # our lot closed, its own kept


async def test_own_trades_are_read_again_after_a_restart(make_world: WorldFactory) -> None:
    world = await make_world()
    await _both_hold_the_leaders_lot(world)
    await world.stop_engine()
    _by_hand(world, ALPHA, "SELL", LOT)  # while the engine is down
    await world.start_engine()
    await world.settle()
    world.place(key=NIFTY_CE, side="SELL", qty=LOT, order_type="MARKET")
    await world.follower_order("beta", 2)
    await world.settle()
    assert (_net(world, ALPHA), _net(world, BETA)) == (0, 0)
    assert len(world.posts("alpha")) == 1  # the entry's copy only


# --- MARGIN: a position that may be carried overnight ----------------------------------------


async def _both_hold_the_leaders_margin_lot(world: World) -> None:
    world.place(key=NIFTY_CE, qty=LOT, order_type="MARKET", productType="MARGIN")
    await world.follower_order("alpha")
    await world.follower_order("beta")
    await world.settle()
    assert (_net(world, ALPHA), _net(world, BETA)) == (LOT, 2 * LOT)


async def test_a_margin_position_sold_by_hand_is_not_turned_short_by_the_leaders_exit(
    world: World,
) -> None:
    await _both_hold_the_leaders_margin_lot(world)
    for _ in range(2):  # as the cockpit's timer does: the holdings are known once two agree
        await world.eng.read_positions()
    _by_hand(world, ALPHA, "SELL", LOT, "MARGIN")
    _by_hand(world, BETA, "SELL", LOT, "MARGIN")
    await world.until(lambda: _net(world, BETA) == LOT, what="beta's own sale")
    await world.until(lambda: "FOLLOWER_OWN_TRADE" in _codes(world), what="the alert")
    await world.settle()

    leader_exit = world.place(
        key=NIFTY_CE, side="SELL", qty=LOT, order_type="MARKET", productType="MARGIN"
    )
    await world.follower_order("beta", 3)
    await world.settle()
    assert (_net(world, ALPHA), _net(world, BETA)) == (0, 0)
    copy = world.eng.mirror("alpha", leader_exit)
    assert copy is not None and "closed by the follower's own trades" in copy.reason
    assert len(world.posts("alpha")) == 1  # the entry's copy only
    assert [o["quantity"] for o in world.orders("beta")][-1] == LOT


async def test_a_resting_margin_exit_is_cut_once_the_positions_show_the_hand_sale(
    world: World,
) -> None:
    """The sale by hand came while the engine was down; the positions read after the start
    show it (two reads agreeing), and alpha's resting exit goes before it can sell again."""
    await _both_hold_the_leaders_margin_lot(world)
    price = round(world.sim.price(*NIFTY_CE) + 20)
    world.place(key=NIFTY_CE, side="SELL", qty=LOT, price=price, productType="MARGIN")
    await world.follower_order("alpha", 2)
    await world.settle()
    await world.stop_engine()
    _by_hand(world, ALPHA, "SELL", LOT, "MARGIN")
    await world.start_engine()
    await world.settle()
    for _ in range(2):
        await world.eng.read_positions()
    await world.until(
        lambda: world.orders("alpha")[1]["orderStatus"] == "CANCELLED",
        what="alpha's resting exit cancelled",
    )
    world.sim.set_price(*NIFTY_CE, price + 1)  # the leader's exit fills, beta's too
    await world.until(lambda: _net(world, BETA) == 0, what="beta's exit filled")
    await world.settle()
    assert _net(world, ALPHA) == 0


async def test_what_the_follower_holds_of_its_own_in_margin_is_kept(world: World) -> None:
    """alpha held a lot of its own before (bought by hand) and our copy added one: the
    leader's exit sells only ours."""
    _by_hand(world, ALPHA, "BUY", LOT, "MARGIN")
    await world.until(lambda: _net(world, ALPHA) == LOT, what="alpha's own buy")
    await _both_hold_the_leaders_margin_lot_from(world, alpha=2 * LOT)
    for _ in range(2):
        await world.eng.read_positions()
    leader_exit = world.place(
        key=NIFTY_CE, side="SELL", qty=LOT, order_type="MARKET", productType="MARGIN"
    )
    await world.follower_order("alpha", 3)  # its own buy, the entry's copy, the exit's
    await world.settle()
    copy = world.eng.mirror("alpha", leader_exit)
    assert _net(world, ALPHA) == LOT, copy  # our lot closed, its own kept


async def _both_hold_the_leaders_margin_lot_from(world: World, alpha: int) -> None:
    world.place(key=NIFTY_CE, qty=LOT, order_type="MARKET", productType="MARGIN")
    await world.follower_order("alpha")
    await world.follower_order("beta")
    await world.settle()
    assert (_net(world, ALPHA), _net(world, BETA)) == (alpha, 2 * LOT)
