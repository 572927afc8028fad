"""Properties of the codec against Dhan's two documented dialects (shared/dhan-api-facts.md §2, §3).

The encoders below are written from the documentation, independent of the simulator's
``engine.simulator.wire`` and of tests/unit/test_codec.py: the point is to test our decoder
against what Dhan says it sends. They cover every field the dialect can carry, which the unit
tests' round trip does not (lot size, RefLtp, AlgoOrdNo, super-order legs, null dates).

What a dialect cannot carry, and so is compared at its default:

* socket ``order_alert``: ``amo_time`` (not among the documented Data fields); ``leg`` on a plain
  order (``LegNo`` is read only for CO/BO and super-order legs); the PART_TRADED word (the socket
  says PENDING; part-traded is derived from TradedQty < Quantity).
* REST order object: ``lot_size``, ``ref_ltp``, ``is_super_order``, ``parent_order_id`` and
  ``amo_time`` (none are documented order-object fields).
* both: sub-second times (Dhan's stamps are whole seconds), ``source`` (says which dialect).
"""

from __future__ import annotations

import contextlib
import json
from datetime import datetime
from typing import Any, Protocol, TypeVar

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.clock import to_ist
from engine.dhan.codec import (
    CodecError,
    SocketDecodeKind,
    decode_rest_order,
    decode_rest_orders,
    decode_socket_message,
)
from engine.domain import (
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

PROPS = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)

# --- Dhan's socket codes, from the documentation ----------------------------------------------

NULL_DATES = ["0001-01-01 00:00:00", "", "NA"]

# --- snapshots --------------------------------------------------------------------------------

words = st.text(
    alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 _-", max_size=25
).map(str.strip)
times = st.none() | st.datetimes(
    min_value=datetime(2020, 1, 1), max_value=datetime(2030, 12, 31)
).map(lambda d: to_ist(d.replace(microsecond=0)))
prices = st.integers(min_value=0, max_value=5_000_000).map(lambda n: n / 100)
ids = st.integers(min_value=1, max_value=10**16).map(str)
# Dhan's "not set" placeholders (facts §8b L6) decode to "", so a real value is never one.
PLACEHOLDER_WORDS = frozenset({"NA", "N/A", "NULL", "NONE", "-"})
free_texts = words.filter(lambda w: w.upper() not in PLACEHOLDER_WORDS)


Drawn = TypeVar("Drawn")


class Draw(Protocol):
    """A draw function: @composite's (st.DrawFn) or a test's ``data.draw`` (st.DrawFn alone
    refuses ``data.draw`` under mypy: it also declares ``__signature__``)."""

    def __call__(self, strategy: st.SearchStrategy[Drawn], label: object = None) -> Drawn: ...


@st.composite
def snapshots(draw: st.DrawFn) -> OrderSnapshot:
    """Any consistent order snapshot with every field a socket alert can carry."""
    status = draw(st.sampled_from(list(OrderStatus)))
    quantity = draw(st.integers(min_value=2, max_value=10**6))
    if status is OrderStatus.PART_TRADED:
        filled = draw(st.integers(min_value=1, max_value=quantity - 1))
    elif status in (OrderStatus.PENDING, OrderStatus.TRANSIT):
        filled = 0
    elif status is OrderStatus.TRADED:
        filled = quantity
    else:
        filled = draw(st.integers(min_value=0, max_value=quantity))
    product = draw(st.sampled_from(list(Product)))
    is_super = product not in (Product.CO, Product.BO) and draw(st.booleans())
    multi_leg = product in (Product.CO, Product.BO) or is_super
    order_id = draw(ids)
    parent = draw(ids.filter(lambda p: p != order_id)) if multi_leg and draw(st.booleans()) else ""
    return OrderSnapshot(
        order_id=order_id,
        client_id=draw(st.integers(min_value=10**9, max_value=10**10 - 1).map(str)),
        status=status,
        side=draw(st.sampled_from(list(Side))),
        order_type=draw(st.sampled_from(list(OrderType))),
        product=product,
        validity=draw(st.sampled_from(list(Validity))),
        segment=draw(st.sampled_from(list(Segment))),
        security_id=draw(ids),
        quantity=quantity,
        filled_qty=filled,
        price=draw(prices),
        trigger_price=draw(prices),
        disclosed_qty=draw(st.integers(min_value=0, max_value=quantity)),
        avg_price=draw(prices) if filled else 0.0,
        trading_symbol=draw(words),
        correlation_id=draw(free_texts),
        amo=draw(st.booleans()),
        leg=draw(st.sampled_from(list(LEG_NO))) if multi_leg else "",
        parent_order_id=parent,
        is_super_order=is_super,
        lot_size=draw(st.integers(min_value=0, max_value=5000)),
        reason=draw(free_texts.filter(lambda w: "superorder" not in w.lower().replace(" ", ""))),
        is_option=draw(st.sampled_from([None, True, False])),
        ref_ltp=draw(prices),
        created_at=draw(times),
        updated_at=draw(times),
    )


