"""Durable records: what the engine knows of each follower copy, and the intents it wrote.

The store persists these; the replicator reads them to decide; the UI sees them as views.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

from engine.domain import MirrorState, OrderParams, OrderStatus
from engine.views import FollowerOrderView


@dataclass(frozen=True, slots=True)
class SliceState:
    """One order of a copy placed in slices (above the exchange's freeze quantity, through
    ``POST /orders/slicing``): all carry the copy's correlationId."""

    order_id: str
    quantity: int = 0  # 0 until Dhan reports it
    filled_qty: int = 0
    avg_price: float = 0.0
    status: OrderStatus | None = None

    @property
    def is_open(self) -> bool:
        return self.status is None or self.status.is_open


@dataclass(frozen=True, slots=True)
class MirrorRecord:
    """One follower's copy of one leader order (the leader->follower mapping)."""

    follower: str
    leader_order_id: str
    correlation_id: str
    state: MirrorState
    generation: int = 0  # bumped when an order is cancelled and re-placed (new correlationId)
    follower_order_id: str = ""
    broker_status: OrderStatus | None = None
    params: OrderParams | None = None  # the last parameters requested of the broker
    filled_qty: int = 0  # of the current generation's order
    avg_price: float = 0.0
    modifications: int = 0  # of the current generation's order (Dhan allows 25 per order)
    reason: str = ""
    symbol: str = ""
    leader_seen_mono: float | None = None  # monotonic time the engine first saw the leader order
    latency_ms: float | None = None
    slippage: float | None = None
    updated_at: datetime | None = None
    prior_filled: int = 0  # filled by earlier generations (cancelled to re-place)
    skip_code: str = ""  # why a SKIPPED copy was skipped (SkipCode), to know if it may be retried
    # A copy made of several orders (sliced): each one; fills and status above are their sum.
    # Empty for a copy placed as one order.
    slices: tuple[SliceState, ...] = ()
    by_hand: bool = False  # changed by hand at Dhan: never modified again, shown as it is
    detached: bool = False  # the trader took it over: not even the leader's cancel touches it
    # A modification Dhan refused (the order rests as it was): not asked again while the
    # leader's order implies the same; a later change of the leader's is tried.
    refused_params: OrderParams | None = None

    @property
    def total_filled(self) -> int:
        return self.prior_filled + self.filled_qty

    @property
    def is_open_at_broker(self) -> bool:
        return self.state in (MirrorState.PLACING, MirrorState.LIVE) and (
            self.broker_status is None or self.broker_status.is_open
        )

    def with_changes(self, **changes: object) -> MirrorRecord:
        return replace(self, **changes)  # type: ignore[arg-type]

    def to_view(self) -> FollowerOrderView:
        return FollowerOrderView(
            follower=self.follower,
            leader_order_id=self.leader_order_id,
            correlation_id=self.correlation_id,
            mirror_state=self.state,
            follower_order_id=self.follower_order_id,
            broker_status=self.broker_status.value if self.broker_status else "",
            quantity=self.params.quantity if self.params else 0,
            filled_qty=self.total_filled,
            avg_price=self.avg_price,
            slippage=self.slippage,
            latency_ms=self.latency_ms,
            modifications=self.modifications,
            reason=self.reason,
            symbol=self.symbol,
            updated_at=self.updated_at,
            by_hand=self.by_hand,
            detached=self.detached,
        )


class IntentKind(StrEnum):
    PLACE = "PLACE"
    MODIFY = "MODIFY"
    CANCEL = "CANCEL"


class IntentOutcome(StrEnum):
    PENDING = "PENDING"  # written, broker call not finished (or the process died meanwhile)
    ACKED = "ACKED"
    REFUSED = "REFUSED"  # the broker said no, definitively
    AMBIGUOUS = "AMBIGUOUS"  # no clear answer (timeout, reset): look it up before acting again
    # Its trading day ended before its answer was known: whatever it did, nothing of it is
    # open at Dhan now (engine.replication.day_end).
    EXPIRED = "EXPIRED"


@dataclass(frozen=True, slots=True)
class Intent:
    follower: str
    leader_order_id: str
    kind: IntentKind
    correlation_id: str
    params: OrderParams | None
    follower_order_id: str = ""
    id: int = 0  # assigned by the store
    outcome: IntentOutcome = IntentOutcome.PENDING
    detail: str = ""
    created_at: datetime | None = None
