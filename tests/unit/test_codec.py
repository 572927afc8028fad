"""The codec: Dhan's socket and REST dialects -> OrderSnapshot, and our params -> SDK kwargs."""

from __future__ import annotations

import contextlib
import json
from datetime import datetime
from typing import Any, Protocol, TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.clock import to_ist
from engine.dhan.codec import (
    CodecError,
    DecodedRows,
    InstrumentHint,
    SocketDecodeKind,
    decode_rest_order,
    decode_rest_orders,
    decode_socket_message,
    encode_modify,
    encode_place,
)
from engine.domain import (
    AmoTime,
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
from tests.dhan_dialect import EXCHANGE_SEGMENT, LEG_NO, ORDER_TYPE, PRODUCT, SIDE

# Shaped like the doc sample (order-update page), with the doc's empty AlgoOrdNo made valid.
DOC_SAMPLE: dict[str, Any] = {
    "Data": {
        "Exchange": "NSE",
        "Segment": "E",
        "Source": "N",
        "SecurityId": "14366",
        "ClientId": "1000000001",
        "ExchOrderNo": "1400000000404591",
        "OrderNo": "1124091136546",
        "Product": "C",
        "TxnType": "B",
        "OrderType": "LMT",
        "Validity": "DAY",
        "DiscQuantity": 1,
        "DiscQtyRem": 1,
        "RemainingQuantity": 1,
        "Quantity": 1,
        "TradedQty": 0,
        "Price": 13,
        "TriggerPrice": 0,
        "TradedPrice": 0,
        "AvgTradedPrice": 0,
        "AlgoOrdNo": "",
        "OffMktFlag": "0",
        "OrderDateTime": "2024-09-11 14:39:29",
        "ExchOrderTime": "2024-09-11 14:39:29",
        "LastUpdatedTime": "2024-09-11 14:39:30",
        "Remarks": "NA",
        "MktType": "NL",
        "ReasonDescription": "CONFIRMED",
        "LegNo": 1,
        "Instrument": "EQUITY",
        "Symbol": "IDEA",
        "ProductName": "CNC",
        "Status": "Cancelled",
        "LotSize": 1,
        "StrikePrice": 0,
        "ExpiryDate": "0001-01-01 00:00:00",
        "OptType": "XX",
        "DisplayName": "Vodafone Idea",
        "Isin": "INE669E01016",
        "Series": "EQ",
        "GoodTillDaysDate": "2024-09-11",
        "RefLtp": 13.55,
        "TickSize": 0.01,
        "AlgoId": "0",
        "Multiplier": 1,
        "refLtp": 13.55,
        "tickSize": 0.01,
        "CorrelationId": "CPY-ABCDEFGHIJKLMNOP-0",
    },
    "Type": "order_alert",
}

REST_SAMPLE: dict[str, Any] = {
    "dhanClientId": "1000000003",
    "orderId": "112111182198",
    "correlationId": "123abc678",
    "orderStatus": "PENDING",
    "transactionType": "BUY",
    "exchangeSegment": "NSE_EQ",
    "productType": "INTRADAY",
    "orderType": "MARKET",
    "validity": "DAY",
    "tradingSymbol": "",
    "securityId": "11536",
    "quantity": 5,
    "disclosedQuantity": 0,
    "price": 0.0,
    "triggerPrice": 0.0,
    "afterMarketOrder": False,
    "boProfitValue": 0.0,
    "boStopLossValue": 0.0,
    "legName": "NA",
    "createTime": "2021-11-24 13:33:03",
    "updateTime": "2021-11-24 13:33:03",
    "exchangeTime": "2021-11-24 13:33:03",
    "drvExpiryDate": None,
    "drvOptionType": None,
    "drvStrikePrice": 0.0,
    "omsErrorCode": None,
    "omsErrorDescription": None,
    "algoId": "string",
    "remainingQuantity": 5,
    "averageTradedPrice": 0,
    "filledQty": 0,
}


def _alert(**data: Any) -> dict[str, Any]:
    merged = dict(DOC_SAMPLE["Data"])
    merged.update(data)
    return {"Type": "order_alert", "Data": merged}


def _snap(message: Any) -> OrderSnapshot:
    result = decode_socket_message(message)
    assert result.kind is SocketDecodeKind.ORDER, result.error
    assert result.snapshot is not None
    return result.snapshot


# --- socket -------------------------------------------------------------------------------


def test_doc_sample_decodes() -> None:
    snap = _snap(json.dumps(DOC_SAMPLE))
    assert snap.order_id == "1124091136546"
    assert snap.client_id == "1000000001"
    assert snap.status is OrderStatus.CANCELLED  # Title-case "Cancelled"
    assert snap.side is Side.BUY
    assert snap.order_type is OrderType.LIMIT
    assert snap.product is Product.CNC
    assert snap.validity is Validity.DAY
    assert snap.segment is Segment.NSE_EQ
    assert snap.security_id == "14366"
    assert snap.quantity == 1
    assert snap.filled_qty == 0
    assert snap.price == 13.0
    assert snap.disclosed_qty == 1
    assert snap.trading_symbol == "IDEA"
    assert snap.correlation_id == "CPY-ABCDEFGHIJKLMNOP-0"
    assert snap.amo is False
    assert snap.leg == ""  # LegNo 1 on a CNC order is not a leg
    assert snap.parent_order_id == ""
    assert snap.is_super_order is False
    assert snap.lot_size == 1
    assert snap.reason == "CONFIRMED"
    assert snap.created_at == to_ist(datetime(2024, 9, 11, 14, 39, 29))
    assert snap.updated_at == to_ist(datetime(2024, 9, 11, 14, 39, 30))
    assert snap.updated_at is not None and snap.updated_at.utcoffset() is not None
    assert snap.source is SnapshotSource.STREAM


def test_bytes_and_dict_inputs() -> None:
    assert _snap(json.dumps(DOC_SAMPLE).encode()) == _snap(DOC_SAMPLE)


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("Cancelled", OrderStatus.CANCELLED),
        ("CANCELLED", OrderStatus.CANCELLED),
        ("Rejected", OrderStatus.REJECTED),
        ("Traded", OrderStatus.TRADED),
        ("PART_TRADED", OrderStatus.PART_TRADED),
        ("Part_Traded", OrderStatus.PART_TRADED),
        ("part traded", OrderStatus.PART_TRADED),
        ("TRIGGERED", OrderStatus.TRIGGERED),
        ("Transit", OrderStatus.TRANSIT),
        ("Expired", OrderStatus.EXPIRED),
        ("Closed", OrderStatus.CLOSED),
        ("pending", OrderStatus.PENDING),
    ],
)
def test_status_words(word: str, expected: OrderStatus) -> None:
    assert _snap(_alert(Status=word)).status is expected


