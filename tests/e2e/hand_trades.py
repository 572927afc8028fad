"""A follower account trading in Dhan's app (no correlationId of ours), and what it holds:
shared by the own-trade tests (intraday and carried)."""

from __future__ import annotations

from tests.e2e.conftest import ALPHA, BETA, NIFTY_CE, World

LOT = 65  # NIFTY_CE's lot


def by_hand(
    world: World, who: tuple[str, str], side: str, qty: int, product: str = "INTRADAY"
) -> str:
    """The follower trades NIFTY_CE at market in Dhan's app."""
    return world.place(
        key=NIFTY_CE, side=side, qty=qty, order_type="MARKET", by=who, productType=product
    )


def net_of(world: World, who: tuple[str, str]) -> int:
    """What the account holds in NIFTY_CE at the simulated exchange, every product."""
    positions = world.sim.exchange.account(who[0]).positions.values()
    return sum(p.net_qty for p in positions if p.inst.security_id == NIFTY_CE[1])


def alert_codes(world: World) -> list[str]:
    return [a.code for a in world.eng.recent_alerts()]


async def both_copy_the_leaders_lot(
    world: World, product: str = "INTRADAY", alpha_holds: int = LOT
) -> None:
    """The leader buys a lot of NIFTY_CE at market; alpha (1:1) and beta (2:1) copy it."""
    world.place(key=NIFTY_CE, qty=LOT, order_type="MARKET", productType=product)
    await world.follower_order("alpha")
    await world.follower_order("beta")
    await world.settle()
    assert (net_of(world, ALPHA), net_of(world, BETA)) == (alpha_holds, 2 * LOT)


async def alphas_resting_exit_goes_and_beta_exits(world: World, price: float) -> None:
    """alpha's copy of the leader's resting exit (the second order in its book) is cancelled;
    the market then reaches `price`: the leader's exit fills, beta's copy too, alpha stays
    flat."""
    await world.until(
        lambda: world.orders("alpha")[1]["orderStatus"] == "CANCELLED",
        what="alpha's resting exit cancelled",
    )
    world.sim.set_price(*NIFTY_CE, price + 1)
    await world.until(lambda: net_of(world, BETA) == 0, what="beta's exit filled")
    await world.settle()
    assert net_of(world, ALPHA) == 0
