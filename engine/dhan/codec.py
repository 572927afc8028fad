"""The only code that knows Dhan's two wire dialects.

* The order-update WebSocket sends ``{"Type": "order_alert", "Data": {...}}`` with PascalCase
  keys (sometimes camelCase, sometimes duplicated) and short codes: TxnType B/S, OrderType
  LMT/MKT/SL/SLM, Product C/I/M/F/V/B, and ``Exchange`` + ``Segment`` letters.
* REST (``GET /orders`` and friends) sends camelCase keys and full names.

Both become one :class:`~engine.domain.OrderSnapshot`. Keys are read case-insensitively (and
with underscores ignored, so ``filled_qty`` == ``filledQty``), status words are upper-cased and
normalised, numbers may arrive as strings, unknown fields are ignored.

What live Dhan sends (facts §8b) is read as such: camelCase or PascalCase socket keys (L2),
Title-case statuses (L3), placeholders for unset fields (``correlationId``/``legName``/
``drvOptionType`` "NA", ``omsErrorCode``/``exchangeOrderId`` "0", date-only "0001-01-01";
L6/L8/L12) and ``remainingQuantity`` 0 on a cancelled, unfilled order (L7: fills come from
``filledQty``/``TradedQty``, never from the remainder of an order that ended).

The socket also teaches instrument facts (``LotSize``, ``TickSize``, ``OptType``,
``Instrument``): a decoded order alert carries them as its ``hint``, for the instrument book.

The field readers live in :mod:`engine.dhan.fields`, the short codes and names in
:mod:`engine.dhan.vocabulary`, the reverse direction (our enums -> the SDK's keyword
arguments) in :mod:`engine.dhan.encode`; their public names are re-exported here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from engine.dhan.encode import encode_modify, encode_place
from engine.dhan.fields import (
    CodecError,
    as_flag,
    as_number,
    as_text,
    as_time,
    as_word,
    field_text,
    fold,
    id_text,
    lenient_int,
    norm_key,
    pick,
    positive_number,
    required_security,
    safe_text,
    whole_number,
)
from engine.dhan.vocabulary import (
    LEG_BY_NUMBER,
    LEG_NAMES,
    OPTION_TYPES,
    ORDER_TYPES,
    SIDES,
    VALIDITIES,
    leg_from_name,
    lookup,
    parse_amo_time,
    parse_order_status,
    parse_product,
    parse_segment,
    rest_is_option,
    socket_is_option,
    socket_segment,
)
from engine.domain import OrderSnapshot, OrderStatus, Product, Segment, SnapshotSource, Validity

__all__ = [
    "LEG_NAMES",
    "CodecError",
    "DecodedRows",
    "InstrumentHint",
    "SocketDecodeKind",
    "SocketDecodeResult",
    "decode_rest_order",
    "decode_rest_orders",
    "decode_socket_message",
    "encode_modify",
    "encode_place",
    "parse_order_status",
    "parse_product",
    "parse_segment",
]

_MAX_RAW_CHARS = 20_000


class SocketDecodeKind(StrEnum):
    ORDER = "order"  # an order_alert frame, decoded to a snapshot
    IGNORED = "ignored"  # a well-formed frame of another Type
    MALFORMED = "malformed"  # not JSON, not an object, or an order_alert we cannot read


@dataclass(frozen=True, slots=True)
class InstrumentHint:
    """Instrument facts one order alert carries (0 / "" when the alert did not say)."""

    segment: Segment
    security_id: str
    lot_size: int = 0
    tick_size: float = 0.0  # rupees, as the socket sends it (unit unverified on live Dhan)
    option_type: str = ""  # "CE" / "PE"; "" when not an option or not said ("XX", "NA")
    instrument_type: str = ""  # EQUITY, OPTIDX, FUTCOM ...
    symbol: str = ""


@dataclass(frozen=True, slots=True)
class SocketDecodeResult:
    kind: SocketDecodeKind
    snapshot: OrderSnapshot | None = None
    message_type: str = ""  # the frame's Type (for IGNORED and ORDER)
    error: str = ""  # what is wrong (for MALFORMED)
    raw: str = ""  # the frame's text, kept for inspection (for MALFORMED)
    hint: InstrumentHint | None = None  # what an ORDER frame says of its instrument

    @property
    def is_order(self) -> bool:
        return self.kind is SocketDecodeKind.ORDER


def _settle_status(status: OrderStatus, quantity: int, filled: int) -> OrderStatus:
    """Socket alerts have no PART_TRADED: an open order with fills is part-traded."""
    if status in (OrderStatus.PENDING, OrderStatus.TRANSIT) and 0 < filled < quantity:
        return OrderStatus.PART_TRADED
    return status  # a full fill is announced with TRADED; never guess it


_ENDED_UNFILLED = frozenset({OrderStatus.CANCELLED, OrderStatus.REJECTED, OrderStatus.EXPIRED})


def _filled(data: Mapping[str, Any], quantity: int, status: OrderStatus, *filled_keys: str) -> int:
    raw_filled = pick(data, *filled_keys)
    if raw_filled is not None:
        return whole_number(raw_filled, "filled quantity")
    if any(norm_key(key) in data for key in filled_keys):
        return 0  # present but blank: "" -> 0
    if status in _ENDED_UNFILLED:
        # Live Dhan reports remainingQuantity 0 on a cancelled, unfilled order (L7): the
        # remainder of an order that ended says nothing about its fills.
        return 0
    remaining = pick(data, "RemainingQuantity")
    if remaining is not None:
        return max(quantity - whole_number(remaining, "remaining quantity"), 0)
    return 0


# --- socket dialect -------------------------------------------------------------------


def _decode_socket_fields(d: Mapping[str, Any]) -> OrderSnapshot:
    """An alert's Data, folded (``fields.fold``)."""
    order_id = id_text(pick(d, "OrderNo", "OrderId"), "OrderNo")
    if not order_id:
        raise CodecError("OrderNo is missing")
    product = parse_product(pick(d, "Product", "ProductType"))
    quantity = whole_number(pick(d, "Quantity"), "Quantity")
    raw_status = parse_order_status(pick(d, "Status", "OrderStatus"))
    filled = _filled(d, quantity, raw_status, "TradedQty", "FilledQty")
    status = _settle_status(raw_status, quantity, filled)
    remarks = safe_text(pick(d, "Remarks"))
    is_super = "SUPERORDER" in remarks.upper().replace(" ", "")
    leg = ""
    if product in (Product.CO, Product.BO) or is_super:
        leg_no = lenient_int(pick(d, "LegNo"))
        leg = LEG_BY_NUMBER.get(leg_no, "") or leg_from_name(pick(d, "LegName"))
    parent = pick(d, "AlgoOrdNo")
    try:
        parent_id = as_text(parent)
    except CodecError:
        parent_id = ""
    if parent_id in ("0", order_id):
        parent_id = ""
    validity_raw = pick(d, "Validity")
    return OrderSnapshot(
        order_id=order_id,
        client_id=id_text(pick(d, "ClientId", "DhanClientId"), "ClientId"),
        status=status,
        side=lookup(SIDES, pick(d, "TxnType", "TransactionType"), "TxnType"),
        order_type=lookup(ORDER_TYPES, pick(d, "OrderType"), "OrderType"),
        product=product,
        validity=(
            Validity.DAY if validity_raw is None else lookup(VALIDITIES, validity_raw, "Validity")
        ),
        segment=socket_segment(d),
        security_id=required_security(pick(d, "SecurityId")),
        quantity=quantity,
        filled_qty=filled,
        price=as_number(pick(d, "Price"), "Price"),
        trigger_price=as_number(pick(d, "TriggerPrice"), "TriggerPrice"),
        disclosed_qty=whole_number(pick(d, "DiscQuantity", "DisclosedQuantity"), "DiscQuantity"),
        avg_price=as_number(pick(d, "AvgTradedPrice", "AverageTradedPrice"), "AvgTradedPrice"),
        ref_ltp=as_number(pick(d, "RefLtp"), "RefLtp"),
        trading_symbol=safe_text(pick(d, "Symbol", "DisplayName", "TradingSymbol")),
        correlation_id=field_text(pick(d, "CorrelationId")),
        amo=as_flag(pick(d, "OffMktFlag")) or as_flag(pick(d, "AfterMarketOrder")),
        amo_time=parse_amo_time(pick(d, "AmoTime")),
        leg=leg,
        parent_order_id=parent_id,
        is_super_order=is_super,
        lot_size=lenient_int(pick(d, "LotSize")),
        is_option=socket_is_option(d),
        reason=field_text(pick(d, "ReasonDescription", "OmsErrorDescription")),
        created_at=as_time(pick(d, "OrderDateTime", "CreateTime")),
        updated_at=as_time(pick(d, "LastUpdatedTime", "UpdateTime")),
        source=SnapshotSource.STREAM,
    )


