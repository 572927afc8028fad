"""Properties of position-true sizing (engine/replication/targets.py).

Any sequence of leader orders in one instrument (buys and sells, overlapping, partial fills,
modifications, cancels, any sizes, sizing settings changed at any point) runs through a model
of the engine: after every leader event the engine re-sizes every copy (level-triggered, as it
does on every snapshot), and between events copies fill part of what they work, behind their
leader: while a leader order is open, its copy fills no further than the leader's fills have
moved the target, nor past the target his fills imply (a copy that fills ahead of its leader
and is left over when the leader cancels is drift, reported and handled by the lagging-copy
policy, not by sizing).

Between a leader's fill and its copy's the follower still holds what the leader just sold,
and a leader with resting orders on both sides has copies working both ways that close
nothing yet (an exit copy cannot sell what an entry copy has not bought; it grows when that
fills). So at every moment the test holds the sizing to:
- the follower's target (also once every open leader order fills) has the leader's sign, is
  flat when he is flat, in whole lots;
- while the leader is long (short), copies never sell (buy) more than the follower holds.
Once every leader order has ended and every copy has filled what it is sized to, the
follower's *position* is exactly its target: same sign as the leader's, never beyond it, flat
with him (or below the target where a minimum order size held an entry back).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.domain import Product, Segment, Side
from engine.replication.copy_step import copy_order_total
from engine.replication.position_drift import position_drift
from engine.replication.rules import (
    CapitalRatioSizing,
    FixedLotsSizing,
    MultiplierSizing,
    OrderSizeBounds,
)
from engine.replication.targets import (
    LedgerShape,
    Leg,
    PositionKey,
    PositionLedger,
    SizingTerms,
    record_copy_progress,
    record_leader_progress,
    register_leader_order,
    target_state,
)

PROPS = settings(
    max_examples=400,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
LOT = 25
KEY = PositionKey(Segment.NSE_FNO, "42", Product.INTRADAY)

rules = st.one_of(
    st.builds(
        MultiplierSizing,
        multiplier=st.sampled_from([0.25, 0.3, 0.5, 1.0, 1.5, 2.0, 3.0]),
    ),
    st.builds(FixedLotsSizing, lots=st.integers(1, 3)),
    st.builds(CapitalRatioSizing, factor=st.sampled_from([0.5, 1.0, 2.0])),
)
bounds = st.one_of(
    st.just(OrderSizeBounds()),
    st.builds(OrderSizeBounds, max_qty=st.integers(1, 6).map(lambda lots: lots * LOT + 3)),
    st.builds(OrderSizeBounds, min_qty=st.integers(1, 3).map(lambda lots: lots * LOT)),
)
terms = st.builds(
    SizingTerms,
    rule=rules,
    bounds=bounds,
    lot_size=st.just(LOT),
    capital_ratio=st.one_of(st.none(), st.sampled_from([0.1, 0.37, 0.5, 1.0, 1.9])),
)


@dataclass(frozen=True)
class NewOrder:
    side: Side
    lots: int


@dataclass(frozen=True)
class LeaderFill:
    pick: int  # which open order (modulo)
    lots: int
    then_end: bool


@dataclass(frozen=True)
class LeaderModify:
    pick: int
    lots: int


@dataclass(frozen=True)
class LeaderCancel:
    pick: int


@dataclass(frozen=True)
class CopyFill:
    pick: int  # which copy with working quantity (modulo)
    share: float  # of what it may fill now


@dataclass(frozen=True)
class ChangeTerms:
    terms: SizingTerms


Event = NewOrder | LeaderFill | LeaderModify | LeaderCancel | CopyFill | ChangeTerms

events = st.lists(
    st.one_of(
        st.builds(NewOrder, side=st.sampled_from(list(Side)), lots=st.integers(1, 6)),
        st.builds(
            LeaderFill, pick=st.integers(0, 50), lots=st.integers(1, 6), then_end=st.booleans()
        ),
        st.builds(LeaderModify, pick=st.integers(0, 50), lots=st.integers(1, 8)),
        st.builds(LeaderCancel, pick=st.integers(0, 50)),
        st.builds(CopyFill, pick=st.integers(0, 50), share=st.sampled_from([0.3, 0.5, 1.0])),
        st.builds(ChangeTerms, terms=terms),
    ),
    max_size=40,
)


@dataclass
class Model:
    terms: SizingTerms
    ledger: PositionLedger = field(default_factory=lambda: PositionLedger(KEY))
    count: int = 0

    def open_orders(self) -> list[str]:
        return [leg.leader_order_id for leg in self.ledger.legs if leg.leader_open]

    def resize_copies(self) -> None:
        """The engine, level-triggered: every copy's total from the ledger as it is now."""
        for leg in self.ledger.legs:
            total = copy_order_total(self.ledger, leg.leader_order_id).total
            self.ledger = record_copy_progress(
                self.ledger,
                leader_order_id=leg.leader_order_id,
                filled=leg.copy_filled,
                working=total - leg.copy_filled,
            )

    def fillable(self, leg: Leg) -> int:
        """A copy trades behind its leader: while the leader's order is open, its copy fills
        no further than the leader's own fills have moved the target, nor past where the
        leader's fills have taken the target."""
        if not leg.leader_open:
            return leg.copy_working
        moved = leg.sign * target_state(self.ledger).moved_by.get(leg.leader_order_id, 0)
        behind = leg.sign * (self.ledger.target - self.ledger.follower_net)
        return max(min(leg.copy_working, moved - leg.copy_filled, behind), 0)

    def fill_copy(self, order_id: str, qty: int) -> None:
        leg = self.ledger.leg(order_id)
        assert leg is not None
        self.ledger = record_copy_progress(
            self.ledger,
            leader_order_id=order_id,
            filled=leg.copy_filled + qty,
            working=leg.copy_working - qty,
        )

    def leader(self, order_id: str, *, quantity: int, filled: int, is_open: bool) -> None:
        self.ledger = record_leader_progress(
            self.ledger,
            leader_order_id=order_id,
            quantity=quantity,
            filled=filled,
            is_open=is_open,
        )

    def apply(self, event: Event) -> None:
        opened = self.open_orders()
        if isinstance(event, ChangeTerms):
            self.terms = event.terms  # applies to orders that arrive from now on
        elif isinstance(event, NewOrder):
            self.count += 1
            self.ledger = register_leader_order(
                self.ledger,
                leader_order_id=f"L{self.count}",
                side=event.side,
                quantity=event.lots * LOT,
                filled=0,
                is_open=True,
                terms=self.terms,
            )
        elif isinstance(event, CopyFill):
            working = [x.leader_order_id for x in self.ledger.legs if self.fillable(x)]
            if working:
                leg = self.ledger.leg(working[event.pick % len(working)])
                assert leg is not None
                lots = max(int(self.fillable(leg) // LOT * event.share), 1)  # whole lots
                self.fill_copy(leg.leader_order_id, lots * LOT)
            return  # the follower's fill is not a leader event: no re-sizing
        elif opened:
            oid = opened[event.pick % len(opened)]
            leg = self.ledger.leg(oid)
            assert leg is not None
            if isinstance(event, LeaderFill):
                filled = min(leg.leader_filled + event.lots * LOT, leg.leader_qty)
                done = event.then_end or filled >= leg.leader_qty
                self.leader(oid, quantity=leg.leader_qty, filled=filled, is_open=not done)
            elif isinstance(event, LeaderModify):
                quantity = max(event.lots * LOT, leg.leader_filled)
                if quantity > 0:
                    self.leader(oid, quantity=quantity, filled=leg.leader_filled, is_open=True)
            else:
                self.leader(oid, quantity=leg.leader_qty, filled=leg.leader_filled, is_open=False)
        self.resize_copies()

    def projected(self) -> tuple[int, int]:
        """(leader, target) once every open leader order has filled."""
        done = self.ledger
        for leg in done.legs:
            if leg.leader_open:
                done = record_leader_progress(
                    done,
                    leader_order_id=leg.leader_order_id,
                    quantity=leg.leader_qty,
                    filled=leg.leader_qty,
                    is_open=False,
                )
        return done.leader_net, done.target

    def check(self) -> None:
        leader, target, net = self.ledger.leader_net, self.ledger.target, self.ledger.follower_net
        assert target * leader >= 0, f"target {target} against leader {leader}"
        assert leader != 0 or target == 0
        assert target % LOT == 0 and net % LOT == 0
        lead_to, target_to = self.projected()
        assert target_to * lead_to >= 0 and (lead_to != 0 or target_to == 0)
        # While the leader is on a side, copies never sell (buy) more than the follower holds
        # on that side: an exit never flips the follower, whatever else is working.
        if leader > 0:
            assert self.ledger.working_sell <= max(net, 0), f"selling more than {net} held"
        if leader < 0:
            assert self.ledger.working_buy <= max(-net, 0), f"buying more than {net} held"
        self.check_derived_from_scratch()

    def check_derived_from_scratch(self) -> None:
        """What the ledger carries over from one update to the next (its shape, the
        projection of its open legs) is what a ledger built anew finds, and the fold of its
        fills continued from the last check is the fold from scratch."""
        # No carried-over facts; its own terms objects (equal ones), so that its fold from
        # scratch is remembered apart and the next check still continues this ledger's own.
        fresh = replace(
            self.ledger,
            legs=tuple(replace(leg, terms=replace(leg.terms)) for leg in self.ledger.legs),
        )
        assert target_state(self.ledger) == target_state(fresh)
        carried = self.ledger.shape
        found = LedgerShape.of(fresh.legs)
        assert (carried.where, carried.leader_fills, carried.copy_fills) == (
            found.where,
            found.leader_fills,
            found.copy_fills,
        )
        assert (carried.working, carried.open) == (found.working, found.open)
        assert (carried.last_buy, carried.last_sell) == (found.last_buy, found.last_sell)
        for leg in self.ledger.legs:
            oid = leg.leader_order_id
            assert copy_order_total(self.ledger, oid) == copy_order_total(fresh, oid)

    def settle(self) -> None:
        """Every leader order ends as it is; every copy fills all it is sized to."""
        for oid in self.open_orders():
            leg = self.ledger.leg(oid)
            assert leg is not None
            self.leader(oid, quantity=leg.leader_qty, filled=leg.leader_filled, is_open=False)
        for _ in range(len(self.ledger.legs) + 2):
            self.resize_copies()
            if not (self.ledger.working_buy or self.ledger.working_sell):
                break
            for leg in self.ledger.legs:
                if leg.copy_working:
                    self.fill_copy(leg.leader_order_id, leg.copy_working)
        self.resize_copies()
        leader, target, net = self.ledger.leader_net, self.ledger.target, self.ledger.follower_net
        assert not (self.ledger.working_buy or self.ledger.working_sell), "copies still working"
        assert net * leader >= 0, f"follower {net} against leader {leader}"
        assert abs(net) <= abs(target), f"follower {net} beyond target {target}"
        assert leader != 0 or net == 0, f"leader flat, follower {net}"


@PROPS
@given(first=terms, script=events)
def test_follower_never_beyond_the_leader(first: SizingTerms, script: list[Event]) -> None:
    model = Model(first)
    for event in script:
        model.apply(event)
        model.check()
    model.settle()
    drift = position_drift(model.ledger)
    min_qty_used = any(leg.terms.bounds.min_qty for leg in model.ledger.legs)
    if not min_qty_used:
        assert drift.uncovered == 0 and drift.drift == 0, drift.describe()
    assert drift.working_away == 0, drift.describe()


@PROPS
@given(
    multiplier=st.sampled_from([0.25, 0.5, 1.0, 1.5, 3.0]),
    moves=st.lists(st.integers(-6, 6).filter(bool), max_size=25),
)
def test_with_one_ratio_the_target_is_the_sized_leader_position(
    multiplier: float, moves: list[int]
) -> None:
    """Remainders carry: with one ratio throughout, the target is always exactly
    round-toward-zero(leader x ratio) in whole lots, whatever the path."""
    sizing = SizingTerms(MultiplierSizing(multiplier=multiplier), OrderSizeBounds(), LOT)
    model = Model(sizing)
    for lots in moves:
        model.apply(NewOrder(Side.BUY if lots > 0 else Side.SELL, abs(lots)))
        model.apply(LeaderFill(pick=len(model.open_orders()) - 1, lots=abs(lots), then_end=True))
        leader = model.ledger.leader_net
        sized_lots = int(abs(leader) * multiplier / LOT + 1e-9)
        expected = (1 if leader > 0 else -1) * sized_lots * LOT
        assert model.ledger.target == (expected if leader else 0)
        model.check()
