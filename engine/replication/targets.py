"""Position-true sizing: a follower's target position follows the leader's, and each copy is
the step between targets. Pure functions over immutable records; no I/O.

One `PositionLedger` per follower per (segment, security, product) holds:

- the leader's position at the follower's attach point (never traded: history),
- one `Leg` per leader order copied since then: its side, the sizing terms in force when it
  arrived (frozen, so a settings change applies only to later orders), the leader's counted
  quantity and fills, and the follower copy's fills and working quantity,
- the leader's fill increments in the order they were seen.

The follower's *target* is a fold over those fill increments (`target_state`): an entry (the
leader's |position| grows) adds the sized step, an exit removes a step and never crosses zero,
a reversal goes through flat, the leader flat means the target is flat. Ratio rules (multiplier,
capital ratio) size the leader's whole position, so remainders carry: with the same ratio the
target is exactly round-toward-zero(leader x ratio) in lots. Fixed-lots rules add their lots
once per entry order. On a partial exit, a follower that holds exactly its ratio's share keeps
the ratio's share of the leader's new position; any other (fixed lots, capped entries, a ratio
changed since its entries) keeps the share of its position that the leader kept of his, rounded
up so it never over-exits.

Each copy is the step between targets (engine.replication.copy_step); a follower's position
against its target is its drift (engine.replication.position_drift).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from engine.domain import OrderSnapshot, Product, Segment, Side
from engine.replication.rules import (
    CapitalRatioSizing,
    FixedLotsSizing,
    MultiplierSizing,
    OrderSizeBounds,
)
from engine.replication.sizing import position_ratio, size_position

__all__ = [
    "LedgerShape",
    "Leg",
    "PositionKey",
    "PositionLedger",
    "SizingTerms",
    "TargetState",
    "forget_folds",
    "is_history",
    "next_target",
    "record_copy_progress",
    "record_leader_progress",
    "refresh_terms",
    "register_leader_order",
    "target_state",
]

Rule = MultiplierSizing | CapitalRatioSizing | FixedLotsSizing


@dataclass(frozen=True, slots=True)
class PositionKey:
    """A position is per instrument and product: an INTRADAY and a MARGIN position in the same
    contract are separate at Dhan and square off separately."""

    segment: Segment
    security_id: str
    product: Product

    @classmethod
    def of(cls, order: OrderSnapshot) -> PositionKey:
        return cls(order.segment, order.security_id, order.product)


@dataclass(frozen=True, slots=True)
class SizingTerms:
    """The sizing in force when a leader order arrived; frozen with its leg."""

    rule: Rule
    bounds: OrderSizeBounds
    lot_size: int
    capital_ratio: float | None = None  # follower / leader start-of-day capital

    @property
    def lot(self) -> int:
        return self.lot_size if self.lot_size > 0 else 1

    @property
    def entry_cap(self) -> int | None:
        """The most one leader order may add to the target (max_qty in whole lots)."""
        if self.bounds.max_qty is None:
            return None
        return (self.bounds.max_qty // self.lot) * self.lot


@dataclass(frozen=True, slots=True)
class Leg:
    """One leader order in this position and the follower's copy of it.

    Quantities count only what happened after the attach point: `leader_qty` and
    `leader_filled` exclude `baseline_filled`, the leader's fills of this order before it.
    """

    leader_order_id: str
    side: Side
    terms: SizingTerms
    leader_qty: int
    leader_filled: int = 0
    leader_open: bool = True
    baseline_filled: int = 0
    copy_filled: int = 0
    copy_working: int = 0  # the open copy's unfilled quantity; 0 when none is open

    @property
    def sign(self) -> int:
        return 1 if self.side is Side.BUY else -1

    @property
    def leader_remaining(self) -> int:
        return max(self.leader_qty - self.leader_filled, 0) if self.leader_open else 0


@dataclass(frozen=True, slots=True)
class LedgerShape:
    """Facts about a ledger's legs, found in one pass (a pure cache: derived, never stored)."""

    where: dict[str, int]  # leader order id -> its leg's place
    leader_fills: int  # signed sum of the leader's counted fills
    copy_fills: int  # signed sum of the copies' fills
    working: tuple[int, ...]  # places of the legs with a copy working
    open: tuple[int, ...]  # places of the legs whose leader has quantity left
    last_buy: int  # place of the last BUY leg (-1: none)
    last_sell: int
    # Changes whenever anything the leader's side of a leg holds changes (its fills, its
    # quantity left, its terms): what a projection through the open legs depends on, with
    # the fills. `parent`: the epoch this shape was made from by adding a leg (-1: none).
    epoch: int = -1
    parent: int = -1
    # Kept while legs are only appended and no leg's terms change: a fold of the fills made
    # under one lineage holds for every later ledger of it (``target_state`` continues it
    # without comparing every leg, which cost a decision O(legs) on a busy instrument).
    lineage: int = -1

    @classmethod
    def of(cls, legs: tuple[Leg, ...]) -> LedgerShape:
        where: dict[str, int] = {}
        leader = copies = 0
        working: list[int] = []
        still_open: list[int] = []
        last_buy = last_sell = -1
        for i, leg in enumerate(legs):
            where[leg.leader_order_id] = i
            if leg.side is Side.BUY:
                leader += leg.leader_filled
                copies += leg.copy_filled
                last_buy = i
            else:
                leader -= leg.leader_filled
                copies -= leg.copy_filled
                last_sell = i
            if leg.copy_working:
                working.append(i)
            if leg.leader_remaining:
                still_open.append(i)
        return cls(
            where,
            leader,
            copies,
            tuple(working),
            tuple(still_open),
            last_buy,
            last_sell,
            next(_EPOCHS),
            lineage=next(_EPOCHS),
        )

    def with_leg(self, place: int, old: Leg, new: Leg) -> LedgerShape:
        """The same after the leg at `place` changed from `old` to `new` (same order)."""
        return LedgerShape(
            self.where,
            self.leader_fills + new.sign * (new.leader_filled - old.leader_filled),
            self.copy_fills + new.sign * (new.copy_filled - old.copy_filled),
            _toggle(self.working, place, bool(new.copy_working)),
            _toggle(self.open, place, bool(new.leader_remaining)),
            self.last_buy,
            self.last_sell,
            *((self.epoch, self.parent) if _same_for_the_leader(old, new) else _fresh_epoch()),
            lineage=self.lineage if old.terms is new.terms else next(_EPOCHS),
        )

    def appended(self, leg: Leg) -> LedgerShape:
        """The same with `leg` added last."""
        place = len(self.where)
        buy = leg.side is Side.BUY
        return LedgerShape(
            {**self.where, leg.leader_order_id: place},
            self.leader_fills + leg.sign * leg.leader_filled,
            self.copy_fills + leg.sign * leg.copy_filled,
            (*self.working, place) if leg.copy_working else self.working,
            (*self.open, place) if leg.leader_remaining else self.open,
            place if buy else self.last_buy,
            self.last_sell if buy else place,
            next(_EPOCHS),
            self.epoch,
            self.lineage,
        )


