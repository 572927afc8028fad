"""Test fixtures for the replicator's property tests: a fake follower account at Dhan (its
order book and order-update stream) and a leader order's life as consistent snapshots.

Nothing here decides anything for the engine: the engine's own transitions and `decide` run
against these (see tests/property/driver.py). Nothing is random: the tests draw the choices
with hypothesis and pass them in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from engine.clock import IST
from engine.domain import (
    OrderParams,
    OrderSnapshot,
    OrderStatus,
    OrderType,
    Product,
    Segment,
    Side,
    SnapshotSource,
    Validity,
)

T0 = IST.localize(datetime(2026, 11, 23, 10, 0, 0))
LEADER_CLIENT = "1000000001"
FOLLOWER_CLIENT = "2000000002"
MAX_MODIFICATIONS = 25  # Dhan: an order can be modified at most 25 times


# --- the follower's broker ------------------------------------------------------------------


@dataclass
class BrokerOrder:
    order_id: str
    correlation_id: str
    params: OrderParams  # as last accepted (quantity is the order's total)
    status: OrderStatus = OrderStatus.PENDING
    filled: int = 0
    modifications: int = 0
    updated_at: datetime = T0

    @property
    def is_open(self) -> bool:
        return self.status.is_open


@dataclass
class FakeBroker:
    """One follower account at Dhan, as far as orders go."""

    orders: dict[str, BrokerOrder] = field(default_factory=dict)
    stream: list[OrderSnapshot] = field(default_factory=list)  # order updates not yet delivered
    refusals: list[str] = field(default_factory=list)
    max_open_seen: int = 0  # the most orders open at once
    refuse_enlargements: bool = False  # RMS: no margin for a larger order
    # (order id, params, taken): every modification asked of the broker
    modify_requests: list[tuple[str, OrderParams, bool]] = field(default_factory=list)
    _next_id: int = 9000
    _clock: datetime = T0

    def _tick(self) -> datetime:
        self._clock += timedelta(seconds=1)
        return self._clock

    def open_orders(self) -> list[BrokerOrder]:
        return [o for o in self.orders.values() if o.is_open]

    def snapshot(self, order_id: str) -> OrderSnapshot:
        o = self.orders[order_id]
        p = o.params
        return OrderSnapshot(
            order_id=o.order_id,
            client_id=FOLLOWER_CLIENT,
            status=o.status,
            side=p.side,
            order_type=p.order_type,
            product=p.product,
            validity=p.validity,
            segment=p.segment,
            security_id=p.security_id,
            quantity=p.quantity,
            filled_qty=o.filled,
            price=p.price,
            trigger_price=p.trigger_price,
            disclosed_qty=p.disclosed_qty,
            avg_price=p.price if o.filled else 0.0,
            correlation_id=o.correlation_id,
            amo=p.amo,
            amo_time=p.amo_time,
            updated_at=o.updated_at,
            source=SnapshotSource.STREAM,
        )

    def _emit(self, o: BrokerOrder) -> None:
        o.updated_at = self._tick()
        self.stream.append(self.snapshot(o.order_id))
        self.max_open_seen = max(self.max_open_seen, len(self.open_orders()))

    def place(self, params: OrderParams) -> tuple[str, OrderStatus]:
        self._next_id += 1
        o = BrokerOrder(str(self._next_id), params.correlation_id, params)
        self.orders[o.order_id] = o
        self._emit(o)
        return o.order_id, o.status

    def modify(self, order_id: str, params: OrderParams) -> bool:
        o = self.orders.get(order_id)
        if o is None or not o.is_open:
            self.refusals.append(f"modify {order_id}: order not open")
            return False
        if o.modifications >= MAX_MODIFICATIONS:
            self.refusals.append(f"modify {order_id}: modification #{o.modifications + 1}")
            return False
        if params.quantity <= o.filled:
            self.refusals.append(
                f"modify {order_id}: quantity {params.quantity} not above filled {o.filled}"
            )
            return False
        if self.refuse_enlargements and params.quantity > o.params.quantity:
            self.refusals.append(f"modify {order_id}: RMS, no margin for {params.quantity}")
            self.modify_requests.append((order_id, params, False))
            return False
        self.modify_requests.append((order_id, params, True))
        o.params = replace(params, correlation_id=o.correlation_id)
        o.modifications += 1
        self._emit(o)
        return True

    def cancel(self, order_id: str) -> bool:
        o = self.orders.get(order_id)
        if o is None or not o.is_open:
            self.refusals.append(f"cancel {order_id}: order not open")
            return False
        o.status = OrderStatus.CANCELLED
        self._emit(o)
        return True

    def fill(self, order_id: str, qty: int) -> int:
        """The market fills up to `qty` of an open order; returns what was filled."""
        o = self.orders.get(order_id)
        if o is None or not o.is_open or qty <= 0:
            return 0
        qty = min(qty, o.params.quantity - o.filled)
        if qty <= 0:
            return 0
        o.filled += qty
        o.status = OrderStatus.TRADED if o.filled >= o.params.quantity else OrderStatus.PART_TRADED
        self._emit(o)
        return qty

    def total_filled(self) -> int:
        return sum(o.filled for o in self.orders.values())


# --- a leader order's life ------------------------------------------------------------------


@dataclass(frozen=True)
class Edit:
    """One step of a leader order's life; the test draws these."""

    kind: str  # "modify" | "fill"
    gap_s: int = 1  # seconds since the previous update (0: within Dhan's one-second stamps)
    lots: int | None = None  # modify: new total lots; fill: lots filled now
    price: float | None = None
    trigger: float | None = None
    order_type: OrderType | None = None
    validity: Validity | None = None
    disclosed_lots: int | None = None


