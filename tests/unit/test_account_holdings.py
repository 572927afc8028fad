"""What a follower account holds in a carried (MARGIN) position: Dhan's positions as read,
plus every fill its order stream showed since; a read is believed only when it counts the
fills seen (its day quantities), whatever its timing."""

from __future__ import annotations

from datetime import date, datetime

from engine.clock import IST
from engine.dhan.broker_answers import Position
from engine.domain import OrderSnapshot, OrderStatus, OrderType, Product, Segment, Side, Validity
from engine.live.account_holdings import AccountHoldings
from engine.replication.targets import PositionKey

LOT = 75
TODAY = date(2026, 12, 3)
YESTERDAY = date(2026, 12, 2)
FUT = PositionKey(Segment.NSE_FNO, "35001", Product.MARGIN)
INTRADAY = PositionKey(Segment.NSE_FNO, "35001", Product.INTRADAY)


def order(
    order_id: str,
    side: Side,
    filled: int,
    product: Product = Product.MARGIN,
    day: date = TODAY,
) -> OrderSnapshot:
    return OrderSnapshot(
        order_id=order_id,
        client_id="1000000002",
        status=OrderStatus.TRADED if filled else OrderStatus.PENDING,
        side=side,
        order_type=OrderType.MARKET,
        product=product,
        validity=Validity.DAY,
        segment=Segment.NSE_FNO,
        security_id="35001",
        quantity=max(filled, LOT),
        filled_qty=filled,
        created_at=IST.localize(datetime(day.year, day.month, day.day, 10, 0)),
    )


def row(
    net: int,
    bought: int | None = 0,
    sold: int | None = 0,
    carried: tuple[int | None, int | None] = (0, 0),
    product: Product = Product.MARGIN,
) -> Position:
    return Position(
        Segment.NSE_FNO,
        "35001",
        "NIFTY FUT",
        product,
        net,
        0.0,
        0.0,
        0.0,
        0.0,
        day_buy_qty=bought,
        day_sell_qty=sold,
        carried_buy_qty=carried[0],
        carried_sell_qty=carried[1],
    )


def test_unknown_until_a_read_counts_the_fills_seen() -> None:
    h = AccountHoldings()
    assert h.account_net("alpha", FUT) is None
    h.order_seen("alpha", order("copy-1", Side.BUY, 2 * LOT), TODAY)
    # The positions do not show today's buy yet (they trail the stream): not believed.
    assert h.positions_read("alpha", [], [FUT], TODAY) == []
    assert h.account_net("alpha", FUT) is None and h.unconfirmed()
    assert h.positions_read("alpha", [row(2 * LOT, bought=2 * LOT)], [FUT], TODAY) == [FUT]
    assert h.account_net("alpha", FUT) == 2 * LOT and not h.unconfirmed()
    assert h.positions_read("alpha", [row(2 * LOT, bought=2 * LOT)], [FUT], TODAY) == []


def test_carried_holdings_and_the_fills_since() -> None:
    h = AccountHoldings()
    # Carried from yesterday: nothing bought or sold today, so a read counts what was seen.
    assert h.positions_read("alpha", [row(2 * LOT, carried=(2 * LOT, 0))], [FUT], TODAY) == [FUT]
    assert h.order_seen("alpha", order("own-1", Side.SELL, LOT), TODAY)  # sold by hand
    assert h.account_net("alpha", FUT) == LOT
    assert not h.order_seen("alpha", order("own-1", Side.SELL, LOT), TODAY)  # the same again
    assert h.order_seen("alpha", order("copy-1", Side.SELL, LOT), TODAY)  # our exit copy
    assert h.account_net("alpha", FUT) == 0
    # Dhan's positions catch up: the same holding, nothing changes.
    assert (
        h.positions_read("alpha", [row(0, sold=2 * LOT, carried=(2 * LOT, 0))], [FUT], TODAY) == []
    )
    assert h.account_net("alpha", FUT) == 0


def test_a_read_running_ahead_of_the_stream_is_not_believed() -> None:
    """The account sells a lot by hand; Dhan's positions show it before the stream does."""
    h = AccountHoldings()
    h.positions_read("alpha", [row(2 * LOT, carried=(2 * LOT, 0))], [FUT], TODAY)
    assert h.positions_read("alpha", [row(LOT, sold=LOT, carried=(2 * LOT, 0))], [FUT], TODAY) == []
    assert h.account_net("alpha", FUT) == 2 * LOT and h.unconfirmed()
    h.order_seen("alpha", order("own-1", Side.SELL, LOT), TODAY)  # the stream catches up
    assert h.account_net("alpha", FUT) == LOT
    assert h.positions_read("alpha", [row(LOT, sold=LOT, carried=(2 * LOT, 0))], [FUT], TODAY) == []
    assert not h.unconfirmed()


