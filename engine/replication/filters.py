"""Which leader orders a follower copies: pure checks returning a reason sentence or None."""

from __future__ import annotations

from engine.domain import OrderSnapshot, Product
from engine.replication.rules import CopyFilters

__all__ = ["check_filters", "unsupported_order_reason"]


def _listing(values: tuple[str, ...]) -> str:
    return ", ".join(values) if values else "none"


def _describe(snapshot: OrderSnapshot) -> str:
    if snapshot.trading_symbol:
        return f"{snapshot.trading_symbol} ({snapshot.security_id})"
    return snapshot.security_id


def check_filters(
    filters: CopyFilters, snapshot: OrderSnapshot, instrument_is_option: bool
) -> str | None:
    """None when this follower copies the leader order, else a sentence naming the filter."""
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
    if filters.options_only and not instrument_is_option:
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
