"""Position sync never trades against resting protective copies (issue 10): a follower that
holds its target with its stop-loss copy resting needs nothing, with the real dhanhq SDK
against the simulator."""

from __future__ import annotations

import pytest

from engine.views import SyncOrderView, SyncPreview
from tests.e2e.conftest import ALPHA, BETA, NIFTY_CE, World

pytestmark = pytest.mark.e2e

LOT = 65  # NIFTY_CE
HELD = 6 * LOT  # 390


def net(world: World, client_id: str) -> int:
    return sum(
        int(p["netQty"])
        for p in world.sim.positions(client_id)
        if p["exchangeSegment"] == NIFTY_CE[0] and str(p["securityId"]) == NIFTY_CE[1]
    )


async def test_resting_stop_copies_are_not_counted_as_buys_to_make_up(world: World) -> None:
    world.place(side="BUY", qty=HELD, order_type="MARKET")
    await world.until(lambda: net(world, ALPHA[0]) == HELD, 8, "alpha holds its target")
    await world.until(lambda: net(world, BETA[0]) == 2 * HELD, 8, "beta holds its target")
    trigger = round(world.sim.price(*NIFTY_CE) - 5, 1)
    world.place(side="SELL", qty=HELD, order_type="STOP_LOSS_MARKET", triggerPrice=trigger)
    await world.follower_order("alpha", 2)
    await world.follower_order("beta", 2)
    await world.settle()
    stops = [world.orders(who)[-1] for who in ("alpha", "beta")]
    assert [s["orderStatus"] for s in stops] == ["PENDING", "PENDING"], stops  # resting
    posted = len(world.posts("alpha")), len(world.posts("beta"))

    preview = await world.eng.sync_preview()
    assert preview.orders == (), preview  # each follower holds its target: nothing to do

    report = await world.eng.sync_apply(preview)
    assert report.placed == 0 and not report.refused, report
    # The order the faulty preview showed ("alpha BUY 390, net +390 -> target +390") is
    # refused if it comes back from an old screen: confirming it would double the position.
    stale = SyncOrderView(
        "alpha", NIFTY_CE[0], NIFTY_CE[1], "NIFTY-CE", "INTRADAY", "BUY", HELD, HELD, HELD
    )
    report = await world.eng.sync_apply(SyncPreview((stale,)))
    assert report.placed == 0 and "no longer needed" in report.refused[0], report
    await world.settle()
    assert (len(world.posts("alpha")), len(world.posts("beta"))) == posted  # nothing placed
    assert (net(world, ALPHA[0]), net(world, BETA[0])) == (HELD, 2 * HELD)
    assert await world.eng.check_drift() == []  # and the drift check agrees
    (row,) = [r for r in (await world.eng.read_positions()).positions if r.security_id == "48211"]
    shown = [(f.follower, f.net, f.target, f.difference) for f in row.followers]
    assert sorted(shown) == [("alpha", HELD, HELD, 0), ("beta", 2 * HELD, 2 * HELD, 0)]  # the pane


async def test_pane_preview_and_drift_show_the_same_target(world: World) -> None:
    world.place(side="BUY", qty=HELD, order_type="MARKET")
    await world.until(lambda: net(world, BETA[0]) == 2 * HELD, 8, "beta holds its target")
    await world.settle()
    # The trader sells 2 lots of alpha's by hand: alpha is 130 under its target.
    world.sim.place_manual_order(
        ALPHA[0],
        transactionType="SELL",
        exchangeSegment=NIFTY_CE[0],
        securityId=NIFTY_CE[1],
        quantity=2 * LOT,
        orderType="MARKET",
        price=0.0,
        productType="INTRADAY",
    )
    await world.until(lambda: net(world, ALPHA[0]) == HELD - 2 * LOT, 8, "alpha sold by hand")
    preview = await world.eng.sync_preview()
    assert [(o.follower, o.side, o.quantity, o.net, o.target) for o in preview.orders] == [
        ("alpha", "BUY", 2 * LOT, HELD - 2 * LOT, HELD)
    ]
    (row,) = [r for r in (await world.eng.read_positions()).positions if r.security_id == "48211"]
    alpha = next(f for f in row.followers if f.follower == "alpha")
    assert (alpha.net, alpha.target, alpha.difference) == (HELD - 2 * LOT, HELD, -2 * LOT)
    assert not alpha.closed_by_working_orders  # nothing working will close it
    (line,) = [text for text in await world.eng.check_drift() if text.startswith("alpha")]
    assert f"net {HELD - 2 * LOT}" in line and f"implies {HELD}" in line, line
