"""Each copy as it is sent, in words a trader reads: one event and one log line per order
request (side, type, quantity, price, trigger), with every conversion made for Dhan's API rules.
"""

from __future__ import annotations

import logging

from engine.clock import Clock
from engine.dhan.errors import AnswerShape, BrokerResult
from engine.domain import OrderParams, OrderType
from engine.events import CopySent
from engine.live.notifier import Notifier

log = logging.getLogger(__name__)


def describe_params(params: OrderParams, symbol: str = "") -> str:
    """E.g. "BUY LIMIT 65 NIFTY-Dec2026-26000-CE @ 201.5 INTRADAY DAY"."""
    price = f" @ {params.price:g}" if params.price and params.order_type in _PRICED else ""
    trigger = f" trigger {params.trigger_price:g}" if params.trigger_price else ""
    amo = " AMO" if params.amo else ""
    return (
        f"{params.side.value} {params.order_type.value} {params.quantity} "
        f"{symbol or params.security_id}{price}{trigger} {params.product.value} "
        f"{params.validity.value}{amo}"
    )


_PRICED = (OrderType.LIMIT, OrderType.STOP_LOSS)


def copy_sent(
    clock: Clock,
    notifier: Notifier,
    follower: str,
    leader_order_id: str,
    action: str,
    params: OrderParams,
    conversions: list[str],
    symbol: str = "",
) -> None:
    """Say that this request is leaving now (called right before the broker call)."""
    text = (
        f"{follower}: {action.lower()} {describe_params(params, symbol)} "
        f"(copy of leader {leader_order_id}, {params.correlation_id})"
    )
    log.info("copy sent: %s", text)
    for note in conversions:
        log.info("copy sent: %s: %s", follower, note)
    notifier.publish(
        CopySent(clock.now(), follower, leader_order_id, action, text, tuple(conversions))
    )


def refused_by(result: BrokerResult) -> str:
    """Who said no, for an alert: Dhan itself, or the dhanhq SDK before anything was sent
    (a refusal that never reached Dhan must not read as Dhan's)."""
    if result.shape is AnswerShape.LOCAL:
        return "the dhanhq SDK (before sending; nothing reached Dhan) refused"
    return "Dhan refused"
