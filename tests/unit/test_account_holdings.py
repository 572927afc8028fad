"""What a follower account holds in a carried (MARGIN) position: Dhan's positions as read,
plus every fill its order stream showed since; known only once two reads agree."""

from __future__ import annotations

from engine.domain import OrderSnapshot, OrderStatus, OrderType, Product, Segment, Side, Validity
from engine.live.account_holdings import AccountHoldings
from engine.replication.targets import PositionKey

LOT = 75
FUT = PositionKey(Segment.NSE_FNO, "35001", Product.MARGIN)
INTRADAY = PositionKey(Segment.NSE_FNO, "35001", Product.INTRADAY)


def order(
    order_id: str, side: Side, filled: int, product: Product = Product.MARGIN
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
    )


def test_unknown_until_two_reads_agree() -> None:
    h = AccountHoldings()
    assert h.account_net("alpha", FUT) is None
    assert h.positions_read("alpha", {FUT: 2 * LOT}, [FUT]) == []  # one read says nothing yet
    assert h.account_net("alpha", FUT) is None and h.unconfirmed()
    assert h.positions_read("alpha", {FUT: 2 * LOT}, [FUT]) == [FUT]
    assert h.account_net("alpha", FUT) == 2 * LOT and not h.unconfirmed()
    assert h.positions_read("alpha", {FUT: 2 * LOT}, [FUT]) == []  # nothing new


def test_fills_seen_after_the_reads_move_the_holding_at_once() -> None:
    h = AccountHoldings()
    for _ in range(2):
        h.positions_read("alpha", {FUT: 2 * LOT}, [FUT])  # carried from yesterday
    assert h.order_seen("alpha", order("own-1", Side.SELL, LOT))  # sold by hand
    assert h.account_net("alpha", FUT) == LOT
    assert not h.order_seen("alpha", order("own-1", Side.SELL, LOT))  # the same alert again
    assert h.order_seen("alpha", order("copy-1", Side.SELL, LOT))  # our exit copy
    assert h.account_net("alpha", FUT) == 0
    # Dhan's positions catch up: the same holding, nothing changes.
    assert h.positions_read("alpha", {}, [FUT]) == []
    assert h.account_net("alpha", FUT) == 0


def test_a_flat_position_missing_from_the_answer_is_known_flat() -> None:
    """Copies bought yesterday, sold by hand yesterday: Dhan lists nothing for it today. A
    position of a ledger (`wanted`) absent from the answer is flat, not unknown."""
    h = AccountHoldings()
    h.positions_read("alpha", {}, [FUT])
    h.positions_read("alpha", {}, [FUT])
    assert h.account_net("alpha", FUT) == 0


def test_a_read_straddling_a_fill_is_not_believed() -> None:
    """Dhan's positions may count a fill the stream has not shown yet (or the other way
    round): the reads then disagree, and the holding known before stays until two agree."""
    h = AccountHoldings()
    h.order_seen("alpha", order("copy-1", Side.BUY, 2 * LOT))
    h.positions_read("alpha", {FUT: 2 * LOT}, [FUT])
    h.positions_read("alpha", {FUT: 2 * LOT}, [FUT])
    assert h.account_net("alpha", FUT) == 2 * LOT
    # The account sells a lot by hand; the positions show it before the stream does.
    assert h.positions_read("alpha", {FUT: LOT}, [FUT]) == []
    assert h.account_net("alpha", FUT) == 2 * LOT and h.unconfirmed()
    h.order_seen("alpha", order("own-1", Side.SELL, LOT))  # the stream catches up
    assert h.account_net("alpha", FUT) == LOT
    assert h.positions_read("alpha", {FUT: LOT}, [FUT]) == []  # agrees with the old offset
    assert h.account_net("alpha", FUT) == LOT


def test_a_new_offset_replaces_the_old_once_confirmed() -> None:
    """Something other than a fill moved the position (an expiry, a correction at Dhan)."""
    h = AccountHoldings()
    for _ in range(2):
        h.positions_read("alpha", {FUT: 2 * LOT}, [FUT])
    assert h.positions_read("alpha", {}, [FUT]) == []
    assert h.account_net("alpha", FUT) == 2 * LOT
    assert h.positions_read("alpha", {}, [FUT]) == [FUT]
    assert h.account_net("alpha", FUT) == 0


def test_only_carried_positions_and_each_account_apart() -> None:
    h = AccountHoldings()
    assert not h.order_seen("alpha", order("i-1", Side.BUY, LOT, Product.INTRADAY))
    assert not h.order_seen("alpha", order("c-1", Side.BUY, LOT, Product.CNC))
    for _ in range(2):
        h.positions_read("alpha", {INTRADAY: LOT, FUT: LOT}, [])
    assert h.account_net("alpha", INTRADAY) is None
    assert h.account_net("alpha", FUT) == LOT
    assert h.account_net("beta", FUT) is None
    h.order_seen("beta", order("b-1", Side.SELL, LOT))
    assert h.account_net("alpha", FUT) == LOT