_EPOCHS = itertools.count()


def _fresh_epoch() -> tuple[int, int]:
    """A new epoch inheriting nothing (the leader's side of a leg changed)."""
    return next(_EPOCHS), -1


def _same_for_the_leader(old: Leg, new: Leg) -> bool:
    return (
        old.leader_filled == new.leader_filled
        and old.leader_remaining == new.leader_remaining
        and old.terms is new.terms
    )


def _toggle(places: tuple[int, ...], place: int, present: bool) -> tuple[int, ...]:
    if (place in places) == present:
        return places
    if present:
        return tuple(sorted((*places, place)))
    return tuple(x for x in places if x != place)


@dataclass(frozen=True, slots=True)
class PositionLedger:
    """What one follower's position in one instrument and product follows."""

    key: PositionKey
    leader_at_attach: int = 0  # the leader's net at the attach point: history, never traded
    target_at_attach: int = 0  # 0 unless a position sync set the follower's share of it
    follower_at_attach: int = 0  # what a position sync gave the follower
    # What the follower account holds in this position beyond our copies, signed: its own
    # trades (by hand, or Dhan's square-off), never ours to close, but what they closed of our
    # copies' holding no exit may close again. Intraday: the day's own trades, read again from
    # the follower's book at every start. MARGIN: the account's net (Dhan's positions and the
    # fills since) less our copies', and until that is known the own trades its stream
    # showed. 0 for delivery. Not stored.
    follower_own: int = 0
    legs: tuple[Leg, ...] = ()
    fills: tuple[tuple[str, int], ...] = ()  # (leader order id, quantity), in the order seen
    _shape: LedgerShape | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.target_at_attach * self.leader_at_attach < 0 or (
            self.target_at_attach and not self.leader_at_attach
        ):
            raise ValueError("a synced target must have the sign of the leader's position")

    def leg(self, leader_order_id: str) -> Leg | None:
        i = self.shape.where.get(leader_order_id)
        return None if i is None else self.legs[i]

    @property
    def shape(self) -> LedgerShape:
        """What every decision asks of the legs, found in one pass and kept with this
        (immutable) ledger: a decision then costs the same whatever the day's history."""
        shape = self._shape
        if shape is None:
            shape = LedgerShape.of(self.legs)
            object.__setattr__(self, "_shape", shape)
        return shape

    @property
    def leader_net(self) -> int:
        return self.leader_at_attach + self.shape.leader_fills

    @property
    def follower_net(self) -> int:
        """The follower's position from our copies (and a sync); the trader's own manual
        trades in the account are not ours to close."""
        return self.follower_at_attach + self.shape.copy_fills

    @property
    def working_buy(self) -> int:
        return sum(
            self.legs[i].copy_working for i in self.shape.working if self.legs[i].side is Side.BUY
        )

    @property
    def working_sell(self) -> int:
        return sum(
            self.legs[i].copy_working for i in self.shape.working if self.legs[i].side is Side.SELL
        )

    @property
    def target(self) -> int:
        return target_state(self).target