def _raw_text(raw: object) -> str:
    try:
        if isinstance(raw, bytes):
            text = raw.decode("utf-8", errors="replace")
        elif isinstance(raw, str):
            text = raw
        else:
            text = json.dumps(raw, default=repr, ensure_ascii=False)
    except Exception:  # a pathological object: keep what repr gives
        text = repr(raw)
    return text[:_MAX_RAW_CHARS]


def decode_socket_message(raw: str | bytes | Mapping[str, Any]) -> SocketDecodeResult:
    """One order-update frame -> ORDER (a snapshot), IGNORED or MALFORMED. Never raises."""
    try:
        return _decode_socket_message(raw)
    except Exception as exc:  # the contract: malformed input is an alert, never a crash
        return SocketDecodeResult(
            SocketDecodeKind.MALFORMED, error=f"cannot decode frame: {exc}", raw=_raw_text(raw)
        )


def _hint_of(d: Mapping[str, Any]) -> InstrumentHint | None:
    """The hint of an alert's folded Data; None when it has none or it cannot be read."""
    try:
        segment = socket_segment(d)
        security_id = id_text(pick(d, "SecurityId"), "SecurityId")
        if not security_id:
            return None
        option = OPTION_TYPES.get(as_word(pick(d, "OptType", "OptionType")), "")
        return InstrumentHint(
            segment=segment,
            security_id=security_id,
            lot_size=lenient_int(pick(d, "LotSize")),
            tick_size=positive_number(pick(d, "TickSize")),
            option_type=option,
            instrument_type=field_text(pick(d, "Instrument", "InstrumentType")).upper(),
            symbol=field_text(pick(d, "Symbol", "DisplayName")),
        )
    except Exception:  # a hint is a bonus: unreadable means no hint, never an error
        return None


