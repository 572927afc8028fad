"""Pre-trade risk checks per follower: pure functions, plus a small per-minute order counter.

Each check returns None when the order may go, or a `RiskVerdict` naming the rule and the
numbers, so the alert explains itself ("max_order_value: 65 x 245.50 = 15,957.50 > 10,000").
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from engine.domain import OrderParams, OrderType, Side
from engine.replication.rules import RiskLimits

__all__ = [
    "OrdersPerMinute",
    "RiskVerdict",
    "check_loss_limit",
    "check_pre_trade",
    "check_price_band",
    "order_value_price",
]

TIMES = "\u00d7"


@dataclass(frozen=True, slots=True)
class RiskVerdict:
    rule: str  # the RiskLimits field that refused, e.g. "max_order_value"
    message: str  # one sentence with the numbers, starting with the rule name

    def __str__(self) -> str:
        return self.message


def _money(v: float) -> str:
    return f"{v:,.2f}"


def _limit(v: float) -> str:
    return f"{int(v):,}" if float(v).is_integer() else f"{v:,.2f}"


def order_value_price(order: OrderParams, last_price: float | None) -> float | None:
    """The per-unit price an order is valued at: its limit price, else the market's.

    LIMIT and STOP_LOSS carry a price; MARKET is valued at the last price; STOP_LOSS_MARKET at
    its trigger (else the last price). None when nothing usable is known.
    """
    if order.order_type in (OrderType.LIMIT, OrderType.STOP_LOSS) and order.price > 0:
        return order.price
    if order.order_type is OrderType.STOP_LOSS_MARKET and order.trigger_price > 0:
        return order.trigger_price
    if last_price is not None and last_price > 0:
        return last_price
    return None


def check_pre_trade(
    limits: RiskLimits,
    order: OrderParams,
    *,
    lot_size: int,
    last_price: float | None,
    open_orders: int,
    orders_last_minute: int,
    is_new_order: bool = True,
) -> RiskVerdict | None:
    """None when `order` passes every configured limit, else the first breached rule.

    `open_orders` is the follower's open orders before this one; `orders_last_minute` the
    orders sent in the last 60 s. With `is_new_order=False` (a modification of an order that is
    already open) the open-orders cap does not apply.
    """
    qty = order.quantity
    lot = lot_size if lot_size > 0 else 1

    if limits.max_qty is not None and qty > limits.max_qty:
        return RiskVerdict("max_qty", f"max_qty: quantity {qty:,} > {limits.max_qty:,}")

    if limits.max_lots is not None:
        lots = math.ceil(qty / lot)
        if lots > limits.max_lots:
            return RiskVerdict(
                "max_lots",
                f"max_lots: {qty:,} / lot {lot:,} = {lots:,} lots > {limits.max_lots:,}",
            )

    if limits.max_order_value is not None:
        price = order_value_price(order, last_price)
        if price is None:
            return RiskVerdict(
                "max_order_value",
                f"max_order_value: cannot value a {order.order_type} order of {qty:,} "
                "without a last price",
            )
        value = qty * price
        if value > limits.max_order_value:
            return RiskVerdict(
                "max_order_value",
                f"max_order_value: {qty:,} {TIMES} {_money(price)} = {_money(value)} "
                f"> {_limit(limits.max_order_value)}",
            )

    if (
        is_new_order
        and limits.max_open_orders is not None
        and open_orders >= limits.max_open_orders
    ):
        return RiskVerdict(
            "max_open_orders",
            f"max_open_orders: {open_orders:,} open orders already, "
            f"limit {limits.max_open_orders:,}",
        )

    if limits.price_band_pct is not None:
        band = check_price_band(limits.price_band_pct, order, last_price)
        if band is not None:
            return band

    if (
        limits.max_orders_per_minute is not None
        and orders_last_minute >= limits.max_orders_per_minute
    ):
        return RiskVerdict(
            "max_orders_per_minute",
            f"max_orders_per_minute: {orders_last_minute:,} orders in the last minute, "
            f"limit {limits.max_orders_per_minute:,}",
        )
    return None


def check_price_band(
    band_pct: float, order: OrderParams, last_price: float | None
) -> RiskVerdict | None:
    """A breach when a LIMIT order would cross the market by more than `band_pct` percent.

    Only a marketable price can be a fat finger that fills at once: a buy limit far ABOVE the
    last price or a sell limit far BELOW it. A passive limit (buy below, sell above) merely
    rests, and stop-loss orders protect a position: refusing either for its distance would
    strip the follower of an order the leader relies on, so neither is ever refused here.
    """
    if (
        order.order_type is not OrderType.LIMIT
        or order.price <= 0
        or last_price is None
        or last_price <= 0
    ):
        return None
    if order.side is Side.BUY:
        crossing_pct = (order.price - last_price) / last_price * 100.0
        direction = "above"
    else:
        crossing_pct = (last_price - order.price) / last_price * 100.0
        direction = "below"
    if crossing_pct <= band_pct:
        return None
    side = "buy" if order.side is Side.BUY else "sell"
    return RiskVerdict(
        "price_band_pct",
        f"price_band_pct: {side} limit {_money(order.price)} is {crossing_pct:.2f}% {direction} "
        f"the last price {_money(last_price)}, crossing the market by more than "
        f"{_limit(band_pct)}%",
    )


def check_loss_limit(limits: RiskLimits, realized: float, unrealized: float) -> RiskVerdict | None:
    """A breach when the day's realized + unrealized P&L is at or below -daily_loss_limit."""
    if limits.daily_loss_limit is None:
        return None
    total = realized + unrealized
    if total <= -limits.daily_loss_limit:
        return RiskVerdict(
            "daily_loss_limit",
            f"daily_loss_limit: realized {_money(realized)} + unrealized {_money(unrealized)} "
            f"= {_money(total)} <= -{_limit(limits.daily_loss_limit)}",
        )
    return None


class OrdersPerMinute:
    """How many orders were sent in the last `window_s` seconds (monotonic times)."""

    def __init__(self, window_s: float = 60.0) -> None:
        self.window_s = window_s
        self._times: deque[float] = deque()

    def _prune(self, now_mono: float) -> None:
        cutoff = now_mono - self.window_s
        times = self._times
        while times and times[0] <= cutoff:
            times.popleft()

    def record(self, now_mono: float) -> None:
        self._prune(now_mono)
        self._times.append(now_mono)

    def count(self, now_mono: float) -> int:
        self._prune(now_mono)
        return len(self._times)