def test_pending_with_fills_is_part_traded() -> None:
    snap = _snap(_alert(Status="Pending", Quantity=10, TradedQty=4, RemainingQuantity=6))
    assert snap.status is OrderStatus.PART_TRADED
    assert snap.filled_qty == 4
    assert snap.remaining_qty == 6


def test_filled_falls_back_to_remaining_quantity() -> None:
    data = dict(DOC_SAMPLE["Data"], Status="PENDING", Quantity=10, RemainingQuantity=7)
    del data["TradedQty"]
    snap = _snap({"Type": "order_alert", "Data": data})
    assert snap.filled_qty == 3
    assert snap.status is OrderStatus.PART_TRADED


def test_keys_read_case_insensitively() -> None:
    data = {k.lower(): v for k, v in DOC_SAMPLE["Data"].items()}
    camel = {k[0].lower() + k[1:]: v for k, v in DOC_SAMPLE["Data"].items()}
    upper = {k.upper(): v for k, v in DOC_SAMPLE["Data"].items()}
    expected = _snap(DOC_SAMPLE)
    assert _snap({"type": "order_alert", "data": data}) == expected
    assert _snap({"Type": "order_alert", "Data": camel}) == expected
    assert _snap({"TYPE": "order_alert", "DATA": upper}) == expected


def test_numbers_as_strings_and_blanks() -> None:
    snap = _snap(
        _alert(
            Quantity="10",
            TradedQty="",
            Price="245.50",
            TriggerPrice="",
            AvgTradedPrice=None,
            DiscQuantity="0",
            LotSize="",
        )
    )
    assert snap.quantity == 10
    assert snap.filled_qty == 0
    assert snap.price == 245.5
    assert snap.trigger_price == 0.0
    assert snap.avg_price == 0.0
    assert snap.lot_size == 0


def test_null_dates_are_none() -> None:
    snap = _snap(_alert(OrderDateTime="0001-01-01 00:00:00", LastUpdatedTime=""))
    assert snap.created_at is None
    assert snap.updated_at is None


def test_unknown_fields_ignored() -> None:
    assert _snap(_alert(SomethingNew={"x": [1, 2]}, Extra="y")) == _snap(DOC_SAMPLE)


@pytest.mark.parametrize(
    ("exchange", "letter", "segment"),
    [
        ("NSE", "E", Segment.NSE_EQ),
        ("NSE", "D", Segment.NSE_FNO),
        ("NSE", "C", Segment.NSE_CURRENCY),
        ("BSE", "E", Segment.BSE_EQ),
        ("BSE", "D", Segment.BSE_FNO),
        ("BSE", "C", Segment.BSE_CURRENCY),
        ("MCX", "M", Segment.MCX_COMM),
        ("NSE", "I", Segment.IDX_I),
        ("BSE", "I", Segment.IDX_I),
        ("nse", "e", Segment.NSE_EQ),
        ("NSE", "NSE_FNO", Segment.NSE_FNO),  # a full REST name, defensively
        ("", "MCX_COMM", Segment.MCX_COMM),
    ],
)
def test_segments(exchange: str, letter: str, segment: Segment) -> None:
    assert _snap(_alert(Exchange=exchange, Segment=letter)).segment is segment


@pytest.mark.parametrize(
    ("code", "product"),
    [
        ("C", Product.CNC),
        ("I", Product.INTRADAY),
        ("M", Product.MARGIN),
        ("F", Product.MTF),
        ("V", Product.CO),
        ("B", Product.BO),
        ("INTRADAY", Product.INTRADAY),
        ("cnc", Product.CNC),
    ],
)
def test_products(code: str, product: Product) -> None:
    assert _snap(_alert(Product=code)).product is product