def _decode_socket_message(raw: object) -> SocketDecodeResult:
    def malformed(error: str) -> SocketDecodeResult:
        return SocketDecodeResult(SocketDecodeKind.MALFORMED, error=error, raw=_raw_text(raw))

    message: object
    if isinstance(raw, (str, bytes, bytearray)):
        try:
            message = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            return malformed(f"not JSON: {exc}")
    else:
        message = raw
    if not isinstance(message, Mapping):
        return malformed(f"expected a JSON object, got {type(message).__name__}")
    top = fold(message)
    type_value = top.get("type")
    message_type = type_value if isinstance(type_value, str) else ""
    if norm_key(message_type) != "orderalert":
        if not message_type:
            return malformed("frame has no Type")
        return SocketDecodeResult(SocketDecodeKind.IGNORED, message_type=message_type)
    data = top.get("data")
    if not isinstance(data, Mapping):
        return malformed("order_alert without a Data object")
    d = fold(data)  # once, for the snapshot and the hint
    try:
        snapshot = _decode_socket_fields(d)
    except CodecError as exc:
        return malformed(f"order_alert: {exc}")
    return SocketDecodeResult(
        SocketDecodeKind.ORDER,
        snapshot=snapshot,
        message_type=message_type,
        hint=_hint_of(d),
    )


# --- REST dialect -------------------------------------------------------------------------


def decode_rest_order(obj: Mapping[str, Any]) -> OrderSnapshot:
    """One REST order object (GET /orders row, /orders/{id}, /orders/external/{cid}).

    Raises CodecError with a message naming the problem.
    """
    if not isinstance(obj, Mapping):
        raise CodecError(f"expected an order object, got {type(obj).__name__}")
    try:
        return _decode_rest_order(obj)
    except CodecError as exc:
        order_id = ""
        try:
            order_id = safe_text(pick(fold(obj), "orderId"))
        except Exception:  # only for the message
            order_id = ""
        where = f"order {order_id}: " if order_id else ""
        raise CodecError(f"{where}{exc}") from None
    except Exception as exc:  # never anything but CodecError out of here
        raise CodecError(f"cannot decode order: {exc}") from None


