"""The level-triggered replicator: one pure function from "what the leader's order looks like
now" and "what we know of the follower's copy" to the one action that converges them.

Its input is a state, never an event type: the live stream, missed-order recovery, the
periodic reconcile, the R key and a restart all call `decide`, and calling it again with the
same inputs after the action took effect returns `NoAction`. That is what makes replays,
duplicates and out-of-order alerts harmless.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from engine.domain import (
    AmoTime,
    MirrorState,
    OrderParams,
    OrderSnapshot,
    OrderStatus,
    OrderType,
    SnapshotSource,
)
from engine.records import MirrorRecord
from engine.replication.copy_step import copy_order_total
from engine.replication.correlation import correlation_id
from engine.replication.filters import check_filters, unsupported_order_reason
from engine.replication.rules import CopyFilters, OrderSizeBounds, RiskLimits, SizingRule
from engine.replication.sizing import scale_disclosed, size_order, target_total
from engine.replication.targets import PositionLedger

PRICE_EPSILON = 1e-6
# A copy the engine cancelled because the follower's position needed nothing more from it
# (position-true sizing). Unlike a copy cancelled by hand, it is placed again (its next
# generation) if the position needs it later: a later order's fill may make it due again.
POSITION_CANCEL = "position: "


@dataclass(frozen=True, slots=True)
class FollowerRules:
    name: str
    sizing: SizingRule
    bounds: OrderSizeBounds
    filters: CopyFilters
    risk: RiskLimits


@dataclass(frozen=True, slots=True)
class DecisionContext:
    """Everything outside the two orders that a decision depends on, read just before it."""

    armed: bool
    lot_size: int
    is_option: bool
    capital_ratio: float | None
    market_open: bool = True
    market_reason: str = ""
    cancel_when_killed: bool = True
    max_modifications: int = 25  # Dhan refuses the 26th modification of an order
    # FROZEN (automatic safety: a refused token, a dark feed, a loss limit...): nothing new
    # is opened, but every copy at Dhan stays and still follows the leader's cancels, exits
    # and price edits, so a follower's stop-loss keeps protecting it. Only KILLED cancels.
    frozen: bool = False
    frozen_reason: str = ""
    # Position-true sizing: the follower's ledger for this order's instrument and product.
    # When it holds the order, every total comes from `copy_order_total` (the step between
    # the follower's targets); None sizes the order alone (an order outside any ledger).
    ledger: PositionLedger | None = None
    # A drained follower (enabled: false with copies still open): its copies keep following
    # the leader's cancels and exits, but nothing that opens a position is sent.
    draining: bool = False


class SkipCode(StrEnum):
    UNSUPPORTED = "UNSUPPORTED_ORDER"
    FILTERED = "FILTERED"
    SIZED_TO_ZERO = "SIZED_TO_ZERO"
    MARKET_CLOSED = "MARKET_CLOSED"
    KILLED = "ENGINE_KILLED"
    UNKNOWN_LOT = "UNKNOWN_LOT_SIZE"
    RISK = "RISK_LIMIT"


@dataclass(frozen=True, slots=True)
class NoAction:
    reason: str


@dataclass(frozen=True, slots=True)
class Skip:
    """Never copy this leader order to this follower; sticky once recorded."""

    code: SkipCode
    reason: str


@dataclass(frozen=True, slots=True)
class Place:
    params: OrderParams
    catch_up: bool = False  # a fill the engine missed (socket down): placing what the leader got
    generation: int = 0  # > 0: the rest of a copy whose earlier order was filled or replaced


@dataclass(frozen=True, slots=True)
class Modify:
    follower_order_id: str
    params: OrderParams
    changed: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Cancel:
    follower_order_id: str
    reason: str
    replace: bool = False  # re-place the rest under a new correlationId once cancelled


Decision = NoAction | Skip | Place | Modify | Cancel

_COMPARED_FIELDS = ("quantity", "price", "trigger_price", "order_type", "validity", "disclosed_qty")


def awaits_exchange(leader: OrderSnapshot, mirror: MirrorRecord | None) -> bool:
    """A leader order still in transit, with no copy yet: nothing to decide for that
    follower until Dhan has accepted it (``decide`` answers NoAction)."""
    return mirror is None and leader.status is OrderStatus.TRANSIT


def wakes_followers(known: OrderSnapshot | None, snap: OrderSnapshot) -> bool:
    """Whether a new leader state can change any follower's decision. One that differs from
    what we knew only in what no decision reads (where it came from, Dhan's text about the
    order, the instrument's price when Dhan sent it) cannot: the REST read that settles a tie
    of socket alerts usually brings only that, and woke every follower to decide NoAction."""
    if known is None:
        return True
    same_facts = snap.with_changes(source=known.source, reason=known.reason, ref_ltp=known.ref_ltp)
    return same_facts != known


def decide(
    leader: OrderSnapshot,
    mirror: MirrorRecord | None,
    rules: FollowerRules,
    ctx: DecisionContext,
) -> Decision:
    if mirror is None:
        return _decide_first_copy(leader, rules, ctx)
    if mirror.state is MirrorState.PLACING:
        return NoAction("placement in flight; decided again once it is answered")
    if mirror.state is MirrorState.REPLACING:
        return _decide_replacement(leader, mirror, rules, ctx)
    if mirror.state is MirrorState.SKIPPED:
        return _decide_after_skip(leader, mirror, rules, ctx)
    if mirror.state is MirrorState.FAILED:
        return NoAction("follower copy failed; see its reason")
    if not mirror.is_open_at_broker:
        if mirror.broker_status is OrderStatus.TRADED:
            return _decide_top_up(leader, mirror, rules, ctx)
        if (
            mirror.broker_status is OrderStatus.CANCELLED
            and mirror.reason.startswith(POSITION_CANCEL)
            and _in_ledger(leader, ctx)
        ):
            return _decide_top_up(leader, mirror, rules, ctx)
        return NoAction("follower order is no longer open at the broker")
    if not mirror.follower_order_id:
        return NoAction("follower order id not yet known")
    if not ctx.armed:
        if not ctx.cancel_when_killed:
            return NoAction("killed without cancelling open orders")
        return Cancel(mirror.follower_order_id, "engine killed: cancelling open follower orders")
    if leader.status.is_terminal:
        decision = _decide_after_leader_ended(leader, mirror, rules, ctx)
    else:
        decision = _decide_follow_changes(leader, mirror, rules, ctx)
    return _within_freeze(unless_refused_before(decision, mirror), mirror, ctx)


def unless_refused_before(decision: Decision, mirror: MirrorRecord | None) -> Decision:
    """Dhan refused this very modification already: it is not asked again (whoever decided
    it: the replicator, or a lagging copy's chase). A copy it would have made smaller is
    larger than the leader's order implies (an exit could then sell more than the follower
    holds), so it is cancelled and the rest re-placed as a new order; any other refused change
    leaves the copy resting as it was."""
    if (
        mirror is None
        or not isinstance(decision, Modify)
        or decision.params != mirror.refused_params
    ):
        return decision
    if refusal_shrinks(mirror, decision.params):
        return Cancel(
            mirror.follower_order_id,
            "Dhan refused to make the copy smaller: cancelling to re-place the rest",
            replace=True,
        )
    return NoAction("Dhan refused this modification; the copy rests as it was")


def refusal_shrinks(mirror: MirrorRecord, refused: OrderParams) -> bool:
    """Was the refused modification one that made the copy smaller? (Then the copy is cancelled
    and the rest re-placed, rather than left resting as it was.)"""
    return mirror.params is not None and refused.quantity < mirror.params.quantity


def _within_freeze(decision: Decision, mirror: MirrorRecord, ctx: DecisionContext) -> Decision:
    """While frozen a resting copy keeps following the leader (cancels, price and trigger
    edits, smaller quantities) but is never enlarged or re-placed: that would open exposure."""
    if not (ctx.frozen or ctx.draining):
        return decision
    why = f"frozen ({ctx.frozen_reason})" if ctx.frozen else "drained follower"
    if isinstance(decision, Cancel) and decision.replace:
        return NoAction(f"{why}: not cancelling to re-place")
    if (
        isinstance(decision, Modify)
        and mirror.params is not None
        and decision.params.quantity > mirror.params.quantity
    ):
        return NoAction(f"{why}: the copy is not enlarged")
    return decision


def _decide_first_copy(
    leader: OrderSnapshot, rules: FollowerRules, ctx: DecisionContext
) -> Decision:
    if awaits_exchange(leader, None):
        # Not yet accepted by the exchange: a MARKET copy placed now could fill while the
        # leader's own order is rejected by RMS, leaving the follower with a lone position.
        return NoAction("leader order still in transit")
    if leader.amo and leader.amo_time is None and leader.source is SnapshotSource.STREAM:
        # The socket alert did not say when the AMO goes in (OPEN, OPEN_30, OPEN_60,
        # PRE_OPEN); the order book does, and the engine reads it: copied with its time then.
        return NoAction("AMO time not in the socket alert: waiting for the order book")
    if leader.amo and leader.amo_time is AmoTime.PRE_OPEN:
        # Placed at another time it would trade at another price: said, not guessed.
        return Skip(
            SkipCode.UNSUPPORTED,
            "a PRE_OPEN after-market order: the dhanhq SDK places AMOs only at OPEN, "
            "OPEN_30 or OPEN_60",
        )
    catch_up = leader.status.is_terminal
    if catch_up and leader.filled_qty == 0:
        return NoAction(f"leader order {leader.status.value.lower()} with nothing filled")
    unsupported = unsupported_order_reason(leader)
    if unsupported:
        return Skip(SkipCode.UNSUPPORTED, unsupported)
    filtered = check_filters(rules.filters, leader, ctx.is_option)
    if filtered:
        return Skip(SkipCode.FILTERED, filtered)
    if not ctx.armed:
        return Skip(SkipCode.KILLED, "engine killed: new leader orders are not copied")
    if ctx.frozen:
        # Not a sticky skip: once the freeze clears, an order still open is copied then.
        return NoAction(f"frozen ({ctx.frozen_reason}): nothing new is opened")
    if ctx.draining and (ctx.ledger is None or ctx.ledger.leg(leader.order_id) is None):
        return NoAction("drained follower: nothing new is opened")
    leader_qty = leader.filled_qty if catch_up else leader.quantity
    if ctx.lot_size <= 0 and not _is_one_to_one(rules):
        # Sizing a derivative without its lot size could send a quantity Dhan rejects.
        return Skip(
            SkipCode.UNKNOWN_LOT,
            f"lot size of {leader.segment.value} {leader.security_id} unknown; "
            "add it to the instruments file to size this follower",
        )
    quantity, reason = _sized_total(leader, rules, ctx, leader_qty)
    if quantity <= 0:
        return Skip(SkipCode.SIZED_TO_ZERO, reason)
    if not ctx.market_open and not leader.amo:
        return Skip(SkipCode.MARKET_CLOSED, ctx.market_reason or "market closed")
    params = desired_params(leader, rules.name, quantity, ctx.lot_size, generation=0)
    return Place(params, catch_up=catch_up)


def _in_ledger(leader: OrderSnapshot, ctx: DecisionContext) -> bool:
    return ctx.ledger is not None and ctx.ledger.leg(leader.order_id) is not None


def _sized_total(
    leader: OrderSnapshot, rules: FollowerRules, ctx: DecisionContext, leader_qty: int
) -> tuple[int, str]:
    """The copy's total quantity and how it was reached: from the follower's position
    ledger when it holds the order (position-true), else the order sized alone."""
    ledger = ctx.ledger
    if ledger is not None and ledger.leg(leader.order_id) is not None:
        quantity = copy_order_total(ledger, leader.order_id)
        if ctx.draining and quantity.opening:
            closing = max(quantity.total - quantity.opening, 0)
            return closing, quantity.reason + "; drained follower: nothing is opened"
        return quantity.total, quantity.reason
    sized = size_order(
        rules.sizing,
        rules.bounds,
        leader_qty=leader_qty,
        lot_size=ctx.lot_size,
        capital_ratio=ctx.capital_ratio,
    )
    return sized.quantity, sized.reason


def _decide_replacement(
    leader: OrderSnapshot, mirror: MirrorRecord, rules: FollowerRules, ctx: DecisionContext
) -> Decision:
    if not leader.is_open:
        return NoAction("leader order ended before the rest was re-placed")
    if not ctx.armed:
        return NoAction("killed: the rest is not re-placed")
    if ctx.frozen:
        return NoAction(f"frozen ({ctx.frozen_reason}): the rest is re-placed once it clears")
    if ctx.draining:
        return NoAction("drained follower: the rest is not re-placed")
    total, _ = _sized_total(leader, rules, ctx, leader.quantity)
    rest = target_total(total, mirror.total_filled) - mirror.total_filled
    if rest <= 0:
        return NoAction("nothing left to re-place")
    return Place(
        desired_params(leader, rules.name, rest, ctx.lot_size, mirror.generation),
        generation=mirror.generation,
    )


def _decide_after_skip(
    leader: OrderSnapshot, mirror: MirrorRecord, rules: FollowerRules, ctx: DecisionContext
) -> Decision:
    """A skip is reconsidered on every new leader state (the leader may have resized the
    order, the market may have opened), except a skip because the engine was killed: resume
    copies new orders, it does not replay what arrived while killed."""
    if mirror.skip_code == SkipCode.KILLED.value:
        return NoAction("arrived while the engine was killed")
    again = _decide_first_copy(leader, rules, ctx)
    if isinstance(again, Place):
        return again
    return NoAction(f"still not copied: {mirror.reason}")


def _decide_top_up(
    leader: OrderSnapshot, mirror: MirrorRecord, rules: FollowerRules, ctx: DecisionContext
) -> Decision:
    """The follower's copy is filled, but the leader's order implies more (it was enlarged):
    the rest goes out as the copy's next generation, under a new correlationId."""
    if not ctx.armed or ctx.frozen or ctx.draining or leader.status is OrderStatus.TRANSIT:
        return NoAction("follower copy filled")
    leader_qty = leader.quantity if leader.is_open else leader.filled_qty
    if leader_qty <= 0 or ctx.lot_size <= 0:
        return NoAction("follower copy filled")
    sized, _ = _sized_total(leader, rules, ctx, leader_qty)
    rest = sized - mirror.total_filled
    if rest <= 0:
        return NoAction("follower copy filled")
    generation = mirror.generation + 1
    return Place(
        desired_params(leader, rules.name, rest, ctx.lot_size, generation),
        catch_up=not leader.is_open,
        generation=generation,
    )


def _decide_after_leader_ended(
    leader: OrderSnapshot, mirror: MirrorRecord, rules: FollowerRules, ctx: DecisionContext
) -> Decision:
    """The leader's order is over. The follower keeps what the leader's *fills* imply: its
    order works on (or is resized) until it has its share of them, and the rest is cancelled.
    """
    assert mirror.params is not None
    ended = f"leader order {leader.status.value.lower()}"
    if leader.filled_qty <= 0:
        return Cancel(mirror.follower_order_id, ended)
    target, _ = _sized_total(leader, rules, ctx, leader.filled_qty)
    if mirror.total_filled >= target:
        return Cancel(
            mirror.follower_order_id,
            (POSITION_CANCEL if _in_ledger(leader, ctx) else "")
            + f"{ended} after {leader.filled_qty} filled; the follower has its share",
        )
    order_qty = target - mirror.prior_filled
    wanted = desired_params(leader, rules.name, order_qty, ctx.lot_size, mirror.generation)
    changed = _changed_fields(mirror.params, wanted)
    if not changed:
        return NoAction(f"{ended}; the follower's order works on for its share of the fills")
    if mirror.modifications >= ctx.max_modifications:
        return Cancel(mirror.follower_order_id, "modification budget used", replace=True)
    return Modify(mirror.follower_order_id, wanted, changed)


def _decide_follow_changes(
    leader: OrderSnapshot, mirror: MirrorRecord, rules: FollowerRules, ctx: DecisionContext
) -> Decision:
    assert mirror.params is not None  # a LIVE mirror always carries what was requested
    sized, _ = _sized_total(leader, rules, ctx, leader.quantity)
    if sized <= 0 and ctx.capital_ratio is None and rules.sizing.kind == "capital_ratio":
        return NoAction("fund limits unknown; keeping the follower order as it is")
    # Exposure parity: the follower's copy is for what the leader's total implies, never
    # below what the follower already filled (Dhan's modify takes the total quantity). Fills
    # of earlier generations (cancelled and re-placed) count towards it.
    filled = mirror.total_filled
    total = target_total(sized, filled)
    if total <= filled:
        if _in_ledger(leader, ctx):
            return Cancel(
                mirror.follower_order_id,
                f"{POSITION_CANCEL}the follower's position needs no more from this copy now",
            )
        return Cancel(
            mirror.follower_order_id, "leader reduced the order to what is already filled"
        )
    order_qty = total - mirror.prior_filled
    wanted = desired_params(leader, rules.name, order_qty, ctx.lot_size, mirror.generation)
    changed = _changed_fields(mirror.params, wanted)
    if not changed:
        return NoAction("follower order already matches the leader")
    if mirror.modifications >= ctx.max_modifications:
        return Cancel(
            mirror.follower_order_id,
            f"modification budget used ({mirror.modifications} of {ctx.max_modifications}): "
            "cancelling to re-place the rest as a new order",
            replace=True,
        )
    return Modify(mirror.follower_order_id, wanted, changed)


def _is_one_to_one(rules: FollowerRules) -> bool:
    sizing = rules.sizing
    return sizing.kind == "multiplier" and getattr(sizing, "multiplier", 0) == 1.0


def desired_params(
    leader: OrderSnapshot, follower: str, quantity: int, lot_size: int, generation: int
) -> OrderParams:
    """The follower's order as the leader's order implies it: every parameter copied."""
    price = leader.price if leader.order_type in (OrderType.LIMIT, OrderType.STOP_LOSS) else 0.0
    trigger = (
        leader.trigger_price
        if leader.order_type in (OrderType.STOP_LOSS, OrderType.STOP_LOSS_MARKET)
        else 0.0
    )
    return OrderParams(
        side=leader.side,
        order_type=leader.order_type,
        product=leader.product,
        validity=leader.validity,
        segment=leader.segment,
        security_id=leader.security_id,
        quantity=quantity,
        price=price,
        trigger_price=trigger,
        disclosed_qty=scale_disclosed(leader.disclosed_qty, leader.quantity, quantity, lot_size),
        amo=leader.amo,
        amo_time=leader.amo_time,
        correlation_id=correlation_id(leader.order_id, follower, generation),
    )


def _changed_fields(current: OrderParams, wanted: OrderParams) -> tuple[str, ...]:
    changed: list[str] = []
    for name in _COMPARED_FIELDS:
        a, b = getattr(current, name), getattr(wanted, name)
        if isinstance(a, float) and isinstance(b, float):
            if abs(a - b) > PRICE_EPSILON:
                changed.append(name)
        elif a != b:
            changed.append(name)
    return tuple(changed)
