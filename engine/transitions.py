"""How the engine's records change: named, pure transitions.

Each function takes a record and what happened, and returns the new record; none touches a
clock, a store or a broker (the time is passed in). The engine changes a follower-order record
(`MirrorRecord`) only through these, and the property tests drive the same functions, so what
the tests prove is what the engine does.

A follower order's life: `placed` (PLACING) -> `acknowledged` (LIVE, or DONE when Dhan's answer
is already terminal) -> `follower_update` (fills, status; DONE once terminal) ... and on the
way `refused` (FAILED: no order at Dhan), `modification_refused` (still LIVE: the order rests
as it was), `modified`, `cancelled` (DONE),
`regenerated` (REPLACING: cancelled to be re-placed as the next generation), `unsent` (the
placement never reached Dhan), `skipped` and `killed_before_send` (SKIPPED), and
`ended_with_the_day` (DONE: its trading day is over, so Dhan has expired it).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from engine.domain import (
    MirrorState,
    OrderParams,
    OrderSnapshot,
    OrderStatus,
    Side,
    SnapshotSource,
)
from engine.records import Intent, MirrorRecord, SliceState

KILLED_SKIP_CODE = "ENGINE_KILLED"  # engine.replication.replicator.SkipCode.KILLED


# --- the leader's orders --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LeaderUpdate:
    """What one leader snapshot does to what we know of that order."""

    snapshot: OrderSnapshot | None  # the new state to keep; None when nothing changes
    stale: bool = False  # behind what we know: refused
    tie: bool = False  # same progress as what we know, different content


def leader_update(known: OrderSnapshot | None, snap: OrderSnapshot) -> LeaderUpdate:
    """A snapshot behind what we know is refused; on a tie the later arrival wins (the caller
    settles a tie between socket alerts by a fresh read from Dhan's REST API)."""
    if known is None:
        return LeaderUpdate(snap)
    if snap.progress_key() < known.progress_key():
        return LeaderUpdate(None, stale=True)
    tie = snap.progress_key() == known.progress_key()
    merged = merge_snapshot(known, snap)
    if merged == known.with_changes(source=merged.source):
        return LeaderUpdate(None)
    return LeaderUpdate(merged, tie=tie and merged.source is SnapshotSource.STREAM)


def merge_snapshot(known: OrderSnapshot, new: OrderSnapshot) -> OrderSnapshot:
    """The REST dialect lacks a few socket fields (lot size, symbol); keep what we knew."""
    return new.with_changes(
        lot_size=new.lot_size or known.lot_size,
        trading_symbol=new.trading_symbol or known.trading_symbol,
        created_at=new.created_at or known.created_at,
        amo_time=new.amo_time or known.amo_time,
    )


# --- a follower's copy of a leader order ----------------------------------------------------


def skipped(
    follower: str, leader: OrderSnapshot, reason: str, code: str, now: datetime | None
) -> MirrorRecord:
    """Not copied (filtered, sized to zero, market closed, risk...): said once, kept."""
    return MirrorRecord(
        follower=follower,
        leader_order_id=leader.order_id,
        correlation_id=f"skip-{leader.order_id}",
        state=MirrorState.SKIPPED,
        reason=reason,
        skip_code=code,
        symbol=leader.trading_symbol,
        updated_at=now,
    )


def is_repeat_skip(earlier: MirrorRecord | None, reason: str) -> bool:
    """Reconsidered and still skipped for the same reason: nothing new to record."""
    return earlier is not None and earlier.state is MirrorState.SKIPPED and earlier.reason == reason


def placed(
    earlier: MirrorRecord | None,
    follower: str,
    leader: OrderSnapshot,
    params: OrderParams,
    correlation_id: str,
    generation: int,
    seen_mono: float | None,
    now: datetime | None,
) -> MirrorRecord:
    """A placement about to be sent (PLACING). The next generation of a copy (re-placed, or
    topped up after it filled) keeps what the earlier orders filled."""
    if generation > 0 and earlier is not None:
        return earlier.with_changes(
            correlation_id=correlation_id,
            state=MirrorState.PLACING,
            generation=generation,
            params=params,
            prior_filled=earlier.total_filled,
            filled_qty=0,
            avg_price=0.0,
            modifications=0,
            follower_order_id="",
            broker_status=None,
            leader_seen_mono=None,
            latency_ms=None,
            updated_at=now,
        )
    return MirrorRecord(
        follower=follower,
        leader_order_id=leader.order_id,
        correlation_id=correlation_id,
        state=MirrorState.PLACING,
        params=params,
        symbol=leader.trading_symbol,
        leader_seen_mono=seen_mono,
        updated_at=now,
    )


def unsent(rec: MirrorRecord) -> MirrorRecord | None:
    """A placement that never reached Dhan: None to decide again from scratch (same
    correlationId); a re-placement keeps what earlier generations filled."""
    if rec.generation > 0:
        return rec.with_changes(state=MirrorState.REPLACING, follower_order_id="")
    return None


def killed_before_send(rec: MirrorRecord) -> MirrorRecord:
    return rec.with_changes(
        state=MirrorState.SKIPPED,
        reason="engine killed before the order was sent",
        skip_code=KILLED_SKIP_CODE,
    )


def acknowledged(
    current: MirrorRecord,
    order_id: str,
    status: OrderStatus | None,
    latency_ms: float | None,
    now: datetime | None,
) -> MirrorRecord:
    """Dhan took the placement. A status already seen on the follower's stream wins over the
    one in the answer (the stream can be faster than the REST reply)."""
    status = current.broker_status or status
    return current.with_changes(
        state=MirrorState.DONE if status is not None and status.is_terminal else MirrorState.LIVE,
        follower_order_id=order_id or current.follower_order_id,
        broker_status=status,
        latency_ms=latency_ms,
        updated_at=now,
    )


def found_at_broker(current: MirrorRecord, found: OrderSnapshot) -> MirrorRecord:
    """An unclear placement, looked up by its correlationId: it is at Dhan."""
    return current.with_changes(
        state=MirrorState.LIVE if found.is_open else MirrorState.DONE,
        follower_order_id=found.order_id,
        broker_status=found.status,
    )


def found_after_restart(
    current: MirrorRecord | None, intent: Intent, found: OrderSnapshot
) -> MirrorRecord:
    """A placement whose answer the previous process never recorded, found at Dhan."""
    base = current or MirrorRecord(
        intent.follower,
        intent.leader_order_id,
        intent.correlation_id,
        MirrorState.LIVE,
        params=intent.params,
    )
    return found_at_broker(base, found).with_changes(
        filled_qty=found.filled_qty, avg_price=found.avg_price
    )


def awaiting_answer(current: MirrorRecord | None, intent: Intent) -> MirrorRecord:
    """A placement whose existence at Dhan is not settled yet (after a restart): held as in
    flight (PLACING), so nothing is sent for it until Dhan shows it or shows its absence."""
    base = current or MirrorRecord(
        intent.follower,
        intent.leader_order_id,
        intent.correlation_id,
        MirrorState.PLACING,
        params=intent.params,
    )
    return base.with_changes(state=MirrorState.PLACING, correlation_id=intent.correlation_id)


def refused(current: MirrorRecord, reason: str, now: datetime | None) -> MirrorRecord:
    """Dhan refused the placement definitively."""
    return current.with_changes(state=MirrorState.FAILED, reason=reason, updated_at=now)


MODIFY_REFUSED_PREFIX = "modify refused: "


def modified(current: MirrorRecord, params: OrderParams, now: datetime | None) -> MirrorRecord:
    """Dhan took a modification: an earlier refusal no longer describes the copy."""
    refusal_cleared = current.reason.startswith(MODIFY_REFUSED_PREFIX)
    return current.with_changes(
        params=params,
        modifications=current.modifications + 1,
        updated_at=now,
        refused_params=None,
        reason="" if refusal_cleared else current.reason,
    )


def carries(at_dhan: OrderSnapshot, sent: OrderParams) -> bool:
    """Does the order at Dhan carry the quantity, price and trigger of a request we sent?"""
    return (
        at_dhan.quantity == sent.quantity
        and (sent.price <= 0 or abs(at_dhan.price - sent.price) < 0.005)
        and (sent.trigger_price <= 0 or abs(at_dhan.trigger_price - sent.trigger_price) < 0.005)
    )


def modified_before_restart(
    current: MirrorRecord, sent: OrderParams, now: datetime | None
) -> MirrorRecord:
    """A modification the previous process sent and never heard back from, which the order at
    Dhan shows applied: the copy now carries what was sent (its quantity, price and trigger;
    the rest of its params as recorded, which the request may have put in Dhan's terms)."""
    if current.params is None:
        return modified(current, sent, now)
    applied = replace(
        current.params,
        quantity=sent.quantity,
        price=sent.price,
        trigger_price=sent.trigger_price,
    )
    return modified(current, applied, now)


def view_was_behind(before: MirrorRecord, after: MirrorRecord) -> bool:
    """A refusal explained by what the follower's order did meanwhile (it filled, closed):
    decide again on the fresh state rather than give up on the copy. A status only learnt
    since (none yet -> PENDING) explains nothing."""
    closed = after.broker_status is not None and after.broker_status.is_terminal
    return after.filled_qty != before.filled_qty or (
        closed and after.broker_status is not before.broker_status
    )


def modification_refused(
    before: MirrorRecord, after: MirrorRecord, message: str, requested: OrderParams
) -> MirrorRecord | None:
    """Dhan refused a modification; `after` is the order as read back since. None when the
    refusal needs no new state (our view was behind, or the order is no longer open).

    The order rests at Dhan as it was, so the copy stays open: the leader's cancel, its later
    changes and the kill switch still reach it. Only this request is not made again."""
    if view_was_behind(before, after) or not after.is_open_at_broker:
        return None
    return after.with_changes(reason=f"{MODIFY_REFUSED_PREFIX}{message}", refused_params=requested)


def cancelled(current: MirrorRecord, reason: str, now: datetime | None) -> MirrorRecord:
    return current.with_changes(
        state=MirrorState.DONE,
        broker_status=OrderStatus.CANCELLED,
        reason=reason,
        updated_at=now,
    )


def ended_with_the_day(current: MirrorRecord, reason: str, now: datetime | None) -> MirrorRecord:
    """A copy whose trading day has ended (engine.replication.day_end): whatever of it was
    still open at Dhan expired at the close. Its fills stay as last known."""
    slices = tuple(
        replace(s, status=OrderStatus.EXPIRED) if s.is_open else s for s in current.slices
    )
    return current.with_changes(
        state=MirrorState.DONE,
        broker_status=OrderStatus.EXPIRED,
        slices=slices,
        reason=reason,
        updated_at=now,
    )


def regenerated(cancelled_copy: MirrorRecord, final_filled: int) -> MirrorRecord:
    """Cancelled to be re-placed: the next generation, counting what the old order filled
    (`final_filled`, read back from Dhan after the cancel)."""
    return cancelled_copy.with_changes(
        generation=cancelled_copy.generation + 1,
        prior_filled=cancelled_copy.prior_filled + final_filled,
        filled_qty=0,
        avg_price=0.0,
        modifications=0,
        follower_order_id="",
        broker_status=None,
        state=MirrorState.REPLACING,
        refused_params=None,  # a refusal of the old order's modification, not the new one's
    )


def tracks(mirror: MirrorRecord | None, snap: OrderSnapshot) -> bool:
    """Does this follower order update belong to the copy's current generation? (Not to an
    earlier one, cancelled to re-place or filled.)"""
    return (
        mirror is not None
        and mirror.correlation_id == snap.correlation_id
        and mirror.state is not MirrorState.REPLACING
    )


def follower_update_applies(
    mirror: MirrorRecord | None, snap: OrderSnapshot, known_key: tuple[int, int, float] | None
) -> bool:
    """Does this follower order update move the copy on? Not when it belongs to an earlier
    generation, nor when it is behind an update of that order already taken."""
    return tracks(mirror, snap) and (known_key is None or snap.progress_key() >= known_key)


def slippage_of(
    mirror: MirrorRecord, snap: OrderSnapshot, leader: OrderSnapshot | None
) -> float | None:
    """Price paid against the leader's average, signed so that positive is worse."""
    if snap.filled_qty and leader is not None and leader.avg_price and snap.avg_price:
        diff = snap.avg_price - leader.avg_price
        return diff if leader.side is Side.BUY else -diff
    return mirror.slippage


def shown_despite_refusal(mirror: MirrorRecord, snap: OrderSnapshot) -> bool:
    """A copy recorded FAILED that Dhan shows as an order it took: whatever the answer to its
    request said, it exists (existence at Dhan is settled by what Dhan shows, never by an
    error code), and from now on it follows the leader like any copy."""
    return mirror.state is MirrorState.FAILED and snap.status is not OrderStatus.REJECTED


def follower_update(
    mirror: MirrorRecord,
    snap: OrderSnapshot,
    leader: OrderSnapshot | None,
    now: datetime | None,
) -> MirrorRecord:
    """The follower's own order, as Dhan reports it (fills, status, rejection reason)."""
    if mirror.slices or (mirror.follower_order_id and snap.order_id != mirror.follower_order_id):
        return _slice_update(mirror, snap, leader, now)
    state = mirror.state
    if shown_despite_refusal(mirror, snap):
        state = MirrorState.LIVE
    if state is MirrorState.LIVE and snap.status.is_terminal:
        state = MirrorState.DONE
    return mirror.with_changes(
        follower_order_id=mirror.follower_order_id or snap.order_id,
        broker_status=snap.status,
        filled_qty=snap.filled_qty,
        avg_price=snap.avg_price,
        slippage=slippage_of(mirror, snap, leader),
        state=state,
        reason=snap.reason if snap.status is OrderStatus.REJECTED else mirror.reason,
        updated_at=now,
    )


def managed_by_hand(
    current: MirrorRecord, at_dhan: OrderSnapshot, now: datetime | None
) -> MirrorRecord:
    """The copy was changed by hand at Dhan: from now on it is shown as it is there and the
    engine never modifies it again (the leader's cancel still cancels it)."""
    sent = current.params
    changes: list[str] = []
    params = sent
    if sent is not None:
        for name, value in (
            ("quantity", at_dhan.quantity),
            ("price", at_dhan.price),
            ("trigger_price", at_dhan.trigger_price),
        ):
            if getattr(sent, name) != value and (name == "quantity" or value > 0):
                changes.append(f"{name} {getattr(sent, name)} -> {value}")
        params = replace(
            sent,
            quantity=at_dhan.quantity,
            price=at_dhan.price or sent.price,
            trigger_price=at_dhan.trigger_price or sent.trigger_price,
        )
    return current.with_changes(
        params=params,
        by_hand=True,
        reason="changed by hand at Dhan" + (f" ({', '.join(changes)})" if changes else ""),
        updated_at=now,
    )


def detached(current: MirrorRecord, now: datetime | None) -> MirrorRecord:
    """The trader takes the copy over: the engine no longer touches it at all."""
    return current.with_changes(
        by_hand=True, detached=True, reason="detached: managed by the trader", updated_at=now
    )


def hand_flags_restored(rec: MirrorRecord, is_detached: bool, reason: str) -> MirrorRecord:
    """At start: a copy the store remembers as managed by hand (or detached) stays so."""
    return rec.with_changes(by_hand=True, detached=is_detached, reason=reason or rec.reason)


# --- copies made of several orders (sliced above the freeze quantity) -----------------------


def _slices_so_far(rec: MirrorRecord) -> dict[str, SliceState]:
    """The copy's slices; a copy seen as one order so far counts that order as its first."""
    if rec.slices:
        return {s.order_id: s for s in rec.slices}
    if rec.follower_order_id:
        first = SliceState(
            rec.follower_order_id, 0, rec.filled_qty, rec.avg_price, rec.broker_status
        )
        return {first.order_id: first}
    return {}


def _slices_status(slices: tuple[SliceState, ...]) -> OrderStatus:
    filled = sum(s.filled_qty for s in slices)
    if any(s.is_open for s in slices):
        return OrderStatus.PART_TRADED if filled else OrderStatus.PENDING
    statuses = {s.status for s in slices}
    if statuses == {OrderStatus.TRADED}:
        return OrderStatus.TRADED
    if statuses == {OrderStatus.REJECTED}:
        return OrderStatus.REJECTED
    return OrderStatus.CANCELLED  # some cancelled (or expired, rejected): like one such order


def _summed(rec: MirrorRecord, slices: tuple[SliceState, ...]) -> MirrorRecord:
    """The copy's fills and status as the sum of its slices."""
    filled = sum(s.filled_qty for s in slices)
    value = sum(s.filled_qty * s.avg_price for s in slices)
    status = _slices_status(slices)
    state = rec.state
    if state in (MirrorState.LIVE, MirrorState.DONE):
        state = MirrorState.DONE if status.is_terminal else MirrorState.LIVE
    return rec.with_changes(
        slices=slices,
        follower_order_id=rec.follower_order_id or slices[0].order_id,
        filled_qty=filled,
        avg_price=value / filled if filled else 0.0,
        broker_status=status,
        state=state,
    )


def with_slices(current: MirrorRecord, order_ids: tuple[str, ...]) -> MirrorRecord:
    """Dhan took the placement as several orders (sliced): each is tracked; what the stream
    already said of one is kept."""
    known = _slices_so_far(current)
    slices = tuple(known.get(oid, SliceState(oid)) for oid in order_ids) + tuple(
        s for oid, s in known.items() if oid not in order_ids
    )
    return _summed(current.with_changes(follower_order_id=order_ids[0]), slices)


def _slice_update(
    mirror: MirrorRecord, snap: OrderSnapshot, leader: OrderSnapshot | None, now: datetime | None
) -> MirrorRecord:
    slices = _slices_so_far(mirror)
    slices[snap.order_id] = SliceState(
        snap.order_id, snap.quantity, snap.filled_qty, snap.avg_price, snap.status
    )
    summed = _summed(mirror, tuple(slices.values()))
    return summed.with_changes(
        slippage=slippage_of(mirror, snap, leader),
        reason=snap.reason if snap.status is OrderStatus.REJECTED else mirror.reason,
        updated_at=now,
    )


def split_over_slices(
    slices: tuple[SliceState, ...], total: int, freeze_qty: int
) -> dict[str, int] | None:
    """New quantities of the open slices so the copy totals ``total``: a reduction comes off
    the last slices (never below what each filled), an increase goes to the first with room
    under the freeze quantity. None when it cannot be spread (or a slice's size is unknown)."""
    open_slices = [s for s in slices if s.is_open]
    if not open_slices or any(s.quantity <= 0 for s in open_slices):
        return None
    closed = sum(s.filled_qty for s in slices if not s.is_open)
    new = {s.order_id: s.quantity for s in open_slices}
    delta = total - closed - sum(new.values())
    for s in reversed(open_slices) if delta < 0 else open_slices:
        if delta == 0:
            break
        if delta < 0:
            cut = min(-delta, new[s.order_id] - max(s.filled_qty, 1))
            new[s.order_id] -= max(cut, 0)
            delta += max(cut, 0)
        else:
            room = min(delta, freeze_qty - new[s.order_id])
            new[s.order_id] += max(room, 0)
            delta -= max(room, 0)
    return new if delta == 0 else None


def slices_modified(current: MirrorRecord, quantities: dict[str, int]) -> MirrorRecord:
    """The slices' new quantities after a modification of the whole copy."""
    return current.with_changes(
        slices=tuple(
            replace(s, quantity=quantities.get(s.order_id, s.quantity)) for s in current.slices
        )
    )


def restored(rec: MirrorRecord) -> MirrorRecord:
    """Read back from the store at start: a monotonic time of a past process means nothing."""
    return rec.with_changes(leader_seen_mono=None)
