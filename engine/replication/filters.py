"""Which leader orders a follower copies: pure checks returning a reason sentence or None."""

from __future__ import annotations

import re

from engine.domain import OrderSnapshot, Product, Segment
from engine.replication.rules import CopyFilters

__all__ = ["check_filters", "is_option_order", "unsupported_order_reason"]

_CASH_SEGMENTS = frozenset({Segment.NSE_EQ, Segment.BSE_EQ, Segment.IDX_I})
# Dhan's option symbols end in the strike then CE/PE: "NIFTY-Dec2026-24000-CE",
# "NIFTY 25NOV 24000 CE", "BANKNIFTY25NOV52000PE".
_OPTION_SYMBOL = re.compile(r"\d(?:\.\d+)?[\s-]?(?:CE|PE|CALL|PUT)$", re.IGNORECASE)


def _listing(values: tuple[str, ...]) -> str:
    return ", ".join(values) if values else "none"


def _describe(snapshot: OrderSnapshot) -> str:
    if snapshot.trading_symbol:
        return f"{snapshot.trading_symbol} ({snapshot.security_id})"
    return snapshot.security_id


def is_option_order(snapshot: OrderSnapshot, instrument_is_option: bool) -> bool:
    """Whether the leader order is for an option, from the best evidence at hand.

    Dhan's own word on the order wins (the socket's OptType/Instrument, REST drvOptionType,
    carried as `snapshot.is_option`); then the instrument data (`instrument_is_option`, from
    a scrip master when one was given); then the option symbol Dhan names derivatives with.
    Cash segments hold no options whatever a symbol looks like.
    """
    if snapshot.is_option is not None:
        return snapshot.is_option
    if instrument_is_option:
        return True
    if snapshot.segment in _CASH_SEGMENTS:
        return False
    return bool(_OPTION_SYMBOL.search(snapshot.trading_symbol.strip()))


def check_filters(
    filters: CopyFilters, snapshot: OrderSnapshot, instrument_is_option: bool
) -> str | None:
    """None when this follower copies the leader order, else a sentence naming the filter.

    `instrument_is_option` is what the instrument data says (False when it does not know);
    `options_only` also trusts the order's own instrument fields (see `is_option_order`).
    """
    if filters.segments is not None and snapshot.segment not in filters.segments:
        return (
            f"segment {snapshot.segment} not in this follower's segments "
            f"({_listing(tuple(filters.segments))})"
        )
    if filters.products is not None and snapshot.product not in filters.products:
        return (
            f"product {snapshot.product} not in this follower's products "
            f"({_listing(tuple(filters.products))})"
        )
    if filters.security_ids is not None and snapshot.security_id not in filters.security_ids:
        return (
            f"security {_describe(snapshot)} not in this follower's security_ids "
            f"({_listing(filters.security_ids)})"
        )
    if filters.options_only and not is_option_order(snapshot, instrument_is_option):
        return f"options_only: {_describe(snapshot)} is not an option"
    return None


_LEG_REASON = (
    "{kind} legs are not copied: Dhan's API cannot re-create them leg by leg; copy it manually"
)


def unsupported_order_reason(snapshot: OrderSnapshot) -> str | None:
    """Why this leader order cannot be replicated at all (the engine skips it with an alert).

    Cover and bracket orders (product CO/BO) and super-order legs are multi-leg constructs whose
    legs arrive as separate orders; placing each leg as a plain order would not recreate the
    linkage (a stop-loss leg would become a naked stop order).
    """
    if snapshot.product in (Product.BO, Product.CO) or (
        snapshot.leg and not snapshot.is_super_order
    ):
        return _LEG_REASON.format(kind="Bracket/cover order")
    if snapshot.is_super_order:
        return _LEG_REASON.format(kind="Super order")
    return None
