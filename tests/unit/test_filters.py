"""Copy filters and unsupported order kinds."""

from __future__ import annotations

import pytest

from engine.domain import (
    OrderSnapshot,
    OrderStatus,
    OrderType,
    Product,
    Segment,
    Side,
    Validity,
)
from engine.replication.filters import check_filters, unsupported_order_reason
from engine.replication.rules import CopyFilters


def snap(**changes: object) -> OrderSnapshot:
    base = OrderSnapshot(
        order_id="1",
        client_id="L1",
        status=OrderStatus.PENDING,
        side=Side.BUY,
        order_type=OrderType.LIMIT,
        product=Product.INTRADAY,
        validity=Validity.DAY,
        segment=Segment.NSE_FNO,
        security_id="52175",
        quantity=65,
        price=245.5,
        trading_symbol="NIFTY 25NOV 24000 CE",
    )
    return base.with_changes(**changes)


def test_no_filters_copies_everything() -> None:
    assert check_filters(CopyFilters(), snap(), instrument_is_option=False) is None


def test_segment_filter() -> None:
    f = CopyFilters(segments=(Segment.NSE_FNO,))
    assert check_filters(f, snap(), True) is None
    reason = check_filters(f, snap(segment=Segment.MCX_COMM), True)
    assert reason == "segment MCX_COMM not in this follower's segments (NSE_FNO)"


def test_segment_filter_lists_all() -> None:
    f = CopyFilters(segments=(Segment.NSE_FNO, Segment.BSE_FNO))
    reason = check_filters(f, snap(segment=Segment.NSE_EQ), True)
    assert reason is not None and "(NSE_FNO, BSE_FNO)" in reason


def test_empty_segment_tuple_blocks_all() -> None:
    reason = check_filters(CopyFilters(segments=()), snap(), True)
    assert reason is not None and "(none)" in reason


def test_product_filter() -> None:
    f = CopyFilters(products=(Product.INTRADAY,))
    assert check_filters(f, snap(), True) is None
    reason = check_filters(f, snap(product=Product.CNC), True)
    assert reason == "product CNC not in this follower's products (INTRADAY)"


def test_security_filter() -> None:
    f = CopyFilters(security_ids=("52175", "11536"))
    assert check_filters(f, snap(), True) is None
    reason = check_filters(f, snap(security_id="999", trading_symbol="TCS"), True)
    assert reason == "security TCS (999) not in this follower's security_ids (52175, 11536)"


def test_options_only() -> None:
    f = CopyFilters(options_only=True)
    assert check_filters(f, snap(), instrument_is_option=True) is None
    reason = check_filters(f, snap(trading_symbol="NIFTY FUT"), instrument_is_option=False)
    assert reason == "options_only: NIFTY FUT (52175) is not an option"


def test_first_failing_filter_is_named() -> None:
    f = CopyFilters(segments=(Segment.NSE_EQ,), products=(Product.CNC,))
    reason = check_filters(f, snap(), True)
    assert reason is not None and reason.startswith("segment")


def test_plain_order_is_supported() -> None:
    assert unsupported_order_reason(snap()) is None


@pytest.mark.parametrize("product", [Product.BO, Product.CO])
def test_bracket_and_cover_are_unsupported(product: Product) -> None:
    reason = unsupported_order_reason(snap(product=product))
    assert reason == (
        "Bracket/cover order legs are not copied: Dhan's API cannot re-create them leg by leg; "
        "copy it manually"
    )


def test_leg_of_bo_is_unsupported() -> None:
    reason = unsupported_order_reason(snap(leg="STOP_LOSS_LEG", parent_order_id="7"))
    assert reason is not None and reason.startswith("Bracket/cover")


def test_super_order_leg_is_unsupported() -> None:
    reason = unsupported_order_reason(snap(is_super_order=True, leg="TARGET_LEG"))
    assert reason is not None and reason.startswith("Super order legs are not copied")