def base_order(
    lot: int,
    lots: int,
    *,
    order_type: OrderType = OrderType.LIMIT,
    price: float = 100.0,
    trigger: float = 0.0,
    side: Side = Side.BUY,
    product: Product = Product.INTRADAY,
    validity: Validity = Validity.DAY,
    segment: Segment = Segment.NSE_FNO,
    disclosed_lots: int = 0,
    transit: bool = False,
) -> OrderSnapshot:
    return OrderSnapshot(
        order_id="52260000001",
        client_id=LEADER_CLIENT,
        status=OrderStatus.TRANSIT if transit else OrderStatus.PENDING,
        side=side,
        order_type=order_type,
        product=product,
        validity=validity,
        segment=segment,
        security_id="48201",
        quantity=lots * lot,
        price=price,
        trigger_price=trigger,
        disclosed_qty=disclosed_lots * lot,
        lot_size=lot,
        trading_symbol="NIFTY 25 NOV 24000 CALL",
        created_at=T0,
        updated_at=T0,
    )


def _open_status(quantity: int, filled: int) -> OrderStatus:
    return OrderStatus.PART_TRADED if 0 < filled < quantity else OrderStatus.PENDING


def leader_life(
    start: OrderSnapshot, edits: Sequence[Edit], end: OrderStatus | None, end_gap_s: int = 1
) -> list[OrderSnapshot]:
    """The snapshots Dhan reports for one order: `start`, one per edit, then `end` if given.

    Consistent by construction: quantity never below filled, filled never decreasing, update
    times never decreasing, a terminal status only last. Edits that cannot apply (a fill on a
    fully filled order, a quantity below the filled) are clamped.
    """
    lot = start.lot_size or 1
    snaps = [start]
    cur = start
    for e in edits:
        t = (cur.updated_at or T0) + timedelta(seconds=e.gap_s)
        if e.kind == "fill":
            room = cur.quantity - cur.filled_qty - lot  # a fill that completes is the end
            add = min((e.lots or 1) * lot, room)
            if add <= 0:
                continue
            filled = cur.filled_qty + add
            cur = cur.with_changes(
                filled_qty=filled,
                avg_price=cur.price or 100.0,
                status=_open_status(cur.quantity, filled),
                updated_at=t,
            )
        else:
            changes: dict[str, object] = {"updated_at": t}
            if e.lots is not None:
                qty = max(e.lots * lot, cur.filled_qty + lot)
                changes["quantity"] = qty
            if e.price is not None:
                changes["price"] = e.price
            if e.trigger is not None:
                changes["trigger_price"] = e.trigger
            if e.order_type is not None:
                changes["order_type"] = e.order_type
            if e.validity is not None:
                changes["validity"] = e.validity
            if e.disclosed_lots is not None:
                changes["disclosed_qty"] = e.disclosed_lots * lot
            nxt = cur.with_changes(**changes)
            cur = nxt.with_changes(status=_open_status(nxt.quantity, nxt.filled_qty))
        snaps.append(cur)
    if end is not None:
        t = (cur.updated_at or T0) + timedelta(seconds=end_gap_s)
        if end is OrderStatus.TRADED:
            cur = cur.with_changes(
                status=end, filled_qty=cur.quantity, avg_price=cur.price or 100.0, updated_at=t
            )
        else:
            cur = cur.with_changes(status=end, updated_at=t)
        snaps.append(cur)
    return snaps
