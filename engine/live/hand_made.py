"""Copies the trader changed by hand at Dhan: how to tell, and what the engine still does.

A copy whose quantity, price or trigger at Dhan differs from what the engine last sent (and no
modification of ours is on its way) was changed in Dhan's app: the engine marks it, shows it as
it is and never modifies it again. The leader's cancel (or exit) still cancels it, unless the
trader detached it; a detached copy is left entirely alone (even by the kill switch).
"""

from __future__ import annotations

from engine.domain import MirrorState, OrderSnapshot, OrderType
from engine.records import MirrorRecord
from engine.replication.replicator import Cancel, Decision, Modify, NoAction, Place

# Below this a price difference is tick rounding of what we sent (Dhan's ticks are 0.05 or
# 0.01), not a hand edit.
_PRICE_TOLERANCE = 0.06
_PRICED_TYPES = (OrderType.LIMIT, OrderType.STOP_LOSS)


def changed_by_hand(mirror: MirrorRecord, at_dhan: OrderSnapshot) -> str:
    """What differs between the copy at Dhan and what the engine last sent ("" nothing).

    Only the fields the engine set itself are compared: a MARKET copy sent as a protected
    LIMIT carries a price the engine chose, not the one recorded."""
    sent = mirror.params
    if sent is None or not at_dhan.is_open or mirror.by_hand:
        return ""
    if mirror.follower_order_id and at_dhan.order_id != mirror.follower_order_id:
        return ""
    # A sliced copy's orders each carry part of its quantity (and before the placement's
    # answer the engine cannot tell a slice from the whole): only their prices compare.
    one_order = not mirror.slices and mirror.state is not MirrorState.PLACING
    if one_order and at_dhan.quantity != sent.quantity:
        return f"quantity {sent.quantity} -> {at_dhan.quantity}"
    if (
        sent.order_type in _PRICED_TYPES
        and sent.price > 0
        and at_dhan.price > 0
        and abs(at_dhan.price - sent.price) > _PRICE_TOLERANCE
    ):
        return f"price {sent.price} -> {at_dhan.price}"
    if (
        sent.trigger_price > 0
        and at_dhan.trigger_price > 0
        and abs(at_dhan.trigger_price - sent.trigger_price) > _PRICE_TOLERANCE
    ):
        return f"trigger {sent.trigger_price} -> {at_dhan.trigger_price}"
    return ""


def within_hand_rules(mirror: MirrorRecord | None, decision: Decision) -> Decision:
    """A copy managed by hand is never modified, enlarged or re-placed; the leader's cancel
    still cancels it unless it was detached."""
    if mirror is None or not mirror.by_hand:
        return decision
    if mirror.detached and not isinstance(decision, NoAction):
        return NoAction("detached: managed by the trader")
    if isinstance(decision, Modify):
        return NoAction("changed by hand at Dhan: not modified by the engine")
    if isinstance(decision, Cancel) and decision.replace:
        return NoAction("changed by hand at Dhan: not re-placed by the engine")
    if isinstance(decision, Place):
        return NoAction("changed by hand at Dhan: the engine adds nothing to it")
    return decision
