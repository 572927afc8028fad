"""Pre-trade risk checks and the loss limit."""

from __future__ import annotations

from engine.domain import OrderParams, OrderType, Product, Segment, Side, Validity
from engine.replication.risk import (
    OrdersPerMinute,
    RiskVerdict,
    check_loss_limit,
    check_pre_trade,
    check_price_band,
    order_value_price,
)
from engine.replication.rules import RiskLimits

X = "\u00d7"


def order(**kw: object) -> OrderParams:
    base: dict[str, object] = {
        "side": Side.BUY,
        "order_type": OrderType.LIMIT,
        "product": Product.INTRADAY,
        "validity": Validity.DAY,
        "segment": Segment.NSE_FNO,
        "security_id": "52175",
        "quantity": 65,
        "price": 245.5,
    }
    base.update(kw)
    return OrderParams(**base)  # type: ignore[arg-type]


def check(limits: RiskLimits, o: OrderParams, **kw: object) -> RiskVerdict | None:
    args: dict[str, object] = {
        "lot_size": 65,
        "last_price": 245.0,
        "open_orders": 0,
        "orders_last_minute": 0,
    }
    args.update(kw)
    return check_pre_trade(limits, o, **args)  # type: ignore[arg-type]


def test_no_limits_allows() -> None:
    assert check(RiskLimits(), order()) is None


def test_max_qty() -> None:
    assert check(RiskLimits(max_qty=65), order()) is None
    v = check(RiskLimits(max_qty=64), order())
    assert v == RiskVerdict("max_qty", "max_qty: quantity 65 > 64")


def test_max_lots() -> None:
    assert check(RiskLimits(max_lots=2), order(quantity=130)) is None
    v = check(RiskLimits(max_lots=2), order(quantity=195))
    assert v is not None and v.rule == "max_lots"
    assert v.message == "max_lots: 195 / lot 65 = 3 lots > 2"


def test_max_order_value_limit_price() -> None:
    v = check(RiskLimits(max_order_value=10_000), order())
    assert v is not None
    assert v.rule == "max_order_value"
    assert v.message == f"max_order_value: 65 {X} 245.50 = 15,957.50 > 10,000"
    assert str(v) == v.message
    assert check(RiskLimits(max_order_value=16_000), order()) is None


def test_max_order_value_market_uses_last_price() -> None:
    o = order(order_type=OrderType.MARKET, price=0.0)
    v = check(RiskLimits(max_order_value=10_000), o, last_price=200.0)
    assert v is not None and "65 \u00d7 200.00 = 13,000.00" in v.message
    assert check(RiskLimits(max_order_value=13_000), o, last_price=200.0) is None


def test_max_order_value_market_without_price_is_refused() -> None:
    o = order(order_type=OrderType.MARKET, price=0.0)
    v = check(RiskLimits(max_order_value=10_000), o, last_price=None)
    assert v is not None and "without a last price" in v.message
    # no value limit: no need for a price
    assert check(RiskLimits(), o, last_price=None) is None


def test_order_value_price_by_type() -> None:
    assert order_value_price(order(), None) == 245.5
    assert order_value_price(order(order_type=OrderType.STOP_LOSS, price=250.0), 1.0) == 250.0
    slm = order(order_type=OrderType.STOP_LOSS_MARKET, price=0.0, trigger_price=240.0)
    assert order_value_price(slm, 245.0) == 240.0
    assert order_value_price(order(order_type=OrderType.MARKET, price=0.0), 99.0) == 99.0
    assert order_value_price(order(order_type=OrderType.MARKET, price=0.0), None) is None


def test_max_open_orders() -> None:
    limits = RiskLimits(max_open_orders=5)
    assert check(limits, order(), open_orders=4) is None
    v = check(limits, order(), open_orders=5)
    assert v is not None and v.rule == "max_open_orders"
    assert "5 open orders already, limit 5" in v.message
    # a modification of an open order is not a new open order
    assert check(limits, order(), open_orders=5, is_new_order=False) is None