# --- encoders, from the documented dialects ---------------------------------------------------


def ist_text(t: datetime | None, draw: Draw) -> str:
    return t.strftime("%Y-%m-%d %H:%M:%S") if t else draw(st.sampled_from(NULL_DATES))


def number(draw: Draw, value: int | float) -> Any:
    """A number as Dhan might send it: as is, or as a string in one of a few spellings."""
    if isinstance(value, int):
        return draw(st.sampled_from([value, str(value), f" {value} ", f"{value}.0", float(value)]))
    return draw(st.sampled_from([value, repr(value), f"{value:.2f}", f" {value:.2f}"]))


# The socket says whether an order is an option by Instrument and OptType; "NA" says nothing.
INSTRUMENT_FOR: dict[bool | None, str] = {True: "OPTIDX", False: "EQUITY", None: "NA"}
OPT_TYPE_FOR: dict[bool | None, str] = {True: "CE", False: "XX", None: "NA"}


def socket_frame(o: OrderSnapshot, draw: Draw) -> dict[str, Any]:
    exchange, letter = EXCHANGE_SEGMENT[o.segment]
    word = "PENDING" if o.status is OrderStatus.PART_TRADED else o.status.value
    data: dict[str, Any] = {
        "Exchange": exchange,
        "Segment": letter,
        "Source": "P",
        "SecurityId": o.security_id,
        "ClientId": o.client_id,
        "ExchOrderNo": "1100000000123456",
        "OrderNo": o.order_id,
        "Product": PRODUCT[o.product],
        "TxnType": SIDE[o.side],
        "OrderType": ORDER_TYPE[o.order_type],
        "Validity": o.validity.value,
        "DiscQuantity": number(draw, o.disclosed_qty),
        "DiscQtyRem": number(draw, o.disclosed_qty),
        "RemainingQuantity": number(draw, o.quantity - o.filled_qty),
        "Quantity": number(draw, o.quantity),
        "TradedQty": number(draw, o.filled_qty),
        "Price": number(draw, o.price),
        "TriggerPrice": number(draw, o.trigger_price),
        "TradedPrice": number(draw, o.avg_price),
        "AvgTradedPrice": number(draw, o.avg_price),
        "AlgoOrdNo": o.parent_order_id or draw(st.sampled_from(["", "0", None, o.order_id])),
        "OffMktFlag": "1" if o.amo else "0",
        "OrderDateTime": ist_text(o.created_at, draw),
        "ExchOrderTime": ist_text(o.created_at, draw),
        "LastUpdatedTime": ist_text(o.updated_at, draw),
        "Remarks": "Super Order" if o.is_super_order else draw(st.sampled_from(["", "NA"])),
        "MktType": "NL",
        "ReasonDescription": o.reason,
        "LegNo": LEG_NO.get(o.leg, draw(st.sampled_from([0, 1, None]))),
        "Instrument": INSTRUMENT_FOR[o.is_option],
        "Symbol": o.trading_symbol,
        "ProductName": "INTRADAY",
        "Status": draw(st.sampled_from([word, word.title(), word.lower()])),
        "LotSize": o.lot_size,
        "StrikePrice": 24000.0,
        "ExpiryDate": "0001-01-01 00:00:00",
        "OptType": OPT_TYPE_FOR[o.is_option],
        "DisplayName": o.trading_symbol,
        "Isin": "NA",
        "Series": "XX",
        "GoodTillDaysDate": "0001-01-01",
        "RefLtp": number(draw, o.ref_ltp),
        "TickSize": 0.05,
        "AlgoId": "0",
        "Multiplier": 1,
        "CorrelationId": o.correlation_id,
    }
    return {"Data": data, "Type": "order_alert"}


