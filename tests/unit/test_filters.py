"""Copy filters and unsupported order kinds."""

from __future__ import annotations

from typing import Any

import pytest

from engine.dhan.codec import SocketDecodeKind, decode_rest_order, decode_socket_message
from engine.domain import (
    OrderSnapshot,
    OrderStatus,
    OrderType,
    Product,
    Segment,
    Side,
    Validity,
)
from engine.replication.filters import check_filters, is_option_order, unsupported_order_reason
from engine.replication.rules import CopyFilters
from tests.unit.test_codec import DOC_SAMPLE, REST_SAMPLE


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


# --- options_only without an instruments file ----------------------------------------------


def _socket_order(**data: Any) -> OrderSnapshot:
    merged = dict(DOC_SAMPLE["Data"])
    merged.update(data)
    result = decode_socket_message({"Type": "order_alert", "Data": merged})
    assert result.kind is SocketDecodeKind.ORDER, result.error
    assert result.snapshot is not None
    return result.snapshot


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"Segment": "D", "Instrument": "OPTIDX", "OptType": "CE"}, True),
        ({"Segment": "D", "Instrument": "OPTSTK", "OptType": "PE"}, True),
        ({"Segment": "D", "Instrument": "OPTIDX", "OptType": ""}, True),
        ({"Segment": "D", "Instrument": "", "OptType": "PE"}, True),
        ({"Exchange": "MCX", "Segment": "M", "Instrument": "OPTFUT", "OptType": "CE"}, True),
        ({"Segment": "D", "Instrument": "FUTIDX", "OptType": "XX"}, False),
        ({"Segment": "E", "Instrument": "EQUITY", "OptType": "XX"}, False),
    ],
)
def test_socket_instrument_fields_tell_an_option(fields: dict[str, Any], expected: bool) -> None:
    snapshot = _socket_order(**fields)
    assert snapshot.is_option is expected
    reason = check_filters(CopyFilters(options_only=True), snapshot, instrument_is_option=False)
    assert (reason is None) is expected


def test_socket_without_instrument_fields_leaves_the_question_open() -> None:
    snapshot = _socket_order(Instrument="", OptType="")
    assert snapshot.is_option is None


@pytest.mark.parametrize(("word", "expected"), [("CALL", True), ("PUT", True)])
def test_rest_drv_option_type_tells_an_option(word: str, expected: bool) -> None:
    row = dict(REST_SAMPLE, exchangeSegment="NSE_FNO", drvOptionType=word)
    snapshot = decode_rest_order(row)
    assert snapshot.is_option is expected
    assert check_filters(CopyFilters(options_only=True), snapshot, False) is None


@pytest.mark.parametrize("word", ["NA", None, ""])
def test_rest_placeholder_proves_nothing(word: str | None) -> None:
    snapshot = decode_rest_order(dict(REST_SAMPLE, drvOptionType=word))
    assert snapshot.is_option is None


def test_the_orders_own_word_beats_the_instrument_data() -> None:
    assert is_option_order(snap(is_option=False), instrument_is_option=True) is False
    assert is_option_order(snap(is_option=True), instrument_is_option=False) is True


def test_instrument_data_decides_when_the_order_is_silent() -> None:
    assert is_option_order(snap(trading_symbol="XYZ"), instrument_is_option=True) is True


@pytest.mark.parametrize(
    ("segment", "symbol", "expected"),
    [
        (Segment.NSE_FNO, "NIFTY-Dec2026-24000-CE", True),
        (Segment.NSE_FNO, "NIFTY 25NOV 24000 CE", True),
        (Segment.NSE_FNO, "BANKNIFTY25NOV52000PE", True),
        (Segment.BSE_FNO, "SENSEX-Dec2026-80000-PE", True),
        (Segment.NSE_CURRENCY, "USDINR 26DEC 83.5 CE", True),
        (Segment.NSE_FNO, "NIFTY-Dec2026-FUT", False),
        (Segment.NSE_FNO, "", False),
        (Segment.NSE_EQ, "ABC 100 CE", False),  # cash segments hold no options
        (Segment.NSE_EQ, "SPICE", False),
    ],
)
def test_option_symbol_is_the_last_resort(segment: Segment, symbol: str, expected: bool) -> None:
    snapshot = snap(segment=segment, trading_symbol=symbol)
    assert is_option_order(snapshot, instrument_is_option=False) is expected