@pytest.mark.parametrize(
    ("code", "order_type"),
    [
        ("LMT", OrderType.LIMIT),
        ("MKT", OrderType.MARKET),
        ("SL", OrderType.STOP_LOSS),
        ("SLM", OrderType.STOP_LOSS_MARKET),
        ("SL-M", OrderType.STOP_LOSS_MARKET),
        ("STOP_LOSS_MARKET", OrderType.STOP_LOSS_MARKET),
        ("limit", OrderType.LIMIT),
    ],
)
def test_order_types(code: str, order_type: OrderType) -> None:
    assert _snap(_alert(OrderType=code)).order_type is order_type


@pytest.mark.parametrize(("code", "side"), [("B", Side.BUY), ("S", Side.SELL), ("sell", Side.SELL)])
def test_sides(code: str, side: Side) -> None:
    assert _snap(_alert(TxnType=code)).side is side


def test_amo_flag() -> None:
    assert _snap(_alert(OffMktFlag="1")).amo is True
    assert _snap(_alert(OffMktFlag="0")).amo is False


@pytest.mark.parametrize(
    ("leg_no", "leg"),
    [(1, "ENTRY_LEG"), (2, "STOP_LOSS_LEG"), (3, "TARGET_LEG"), ("2", "STOP_LOSS_LEG")],
)
def test_legs_on_bracket_orders(leg_no: Any, leg: str) -> None:
    snap = _snap(_alert(Product="B", LegNo=leg_no, AlgoOrdNo=1124091136000.0))
    assert snap.leg == leg
    assert snap.parent_order_id == "1124091136000"
    assert snap.is_super_order is False


def test_super_order_leg() -> None:
    snap = _snap(_alert(Product="I", LegNo=3, Remarks="Super Order", AlgoOrdNo="5001"))
    assert snap.is_super_order is True
    assert snap.leg == "TARGET_LEG"
    assert snap.parent_order_id == "5001"


def test_leg_ignored_on_plain_orders() -> None:
    assert _snap(_alert(Product="I", LegNo=2)).leg == ""


def test_display_name_when_symbol_missing() -> None:
    assert _snap(_alert(Symbol="")).trading_symbol == "Vodafone Idea"


def test_other_frame_types_are_ignored() -> None:
    result = decode_socket_message('{"Type": "auth_response", "Data": {"status": "ok"}}')
    assert result.kind is SocketDecodeKind.IGNORED
    assert result.message_type == "auth_response"
    assert result.snapshot is None


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        ("not json", "not JSON"),
        ("[1, 2]", "JSON object"),
        ('{"Data": {}}', "no Type"),
        ('{"Type": "order_alert"}', "Data"),
        ('{"Type": "order_alert", "Data": []}', "Data"),
        (b"\xff\xfe", "not JSON"),
        (json.dumps(_alert(Status="WEIRD")), "status"),
        (json.dumps(_alert(OrderNo="")), "OrderNo"),
        (json.dumps(_alert(Quantity="ten")), "Quantity"),
        (json.dumps(_alert(Quantity=-1)), "Quantity"),
        (json.dumps(_alert(Price="NaN")), "Price"),
        (json.dumps(_alert(Exchange="NYSE", Segment="Q")), "segment"),
        (json.dumps(_alert(TxnType="X")), "TxnType"),
        (json.dumps(_alert(Product={"a": 1})), "word"),
    ],
)
def test_malformed(raw: str | bytes, needle: str) -> None:
    result = decode_socket_message(raw)
    assert result.kind is SocketDecodeKind.MALFORMED
    assert needle.lower() in result.error.lower()
    assert result.raw  # kept for inspection
    assert result.snapshot is None


# --- REST ---------------------------------------------------------------------------------


def test_rest_sample_decodes() -> None:
    snap = decode_rest_order(REST_SAMPLE)
    assert snap.order_id == "112111182198"
    assert snap.client_id == "1000000003"
    assert snap.status is OrderStatus.PENDING
    assert snap.side is Side.BUY
    assert snap.order_type is OrderType.MARKET
    assert snap.product is Product.INTRADAY
    assert snap.segment is Segment.NSE_EQ
    assert snap.quantity == 5
    assert snap.correlation_id == "123abc678"
    assert snap.leg == ""  # "NA"
    assert snap.reason == ""
    assert snap.created_at == to_ist(datetime(2021, 11, 24, 13, 33, 3))
    assert snap.source is SnapshotSource.ORDER_BOOK


def test_rest_variants() -> None:
    row = dict(REST_SAMPLE)
    del row["filledQty"]
    row.update(
        filled_qty="2",
        orderStatus="Part_Traded",
        legName="STOP_LOSS_LEG",
        omsErrorDescription="RMS: margin",
        afterMarketOrder="true",
        amoTime="OPEN_30",
    )
    snap = decode_rest_order(row)
    assert snap.filled_qty == 2
    assert snap.status is OrderStatus.PART_TRADED
    assert snap.leg == "STOP_LOSS_LEG"
    assert snap.reason == "RMS: margin"
    assert snap.amo is True
    assert snap.amo_time is AmoTime.OPEN_30


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"orderId": None}, "orderId"),
        ({"orderStatus": "MODIFIED"}, "status"),
        ({"exchangeSegment": "XYZ"}, "segment"),
        ({"quantity": "1.5"}, "quantity"),
        ({"productType": None}, "product"),
        ({"securityId": ""}, "security"),
    ],
)
def test_rest_errors_are_typed(change: dict[str, Any], needle: str) -> None:
    row = dict(REST_SAMPLE, **change)
    with pytest.raises(CodecError) as info:
        decode_rest_order(row)
    assert needle.lower() in str(info.value).lower()