def rest_row(o: OrderSnapshot, draw: Draw) -> dict[str, Any]:
    return {
        "dhanClientId": o.client_id,
        "orderId": o.order_id,
        "exchangeOrderId": "1100000000123456",
        "correlationId": o.correlation_id,
        "orderStatus": o.status.value,
        "transactionType": o.side.value,
        "exchangeSegment": o.segment.value,
        "productType": o.product.value,
        "orderType": o.order_type.value,
        "validity": o.validity.value,
        "tradingSymbol": o.trading_symbol,
        "securityId": o.security_id,
        "quantity": number(draw, o.quantity),
        "disclosedQuantity": number(draw, o.disclosed_qty),
        "price": number(draw, o.price),
        "triggerPrice": number(draw, o.trigger_price),
        "afterMarketOrder": o.amo,
        "boProfitValue": 0.0,
        "boStopLossValue": 0.0,
        "legName": o.leg or draw(st.sampled_from(["", "NA", None])),
        "createTime": ist_text(o.created_at, draw),
        "updateTime": ist_text(o.updated_at, draw),
        "exchangeTime": ist_text(o.updated_at, draw),
        "drvExpiryDate": None,
        "drvOptionType": "CALL" if o.is_option else draw(st.sampled_from(["NA", None])),
        "drvStrikePrice": 0.0,
        "omsErrorCode": None,
        "omsErrorDescription": o.reason,
        "algoId": "0",
        "remainingQuantity": number(draw, o.quantity - o.filled_qty),
        "averageTradedPrice": number(draw, o.avg_price),
        draw(st.sampled_from(["filledQty", "filled_qty"])): number(draw, o.filled_qty),
    }


def socket_view(o: OrderSnapshot) -> OrderSnapshot:
    return o.with_changes(source=SnapshotSource.STREAM, amo_time=None)


def rest_view(o: OrderSnapshot) -> OrderSnapshot:
    return o.with_changes(
        source=SnapshotSource.ORDER_BOOK,
        lot_size=0,
        ref_ltp=0.0,
        is_super_order=False,
        parent_order_id="",
        amo_time=None,
        # REST says CALL/PUT for an option; its "NA" proves nothing either way.
        is_option=True if o.is_option else None,
    )


def decoded(frame: Any) -> OrderSnapshot:
    result = decode_socket_message(frame)
    assert result.kind is SocketDecodeKind.ORDER, result.error
    assert result.snapshot is not None
    return result.snapshot


def scramble_case(draw: Draw, key: str) -> str:
    flips = draw(st.lists(st.booleans(), min_size=len(key), max_size=len(key)))
    return "".join(c.upper() if f else c.lower() for c, f in zip(key, flips, strict=True))


# --- properties -------------------------------------------------------------------------------


@PROPS
@given(st.data(), snapshots())
def test_socket_dialect_round_trips_every_field_it_carries(
    data: st.DataObject, order: OrderSnapshot
) -> None:
    frame = socket_frame(order, data.draw)
    assert decoded(frame) == socket_view(order)
    assert decoded(json.dumps(frame)) == socket_view(order)
    assert decoded(json.dumps(frame).encode()) == socket_view(order)


@PROPS
@given(st.data(), snapshots())
def test_rest_dialect_round_trips_every_field_it_carries(
    data: st.DataObject, order: OrderSnapshot
) -> None:
    row = rest_row(order, data.draw)
    assert decode_rest_order(row) == rest_view(order)
    assert decode_rest_order(json.loads(json.dumps(row))) == rest_view(order)
    snaps, errors = decode_rest_orders([row, row])
    assert errors == [] and snaps == [rest_view(order)] * 2


@PROPS
@given(st.data(), snapshots())
def test_the_two_dialects_agree_on_what_both_carry(
    data: st.DataObject, order: OrderSnapshot
) -> None:
    from_socket = decoded(socket_frame(order, data.draw))
    from_rest = decode_rest_order(rest_row(order, data.draw))
    assert rest_view(from_socket) == from_rest