# --- the leader's side: which orders count, and their progress ---------------------------


def is_history(order: OrderSnapshot, attach_at: datetime) -> bool:
    """A leader order that ended before the attach point: never traded, never in a ledger.

    An order without an update time is not history (the engine cannot tell; it is copied by
    the open-orders setting if open, else caught up within the catch-up bound).
    """
    return (
        order.status.is_terminal and order.updated_at is not None and order.updated_at <= attach_at
    )


def register_leader_order(
    ledger: PositionLedger,
    *,
    leader_order_id: str,
    side: Side,
    quantity: int,
    filled: int,
    is_open: bool,
    terms: SizingTerms,
    baseline_filled: int = 0,
) -> PositionLedger:
    """Add a leader order as a leg, its sizing terms frozen now. Idempotent: an order already
    in the ledger only records its progress (its terms stay those it arrived under).

    `baseline_filled` is what the order had filled at the attach point (an order open at
    attach): those fills are history, already inside `leader_at_attach`.
    """
    if ledger.leg(leader_order_id) is not None:
        return record_leader_progress(
            ledger,
            leader_order_id=leader_order_id,
            quantity=quantity,
            filled=filled,
            is_open=is_open,
        )
    leg = Leg(
        leader_order_id=leader_order_id,
        side=side,
        terms=terms,
        leader_qty=max(quantity - baseline_filled, 0),
        leader_open=True,
        baseline_filled=baseline_filled,
    )
    shape = ledger.shape.appended(leg)
    ledger = replace(ledger, legs=(*ledger.legs, leg))
    object.__setattr__(ledger, "_shape", shape)
    return record_leader_progress(
        ledger,
        leader_order_id=leader_order_id,
        quantity=quantity,
        filled=filled,
        is_open=is_open,
    )