def _decode_rest_order(obj: Mapping[str, Any]) -> OrderSnapshot:
    d = fold(obj)
    order_id = id_text(pick(d, "orderId"), "orderId")
    if not order_id:
        raise CodecError("orderId is missing")
    product = parse_product(pick(d, "productType"))
    quantity = whole_number(pick(d, "quantity"), "quantity")
    raw_status = parse_order_status(pick(d, "orderStatus"))
    filled = _filled(d, quantity, raw_status, "filledQty", "tradedQuantity")
    status = _settle_status(raw_status, quantity, filled)
    validity_raw = pick(d, "validity")
    parent_id = field_text(pick(d, "parentOrderId"))
    if parent_id == "0":
        parent_id = ""
    return OrderSnapshot(
        order_id=order_id,
        client_id=id_text(pick(d, "dhanClientId"), "dhanClientId"),
        status=status,
        side=lookup(SIDES, pick(d, "transactionType"), "transactionType"),
        order_type=lookup(ORDER_TYPES, pick(d, "orderType"), "orderType"),
        product=product,
        validity=(
            Validity.DAY if validity_raw is None else lookup(VALIDITIES, validity_raw, "validity")
        ),
        segment=parse_segment(pick(d, "exchangeSegment")),
        security_id=required_security(pick(d, "securityId")),
        quantity=quantity,
        filled_qty=filled,
        price=as_number(pick(d, "price"), "price"),
        trigger_price=as_number(pick(d, "triggerPrice"), "triggerPrice"),
        disclosed_qty=whole_number(pick(d, "disclosedQuantity"), "disclosedQuantity"),
        avg_price=as_number(pick(d, "averageTradedPrice"), "averageTradedPrice"),
        trading_symbol=safe_text(pick(d, "tradingSymbol")),
        correlation_id=field_text(pick(d, "correlationId")),
        amo=as_flag(pick(d, "afterMarketOrder")),
        amo_time=parse_amo_time(pick(d, "amoTime")),
        leg=leg_from_name(pick(d, "legName")),
        parent_order_id="" if parent_id == order_id else parent_id,
        lot_size=lenient_int(pick(d, "lotSize")),
        is_option=rest_is_option(d),
        reason=field_text(pick(d, "omsErrorDescription")),
        created_at=as_time(pick(d, "createTime")),
        updated_at=as_time(pick(d, "updateTime")),
        source=SnapshotSource.ORDER_BOOK,
    )


class DecodedRows:
    """The rows of one account's last order-book read and their snapshots.

    The book is read every few seconds while copies are open, and most of its rows have not
    changed since the last read: a row equal to the one seen before (same order id, every
    field the same) reuses its snapshot (immutable) instead of being decoded again.
    """

    def __init__(self) -> None:
        self._seen: dict[object, tuple[Mapping[str, Any], OrderSnapshot]] = {}

    def decode(self, rows: Sequence[Any]) -> tuple[list[OrderSnapshot], list[CodecError]]:
        seen: dict[object, tuple[Mapping[str, Any], OrderSnapshot]] = {}
        snapshots: list[OrderSnapshot] = []
        errors: list[CodecError] = []
        for index, row in enumerate(rows):
            key = row.get("orderId") if isinstance(row, Mapping) else None
            known = self._seen.get(key) if isinstance(key, (str, int)) else None
            if known is not None and known[0] == row:
                snapshot = known[1]
            else:
                try:
                    snapshot = decode_rest_order(row)
                except CodecError as exc:
                    errors.append(CodecError(f"row {index}: {exc}"))
                    continue
            if isinstance(key, (str, int)):
                seen[key] = (row, snapshot)
            snapshots.append(snapshot)
        self._seen = seen  # only the rows of this read: the memo never outgrows the book
        return snapshots, errors


def decode_rest_orders(
    rows: Sequence[Any] | object, memo: DecodedRows | None = None
) -> tuple[list[OrderSnapshot], list[CodecError]]:
    """A whole order book; one bad row costs only itself. Never raises."""
    if not isinstance(rows, (list, tuple)):
        return [], [CodecError(f"expected a list of orders, got {type(rows).__name__}")]
    return (memo or DecodedRows()).decode(rows)
