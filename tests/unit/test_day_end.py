"""Dhan's orders last one trading day: which orders the engine holds as open have ended with
theirs (engine.replication.day_end), and what that does to a copy (engine.transitions)."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from engine.clock import IST
from engine.domain import MirrorState, OrderSnapshot, OrderStatus, Product, Segment
from engine.market_hours import MarketCalendar
from engine.records import MirrorRecord, SliceState
from engine.replication.day_end import (
    EndedDay,
    ended_before,
    ended_with_their_day,
    squared_off_with_their_day,
)
from engine.transitions import ended_with_the_day
from tests.store_helpers import mirror, params, snapshot

CAL = MarketCalendar()


def at(m: int, d: int, hh: int = 11, mm: int = 0) -> datetime:
    return IST.localize(datetime(2026, m, d, hh, mm))


def ended(leaders: list[OrderSnapshot], copies: list[MirrorRecord], now: datetime) -> EndedDay:
    return ended_with_their_day(leaders, copies, CAL.closing_day, now.date())


WED, THU, FRI, SAT, MON, TUE = (12, 2), (12, 3), (12, 4), (12, 5), (12, 7), (12, 8)


@pytest.mark.parametrize(
    ("segment", "placed", "ends"),
    [
        (Segment.NSE_EQ, at(*WED, 11), date(2026, 12, 2)),  # in the session: that day
        (Segment.NSE_EQ, at(*WED, 9, 5), date(2026, 12, 2)),  # pre-open order entry
        (Segment.NSE_EQ, at(*WED, 8), date(2026, 12, 2)),  # an AMO for the day's open
        (Segment.NSE_EQ, at(*FRI, 20), date(2026, 12, 7)),  # an AMO after Friday's close
        (Segment.NSE_FNO, at(*SAT, 10), date(2026, 12, 7)),  # placed at the weekend
        (Segment.NSE_FNO, at(12, 24, 19), date(2026, 12, 28)),  # Christmas Day is closed
        (Segment.MCX_COMM, at(*WED, 23), date(2026, 12, 2)),  # MCX: until 23:55
    ],
)
def test_an_order_ends_with_the_session_it_was_placed_for(
    segment: Segment, placed: datetime, ends: date
) -> None:
    assert CAL.closing_day(segment, placed) == ends


def test_an_index_has_no_session() -> None:
    assert CAL.closing_day(Segment.IDX_I, at(*WED)) is None


def test_an_order_ends_only_once_a_later_day_has_begun() -> None:
    leader = snapshot("L1", segment=Segment.NSE_EQ, created_at=at(*WED), updated_at=at(*WED))
    # The close's own evening: Dhan's book still shows it with its final status.
    assert not ended([leader], [], at(*WED, 20)).leaders
    assert ended([leader], [], at(*THU, 0, 1)).leaders == ((leader, date(2026, 12, 2)),)


def test_an_amo_placed_after_fridays_close_works_on_monday() -> None:
    amo = snapshot("L1", segment=Segment.NSE_EQ, amo=True, created_at=at(*FRI, 20))
    for now in (at(*SAT), at(*MON, 9), at(*MON, 15, 29), at(*MON, 23, 59)):
        assert not ended([amo], [], now).leaders, now
    assert ended([amo], [], at(*TUE, 8)).leaders


def test_only_orders_held_as_open_and_dated_are_taken() -> None:
    done = snapshot("L1", status=OrderStatus.TRADED, created_at=at(*WED))
    undated = snapshot("L2", created_at=None, updated_at=None)
    updated_only = snapshot("L3", created_at=None, updated_at=at(*WED))
    result = ended([done, undated, updated_only], [], at(*FRI))
    assert [s.order_id for s, _ in result.leaders] == ["L3"]


def test_a_copy_ends_with_its_leaders_day() -> None:
    leader = snapshot("L1", status=OrderStatus.CANCELLED, created_at=at(*WED))
    copies = [
        mirror("alice", "L1", state=MirrorState.LIVE, broker_status=OrderStatus.PENDING),
        mirror("bob", "L1", state=MirrorState.PLACING),
        mirror("carol", "L1", state=MirrorState.REPLACING),
        mirror("dave", "L1", state=MirrorState.DONE, broker_status=OrderStatus.TRADED),
        mirror("erin", "L1", state=MirrorState.FAILED),
        mirror("frank", "L1", state=MirrorState.LIVE, broker_status=OrderStatus.CANCELLED),
    ]
    result = ended([leader], copies, at(*THU))
    assert [c.follower for c, _ in result.copies] == ["alice", "bob", "carol"]
    assert not result.leaders  # the leader's own order had already ended
    assert not ended([leader], copies, at(*WED, 16)).copies


def test_a_copy_without_its_leader_goes_by_its_own_last_change() -> None:
    amo_copy = mirror(
        "alice",
        "L9",
        state=MirrorState.LIVE,
        params=params(segment=Segment.NSE_EQ, amo=True),
        updated_at=at(*FRI, 20),
    )
    assert not ended([], [amo_copy], at(*MON)).copies
    assert ended([], [amo_copy], at(*TUE)).copies
    unknown = mirror("bob", "L9", state=MirrorState.LIVE, params=None, updated_at=at(*WED))
    assert not ended([], [unknown], at(*FRI)).copies


def test_an_ended_copy_keeps_its_fills_and_expires_only_its_open_slices() -> None:
    copy = mirror(
        "alice",
        "L1",
        state=MirrorState.LIVE,
        follower_order_id="F1",
        broker_status=OrderStatus.PART_TRADED,
        filled_qty=30,
        slices=(
            SliceState("F1", 20, 20, 100.0, OrderStatus.TRADED),
            SliceState("F2", 20, 10, 100.0, OrderStatus.PART_TRADED),
            SliceState("F3", 20, 0, 0.0, OrderStatus.PENDING),
        ),
    )
    settled = ended_with_the_day(copy, "its trading day (02 Dec) ended", at(*THU))
    assert settled.state is MirrorState.DONE and settled.broker_status is OrderStatus.EXPIRED
    assert not settled.is_open_at_broker
    assert settled.filled_qty == 30 and settled.follower_order_id == "F1"
    assert [s.status for s in settled.slices] == [
        OrderStatus.TRADED,
        OrderStatus.EXPIRED,
        OrderStatus.EXPIRED,
    ]
    assert [s.filled_qty for s in settled.slices] == [20, 10, 0]


YESTERDAY, TODAY = date(2026, 12, 2), date(2026, 12, 3)


def test_an_order_of_today_is_told_without_the_calendar() -> None:
    def no_calendar(segment: Segment, placed_at: datetime) -> date | None:
        raise AssertionError("the calendar was asked")

    assert ended_before(no_calendar, Segment.NSE_FNO, at(*THU, 9, 16), TODAY) is None
    assert ended_before(no_calendar, Segment.NSE_FNO, None, TODAY) is None
    assert ended_before(CAL.closing_day, Segment.NSE_FNO, at(*WED), TODAY) == YESTERDAY


@pytest.mark.parametrize("product", [Product.INTRADAY, Product.CO, Product.BO])
def test_an_intraday_position_of_an_ended_day_was_squared_off(product: Product) -> None:
    assert squared_off_with_their_day(product, [(False, YESTERDAY)] * 3)


@pytest.mark.parametrize("product", [Product.CNC, Product.MARGIN, Product.MTF])
def test_a_position_dhan_carries_overnight_is_kept(product: Product) -> None:
    assert not squared_off_with_their_day(product, [(False, YESTERDAY)])


@pytest.mark.parametrize(
    "parts",
    [
        [(False, YESTERDAY), (False, None)],  # a part not ended (traded today), or unknown
        [(True, YESTERDAY)],  # an order of it still works (an AMO for today, a resting copy)
        [],  # nothing in it: nothing to square off
    ],
)
def test_a_position_is_kept_unless_all_of_it_ended_with_an_earlier_day(
    parts: list[tuple[bool, date | None]],
) -> None:
    assert not squared_off_with_their_day(Product.INTRADAY, parts)