def record_leader_progress(
    ledger: PositionLedger,
    *,
    leader_order_id: str,
    quantity: int,
    filled: int,
    is_open: bool,
) -> PositionLedger:
    """The leader order's latest known state. Fills only grow (a stale or replayed snapshot
    changes nothing); each new fill is one increment of the target fold. An order that has
    ended stays ended."""
    leg = ledger.leg(leader_order_id)
    if leg is None:
        raise KeyError(f"leader order {leader_order_id} is not in this ledger")
    counted = max(filled - leg.baseline_filled, 0)
    increment = counted - leg.leader_filled
    leader_qty = max(quantity - leg.baseline_filled, counted)
    leader_filled = max(counted, leg.leader_filled)
    leader_open = leg.leader_open and is_open
    if increment <= 0 and (leader_qty, leader_filled, leader_open) == (
        leg.leader_qty,
        leg.leader_filled,
        leg.leader_open,
    ):
        return ledger  # nothing new (most alerts of an order): the very same ledger
    fills = ledger.fills
    if increment > 0:
        fills = (*fills, (leader_order_id, increment))
    updated = replace(
        leg, leader_qty=leader_qty, leader_filled=leader_filled, leader_open=leader_open
    )
    return _with_leg(ledger, updated, fills=fills)


def record_copy_progress(
    ledger: PositionLedger, *, leader_order_id: str, filled: int, working: int
) -> PositionLedger:
    """The follower copy's fills (over all its generations) and its open unfilled quantity
    (0 once no copy is open). Fills only grow."""
    leg = ledger.leg(leader_order_id)
    if leg is None:
        raise KeyError(f"leader order {leader_order_id} is not in this ledger")
    updated = replace(leg, copy_filled=max(filled, leg.copy_filled), copy_working=max(working, 0))
    return _with_leg(ledger, updated)


def refresh_terms(
    ledger: PositionLedger, leader_order_id: str, terms: SizingTerms
) -> PositionLedger:
    """New terms for a leg that nothing has happened to yet (no leader fill, no copy fill),
    e.g. fund limits arrived after the order did. A leg with fills keeps its terms: the
    change must not resize what was already traded."""
    leg = ledger.leg(leader_order_id)
    if leg is None or leg.leader_filled or leg.copy_filled:
        return ledger
    return _with_leg(ledger, replace(leg, terms=terms))


def _with_leg(ledger: PositionLedger, leg: Leg, **changes: Any) -> PositionLedger:
    """The ledger with one leg changed (and other fields but the legs), its shape carried
    over instead of found again."""
    shape = ledger.shape
    place = shape.where[leg.leader_order_id]
    legs = list(ledger.legs)
    old, legs[place] = legs[place], leg
    updated = replace(ledger, legs=tuple(legs), **changes)
    object.__setattr__(updated, "_shape", shape.with_leg(place, old, leg))
    return updated


# --- the target: a fold over the leader's fills ----------------------------------------------


