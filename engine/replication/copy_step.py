"""One copy: the step between targets. `copy_order_total` turns a follower's position ledger
(engine.replication.targets) into the follower order's total quantity for one leader order,
valid for a place and for a modify, capped so that an exit never sells more than the follower
holds (net less what other copies are already working to close) and never flips it, and a
reversal opens the new side only once the leader's own fills have crossed flat. Pure; no I/O.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from engine.domain import Side
from engine.replication.targets import Leg, PositionLedger, TargetState, next_target, target_state

__all__ = ["CopyQuantity", "copy_order_total", "forget_projections"]


@dataclass(frozen=True, slots=True)
class CopyQuantity:
    """The follower order's total quantity for one leader order (place: the quantity; modify:
    Dhan's total), with its parts and the numbers behind them."""

    total: int  # >= copy_filled; 0 = nothing to copy (see reason)
    closing: int  # of total, what reduces the follower's position
    opening: int  # of total, what opens or adds on the leader's side
    target_after: int  # the follower's target once the leader's order is done
    reason: str


def copy_order_total(ledger: PositionLedger, leader_order_id: str) -> CopyQuantity:
    """The follower copy's total quantity for a leader order, from the ledger as it is now.

    The order's step is what it moves the target by: what its fills have moved it already,
    plus what its remaining quantity would move it from here. Copies are sized in the order
    their leader orders arrived: this copy takes the follower from where it stands (its
    position plus the working quantities of the copies of *earlier* orders) toward the
    target once this and every earlier open order on its side has filled, by at most its own
    step. So a modify of the leader's quantity, a partial fill, or a re-decision after other
    orders moved gives a consistent total; a copy never undoes what other copies do, never
    makes up another copy's shortfall beyond its own step, and a copy whose leader has filled
    never carries the share of a later order its leader has not filled. Because a total
    depends on the copies of earlier orders, the engine re-decides every copy of the ledger,
    in arrival order, when anything in it changes. Then:
    - the closing part never exceeds what the follower holds from our copies, less what the
      copies of earlier orders already work to close: an exit never flips the follower;
      when the leader is headed flat or to the copy's side, it closes all of the old side,
      even beyond the order's step (a copy that outran its leader), so the follower is never
      left on the side the leader has left;
    - the opening part is sent only once the closing part leaves the follower flat and the
      leader's own fills have left his old side (a reversal closes fully first; the sized new
      side, if any, joins the copy's total once the leader has crossed flat, so the engine
      then modifies the copy up or places its next generation), and never beyond the target;
    - a pure entry below `bounds.min_qty` is not copied;
    - never below what the copy has already filled.
    """
    leg = ledger.leg(leader_order_id)
    if leg is None:
        raise KeyError(f"leader order {leader_order_id} is not in this ledger")
    s = leg.sign
    now = target_state(ledger)
    hypo_after = now.leader_net + s * leg.leader_remaining
    added = now.added_by.get(leader_order_id, 0)
    target_after, _ = next_target(now.target, now.leader_net, hypo_after, leg.terms, added)
    # The order's step, split into what reduces the follower's old side and what opens or
    # adds on the leader's side: its fills' moves so far, plus its remaining from here.
    moved = s * now.moved_by.get(leader_order_id, 0)
    ahead = s * (target_after - now.target)
    ahead_closing = min(ahead, max(-s * now.target, 0))
    step_closing = moved - added + ahead_closing
    step_opening = added + ahead - ahead_closing

    # Where the target is going: once this and every earlier open leader order on its side
    # has filled (in the order they arrived), each through its own terms.
    projected = _projected_target(ledger, now, through=leg)
    # The follower without this copy: what it holds, and where the copies of earlier leader
    # orders take it. Earlier orders come first, so a copy whose leader has filled is never
    # left carrying the share of a later order its leader has not filled yet.
    place = _position_of(ledger, leg)
    shape = ledger.shape
    holding = ledger.follower_net - s * leg.copy_filled
    others_this_way = others_other_way = 0
    for i in shape.working:  # the copies of earlier orders still working
        if i >= place:
            break
        x = ledger.legs[i]
        if x.side is leg.side:
            others_this_way += x.copy_working
        else:
            others_other_way += x.copy_working
    heading = holding + s * (others_this_way - others_other_way)
    gap = max(s * (projected - heading), 0)  # what this side still lacks
    held_by_copies = max(-s * holding, 0)  # what this copy's side reduces
    # What the follower's own trades (by hand, or Dhan's square-off) already closed of it is
    # not held any more: an exit of it would flip the account.
    own_closed = min(held_by_copies, max(s * ledger.follower_own, 0))
    held_against = held_by_copies - own_closed
    closable = max(held_against - others_this_way, 0)
    # When the leader is headed flat or to this copy's side, the follower keeps none of the
    # old side, even what a copy that outran its leader left beyond this order's step. Only
    # the latest order on this side does that: a later one's copy may already be closing it
    # (and filled), and an earlier order decided again must not close the same twice.
    latest_this_side = (shape.last_buy if leg.side is Side.BUY else shape.last_sell) == place
    beyond_step = s * projected >= 0 and latest_this_side
    closing = min(gap if beyond_step else min(gap, step_closing), closable)
    flat_after = closable - closing == 0
    leader_on_other_side = s * now.leader_net < 0
    room = max(s * projected - max(s * holding + others_this_way + closing, 0), 0)
    opening = 0
    if flat_after and not leader_on_other_side:
        opening = min(gap - closing, step_opening, room)

    reason = (
        f"target {now.target:+d} → {target_after:+d} (leader {now.leader_net:+d}"
        f"{' → ' + format(hypo_after, '+d') if leg.leader_remaining else ''}), "
        f"this order's step {step_closing + step_opening}"
    )
    if closing < min(step_closing, held_by_copies) or (step_closing and not held_against):
        reason += f"; closing capped at {closing} (holds {holding:+d}"
        if own_closed:
            reason += f", of which {own_closed} closed by the follower's own trades"
        reason += f", {others_this_way} already working to close)" if others_this_way else ")"
    if gap < step_closing + step_opening:
        reason += f"; the follower is headed to {heading:+d}, the target to {projected:+d}"
    if opening < min(step_opening, gap - closing):
        if leader_on_other_side:
            reason += "; the new side opens once the leader's own fills cross flat"
        elif not flat_after:
            reason += "; nothing opened until the follower is flat"
        else:
            reason += f"; opening capped at {opening}: the follower is at its target"
    min_qty = leg.terms.bounds.min_qty
    if closing == 0 and 0 < opening < min_qty and leg.copy_filled == 0:
        reason += f"; {opening} is below min_qty {min_qty} → 0"
        opening = 0
    total = max(closing + opening, leg.copy_filled)
    return CopyQuantity(total, closing, opening, target_after, reason)


