"""The follower-order record's named transitions and the leader-snapshot rule."""

from __future__ import annotations

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
from engine.records import Intent, IntentKind, MirrorRecord
from engine.transitions import (
    acknowledged,
    cancelled,
    follower_update,
    follower_update_applies,
    found_after_restart,
    is_repeat_skip,
    killed_before_send,
    leader_update,
    modification_refused,
    modified,
    placed,
    refused,
    regenerated,
    skipped,
    unsent,
    view_was_behind,
)

T0 = IST.localize(datetime(2026, 11, 23, 10, 0, 0))


def leader(**changes: object) -> OrderSnapshot:
    snap = OrderSnapshot(
        order_id="L1",
        client_id="1000000001",
        status=OrderStatus.PENDING,
        side=Side.BUY,
        order_type=OrderType.LIMIT,
        product=Product.INTRADAY,
        validity=Validity.DAY,
        segment=Segment.NSE_FNO,
        security_id="48201",
        quantity=50,
        price=100.0,
        lot_size=25,
        trading_symbol="NIFTY CE",
        updated_at=T0,
    )
    return snap.with_changes(**changes)


def params(qty: int = 50, cid: str = "CPY-1") -> OrderParams:
    return OrderParams(
        side=Side.BUY,
        order_type=OrderType.LIMIT,
        product=Product.INTRADAY,
        validity=Validity.DAY,
        segment=Segment.NSE_FNO,
        security_id="48201",
        quantity=qty,
        price=100.0,
        correlation_id=cid,
    )


def follower_order(**changes: object) -> OrderSnapshot:
    return leader(order_id="F1", client_id="2", correlation_id="CPY-1").with_changes(**changes)


def live_copy() -> MirrorRecord:
    rec = placed(None, "alpha", leader(), params(), "CPY-1", 0, 5.0, T0)
    return acknowledged(rec, "F1", OrderStatus.PENDING, 1.5, T0)


def test_a_stale_leader_snapshot_is_refused_and_a_newer_one_kept() -> None:
    known = leader(filled_qty=25, status=OrderStatus.PART_TRADED)
    assert leader_update(known, leader()).stale
    newer = leader(filled_qty=50, status=OrderStatus.TRADED, trading_symbol="")
    update = leader_update(known, newer)
    assert update.snapshot is not None
    assert update.snapshot.trading_symbol == "NIFTY CE"  # kept from what we knew
    assert (
        leader_update(known, known.with_changes(source=SnapshotSource.ORDER_BOOK)).snapshot is None
    )


def test_a_tie_on_the_socket_asks_for_confirmation() -> None:
    known = leader()
    edited = leader(price=101.0)
    assert leader_update(known, edited).tie
    assert not leader_update(known, edited.with_changes(source=SnapshotSource.ORDER_BOOK)).tie


def test_placed_then_acknowledged_is_live_with_the_order_id() -> None:
    rec = placed(None, "alpha", leader(), params(), "CPY-1", 0, 5.0, T0)
    assert (rec.state, rec.leader_seen_mono, rec.symbol) == (MirrorState.PLACING, 5.0, "NIFTY CE")
    live = acknowledged(rec, "F1", OrderStatus.PENDING, 1.5, T0)
    assert (live.state, live.follower_order_id, live.latency_ms) == (MirrorState.LIVE, "F1", 1.5)


def test_a_status_seen_on_the_stream_wins_over_the_answer() -> None:
    rec = placed(None, "alpha", leader(), params(), "CPY-1", 0, None, T0)
    rec = follower_update(rec, follower_order(status=OrderStatus.TRADED, filled_qty=50), None, T0)
    done = acknowledged(rec, "F1", OrderStatus.PENDING, None, T0)
    assert (done.state, done.broker_status) == (MirrorState.DONE, OrderStatus.TRADED)


def test_the_next_generation_keeps_what_earlier_orders_filled() -> None:
    rec = follower_update(
        live_copy(), follower_order(status=OrderStatus.PART_TRADED, filled_qty=25), None, T0
    )
    done = cancelled(rec, "budget used", T0)
    assert (done.state, done.broker_status) == (MirrorState.DONE, OrderStatus.CANCELLED)
    regen = regenerated(done, final_filled=25)
    assert (regen.state, regen.generation, regen.prior_filled, regen.filled_qty) == (
        MirrorState.REPLACING,
        1,
        25,
        0,
    )
    nxt = placed(regen, "alpha", leader(), params(25, "CPY-1-1"), "CPY-1-1", 1, None, T0)
    assert (nxt.state, nxt.prior_filled, nxt.correlation_id) == (
        MirrorState.PLACING,
        25,
        "CPY-1-1",
    )
    assert unsent(nxt) == nxt.with_changes(state=MirrorState.REPLACING, follower_order_id="")
    assert unsent(placed(None, "alpha", leader(), params(), "CPY-1", 0, None, T0)) is None


