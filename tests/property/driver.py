"""Runs the engine's own replication logic for one leader order and one follower, against the
fake follower account of tests/property/fixtures.py, with the awaits taken out.

What decides is the engine's: `decide` (engine.replication.replicator), the leader-snapshot
rule and every follower-order record change (engine.transitions), and the book that owns the
records (engine.live.book). This file only routes: it hands each decision to the fake broker
and its answer to the transition the executor (engine/live/executor.py, orders.py) calls for
that answer, and delivers follower order updates as the follower feed
(engine/live/follower_feed.py) does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

from engine.clock import ManualClock
from engine.domain import OrderSnapshot, Product, Segment, Side
from engine.live.book import ReplicationBook
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
from engine.replication.targets import (
    PositionKey,
    PositionLedger,
    SizingTerms,
    record_copy_progress,
    register_leader_order,
)
from engine.transitions import (
    acknowledged,
    cancelled,
    follower_update,
    is_repeat_skip,
    leader_update,
    modification_refused,
    modified,
    placed,
    regenerated,
    skipped,
)
from tests.property.fixtures import T0, FakeBroker


def _new_book() -> ReplicationBook:
    return ReplicationBook(ManualClock(T0), publish=lambda event: None, on_change=lambda: None)


@dataclass
class Driver:
    rules: FollowerRules
    ctx: DecisionContext
    broker: FakeBroker = field(default_factory=FakeBroker)
    book: ReplicationBook = field(default_factory=_new_book)
    leader_id: str | None = None
    actions: list[Decision] = field(default_factory=list)  # decisions acted on, in order
    acted_keys: list[tuple[int, int, float]] = field(default_factory=list)  # leader key per action
    replaces: int = 0  # cancels with replace=True that went through
    killed_at: int | None = None  # index into `actions` when the engine was killed

    @property
    def name(self) -> str:
        return self.rules.name

    @property
    def leader(self) -> OrderSnapshot | None:
        return self.book.leader(self.leader_id) if self.leader_id else None

    @property
    def mirror(self) -> MirrorRecord | None:
        return self.book.mirror(self.name, self.leader_id) if self.leader_id else None

    # LeaderFeed.ingest (the leader-snapshot rule)
    def ingest(self, snap: OrderSnapshot) -> bool:
        update = leader_update(self.book.leader(snap.order_id), snap)
        if update.snapshot is None:
            return False
        self.book.put_leader(update.snapshot)
        self.leader_id = snap.order_id
        return True

    def kill(self) -> None:
        self.ctx = replace(self.ctx, armed=False)
        self.killed_at = len(self.actions)

    def decide(self) -> Decision:
        assert self.leader is not None
        return decide(self.leader, self.mirror, self.rules, self.ctx)

    # Executor.work, repeated while the dispatcher has the key marked. Each action ends one
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
                self._skip(decision)
                return
            if isinstance(decision, Place):
                self._place(decision)
            elif isinstance(decision, Modify):
                self._modify(decision)
            elif isinstance(decision, Cancel):
                self._cancel(decision)
        raise AssertionError(f"no convergence in {max_steps} steps: {self.actions[-5:]}")

    def _skip(self, skip: Skip) -> None:
        assert self.leader is not None
        if not is_repeat_skip(self.mirror, skip.reason):
            self.book.set_mirror(skipped(self.name, self.leader, skip.reason, skip.code.value, T0))

    def _place(self, decision: Place) -> None:
        leader = self.leader
        assert leader is not None
        cid = decision.params.correlation_id
        mirror = placed(
            self.mirror, self.name, leader, decision.params, cid, decision.generation, None, T0
        )
        self.book.set_mirror(mirror)
        order_id, status = self.broker.place(decision.params)
        current = self.mirror or mirror
        self.book.set_mirror(acknowledged(current, order_id, status, None, T0))

    def _modify(self, decision: Modify) -> None:
        before = self.mirror
        assert before is not None
        if self.broker.modify(decision.follower_order_id, decision.params):
            self.book.set_mirror(modified(before, decision.params, T0))
            return
        self._refresh_follower_order(before)
        after = self.mirror
        assert after is not None
        refusal = modification_refused(before, after, "refused", decision.params)
        if refusal is not None:
            self.book.set_mirror(refusal)

    def _cancel(self, decision: Cancel) -> None:
        current = self.mirror
        assert current is not None
        if not self.broker.cancel(decision.follower_order_id):
            self._refresh_follower_order(current)
            return
        done = cancelled(current, decision.reason, T0)
        self.book.set_mirror(done)
        if decision.replace:
            self.replaces += 1
            final = self.broker.snapshot(done.follower_order_id)
            self.book.set_mirror(regenerated(done, final.filled_qty))

    def _refresh_follower_order(self, mirror: MirrorRecord) -> None:
        if mirror.follower_order_id:
            self.on_follower_snapshot(self.broker.snapshot(mirror.follower_order_id))

    # FollowerFeed.on_snapshot (the parts that change the record)
    def on_follower_snapshot(self, snap: OrderSnapshot) -> bool:
        mirror = self.book.accept_follower_update(self.name, snap)
        if mirror is None:
            return False
        updated = follower_update(mirror, snap, self.book.leader(mirror.leader_order_id), T0)
        if updated == mirror:
            return False
        self.book.set_mirror(updated)
        return True

    def deliver_follower_stream(self, count: int | None = None) -> None:
        """Deliver the oldest `count` pending follower order updates (all when None)."""
        stream = self.broker.stream
        n = len(stream) if count is None else min(count, len(stream))
        batch, self.broker.stream = stream[:n], stream[n:]
        for snap in batch:
            self.on_follower_snapshot(snap)

    def refresh_follower_book(self) -> None:
        """FollowerFeed.refresh_books: the whole follower order book, as recovery reads it."""
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


@dataclass
class PositionDriver(Driver):
    """Many leader orders in one instrument for one follower, sized position-true: the
    engine's own ledger functions (as engine.live.positions applies them) feed `decide` the
    follower's ledger; copies are decided again earliest first after every change."""

    ledger: PositionLedger = field(
        default_factory=lambda: PositionLedger(
            PositionKey(Segment.NSE_FNO, "48211", Product.INTRADAY)
        )
    )
    terms: SizingTerms | None = None
    on_placed: Callable[[], None] | None = None  # checks the broker right after each place

    def _place(self, decision: Place) -> None:
        super()._place(decision)
        if self.on_placed is not None:
            self.on_placed()

    def ingest(self, snap: OrderSnapshot) -> bool:
        if not super().ingest(snap):
            return False
        current = self.book.leader(snap.order_id)
        assert current is not None and self.terms is not None
        self.ledger = register_leader_order(
            self.ledger,
            leader_order_id=current.order_id,
            side=current.side,
            quantity=current.quantity,
            filled=current.filled_qty,
            is_open=current.is_open,
            terms=self.terms,
        )
        return True

    def synced(self) -> PositionLedger:
        """The copies' side of the ledger from the book, as Positions.ledger_for reads it."""
        ledger = self.ledger
        for leg in ledger.legs:
            mirror = self.book.mirror(self.name, leg.leader_order_id)
            filled = mirror.total_filled if mirror is not None else 0
            working = 0
            if mirror is not None and mirror.is_open_at_broker and mirror.params is not None:
                working = max(mirror.params.quantity - mirror.filled_qty, 0)
            ledger = record_copy_progress(
                ledger, leader_order_id=leg.leader_order_id, filled=filled, working=working
            )
        self.ledger = ledger
        return ledger

    def decide(self) -> Decision:
        assert self.leader is not None
        ctx = replace(self.ctx, ledger=self.synced())
        return decide(self.leader, self.mirror, self.rules, ctx)

    def work_all(self) -> None:
        """Every copy of the ledger that may still act, earliest first, until all rest."""
        for _ in range(4):
            for leg in self.synced().legs:
                self.leader_id = leg.leader_order_id
                self.work()

    def follower_net(self) -> int:
        """What the follower holds at the broker (every copy's fills, signed)."""
        return sum(
            o.filled if o.params.side is Side.BUY else -o.filled
            for o in self.broker.orders.values()
        )