def test_rest_error_names_the_order() -> None:
    with pytest.raises(CodecError, match="112111182198"):
        decode_rest_order(dict(REST_SAMPLE, orderStatus="??"))


def test_rest_non_dict_raises_codec_error() -> None:
    with pytest.raises(CodecError):
        decode_rest_order([1, 2])  # type: ignore[arg-type]


def test_rest_orders_one_bad_row_loses_nothing_else() -> None:
    rows = [
        REST_SAMPLE,
        dict(REST_SAMPLE, orderStatus="??"),
        "junk",
        dict(REST_SAMPLE, orderId="2"),
    ]
    snaps, errors = decode_rest_orders(rows)
    assert [s.order_id for s in snaps] == ["112111182198", "2"]
    assert len(errors) == 2
    assert "row 1" in str(errors[0]) and "row 2" in str(errors[1])
    snaps, errors = decode_rest_orders({"not": "a list"})
    assert snaps == [] and len(errors) == 1


def test_a_book_read_again_decodes_only_the_rows_that_changed() -> None:
    memo = DecodedRows()
    first, _ = decode_rest_orders([REST_SAMPLE, dict(REST_SAMPLE, orderId="2")], memo)
    moved = dict(REST_SAMPLE, orderId="2", filledQty=1, orderStatus="PART_TRADED")
    again, errors = decode_rest_orders([dict(REST_SAMPLE), moved, "junk"], memo)
    assert again[0] is first[0]  # equal row: the same (immutable) snapshot
    assert again[1] is not first[1] and again[1].filled_qty == 1  # changed: decoded afresh
    assert again[1] == decode_rest_order(moved)
    assert len(errors) == 1 and "row 2" in str(errors[0])  # a bad row is said every read
    # Only the last read is remembered: an order gone from the book is forgotten.
    decode_rest_orders([moved], memo)
    third, _ = decode_rest_orders([REST_SAMPLE], memo)
    assert third[0] is not first[0] and third[0] == first[0]


# --- encoding -----------------------------------------------------------------------------

PARAMS = OrderParams(
    side=Side.SELL,
    order_type=OrderType.STOP_LOSS,
    product=Product.INTRADAY,
    validity=Validity.DAY,
    segment=Segment.NSE_FNO,
    security_id="52175",
    quantity=75,
    price=101.5,
    trigger_price=102,
    disclosed_qty=0,
    correlation_id="CPY-ABCDEFGHIJKLMNOP-0",
)