def _position_of(ledger: PositionLedger, leg: Leg) -> int:
    """Where the leg is in the ledger (it must be this very leg, not an older version)."""
    i = ledger.shape.where.get(leg.leader_order_id)
    if i is None or ledger.legs[i] is not leg:
        raise KeyError(f"leader order {leg.leader_order_id} is not in this ledger")
    return i


@dataclass(slots=True)
class _Projection:
    """The fold of one side's open legs from the target now, for one ledger epoch: after
    each open leg's place, the leader's position and the target once it fills."""

    upto: int = -1  # the last place folded
    places: list[int] = field(default_factory=list)
    leaders: list[int] = field(default_factory=list)
    targets: list[int] = field(default_factory=list)


# (epoch, side) -> its projection: a decision folds only the open legs it has not folded
# yet (a pure cache: a ledger's epoch changes with anything the fold reads).
_PROJECTIONS: dict[tuple[int, Side], _Projection] = {}
_PROJECTIONS_MAX = 4096


def _projected_target(ledger: PositionLedger, now: TargetState, through: Leg) -> int:
    """The target once the remaining quantity of `through` and of every earlier open leader
    order on its side fills, in the order they arrived, each through its own terms. Orders
    on the other side are left out: a resting buy must not stop the copy of a filled short
    sale, nor a resting stop-loss the copy of a new entry."""
    last = _position_of(ledger, through)
    shape = ledger.shape
    side = through.side
    proj = _PROJECTIONS.get((shape.epoch, side))
    if proj is None:
        if len(_PROJECTIONS) >= _PROJECTIONS_MAX:
            _PROJECTIONS.clear()
        inherited = _PROJECTIONS.get((shape.parent, side))
        proj = (
            _Projection(
                inherited.upto,
                list(inherited.places),
                list(inherited.leaders),
                list(inherited.targets),
            )
            if inherited is not None
            else _Projection()
        )
        _PROJECTIONS[(shape.epoch, side)] = proj
    if last > proj.upto:
        leader = proj.leaders[-1] if proj.places else now.leader_net
        target = proj.targets[-1] if proj.places else now.target
        start = bisect.bisect_right(shape.open, proj.upto)
        for i in shape.open[start:]:  # only legs whose leader has quantity left
            if i > last:
                break
            leg = ledger.legs[i]
            if leg.side is side:
                after = leader + leg.sign * leg.leader_remaining
                target, _ = next_target(
                    target, leader, after, leg.terms, now.added_by.get(leg.leader_order_id, 0)
                )
                leader = after
                proj.places.append(i)
                proj.leaders.append(leader)
                proj.targets.append(target)
        proj.upto = last
    folded = bisect.bisect_right(proj.places, last)
    return proj.targets[folded - 1] if folded else now.target


def forget_projections() -> None:
    """Drop the remembered projections (the next decision folds the open legs again)."""
    _PROJECTIONS.clear()
