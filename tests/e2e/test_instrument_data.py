"""Dhan's instrument data with no instruments file: the engine loads the scrip master the
simulator serves (as Dhan serves it to API users) and prices protected copies on each
instrument's real tick (MCX crude moves in whole rupees)."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import World

pytestmark = pytest.mark.e2e

CRUDE = ("MCX_COMM", "458305")  # lot 100, tick 1.0 (Rs), freeze 10001


async def test_mcx_market_and_slm_copies_on_the_real_tick_without_an_instruments_file(
    world: World,
) -> None:
    assert world.eng.settings.instruments_file is None
    assert "api-scrip-master-detailed.csv" in world.eng.settings.instruments_url
    ltp = world.sim.price(*CRUDE)
    world.place(key=CRUDE, side="BUY", qty=100, order_type="MARKET", price=0.0)
    market = (await world.follower_order("alpha"))[0]
    # Dhan's API takes no MARKET order: a LIMIT with a protection band, on crude's 1.0 tick.
    assert market["orderType"] == "LIMIT"
    assert float(market["price"]) == round(float(market["price"]))
    assert float(market["price"]) > ltp
    world.place(
        key=CRUDE,
        side="SELL",
        qty=100,
        order_type="STOP_LOSS_MARKET",
        triggerPrice=ltp - 37.0,
        price=0.0,
    )
    await world.follower_order("alpha", count=2)
    stop = next(o for o in world.orders("alpha") if o["transactionType"] == "SELL")
    assert stop["orderType"] == "STOP_LOSS"
    assert float(stop["triggerPrice"]) == ltp - 37.0
    assert float(stop["price"]) == round(float(stop["price"]))
    assert float(stop["price"]) < ltp - 37.0
    # What the engine itself sent (not the simulator's rewriting): both on the 1.0 tick.
    sent = [r["json"] for r in world.posts("alpha")]
    assert [body["orderType"] for body in sent] == ["LIMIT", "STOP_LOSS"]
    assert all(float(body["price"]) == round(float(body["price"])) for body in sent)