def _sign(x: int) -> int:
    return (x > 0) - (x < 0)


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def next_target(
    target_before: int,
    leader_before: int,
    leader_after: int,
    terms: SizingTerms,
    added_by_order: int = 0,
) -> tuple[int, int]:
    """The follower's target after the leader moves from `leader_before` to `leader_after`
    under one order's `terms`; returns (target, what this order has added so far).

    `added_by_order` is what the same order already added to the target (a partly filled
    entry): a fixed-lots order adds its lots once, and `bounds.max_qty` caps one order's
    addition. An entry adds the sized step (ratio rules: the change of the leader's sized
    position, at this order's ratio); an exit keeps the share of the follower's position that
    the leader kept (exactly the sized position when the follower holds its ratio's share).
    Guarantees: the result is a whole number of lots, 0 when the leader is flat, of
    the leader's sign otherwise, and an exit never makes |target| grow.
    """
    lot = terms.lot
    if leader_after == 0:
        return 0, added_by_order
    side = _sign(leader_after)
    if leader_before != 0 and _sign(leader_before) != side:
        # A reversal goes through flat: close everything, then enter the new side.
        target_before, leader_before = 0, 0
    held = abs(target_before)
    ratio = position_ratio(terms.rule, terms.capital_ratio)
    if abs(leader_after) < abs(leader_before):  # an exit
        if ratio is not None and held == size_position(abs(leader_before), ratio, lot):
            # The follower holds exactly its ratio's share: it keeps exactly the share of the
            # leader's new position, so remainders carry (0.5x: 3 -> 2 lots keeps 1 lot).
            return side * size_position(abs(leader_after), ratio, lot), added_by_order
        # Fixed lots, or a follower off its ratio's share (a cap, a ratio changed since its
        # entries, a sync): keep the leader's kept share of the position, rounded up so it
        # never over-exits.
        held_lots = held // lot
        kept = _ceil_div(held_lots * abs(leader_after), abs(leader_before))
        return side * min(kept, held_lots) * lot, added_by_order
    if abs(leader_after) == abs(leader_before):
        return side * held, added_by_order
    # An entry.
    if isinstance(terms.rule, FixedLotsSizing):
        add = terms.rule.lots * lot if added_by_order == 0 else 0
    elif ratio is None:
        add = 0  # capital unknown: nothing is added, never a guess
    else:
        add = size_position(abs(leader_after), ratio, lot) - size_position(
            abs(leader_before), ratio, lot
        )
    cap = terms.entry_cap
    if cap is not None:
        add = min(add, max(cap - added_by_order, 0))
    add = max(add, 0)
    return side * (held + add), added_by_order + add


@dataclass(frozen=True, slots=True)
class TargetState:
    leader_net: int
    target: int
    moved_by: dict[str, int] = field(default_factory=dict)  # signed target change per order
    added_by: dict[str, int] = field(default_factory=dict)  # entry quantity added per order


# The last fold of each ledger (by position): a ledger only grows by new fills, so the next
# fold continues from the last one instead of starting over (a pure cache: the result is
# the same; it only saves refolding a day's fills on every decision).
_FOLDS: dict[tuple[PositionKey, int], tuple[PositionLedger, TargetState]] = {}
_FOLDS_MAX = 1024


def target_state(ledger: PositionLedger) -> TargetState:
    """Fold the leader's fills, in the order seen, through each order's frozen terms."""
    legs, where = ledger.legs, ledger.shape.where
    leader, target = ledger.leader_at_attach, ledger.target_at_attach
    moved: dict[str, int] = {}
    added: dict[str, int] = {}
    fills = ledger.fills
    start = 0
    # One entry per follower's ledger: its first leg's terms are that follower's own object.
    slot = (ledger.key, id(ledger.legs[0].terms) if ledger.legs else 0)
    cached = _FOLDS.get(slot)
    if cached is not None:
        old, state = cached
        if old is ledger:
            return state
        if _continues(old, ledger):
            leader, target = state.leader_net, state.target
            moved, added = dict(state.moved_by), dict(state.added_by)
            start = len(old.fills)
    for order_id, qty in fills[start:]:
        leg = legs[where[order_id]]
        after = leader + leg.sign * qty
        new_target, added[order_id] = next_target(
            target, leader, after, leg.terms, added.get(order_id, 0)
        )
        moved[order_id] = moved.get(order_id, 0) + new_target - target
        leader, target = after, new_target
    result = TargetState(leader, target, moved, added)
    if len(_FOLDS) >= _FOLDS_MAX:
        _FOLDS.clear()
    _FOLDS[slot] = (ledger, result)
    return result


def forget_folds() -> None:
    """Drop the remembered folds (the next target_state folds every fill again)."""
    _FOLDS.clear()


def _continues(old: PositionLedger, new: PositionLedger) -> bool:
    """`new` is `old` with more fills after the same ones, through the same terms: the same
    lineage (legs only appended since, no leg's terms changed; see ``LedgerShape``)."""
    n = len(old.fills)
    return (
        old.shape.lineage == new.shape.lineage
        and n <= len(new.fills)
        and old.leader_at_attach == new.leader_at_attach
        and old.target_at_attach == new.target_at_attach
        and new.fills[:n] == old.fills
    )