def test_price_band_refuses_a_buy_limit_far_above_the_market() -> None:
    limits = RiskLimits(price_band_pct=5)
    assert check(limits, order(price=257.0), last_price=245.0) is None  # 4.9% above
    v = check(limits, order(price=2455.0), last_price=245.0)
    assert v is not None and v.rule == "price_band_pct"
    assert v.message == (
        "price_band_pct: buy limit 2,455.00 is 902.04% above the last price 245.00, "
        "crossing the market by more than 5%"
    )


def test_price_band_refuses_a_sell_limit_far_below_the_market() -> None:
    limits = RiskLimits(price_band_pct=5)
    assert check(limits, order(side=Side.SELL, price=233.0), last_price=245.0) is None  # 4.9%
    v = check(limits, order(side=Side.SELL, price=24.5), last_price=245.0)
    assert v is not None and v.rule == "price_band_pct"
    assert "sell limit 24.50 is 90.00% below the last price 245.00" in v.message


def test_price_band_never_refuses_a_passive_limit() -> None:
    limits = RiskLimits(price_band_pct=5)
    # A buy far below and a sell far above the market only rest: nothing fills by accident.
    assert check(limits, order(side=Side.BUY, price=24.5), last_price=245.0) is None
    assert check(limits, order(side=Side.SELL, price=2455.0), last_price=245.0) is None


def test_price_band_never_refuses_a_stop_loss_for_distance() -> None:
    limits = RiskLimits(price_band_pct=1)
    # A protective sell stop far below the market, and a buy stop far above it (short cover).
    for side, trigger, price in ((Side.SELL, 150.0, 149.0), (Side.BUY, 350.0, 351.0)):
        stop_limit = order(
            side=side, order_type=OrderType.STOP_LOSS, trigger_price=trigger, price=price
        )
        stop_market = order(
            side=side, order_type=OrderType.STOP_LOSS_MARKET, trigger_price=trigger, price=0.0
        )
        assert check(limits, stop_limit, last_price=245.0) is None
        assert check(limits, stop_market, last_price=245.0) is None


def test_price_band_skipped_without_last_price_or_for_market() -> None:
    limits = RiskLimits(price_band_pct=1)
    assert check(limits, order(price=9999.0), last_price=None) is None
    assert check(limits, order(price=9999.0), last_price=0.0) is None
    assert check(limits, order(order_type=OrderType.MARKET, price=0.0), last_price=10.0) is None


def test_price_band_on_its_own() -> None:
    assert check_price_band(5, order(price=300.0), 245.0) is not None
    assert check_price_band(5, order(price=200.0), 245.0) is None
    assert check_price_band(50, order(price=300.0), 245.0) is None  # 22.45% < 50%


def test_max_orders_per_minute() -> None:
    limits = RiskLimits(max_orders_per_minute=3)
    assert check(limits, order(), orders_last_minute=2) is None
    v = check(limits, order(), orders_last_minute=3)
    assert v is not None and v.rule == "max_orders_per_minute"


def test_first_breach_wins() -> None:
    v = check(RiskLimits(max_qty=1, max_order_value=1.0), order())
    assert v is not None and v.rule == "max_qty"


def test_loss_limit() -> None:
    limits = RiskLimits(daily_loss_limit=10_000)
    assert check_loss_limit(RiskLimits(), -1e9, 0) is None
    assert check_loss_limit(limits, -5_000, -4_999.99) is None
    v = check_loss_limit(limits, -6_000, -4_000)
    assert v is not None and v.rule == "daily_loss_limit"
    assert v.message == (
        "daily_loss_limit: realized -6,000.00 + unrealized -4,000.00 = -10,000.00 <= -10,000"
    )
    assert check_loss_limit(limits, 5_000, -14_000) is None


def test_orders_per_minute_sliding() -> None:
    c = OrdersPerMinute()
    assert c.count(0.0) == 0
    for t in (0.0, 10.0, 20.0):
        c.record(t)
    assert c.count(20.0) == 3
    assert c.count(59.9) == 3
    assert c.count(60.0) == 2  # the one at 0.0 has left the window
    assert c.count(80.0) == 0
    c2 = OrdersPerMinute(window_s=1.0)
    c2.record(5.0)
    assert c2.count(5.5) == 1
    assert c2.count(6.0) == 0