def test_follower_updates_of_an_earlier_generation_or_behind_are_not_applied() -> None:
    rec = live_copy()
    snap = follower_order(status=OrderStatus.PART_TRADED, filled_qty=25, updated_at=T0)
    assert follower_update_applies(rec, snap, None)
    assert not follower_update_applies(rec, snap, snap.with_changes(filled_qty=50).progress_key())
    assert not follower_update_applies(rec, snap.with_changes(correlation_id="CPY-0"), None)
    assert not follower_update_applies(regenerated(rec, 0), snap, None)


def test_follower_fill_and_slippage() -> None:
    filled_leader = leader(status=OrderStatus.TRADED, filled_qty=50, avg_price=100.0)
    snap = follower_order(status=OrderStatus.TRADED, filled_qty=50, avg_price=100.5)
    done = follower_update(live_copy(), snap, filled_leader, T0 + timedelta(seconds=1))
    assert (done.state, done.total_filled, done.slippage) == (MirrorState.DONE, 50, 0.5)


def test_refusals() -> None:
    rec = live_copy()
    assert refused(rec, "DH-906 margin", T0).state is MirrorState.FAILED
    enlarged = params(150)
    refusal = modification_refused(rec, rec, "no margin", enlarged)
    # The order rests at Dhan as it was: still open, its refused request remembered.
    assert refusal is not None and refusal.reason == "modify refused: no margin"
    assert refusal.state is MirrorState.LIVE and refusal.is_open_at_broker
    assert refusal.refused_params == enlarged and refusal.params == rec.params
    # A later modification Dhan takes clears the refusal (and only its reason).
    taken = modified(refusal, params(100), T0)
    assert (taken.refused_params, taken.reason) == (None, "")
    assert modified(rec.with_changes(reason="other"), params(75), T0).reason == "other"
    filled = follower_update(
        rec, follower_order(status=OrderStatus.PART_TRADED, filled_qty=25), None, T0
    )
    assert (
        modification_refused(rec, filled, "qty below filled", enlarged) is None
    )  # our view was behind
    assert modified(rec, params(75), T0).modifications == 1


def test_a_refusal_is_explained_by_a_fill_or_a_close_not_by_a_status_learnt_since() -> None:
    rec = live_copy().with_changes(broker_status=None)
    assert not view_was_behind(rec, rec.with_changes(broker_status=OrderStatus.PENDING))
    assert view_was_behind(rec, rec.with_changes(filled_qty=25))
    assert view_was_behind(rec, rec.with_changes(broker_status=OrderStatus.CANCELLED))


def test_a_refused_placement_dhan_shows_is_a_copy_again() -> None:
    placing = placed(None, "alpha", leader(), params(), "CPY-1", 0, 5.0, T0)
    failed = refused(placing, "DH-906 refused", T0)
    shown = follower_update(failed, follower_order(status=OrderStatus.PENDING), None, T0)
    assert (shown.state, shown.follower_order_id) == (MirrorState.LIVE, "F1")
    assert shown.is_open_at_broker
    filled = follower_update(
        failed, follower_order(status=OrderStatus.TRADED, filled_qty=50), None, T0
    )
    assert (filled.state, filled.total_filled) == (MirrorState.DONE, 50)
    # A refusal Dhan shows as a REJECTED order is consistent: the copy stays failed.
    rejected = follower_update(failed, follower_order(status=OrderStatus.REJECTED), None, T0)
    assert rejected.state is MirrorState.FAILED and not rejected.is_open_at_broker


def test_skips_and_kill() -> None:
    rec = skipped("alpha", leader(), "filtered", "FILTERED", T0)
    assert (rec.state, rec.correlation_id) == (MirrorState.SKIPPED, "skip-L1")
    assert is_repeat_skip(rec, "filtered") and not is_repeat_skip(rec, "other")
    killed = killed_before_send(placed(None, "alpha", leader(), params(), "CPY-1", 0, None, T0))
    assert (killed.state, killed.skip_code) == (MirrorState.SKIPPED, "ENGINE_KILLED")


def test_a_placement_found_after_restart() -> None:
    intent = Intent("alpha", "L1", IntentKind.PLACE, "CPY-1", params())
    found = follower_order(status=OrderStatus.PART_TRADED, filled_qty=25, avg_price=100.0)
    rec = found_after_restart(None, intent, found)
    assert (rec.state, rec.follower_order_id, rec.filled_qty) == (MirrorState.LIVE, "F1", 25)