@PROPS
@given(st.data(), snapshots())
def test_keys_in_any_case_and_spelling_decode_the_same(
    data: st.DataObject, order: OrderSnapshot
) -> None:
    """Random case, snake_case, and the socket's duplicated keys (a PascalCase key repeated in
    camelCase, or with a blank duplicate) all decode to the same snapshot."""
    draw = data.draw

    def respell(key: str) -> str:
        style = draw(st.sampled_from(["case", "snake", "camel"]))
        if style == "snake":
            return "".join(("_" + c.lower()) if c.isupper() else c for c in key).lstrip("_")
        if style == "camel":
            return key[0].lower() + key[1:]
        return scramble_case(draw, key)

    frame = socket_frame(order, draw)
    fields = list(frame["Data"].items())
    spelled: dict[str, Any] = {}
    for key, value in fields:
        spelled.setdefault(respell(key), value)
        if draw(st.booleans()):  # a duplicate: same value, or blank
            spelled.setdefault(key[0].lower() + key[1:], draw(st.sampled_from([value, ""])))
    top = {scramble_case(draw, "Type"): frame["Type"], scramble_case(draw, "Data"): spelled}
    assert decoded(top) == socket_view(order)
    row = {respell(k): v for k, v in rest_row(order, draw).items()}
    assert decode_rest_order(row) == rest_view(order)


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=12)
    | st.sampled_from(["", "NaN", "inf", "-1", "1e400", "0x10", "1,5", "B", "LMT", "NSE"])
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=12,
)


@PROPS
@given(st.data(), snapshots())
def test_a_damaged_frame_is_malformed_or_decoded_never_an_exception(
    data: st.DataObject, order: OrderSnapshot
) -> None:
    """Valid frames with fields dropped or replaced by arbitrary JSON: the socket decoder
    returns ORDER or MALFORMED (with an error), the REST decoder a snapshot or CodecError."""
    draw = data.draw
    frame = socket_frame(order, draw)
    row = rest_row(order, draw)
    for payload in (frame["Data"], row):
        keys = list(payload)
        for key in draw(st.lists(st.sampled_from(keys), max_size=4, unique=True)):
            if draw(st.booleans()):
                del payload[key]
            else:
                payload[key] = draw(json_values)
    for raw in (frame, json.dumps(frame, default=str)):
        result = decode_socket_message(raw)
        assert result.kind in (SocketDecodeKind.ORDER, SocketDecodeKind.MALFORMED)
        assert (result.snapshot is not None) == (result.kind is SocketDecodeKind.ORDER)
        if result.kind is SocketDecodeKind.MALFORMED:
            assert result.error and result.raw
    with contextlib.suppress(CodecError):
        decode_rest_order(row)
    snaps, errors = decode_rest_orders([row])
    assert len(snaps) + len(errors) == 1


@PROPS
@given(json_values, st.sampled_from(["order_alert", "ORDER_ALERT", "Order_Alert"]))
def test_arbitrary_json_never_raises(value: Any, type_word: str) -> None:
    """Any JSON value, as a whole frame or as an order_alert's Data, as text or parsed."""
    frames: list[Any] = [value, {"Type": type_word, "Data": value}, [value], {"type": value}]
    for frame in frames:
        raws: list[Any] = [frame, json.dumps(frame)]
        for raw in raws:
            result = decode_socket_message(raw)
            assert result.kind in SocketDecodeKind
            if result.kind is SocketDecodeKind.MALFORMED:
                assert result.error
    with contextlib.suppress(CodecError):
        decode_rest_order(value)
    _snaps, errors = decode_rest_orders(value if isinstance(value, list) else [value])
    assert all(isinstance(e, CodecError) for e in errors)


@PROPS
@given(st.data(), snapshots())
def test_a_part_filled_order_is_part_traded_whatever_the_socket_says(
    data: st.DataObject, order: OrderSnapshot
) -> None:
    """The socket has no PART_TRADED word: an open PENDING/TRANSIT alert with
    0 < TradedQty < Quantity decodes as PART_TRADED; otherwise the status is as sent."""
    frame = socket_frame(order, data.draw)
    word = data.draw(st.sampled_from(["PENDING", "TRANSIT", "Pending"]))
    frame["Data"]["Status"] = word
    snap = decoded(frame)
    if 0 < order.filled_qty < order.quantity:
        assert snap.status is OrderStatus.PART_TRADED
    else:
        assert snap.status.value == word.upper()
