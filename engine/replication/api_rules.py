"""Dhan's 2026 rules for API orders, applied to what the replicator wants to send.

Since 21 Mar 2026 Dhan turns API MARKET orders into LIMIT orders with market price
protection (MPP) and rejects API STOP_LOSS_MARKET orders (shared/dhan-api-facts.md §3).
So a follower's copy is sent in a form Dhan accepts, and every conversion is returned as a
note that the engine writes into the order's timeline.
"""

from __future__ import annotations

import math

from engine.domain import OrderParams, OrderSnapshot, OrderType, Side

DEFAULT_PROTECTION_PCT = 1.0
DEFAULT_TICK = 0.05


def round_to_tick(price: float, tick: float, side: Side) -> float:
    """Round a protection price towards the side's worse price so it stays protective."""
    ticks = price / tick
    n = math.ceil(ticks - 1e-9) if side is Side.BUY else math.floor(ticks + 1e-9)
    return round(n * tick, 6)


def protection_price(reference: float, side: Side, pct: float, tick: float) -> float:
    factor = 1 + pct / 100 if side is Side.BUY else 1 - pct / 100
    return round_to_tick(reference * factor, tick, side)


def adapt_for_dhan_api(
    params: OrderParams,
    leader: OrderSnapshot,
    *,
    protection_pct: float = DEFAULT_PROTECTION_PCT,
    tick: float = DEFAULT_TICK,
) -> tuple[OrderParams, list[str]]:
    """The parameters to send, and a note for each conversion made."""
    if params.order_type is OrderType.STOP_LOSS_MARKET:
        limit = protection_price(params.trigger_price, params.side, protection_pct, tick)
        note = (
            f"STOP_LOSS_MARKET sent as STOP_LOSS with limit {limit:g} "
            f"(trigger {params.trigger_price:g} {'+' if params.side is Side.BUY else '-'}"
            f"{protection_pct:g}%): Dhan rejects stop-loss-market orders from the API"
        )
        return _with(params, order_type=OrderType.STOP_LOSS, price=limit), [note]
    if params.order_type is OrderType.MARKET:
        reference = leader.avg_price or leader.price
        if reference > 0:
            limit = protection_price(reference, params.side, protection_pct, tick)
            note = (
                f"MARKET sent as LIMIT {limit:g} (market price protection {protection_pct:g}% "
                f"around the leader's {'fill' if leader.avg_price else 'price'} {reference:g})"
            )
            return _with(params, order_type=OrderType.LIMIT, price=limit), [note]
        return params, ["MARKET sent as is: Dhan applies its own market price protection"]
    return params, []


def _with(params: OrderParams, **changes: object) -> OrderParams:
    from dataclasses import replace

    return replace(params, **changes)  # type: ignore[arg-type]