def test_a_flat_position_missing_from_the_answer_is_known_flat() -> None:
    """Copies bought yesterday, sold by hand yesterday: Dhan lists nothing for it today. A
    position of a ledger (`wanted`) absent from the answer is flat, not unknown."""
    h = AccountHoldings()
    assert h.positions_read("alpha", [], [FUT], TODAY) == [FUT]
    assert h.account_net("alpha", FUT) == 0


def test_yesterdays_fills_do_not_count_among_todays() -> None:
    """The engine ran through the night: yesterday's fills are in what it has seen, not in
    the day quantities of this morning's positions."""
    h = AccountHoldings()
    h.order_seen("alpha", order("copy-1", Side.BUY, LOT, day=YESTERDAY), YESTERDAY)
    assert h.positions_read("alpha", [row(LOT, carried=(LOT, 0))], [FUT], TODAY) == [FUT]
    assert h.account_net("alpha", FUT) == LOT
    h.order_seen("alpha", order("copy-2", Side.BUY, LOT), TODAY)
    assert (
        h.positions_read("alpha", [row(2 * LOT, bought=LOT, carried=(LOT, 0))], [FUT], TODAY) == []
    )
    assert h.account_net("alpha", FUT) == 2 * LOT and not h.unconfirmed()


def test_day_quantities_that_count_the_carried_ones_are_read_less_them() -> None:
    h = AccountHoldings()
    h.order_seen("alpha", order("own-1", Side.SELL, LOT), TODAY)
    carried_in = row(LOT, bought=2 * LOT, sold=LOT, carried=(2 * LOT, 0))
    assert h.positions_read("alpha", [carried_in], [FUT], TODAY) == [FUT]
    assert h.account_net("alpha", FUT) == LOT


def test_an_answer_that_does_not_say_what_it_counts_is_not_believed() -> None:
    h = AccountHoldings()
    assert h.positions_read("alpha", [row(LOT, bought=None, sold=None)], [FUT], TODAY) == []
    assert h.account_net("alpha", FUT) is None


def test_a_new_offset_replaces_the_old_once_a_read_counts_the_fills() -> None:
    """Something other than a fill moved the position (an expiry, a correction at Dhan)."""
    h = AccountHoldings()
    h.positions_read("alpha", [row(2 * LOT, carried=(2 * LOT, 0))], [FUT], TODAY)
    assert h.positions_read("alpha", [], [FUT], TODAY) == [FUT]
    assert h.account_net("alpha", FUT) == 0


def test_only_carried_positions_and_each_account_apart() -> None:
    h = AccountHoldings()
    assert not h.order_seen("alpha", order("i-1", Side.BUY, LOT, Product.INTRADAY), TODAY)
    assert not h.order_seen("alpha", order("c-1", Side.BUY, LOT, Product.CNC), TODAY)
    h.positions_read(
        "alpha",
        [row(LOT, bought=LOT, product=Product.INTRADAY), row(LOT, carried=(LOT, 0))],
        [FUT, INTRADAY],
        TODAY,
    )
    assert h.account_net("alpha", INTRADAY) is None
    assert h.account_net("alpha", FUT) == LOT
    assert h.account_net("beta", FUT) is None
    h.order_seen("beta", order("b-1", Side.SELL, LOT), TODAY)
    assert h.account_net("alpha", FUT) == LOT


def test_a_fill_not_yet_seen_as_large_as_the_carried_quantity_is_not_believed() -> None:
    """A lot carried from yesterday; today's buy of a lot is in the positions before the
    stream shows it. Its day quantities less the carried ones would match what was seen (0):
    the row's own net (carried + day) says the day's quantities are today's alone."""
    h = AccountHoldings()
    assert (
        h.positions_read("alpha", [row(2 * LOT, bought=LOT, carried=(LOT, 0))], [FUT], TODAY) == []
    )
    assert h.account_net("alpha", FUT) is None and h.unconfirmed()


def test_a_row_that_does_not_add_up_is_not_believed() -> None:
    h = AccountHoldings()
    assert (
        h.positions_read("alpha", [row(3 * LOT, bought=LOT, carried=(LOT, 0))], [FUT], TODAY) == []
    )
    assert h.account_net("alpha", FUT) is None


def test_positions_our_copies_do_not_trade_are_not_followed() -> None:
    """Only the positions of the follower's ledgers (`wanted`): the account's others, busy
    or not, are not a reason to read its positions again soon."""
    h = AccountHoldings()
    h.order_seen("alpha", order("own-1", Side.BUY, LOT), TODAY)
    assert h.positions_read("alpha", [], [], TODAY) == []
    assert h.account_net("alpha", FUT) is None and not h.unconfirmed()
