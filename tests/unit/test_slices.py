"""A copy made of several orders (sliced above the freeze quantity): its fills and status are
the sum of its slices, and a new total is spread over the open ones."""

from __future__ import annotations

from engine.domain import (
    MirrorState,
    OrderParams,
    OrderSnapshot,
    OrderStatus,
    OrderType,
    Product,
    Segment,
    Side,
    Validity,
)
from engine.records import MirrorRecord, SliceState
from engine.transitions import follower_update, split_over_slices, with_slices

PARAMS = OrderParams(
    Side.BUY, OrderType.LIMIT, Product.INTRADAY, Validity.DAY, Segment.NSE_FNO, "48211", 3510
)


def update(order_id: str, qty: int, filled: int, status: OrderStatus) -> OrderSnapshot:
    return OrderSnapshot(
        order_id=order_id,
        client_id="F",
        correlation_id="CPY-X-0",
        status=status,
        side=Side.BUY,
        order_type=OrderType.LIMIT,
        product=Product.INTRADAY,
        validity=Validity.DAY,
        segment=Segment.NSE_FNO,
        security_id="48211",
        quantity=qty,
        price=100.0,
        filled_qty=filled,
        avg_price=100.0 if filled else 0.0,
    )


def copy() -> MirrorRecord:
    live = MirrorRecord("beta", "L1", "CPY-X-0", MirrorState.LIVE, params=PARAMS)
    return with_slices(live, ("S1", "S2"))


def test_fills_and_status_are_the_sum_of_the_slices() -> None:
    rec = copy()
    assert rec.follower_order_id == "S1" and [s.order_id for s in rec.slices] == ["S1", "S2"]
    rec = follower_update(rec, update("S1", 1755, 1755, OrderStatus.TRADED), None, None)
    assert rec.filled_qty == 1755 and rec.broker_status is OrderStatus.PART_TRADED
    assert rec.state is MirrorState.LIVE
    rec = follower_update(rec, update("S2", 1755, 1755, OrderStatus.TRADED), None, None)
    assert rec.filled_qty == 3510 and rec.broker_status is OrderStatus.TRADED
    assert rec.state is MirrorState.DONE


def test_cancelled_slices_end_the_copy_cancelled_keeping_what_filled() -> None:
    rec = follower_update(copy(), update("S1", 1755, 65, OrderStatus.CANCELLED), None, None)
    rec = follower_update(rec, update("S2", 1755, 0, OrderStatus.CANCELLED), None, None)
    assert rec.broker_status is OrderStatus.CANCELLED and rec.filled_qty == 65
    assert rec.state is MirrorState.DONE


def test_a_second_order_with_the_copys_id_seen_before_the_answer_becomes_a_slice() -> None:
    placing = MirrorRecord("beta", "L1", "CPY-X-0", MirrorState.PLACING, params=PARAMS)
    rec = follower_update(placing, update("S1", 1755, 0, OrderStatus.PENDING), None, None)
    rec = follower_update(rec, update("S2", 1755, 0, OrderStatus.PENDING), None, None)
    assert [s.order_id for s in rec.slices] == ["S1", "S2"]
    acked = with_slices(rec.with_changes(state=MirrorState.LIVE), ("S1", "S2"))
    # The first was taken for the whole copy: its own size is read back before a modification.
    assert [s.quantity for s in acked.slices] == [0, 1755]


def test_a_new_total_is_spread_over_the_open_slices_under_the_freeze() -> None:
    slices = (SliceState("S1", 1755, 100, 0.0, OrderStatus.PART_TRADED), SliceState("S2", 1755))
    assert split_over_slices(slices, 3000, 1756) == {"S1": 1755, "S2": 1245}
    assert split_over_slices(slices, 1000, 1756) == {"S1": 999, "S2": 1}
    assert split_over_slices(slices, 3512, 1756) == {"S1": 1756, "S2": 1756}
    assert split_over_slices(slices, 3600, 1756) is None  # above two slices' freeze
    unknown = (SliceState("S1"), SliceState("S2"))
    assert split_over_slices(unknown, 3000, 1756) is None
