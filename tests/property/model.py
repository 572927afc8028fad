"""A small pure model of one follower's Dhan account, of one leader order's life, and of what
the engine does between them, for the property tests.

* :class:`ModelBroker` is a follower's order book as Dhan keeps it: orders by id with status,
  quantity, filled, price, trigger, type, validity, disclosed quantity and a modification count.
  It refuses what Dhan refuses (the 26th modification, modifying or cancelling a closed order, a
  total quantity at or below what is filled) and emits the follower order-update stream.
* :class:`EngineModel` is the engine's handling of one leader order for one follower, written
  after ``engine/engine.py`` with its awaits removed: ``_ingest_leader`` (the progress-key rule),
  ``_work`` (``decide`` and the action), ``_place`` / ``_modify`` / ``_cancel`` / ``_replace``,
  ``_record_skip`` and ``_on_follower_snapshot``. Each method names the engine code it follows;
  when the engine changes, these are the lines to compare.
* :func:`leader_life` builds a leader order's life as a list of consistent snapshots.

Nothing here is random: the tests draw the choices with hypothesis and pass them in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from engine.clock import IST
from engine.domain import (
    MirrorState,
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
from engine.records import MirrorRecord
from engine.replication.replicator import (
    Cancel,
    Decision,
    DecisionContext,
    FollowerRules,
    Modify,
    NoAction,
    Place,
    Skip,
    decide,
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
class ModelBroker:
    """One follower account at Dhan, as far as orders go."""

    orders: dict[str, BrokerOrder] = field(default_factory=dict)
    stream: list[OrderSnapshot] = field(default_factory=list)  # order updates not yet delivered
    refusals: list[str] = field(default_factory=list)
    max_open_seen: int = 0  # the most orders open at once
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


# --- the engine, for one leader order and one follower --------------------------------------


@dataclass
class EngineModel:
    rules: FollowerRules
    ctx: DecisionContext
    broker: ModelBroker = field(default_factory=ModelBroker)
    leader: OrderSnapshot | None = None  # engine._leader[order_id]
    mirror: MirrorRecord | None = None  # engine._mirrors[(follower, leader id)]
    cids: set[str] = field(default_factory=set)  # engine._by_cid keys pointing at this mirror
    follower_keys: dict[str, tuple[int, int, float]] = field(default_factory=dict)
    actions: list[Decision] = field(default_factory=list)  # decisions acted on, in order
    acted_keys: list[tuple[int, int, float]] = field(default_factory=list)  # leader key per action
    replaces: int = 0  # cancels with replace=True that went through
    killed_at: int | None = None  # index into `actions` when the engine was killed

    # engine._ingest_leader
    def ingest(self, snap: OrderSnapshot) -> bool:
        known = self.leader
        if known is not None:
            if snap.progress_key() < known.progress_key():
                return False
            snap = merge_snapshot(known, snap)
            if snap == known.with_changes(source=snap.source):
                return False
        self.leader = snap
        return True

    def kill(self) -> None:
        self.ctx = replace(self.ctx, armed=False)
        self.killed_at = len(self.actions)

    def decide(self) -> Decision:
        assert self.leader is not None
        return decide(self.leader, self.mirror, self.rules, self.ctx)

    # engine._work, repeated while the dispatcher has the key marked. Each action ends one
    # unit of work (the engine marks the key again), so `limit` lets follower updates land
    # between two actions, as they do between two dispatcher turns.
    def work(self, limit: int | None = None, max_steps: int = 200) -> None:
        if self.leader is None:
            return
        for step in range(max_steps):
            if limit is not None and step >= limit:
                return
            decision = self.decide()
            if isinstance(decision, NoAction):
                return
            self.actions.append(decision)
            self.acted_keys.append(self.leader.progress_key())
            if isinstance(decision, Skip):
                self._record_skip(decision)
                return
            if isinstance(decision, Place):
                self._place(decision)
            elif isinstance(decision, Modify):
                self._modify(decision)
            elif isinstance(decision, Cancel):
                self._cancel(decision)
        raise AssertionError(f"no convergence in {max_steps} steps: {self.actions[-5:]}")

    def _set_mirror(self, rec: MirrorRecord) -> None:
        self.mirror = rec
        self.cids.add(rec.correlation_id)

    # engine._record_skip
    def _record_skip(self, skip: Skip) -> None:
        assert self.leader is not None
        earlier = self.mirror
        if (
            earlier is not None
            and earlier.state is MirrorState.SKIPPED
            and earlier.reason == skip.reason
        ):
            return
        self._set_mirror(
            MirrorRecord(
                follower=self.rules.name,
                leader_order_id=self.leader.order_id,
                correlation_id=f"skip-{self.leader.order_id}",
                state=MirrorState.SKIPPED,
                reason=skip.reason,
                skip_code=skip.code.value,
            )
        )

    # engine._place and engine._handle_place_result (an OK answer)
    def _place(self, decision: Place) -> None:
        assert self.leader is not None
        mirror = MirrorRecord(
            follower=self.rules.name,
            leader_order_id=self.leader.order_id,
            correlation_id=decision.params.correlation_id,
            state=MirrorState.PLACING,
            params=decision.params,
        )
        earlier = self.mirror
        if decision.generation > 0 and earlier is not None:
            mirror = earlier.with_changes(
                correlation_id=decision.params.correlation_id,
                state=MirrorState.PLACING,
                generation=decision.generation,
                params=decision.params,
                prior_filled=earlier.total_filled,
                filled_qty=0,
                avg_price=0.0,
                modifications=0,
                follower_order_id="",
                broker_status=None,
            )
        self._set_mirror(mirror)
        order_id, result_status = self.broker.place(decision.params)
        current = self.mirror
        status = current.broker_status or result_status
        self._set_mirror(
            current.with_changes(
                state=MirrorState.DONE if status.is_terminal else MirrorState.LIVE,
                follower_order_id=order_id or current.follower_order_id,
                broker_status=status,
            )
        )

    # engine._modify
    def _modify(self, decision: Modify) -> None:
        assert self.mirror is not None
        if self.broker.modify(decision.follower_order_id, decision.params):
            self._set_mirror(
                self.mirror.with_changes(
                    params=decision.params, modifications=self.mirror.modifications + 1
                )
            )
            return
        before = self.mirror
        self._refresh_follower_order(before)
        if (self.mirror.filled_qty, self.mirror.broker_status) != (
            before.filled_qty,
            before.broker_status,
        ):
            return  # our view was behind: the work loop decides again on the fresh state
        if self.mirror.is_open_at_broker:
            self._set_mirror(
                self.mirror.with_changes(state=MirrorState.FAILED, reason="modify refused")
            )

    # engine._cancel
    def _cancel(self, decision: Cancel) -> None:
        assert self.mirror is not None
        if self.broker.cancel(decision.follower_order_id):
            done = self.mirror.with_changes(
                state=MirrorState.DONE,
                broker_status=OrderStatus.CANCELLED,
                reason=decision.reason,
            )
            self._set_mirror(done)
            if decision.replace:
                self.replaces += 1
                self._replace(done)
            return
        self._refresh_follower_order(self.mirror)

    # engine._replace
    def _replace(self, cancelled: MirrorRecord) -> None:
        final = self.broker.snapshot(cancelled.follower_order_id)
        self._set_mirror(
            cancelled.with_changes(
                generation=cancelled.generation + 1,
                prior_filled=cancelled.prior_filled + final.filled_qty,
                filled_qty=0,
                avg_price=0.0,
                modifications=0,
                follower_order_id="",
                broker_status=None,
                state=MirrorState.REPLACING,
            )
        )

    # engine._refresh_follower_order
    def _refresh_follower_order(self, mirror: MirrorRecord) -> None:
        if mirror.follower_order_id:
            self.on_follower_snapshot(self.broker.snapshot(mirror.follower_order_id))

    # engine._on_follower_snapshot (the parts that change the mirror)
    def on_follower_snapshot(self, snap: OrderSnapshot) -> bool:
        if snap.correlation_id not in self.cids:
            return False
        mirror = self.mirror
        if (
            mirror is None
            or mirror.correlation_id != snap.correlation_id
            or mirror.state is MirrorState.REPLACING
        ):
            return False
        known = self.follower_keys.get(snap.order_id)
        if known is not None and snap.progress_key() < known:
            return False
        self.follower_keys[snap.order_id] = snap.progress_key()
        state = mirror.state
        if mirror.state is MirrorState.LIVE and snap.status.is_terminal:
            state = MirrorState.DONE
        updated = mirror.with_changes(
            follower_order_id=mirror.follower_order_id or snap.order_id,
            broker_status=snap.status,
            filled_qty=snap.filled_qty,
            avg_price=snap.avg_price,
            state=state,
            reason=snap.reason if snap.status is OrderStatus.REJECTED else mirror.reason,
        )
        if updated == mirror:
            return False
        self._set_mirror(updated)
        return True

    def deliver_follower_stream(self, count: int | None = None) -> None:
        """Deliver the oldest `count` pending follower order updates (all when None)."""
        stream = self.broker.stream
        n = len(stream) if count is None else min(count, len(stream))
        batch, self.broker.stream = stream[:n], stream[n:]
        for snap in batch:
            self.on_follower_snapshot(snap)

    def refresh_follower_book(self) -> None:
        """engine._refresh_follower_books: the whole follower order book, as recovery reads it."""
        for order_id in list(self.broker.orders):
            self.on_follower_snapshot(self.broker.snapshot(order_id))

    def reconcile(self, final: OrderSnapshot) -> None:
        """The periodic reconcile: pending updates land, the leader's book is read (the
        authoritative latest snapshot), the follower's book is read, and the work runs."""
        for _ in range(3):
            self.deliver_follower_stream()
            self.ingest(final)
            self.refresh_follower_book()
            self.work()


def merge_snapshot(known: OrderSnapshot, new: OrderSnapshot) -> OrderSnapshot:
    """engine.engine._merge_snapshot: REST lacks a few socket fields; keep what we knew."""
    return new.with_changes(
        lot_size=new.lot_size or known.lot_size,
        trading_symbol=new.trading_symbol or known.trading_symbol,
        created_at=new.created_at or known.created_at,
        amo_time=new.amo_time or known.amo_time,
    )


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
