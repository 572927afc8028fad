"""A follower's own trades in a MARGIN position, which may be carried overnight: what they
closed of the holding our copies built, no exit copied from the leader may close again.

Today's book does not say what a carried position holds: the engine takes Dhan's positions (a
read that counts exactly the fills the account's stream showed today) plus the fills since,
and until such a read, the own trades the stream showed. Each test runs under the simulator's
live answers, with positions that trail the order stream by 1.5 s, and with day quantities
that count the carried ones (what Dhan's positions do is not documented). alpha copies 1:1,
beta 2:1 (conftest); NIFTY_CE's lot is 65. (The next morning: tests/e2e/test_day_end.py.)
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from engine.simulator.server import DhanSimulator
from tests.e2e.conftest import ALPHA, BETA, LEADER, NIFTY_CE, World
from tests.e2e.hand_trades import (
    LOT,
    alert_codes,
    alphas_resting_exit_goes_and_beta_exits,
    both_copy_the_leaders_lot,
    by_hand,
    net_of,
)


@pytest.fixture(params=["live", "positions-lag", "positions-with-carried"])
async def sim(request: pytest.FixtureRequest) -> AsyncIterator[DhanSimulator]:
    """The e2e simulator under each way Dhan's positions may count (overrides conftest's)."""
    simulator = DhanSimulator(
        accounts={LEADER[0]: LEADER[1], ALPHA[0]: ALPHA[1], BETA[0]: BETA[1]},
        profile=request.param,
    )
    await simulator.start(host="127.0.0.1", port=0)
    try:
        yield simulator
    finally:
        await simulator.stop()


async def test_a_margin_position_sold_by_hand_is_not_turned_short_by_the_leaders_exit(
    world: World,
) -> None:
    await both_copy_the_leaders_lot(world, "MARGIN")
    await world.eng.read_positions()  # as the cockpit's timer does every few seconds
    by_hand(world, ALPHA, "SELL", LOT, "MARGIN")
    by_hand(world, BETA, "SELL", LOT, "MARGIN")
    await world.until(lambda: net_of(world, BETA) == LOT, what="beta's own sale")
    await world.until(lambda: "FOLLOWER_OWN_TRADE" in alert_codes(world), what="the alert")
    await world.settle()

    leader_exit = world.place(
        key=NIFTY_CE, side="SELL", qty=LOT, order_type="MARKET", productType="MARGIN"
    )
    await world.follower_order("beta", 3)
    await world.settle()
    assert (net_of(world, ALPHA), net_of(world, BETA)) == (0, 0)
    copy = world.eng.mirror("alpha", leader_exit)
    assert copy is not None and "closed by the follower's own trades" in copy.reason
    assert len(world.posts("alpha")) == 1  # the entry's copy only
    assert [o["quantity"] for o in world.orders("beta")][-1] == LOT


async def test_a_resting_margin_exit_is_cut_once_the_positions_show_the_hand_sale(
    world: World,
) -> None:
    """The sale by hand came while the engine was down; the positions read after the start
    show it, and alpha's resting exit goes before it can sell again."""
    await both_copy_the_leaders_lot(world, "MARGIN")
    price = round(world.sim.price(*NIFTY_CE) + 20)
    world.place(key=NIFTY_CE, side="SELL", qty=LOT, price=price, productType="MARGIN")
    await world.follower_order("alpha", 2)
    await world.settle()
    await world.stop_engine()
    by_hand(world, ALPHA, "SELL", LOT, "MARGIN")
    await world.start_engine()
    await world.settle()
    await world.eng.read_positions()
    await alphas_resting_exit_goes_and_beta_exits(world, price)


async def test_what_the_follower_holds_of_its_own_in_margin_is_kept(world: World) -> None:
    """alpha held a lot of its own before (bought by hand) and our copy added one: the
    leader's exit sells only ours."""
    by_hand(world, ALPHA, "BUY", LOT, "MARGIN")
    await world.until(lambda: net_of(world, ALPHA) == LOT, what="alpha's own buy")
    await both_copy_the_leaders_lot(world, "MARGIN", alpha_holds=2 * LOT)
    await world.eng.read_positions()
    leader_exit = world.place(
        key=NIFTY_CE, side="SELL", qty=LOT, order_type="MARKET", productType="MARGIN"
    )
    await world.follower_order("alpha", 3)  # its own buy, the entry's copy, the exit's
    await world.settle()
    copy = world.eng.mirror("alpha", leader_exit)
    assert net_of(world, ALPHA) == LOT, copy  # our lot closed, its own kept