class _CapturingHttp:
    """Stands in for DhanHTTP's transport so we see exactly what the SDK would send."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Any]] = []

    def __call__(self, method: Any, endpoint: str, payload: Any = None) -> dict[str, Any]:
        self.calls.append((method.value, endpoint, payload))
        return {
            "status": "success",
            "remarks": "",
            "data": {"orderId": "1", "orderStatus": "TRANSIT"},
        }


def _sdk_with_capture() -> tuple[Any, _CapturingHttp]:
    from dhanhq import DhanContext, dhanhq

    ctx = DhanContext("1000000001", "token-for-test")
    capture = _CapturingHttp()
    ctx.dhan_http._send_request = capture
    return dhanhq(ctx), capture


def test_encode_place_drives_the_real_sdk() -> None:
    sdk, capture = _sdk_with_capture()
    sdk.place_order(**encode_place(PARAMS))
    method, endpoint, payload = capture.calls[0]
    assert (method, endpoint) == ("POST", "/orders")
    assert payload == {
        "transactionType": "SELL",
        "exchangeSegment": "NSE_FNO",
        "productType": "INTRADAY",
        "orderType": "STOP_LOSS",
        "validity": "DAY",
        "securityId": "52175",
        "quantity": 75,
        "disclosedQuantity": 0,
        "price": 101.5,
        "afterMarketOrder": False,
        "boProfitValue": None,
        "boStopLossValue": None,
        "triggerPrice": 102.0,
        "correlationId": "CPY-ABCDEFGHIJKLMNOP-0",
    }


def test_encode_place_amo_and_no_tag() -> None:
    sdk, capture = _sdk_with_capture()
    params = OrderParams(
        side=Side.BUY,
        order_type=OrderType.LIMIT,
        product=Product.CNC,
        validity=Validity.DAY,
        segment=Segment.NSE_EQ,
        security_id="1333",
        quantity=1,
        price=1500,
        amo=True,
        amo_time=AmoTime.OPEN_30,
    )
    sdk.place_order(**encode_place(params))
    payload = capture.calls[0][2]
    assert payload["afterMarketOrder"] is True
    assert payload["amoTime"] == "OPEN_30"
    assert "correlationId" not in payload


@pytest.mark.parametrize(
    "params",
    [
        OrderParams(Side.BUY, OrderType.LIMIT, Product.CNC, Validity.DAY, Segment.NSE_EQ, "1", 0),
        OrderParams(
            Side.BUY,
            OrderType.LIMIT,
            Product.CNC,
            Validity.DAY,
            Segment.NSE_EQ,
            "1",
            1,
            amo=True,
            amo_time=AmoTime.PRE_OPEN,
        ),
        OrderParams(Side.BUY, OrderType.LIMIT, Product.BO, Validity.DAY, Segment.NSE_EQ, "1", 1),
    ],
)
def test_encode_place_refuses_what_cannot_be_sent(params: OrderParams) -> None:
    with pytest.raises(CodecError):
        encode_place(params)


def test_encode_modify_drives_the_real_sdk() -> None:
    sdk, capture = _sdk_with_capture()
    sdk.modify_order(**encode_modify("1124091136546", PARAMS))
    method, endpoint, payload = capture.calls[0]
    assert (method, endpoint) == ("PUT", "/orders/1124091136546")
    assert payload == {
        "orderId": "1124091136546",
        "orderType": "STOP_LOSS",
        "legName": None,
        "quantity": 75,
        "price": 101.5,
        "disclosedQuantity": 0,
        "triggerPrice": 102.0,
        "validity": "DAY",
    }
    sdk.modify_order(**encode_modify("9", PARAMS, "stop_loss_leg"))
    assert capture.calls[1][2]["legName"] == "STOP_LOSS_LEG"
    with pytest.raises(CodecError):
        encode_modify("9", PARAMS, "MIDDLE_LEG")
    with pytest.raises(CodecError):
        encode_modify("", PARAMS)


# --- properties ---------------------------------------------------------------------------

json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)
KNOWN_KEYS = list(DOC_SAMPLE["Data"]) + list(REST_SAMPLE)
field_values = (
    json_values
    | st.sampled_from(["", "0", "10", "245.50", "B", "S", "LMT", "NSE", "E", "I", "C", "V", "B"])
    | st.sampled_from(["Pending", "TRADED", "0001-01-01 00:00:00", "2024-09-11 14:39:29", "NaN"])
)
data_dicts = st.dictionaries(
    st.sampled_from(KNOWN_KEYS) | st.text(max_size=8), field_values, max_size=30
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(json_values, st.builds(lambda d: {"Type": "order_alert", "Data": d}, data_dicts)))
def test_socket_decode_never_raises(message: Any) -> None:
    for raw in (message, json.dumps(message)):
        result = decode_socket_message(raw)
        assert result.kind in SocketDecodeKind
        if result.kind is SocketDecodeKind.ORDER:
            assert result.snapshot is not None
        if result.kind is SocketDecodeKind.MALFORMED:
            assert result.error


@given(st.text() | st.binary())
def test_socket_decode_never_raises_on_text(raw: str | bytes) -> None:
    assert decode_socket_message(raw).kind in SocketDecodeKind


@settings(max_examples=300)
@given(data_dicts | json_values)
def test_rest_decode_raises_only_codec_error(row: Any) -> None:
    with contextlib.suppress(CodecError):
        decode_rest_order(row)
    snaps, errors = decode_rest_orders([row, REST_SAMPLE])
    assert len(snaps) + len(errors) == 2
    assert snaps[-1].order_id == "112111182198"


# An order, described once, encoded in both dialects.
_SOCKET_STATUSES = [
    OrderStatus.TRANSIT,
    OrderStatus.PENDING,
    OrderStatus.PART_TRADED,
    OrderStatus.TRADED,
    OrderStatus.CANCELLED,
    OrderStatus.REJECTED,
    OrderStatus.EXPIRED,
]

times = st.none() | st.datetimes(
    min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1)
).map(lambda d: d.replace(microsecond=0))
prices = st.integers(min_value=0, max_value=10_000_000).map(lambda p: p / 100)

Drawn = TypeVar("Drawn")


class Draw(Protocol):
    """A draw function: @composite's (st.DrawFn) or a test's ``data.draw``.

    st.DrawFn alone refuses ``data.draw`` under mypy (it also declares ``__signature__``).
    """

    def __call__(self, strategy: st.SearchStrategy[Drawn], label: object = None) -> Drawn: ...


@st.composite
def orders(draw: st.DrawFn) -> OrderSnapshot:
    status = draw(st.sampled_from(_SOCKET_STATUSES))
    quantity = draw(
        st.integers(min_value=2 if status is OrderStatus.PART_TRADED else 1, max_value=10**6)
    )
    if status is OrderStatus.PART_TRADED:
        filled = draw(st.integers(min_value=1, max_value=quantity - 1))
    elif status in (OrderStatus.PENDING, OrderStatus.TRANSIT):
        filled = 0
    elif status is OrderStatus.TRADED:
        filled = quantity
    else:
        filled = draw(st.integers(min_value=0, max_value=quantity - 1))
    product = draw(st.sampled_from(list(Product)))
    leg = draw(st.sampled_from(list(LEG_NO))) if product in (Product.CO, Product.BO) else ""
    return OrderSnapshot(
        order_id=str(draw(st.integers(min_value=1, max_value=10**15))),
        client_id=str(draw(st.integers(min_value=10**9, max_value=10**10))),
        status=status,
        side=draw(st.sampled_from(list(Side))),
        order_type=draw(st.sampled_from(list(OrderType))),
        product=product,
        validity=draw(st.sampled_from(list(Validity))),
        segment=draw(st.sampled_from(list(Segment))),
        security_id=str(draw(st.integers(min_value=1, max_value=10**6))),
        quantity=quantity,
        filled_qty=filled,
        price=draw(prices),
        trigger_price=draw(prices),
        disclosed_qty=draw(st.integers(min_value=0, max_value=quantity)),
        avg_price=draw(prices) if filled else 0.0,
        trading_symbol=draw(st.sampled_from(["", "IDEA", "NIFTY 25 NOV 24000 CALL"])),
        correlation_id=draw(st.sampled_from(["", "CPY-ABCDEFGHIJKLMNOP-0", "manual_1"])),
        amo=draw(st.booleans()),
        leg=leg,
        reason=draw(st.sampled_from(["", "CONFIRMED", "RMS: insufficient margin"])),
        created_at=(lambda t: to_ist(t) if t else None)(draw(times)),
        updated_at=(lambda t: to_ist(t) if t else None)(draw(times)),
    )


def _fmt_time(t: datetime | None) -> str:
    return t.strftime("%Y-%m-%d %H:%M:%S") if t else "0001-01-01 00:00:00"


def _maybe_str(draw: Draw, value: int | float) -> int | float | str:
    if not draw(st.booleans()):
        return value
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def _scramble(draw: Draw, key: str) -> str:
    flips = draw(st.lists(st.booleans(), min_size=len(key), max_size=len(key)))
    return "".join(c.upper() if f else c.lower() for c, f in zip(key, flips, strict=True))


def _socket_status_word(draw: Draw, order: OrderSnapshot) -> str:
    # The socket has no PART_TRADED: a part-filled order says PENDING.
    word = "PENDING" if order.status is OrderStatus.PART_TRADED else order.status.value
    return draw(st.sampled_from([word, word.title(), word.lower()]))


def _socket_encoding(draw: Draw, o: OrderSnapshot, scramble: bool) -> dict[str, Any]:
    exchange, letter = EXCHANGE_SEGMENT[o.segment]
    data: dict[str, Any] = {
        "OrderNo": o.order_id,
        "ClientId": o.client_id,
        "Status": _socket_status_word(draw, o),
        "TxnType": SIDE[o.side],
        "OrderType": ORDER_TYPE[o.order_type],
        "Product": PRODUCT[o.product],
        "Validity": o.validity.value,
        "Exchange": exchange,
        "Segment": letter,
        "SecurityId": o.security_id,
        "Quantity": _maybe_str(draw, o.quantity),
        "TradedQty": _maybe_str(draw, o.filled_qty),
        "RemainingQuantity": o.quantity - o.filled_qty,
        "Price": _maybe_str(draw, o.price),
        "TriggerPrice": _maybe_str(draw, o.trigger_price),
        "AvgTradedPrice": _maybe_str(draw, o.avg_price),
        "DiscQuantity": _maybe_str(draw, o.disclosed_qty),
        "Symbol": o.trading_symbol,
        "CorrelationId": o.correlation_id,
        "OffMktFlag": "1" if o.amo else "0",
        "LegNo": LEG_NO.get(o.leg, 1),
        "AlgoOrdNo": "",
        "Remarks": "NA",
        "ReasonDescription": o.reason,
        "OrderDateTime": _fmt_time(o.created_at),
        "LastUpdatedTime": _fmt_time(o.updated_at),
        "ExpiryDate": "0001-01-01 00:00:00",
        "Source": "P",
    }
    if scramble:
        data = {_scramble(draw, k): v for k, v in data.items()}
    return {"Type": "order_alert", "Data": data}


def _rest_encoding(draw: Draw, o: OrderSnapshot, scramble: bool) -> dict[str, Any]:
    row: dict[str, Any] = {
        "dhanClientId": o.client_id,
        "orderId": o.order_id,
        "exchangeOrderId": "1400000000404591",
        "correlationId": o.correlation_id,
        "orderStatus": draw(st.sampled_from([o.status.value, o.status.value.title()])),
        "transactionType": o.side.value,
        "exchangeSegment": o.segment.value,
        "productType": o.product.value,
        "orderType": o.order_type.value,
        "validity": o.validity.value,
        "tradingSymbol": o.trading_symbol,
        "securityId": o.security_id,
        "quantity": _maybe_str(draw, o.quantity),
        "disclosedQuantity": _maybe_str(draw, o.disclosed_qty),
        "price": _maybe_str(draw, o.price),
        "triggerPrice": _maybe_str(draw, o.trigger_price),
        "afterMarketOrder": o.amo,
        "legName": o.leg or "NA",
        "createTime": _fmt_time(o.created_at),
        "updateTime": _fmt_time(o.updated_at),
        "omsErrorDescription": o.reason,
        "remainingQuantity": o.quantity - o.filled_qty,
        "averageTradedPrice": _maybe_str(draw, o.avg_price),
        draw(st.sampled_from(["filledQty", "filled_qty"])): _maybe_str(draw, o.filled_qty),
    }
    if scramble:
        row = {_scramble(draw, k): v for k, v in row.items()}
    return row


@settings(max_examples=300)
@given(st.data(), orders())
def test_both_dialects_decode_to_the_same_snapshot(
    data: st.DataObject, order: OrderSnapshot
) -> None:
    draw = data.draw
    from_socket = _snap(json.dumps(_socket_encoding(draw, order, scramble=False)))
    from_rest = decode_rest_order(_rest_encoding(draw, order, scramble=False))
    assert from_socket == order.with_changes(source=SnapshotSource.STREAM)
    assert from_rest == order.with_changes(source=SnapshotSource.ORDER_BOOK)
    assert from_socket.with_changes(source=SnapshotSource.ORDER_BOOK) == from_rest


@settings(max_examples=200)
@given(st.data(), orders())
def test_scrambled_key_case_decodes_the_same(data: st.DataObject, order: OrderSnapshot) -> None:
    draw = data.draw
    assert _snap(_socket_encoding(draw, order, scramble=True)).with_changes(
        source=SnapshotSource.STORE
    ) == order.with_changes(source=SnapshotSource.STORE)
    assert decode_rest_order(_rest_encoding(draw, order, scramble=True)).with_changes(
        source=SnapshotSource.STORE
    ) == order.with_changes(source=SnapshotSource.STORE)


# --- live Dhan (facts §8b): recorded answers ---------------------------------------------

# A GET /orders row shaped like the [REC] recordings of api.dhan.co: placeholders for every
# unset field (L6), a cancelled unfilled order with remainingQuantity 0 (L7).
LIVE_CANCELLED_ROW: dict[str, Any] = {
    "dhanClientId": "1100001111",
    "orderId": "52250115123456",
    "exchangeOrderId": "0",
    "correlationId": "NA",
    "orderStatus": "CANCELLED",
    "transactionType": "BUY",
    "exchangeSegment": "NSE_EQ",
    "productType": "CNC",
    "orderType": "LIMIT",
    "validity": "DAY",
    "tradingSymbol": "TCS",
    "securityId": "11536",
    "quantity": 1,
    "disclosedQuantity": 0,
    "price": 3000.0,
    "triggerPrice": 0.0,
    "afterMarketOrder": False,
    "boProfitValue": 0.0,
    "boStopLossValue": 0.0,
    "legName": "NA",
    "createTime": "2025-01-15 10:12:31",
    "updateTime": "2025-01-15 10:12:45",
    "exchangeTime": "0001-01-01 00:00:00",
    "drvExpiryDate": "0001-01-01",
    "drvOptionType": "NA",
    "drvStrikePrice": 0.0,
    "omsErrorCode": "0",
    "omsErrorDescription": "NA",
    "algoId": "0",
    "remainingQuantity": 0,
    "averageTradedPrice": 0.0,
    "filledQty": 0,
}


def test_live_row_placeholders_are_not_values() -> None:
    snap = decode_rest_order(LIVE_CANCELLED_ROW)
    assert snap.correlation_id == ""  # "NA" is no correlationId
    assert snap.leg == ""
    assert snap.reason == ""
    assert snap.parent_order_id == ""
    assert snap.is_option is None  # drvOptionType "NA" proves nothing
    assert snap.status is OrderStatus.CANCELLED
    assert snap.filled_qty == 0  # from filledQty, whatever remainingQuantity says
    assert snap.created_at == to_ist(datetime(2025, 1, 15, 10, 12, 31))


def test_cancelled_with_remaining_zero_and_no_filled_field_is_not_a_fill() -> None:
    row = dict(LIVE_CANCELLED_ROW)
    del row["filledQty"]
    assert decode_rest_order(row).filled_qty == 0
    row["orderStatus"] = "REJECTED"
    assert decode_rest_order(row).filled_qty == 0
    # An open order still derives its fills from the remainder.
    row.update(orderStatus="PENDING", quantity=10, remainingQuantity=4)
    snap = decode_rest_order(row)
    assert snap.filled_qty == 6 and snap.status is OrderStatus.PART_TRADED


def test_live_partially_filled_then_cancelled_keeps_its_fills() -> None:
    row = dict(LIVE_CANCELLED_ROW, quantity=10, filledQty=4, remainingQuantity=0)
    snap = decode_rest_order(row)
    assert snap.status is OrderStatus.CANCELLED and snap.filled_qty == 4


def test_real_correlation_id_survives() -> None:
    row = dict(LIVE_CANCELLED_ROW, correlationId="CPY-ABC-0")
    assert decode_rest_order(row).correlation_id == "CPY-ABC-0"


def test_date_only_expiry_and_trade_book_placeholders_do_not_break_a_row() -> None:
    row = dict(LIVE_CANCELLED_ROW, drvExpiryDate="2026-12-01", customSymbol=None)
    row["drvOptionType"] = "CALL"
    snap = decode_rest_order(row)
    assert snap.is_option is True
    assert snap.order_id == "52250115123456"


# The live socket (L2/L3/L12): camelCase keys, Title-case status, lower-camel duplicates.
LIVE_SOCKET_DATA: dict[str, Any] = {
    "exchange": "NSE",
    "segment": "D",
    "source": "P",
    "securityId": "48211",
    "clientId": "1100001111",
    "exchOrderNo": "0",
    "orderNo": "52250115777",
    "product": "M",
    "txnType": "S",
    "orderType": "LMT",
    "validity": "DAY",
    "quantity": 130,
    "tradedQty": 0,
    "remainingQuantity": 0,
    "price": 221.45,
    "triggerPrice": 0,
    "status": "Cancelled",
    "correlationId": "NA",
    "legNo": 1,
    "algoOrdNo": "0",
    "instrument": "OPTIDX",
    "optType": "CE",
    "lotSize": 65,
    "tickSize": 0.05,
    "refLtp": 220.1,
    "goodTillDaysDate": "0001-01-01",
    "expiryDate": "2026-12-01 14:30:00",
    "lastUpdatedTime": "2026-12-01 10:00:00",
}


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("Pending", OrderStatus.PENDING),
        ("Traded", OrderStatus.TRADED),
        ("Cancelled", OrderStatus.CANCELLED),
        ("Rejected", OrderStatus.REJECTED),
        ("Transit", OrderStatus.TRANSIT),
        ("Expired", OrderStatus.EXPIRED),
        ("Part_Traded", OrderStatus.PART_TRADED),
    ],
)
def test_live_socket_camel_case_title_case(status: str, expected: OrderStatus) -> None:
    filled = 130 if expected is OrderStatus.TRADED else 0
    if expected is OrderStatus.PART_TRADED:
        filled = 65
    data = dict(LIVE_SOCKET_DATA, status=status, tradedQty=filled)
    snap = _snap({"type": "order_alert", "data": data})
    assert snap.status is expected
    assert snap.order_id == "52250115777" and snap.client_id == "1100001111"
    assert snap.segment is Segment.NSE_FNO and snap.side is Side.SELL
    assert snap.product is Product.MARGIN
    assert snap.correlation_id == ""
    assert snap.filled_qty == filled
    assert snap.lot_size == 65 and snap.ref_ltp == 220.1
    assert snap.is_option is True


def test_socket_pascal_and_camel_keys_decode_the_same() -> None:
    pascal = {key[0].upper() + key[1:]: value for key, value in LIVE_SOCKET_DATA.items()}
    camel = _snap({"Type": "order_alert", "Data": LIVE_SOCKET_DATA})
    assert _snap({"Type": "order_alert", "Data": pascal}) == camel
    both = dict(pascal) | dict(LIVE_SOCKET_DATA)  # the docs sample repeats keys in both casings
    assert _snap({"Type": "order_alert", "Data": both}) == camel


def socket_instrument_hint(raw: str | dict[str, Any]) -> InstrumentHint | None:
    return decode_socket_message(raw).hint


def test_socket_instrument_hint() -> None:
    frame = json.dumps({"Type": "order_alert", "Data": LIVE_SOCKET_DATA})
    assert socket_instrument_hint(frame) == InstrumentHint(
        segment=Segment.NSE_FNO,
        security_id="48211",
        lot_size=65,
        tick_size=0.05,
        option_type="CE",
        instrument_type="OPTIDX",
        symbol="",
    )
    bare = {k: v for k, v in LIVE_SOCKET_DATA.items() if k not in ("lotSize", "tickSize")}
    hint = socket_instrument_hint({"Type": "order_alert", "Data": dict(bare, optType="XX")})
    assert hint is not None and hint.lot_size == 0 and hint.tick_size == 0.0
    assert hint.option_type == ""
    assert socket_instrument_hint("not json") is None
    assert socket_instrument_hint({"Type": "order_alert", "Data": {"securityId": "1"}}) is None


def test_a_decoded_alert_carries_its_instrument_hint() -> None:
    """The stream reads the hint off the decoded frame (parsed once), from text or a mapping."""
    message = {"Type": "order_alert", "Data": LIVE_SOCKET_DATA}
    result = decode_socket_message(json.dumps(message))
    assert result.is_order and result.hint is not None
    assert result.hint == socket_instrument_hint(message)
    assert decode_socket_message("not json").hint is None


def test_field_names_read_alike_however_written_even_past_the_known_names() -> None:
    """Keys are normalised through a bounded table of known names; a flood of novel or
    long keys (a hostile or broken feed) neither grows it past its bound nor reads wrong."""
    from engine.dhan import fields

    assert fields.norm_key("filled_qty") == fields.norm_key("FilledQty") == "filledqty"
    assert fields.norm_key("Disc-Qty Rem") == "discqtyrem"
    assert fields.norm_key(42) == "42"
    for i in range(fields._MAX_KNOWN_KEYS + 50):
        assert fields.norm_key(f"Odd_Key-{i}") == f"oddkey{i}"
    assert len(fields._KNOWN_KEYS) <= fields._MAX_KNOWN_KEYS
    long_key = "X_" * 100
    assert fields.norm_key(long_key) == "x" * 100
    assert long_key not in fields._KNOWN_KEYS
    # Still right for names seen before the table filled and for new ones after it.
    assert fields.pick({"tradedqty": 5}, "TradedQty") == 5
    assert fields.pick({"tradedqty": "  ", "filledqty": 3}, "TradedQty", "Filled_Qty") == 3
    assert fields.fold({"Status": "", "status": "Pending"}) == {"status": "Pending"}
