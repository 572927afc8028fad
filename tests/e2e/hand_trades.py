"""A follower account trading in Dhan's app (no correlationId of ours), and what it holds:
shared by the own-trade tests (intraday and carried)."""

from __future__ import annotations

from tests.e2e.conftest import NIFTY_CE, World

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
