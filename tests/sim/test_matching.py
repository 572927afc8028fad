"""The matching model: MPP, limits, stops, IOC, liquidity, funds, AMO and market hours."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from engine.clock import IST, ManualClock
from engine.simulator import DhanSimulator, SimError
from engine.simulator.limits import SlidingWindowLimiter

from .conftest import LEADER, LEADER_TOKEN, OrderSocket, call, ctl, limit_buy, make_sdk

pytestmark = pytest.mark.e2e


def manual(sim: DhanSimulator, **fields: Any) -> str:
    base: dict[str, Any] = {
        "transaction_type": "BUY",
        "exchange_segment": "NSE_EQ",
        "security_id": "2885",
        "quantity": 10,
        "order_type": "LIMIT",
        "product_type": "INTRADAY",
        "price": 1500.0,
    }
    base.update(fields)
    return sim.place_manual_order(LEADER, **base)


def order(sim: DhanSimulator, oid: str) -> dict[str, Any]:
    return next(o for o in sim.orders(LEADER) if o["orderId"] == oid)


async def test_api_market_becomes_limit_with_mpp(sim: DhanSimulator, leader: Any) -> None:
    buy = (await call(leader.place_order, **limit_buy(order_type="MARKET", price=0)))["data"]
    o = order(sim, buy["orderId"])
    assert o["orderType"] == "LIMIT" and o["price"] == 1561.05  # 1545.60 * 1.01 on a 0.05 tick
    assert o["orderStatus"] == "TRADED" and o["averageTradedPrice"] == 1545.6
    sell = await call(
        leader.place_order,
        **limit_buy(transaction_type="SELL", order_type="MARKET", price=0, quantity=5),
    )
    o = order(sim, sell["data"]["orderId"])
    assert o["orderType"] == "LIMIT" and o["price"] == 1530.15  # 1545.60 * 0.99


async def test_manual_market_and_slm_stay_classic(sim: DhanSimulator) -> None:
    oid = manual(sim, order_type="MARKET", price=0)
    assert order(sim, oid)["orderType"] == "MARKET" and order(sim, oid)["orderStatus"] == "TRADED"
    slm = manual(sim, order_type="STOP_LOSS_MARKET", price=0, trigger_price=1550.0)
    assert order(sim, slm)["orderStatus"] == "PENDING"
    sim.set_price("NSE_EQ", "2885", 1551.0)
    o = order(sim, slm)
    assert o["orderStatus"] == "TRADED" and o["averageTradedPrice"] == 1551.0


async def test_api_slm_can_be_allowed() -> None:
    sim = DhanSimulator(accounts={LEADER: LEADER_TOKEN}, reject_api_slm=False, mpp=0.0)
    await sim.start(port=0)
    try:
        sdk = make_sdk(sim)
        res = await call(
            sdk.place_order, **limit_buy(order_type="STOP_LOSS_MARKET", price=0, trigger_price=1600)
        )
        assert res["status"] == "success"
        mkt = await call(sdk.place_order, **limit_buy(order_type="MARKET", price=0))
        assert order(sim, mkt["data"]["orderId"])["orderType"] == "MARKET"
    finally:
        await sim.stop()


async def test_limit_rests_then_fills_at_limit_price(sim: DhanSimulator) -> None:
    buy = manual(sim, price=1540.0)
    sell = manual(sim, transaction_type="SELL", price=1550.0)
    sim.set_price("NSE_EQ", "2885", 1541.0)
    assert order(sim, buy)["orderStatus"] == "PENDING"
    sim.set_price("NSE_EQ", "2885", 1535.0)  # gaps through the buy limit
    assert order(sim, buy)["averageTradedPrice"] == 1540.0
    assert order(sim, sell)["orderStatus"] == "PENDING"
    sim.set_price("NSE_EQ", "2885", 1550.0)
    assert order(sim, sell)["orderStatus"] == "TRADED"
    marketable = manual(sim, price=1600.0)  # enters the book above the LTP: fills at the LTP
    assert order(sim, marketable)["averageTradedPrice"] == 1550.0


async def test_stop_loss_triggers_then_acts_as_limit(sim: DhanSimulator) -> None:
    buy_sl = manual(sim, order_type="STOP_LOSS", trigger_price=1560.0, price=1562.0)
    sell_sl = manual(
        sim, transaction_type="SELL", order_type="STOP_LOSS", trigger_price=1530.0, price=1529.0
    )
    sim.set_price("NSE_EQ", "2885", 1559.0)
    assert order(sim, buy_sl)["orderStatus"] == "PENDING"
    sim.set_price("NSE_EQ", "2885", 1565.0)  # triggers, but 1565 > limit 1562: rests
    assert order(sim, buy_sl)["orderStatus"] == "PENDING"
    sim.set_price("NSE_EQ", "2885", 1561.0)
    assert order(sim, buy_sl)["orderStatus"] == "TRADED"
    assert order(sim, buy_sl)["averageTradedPrice"] == 1562.0
    sim.set_price("NSE_EQ", "2885", 1529.5)
    assert order(sim, sell_sl)["averageTradedPrice"] == 1529.5


async def test_ioc_cancels_unfilled_rest(sim: DhanSimulator) -> None:
    away = manual(sim, validity="IOC", price=1400.0)
    assert order(sim, away)["orderStatus"] == "CANCELLED"
    sim.set_liquidity("NSE_EQ", "2885", 3)
    part = manual(sim, validity="IOC", price=1600.0)
    o = order(sim, part)
    assert o["orderStatus"] == "CANCELLED" and o["filledQty"] == 3


async def test_liquidity_is_shared_by_one_price_update(sim: DhanSimulator) -> None:
    sim.set_liquidity("NSE_FNO", "48211", 130)
    first = manual(sim, exchange_segment="NSE_FNO", security_id="48211", quantity=130, price=200.0)
    second = manual(sim, exchange_segment="NSE_FNO", security_id="48211", quantity=130, price=200.0)
    sim.set_price("NSE_FNO", "48211", 199.0)
    assert order(sim, first)["filledQty"] == 130 and order(sim, second)["filledQty"] == 0
    sim.set_liquidity("NSE_FNO", "48211", 100)  # rounded down to whole lots of 65
    sim.set_price("NSE_FNO", "48211", 198.0)
    assert order(sim, second)["filledQty"] == 65
    assert order(sim, second)["orderStatus"] == "PART_TRADED"


async def test_funds_block_and_release(sim: DhanSimulator, leader: Any) -> None:
    oid = (await call(leader.place_order, **limit_buy(quantity=100, price=1500.0)))["data"][
        "orderId"
    ]
    funds = (await call(leader.get_fund_limits))["data"]
    assert funds["availabelBalance"] == 850_000.0 and funds["utilizedAmount"] == 150_000.0
    await call(leader.cancel_order, oid)
    funds = (await call(leader.get_fund_limits))["data"]
    assert funds["availabelBalance"] == 1_000_000.0
    intraday = await call(leader.place_order, **limit_buy(quantity=100, product_type="INTRADAY"))
    assert intraday["status"] == "success"
    funds = (await call(leader.get_fund_limits))["data"]
    assert funds["availabelBalance"] == 970_000.0  # 20% margin


async def test_modification_cap_is_25(sim: DhanSimulator, leader: Any) -> None:
    sim.exchange.account(LEADER).limiter = SlidingWindowLimiter(((1.0, 1000),))  # not under test
    oid = (await call(leader.place_order, **limit_buy()))["data"]["orderId"]
    for i in range(25):
        price = 1400.0 + i
        res = await call(leader.modify_order, oid, "LIMIT", None, 10, price, 0, 0, "DAY")
        assert res["status"] == "success", (i, res)
    res = await call(leader.modify_order, oid, "LIMIT", None, 10, 1300.0, 0, 0, "DAY")
    assert res["remarks"]["error_code"] == "DH-906"
    assert "25 modifications" in res["remarks"]["error_message"]


async def test_market_hours_and_amo() -> None:
    clock = ManualClock(IST.localize(datetime(2026, 11, 23, 20, 0, 0)))  # Monday evening
    sim = DhanSimulator(accounts={LEADER: LEADER_TOKEN}, clock=clock, real_hours=True)
    await sim.start(port=0)
    try:
        sdk = make_sdk(sim)
        res = await call(sdk.place_order, **limit_buy())
        assert res["remarks"]["error_code"] == "DH-906"
        assert "Market is closed" in res["remarks"]["error_message"]
        amo = await call(
            sdk.place_order, **limit_buy(price=1600.0, after_market_order=True, amo_time="OPEN")
        )
        oid = amo["data"]["orderId"]
        assert order(sim, oid)["orderStatus"] == "PENDING"
        assert order(sim, oid)["afterMarketOrder"] is True
        mcx = await call(
            sdk.place_order,
            **limit_buy(
                exchange_segment="MCX_COMM",
                security_id="458305",
                quantity=100,
                product_type="MARGIN",
                price=5700.0,
            ),
        )
        assert mcx["status"] == "success"  # MCX trades until 23:30
        sim.set_price("NSE_EQ", "2885", 1546.0)
        assert order(sim, oid)["orderStatus"] == "PENDING"  # closed: no matching
        clock.advance(24 * 3600)  # Tuesday 20:00 (24 Nov is an NSE holiday anyway)
        clock.advance(13 * 3600 + 15 * 60)  # Wednesday 09:15
        sim.set_price("NSE_EQ", "2885", 1547.0)
        assert order(sim, oid)["orderStatus"] == "TRADED"
        assert order(sim, oid)["averageTradedPrice"] == 1547.0  # enters at the open, at the LTP
        holiday = DhanSimulator(
            accounts={LEADER: LEADER_TOKEN},
            clock=ManualClock(IST.localize(datetime(2026, 11, 24, 11, 0))),
            real_hours=True,
        )
        with pytest.raises(SimError, match="Market is closed"):
            holiday.place_manual_order(
                LEADER, transaction_type="BUY", exchange_segment="NSE_EQ", security_id="2885",
                quantity=1, order_type="LIMIT", price=1500.0,
            )  # fmt: skip
    finally:
        await sim.stop()


async def test_end_of_day_expires_open_orders(sim: DhanSimulator) -> None:
    oid = manual(sim)
    sim.end_of_day()
    assert order(sim, oid)["orderStatus"] == "EXPIRED"


async def test_a_new_day_expires_what_was_open_and_starts_with_empty_books(
    sim: DhanSimulator, leader_socket: OrderSocket, leader: Any
) -> None:
    resting = manual(sim)
    manual(sim, order_type="MARKET", price=0)  # INTRADAY: squared off before the close
    manual(sim, order_type="MARKET", price=0, product_type="CNC", quantity=3)  # carried
    assert len(await leader_socket.take(8)) == 8  # TRANSIT, PENDING (, TRADED) each
    sim.new_day()
    (expired,) = await leader_socket.take(1)
    assert expired["OrderNo"] == resting and expired["Status"] == "EXPIRED"
    assert sim.orders(LEADER) == []
    assert (await call(leader.get_order_list))["data"] == []
    unknown = await call(leader.get_order_by_id, resting)
    assert unknown["status"] == "failure"  # as for any id Dhan does not know (the profile says how)
    assert (await call(leader.get_trade_book))["data"] == []
    (position,) = (await call(leader.get_positions))["data"]
    assert position["productType"] == "CNC" and position["netQty"] == 3
    # Carried in: bought on an earlier day, nothing today.
    assert (position["carryForwardBuyQty"], position["dayBuyQty"], position["daySellQty"]) == (
        3,
        0,
        0,
    )
    manual(
        sim, order_type="MARKET", price=0, product_type="CNC", quantity=1, transaction_type="SELL"
    )
    (position,) = (await call(leader.get_positions))["data"]
    assert (position["netQty"], position["dayBuyQty"], position["daySellQty"]) == (2, 0, 1)
    assert (position["buyQty"], position["sellQty"]) == (3, 1)


async def test_positions_can_count_the_carried_among_the_days_or_trail_the_stream() -> None:
    """What Dhan's positions count, and when, is not documented: each plausible way."""
    clock = ManualClock(IST.localize(datetime(2026, 12, 2, 11, 0)))
    sim = DhanSimulator(
        accounts={LEADER: LEADER_TOKEN}, clock=clock, profile="positions-with-carried"
    )
    manual(sim, order_type="MARKET", price=0, product_type="CNC", quantity=3)
    sim.new_day()
    manual(
        sim, order_type="MARKET", price=0, product_type="CNC", quantity=1, transaction_type="SELL"
    )
    (position,) = sim.positions(LEADER)
    assert (position["carryForwardBuyQty"], position["dayBuyQty"], position["daySellQty"]) == (
        3,
        3,
        1,
    )
    lagging = DhanSimulator(accounts={LEADER: LEADER_TOKEN}, clock=clock, profile="positions-lag")
    manual(lagging, order_type="MARKET", price=0, product_type="MARGIN", quantity=2)
    assert lagging.positions(LEADER) == []  # the fill is not in the positions yet
    clock.advance(1.0)
    manual(lagging, order_type="MARKET", price=0, product_type="MARGIN", quantity=1)
    clock.advance(1.0)  # 2 s after the first fill, 1 s after the second
    (position,) = lagging.positions(LEADER)
    assert (position["netQty"], position["dayBuyQty"]) == (2, 2)
    clock.advance(1.0)
    (position,) = lagging.positions(LEADER)
    assert (position["netQty"], position["dayBuyQty"]) == (3, 3)


async def test_a_new_day_can_come_without_expiry_alerts(
    sim: DhanSimulator, leader_socket: OrderSocket
) -> None:
    manual(sim)
    assert len(await leader_socket.take(2)) == 2
    status, _ = await ctl(sim, "POST", "/new-day", {"expiryAlerts": "no"})
    assert status == 400 and sim.orders(LEADER)  # refused, nothing changed
    status, _ = await ctl(sim, "POST", "/new-day", {"expiryAlerts": False})
    assert status == 200 and sim.orders(LEADER) == []
    assert await leader_socket.drain() == []


async def test_deterministic_given_seed() -> None:
    def run(seed: int) -> list[tuple[str, str]]:
        sim = DhanSimulator(accounts={LEADER: LEADER_TOKEN}, seed=seed)
        manual(sim, order_type="MARKET", price=0)
        manual(sim)
        return [(o["orderId"], o["exchangeOrderId"]) for o in sim.orders(LEADER)]

    assert run(3) == run(3)
    assert run(3) != run(4)
