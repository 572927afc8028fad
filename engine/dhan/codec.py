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
``Instrument``): :func:`socket_instrument_hint` returns them for the instrument book.

The reverse direction (our enums -> the SDK's keyword arguments) lives here too:
:func:`encode_place` and :func:`encode_modify`.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from engine.clock import to_ist
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

__all__ = [
    "LEG_NAMES",
    "CodecError",
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
    "socket_instrument_hint",
]

_MAX_RAW_CHARS = 20_000
LEG_NAMES = ("ENTRY_LEG", "STOP_LOSS_LEG", "TARGET_LEG")
_LEG_BY_NUMBER = {1: "ENTRY_LEG", 2: "STOP_LOSS_LEG", 3: "TARGET_LEG"}


class CodecError(ValueError):
    """Input that cannot be turned into a snapshot (or params that cannot be encoded)."""


class SocketDecodeKind(StrEnum):
    ORDER = "order"  # an order_alert frame, decoded to a snapshot
    IGNORED = "ignored"  # a well-formed frame of another Type
    MALFORMED = "malformed"  # not JSON, not an object, or an order_alert we cannot read


@dataclass(frozen=True, slots=True)
class SocketDecodeResult:
    kind: SocketDecodeKind
    snapshot: OrderSnapshot | None = None
    message_type: str = ""  # the frame's Type (for IGNORED and ORDER)
    error: str = ""  # what is wrong (for MALFORMED)
    raw: str = ""  # the frame's text, kept for inspection (for MALFORMED)

    @property
    def is_order(self) -> bool:
        return self.kind is SocketDecodeKind.ORDER


# --- value parsers ------------------------------------------------------------------------


def _norm_key(key: object) -> str:
    if isinstance(key, str) and len(key) <= _CACHED_KEY_CHARS:
        return _norm_known_key(key)
    return str(key).replace("_", "").replace("-", "").replace(" ", "").lower()


_CACHED_KEY_CHARS = 64  # field names; a long odd key is normalised each time, never kept


@functools.lru_cache(maxsize=1024)  # every frame and row repeats the same ~80 field names
def _norm_known_key(key: str) -> str:
    return key.replace("_", "").replace("-", "").replace(" ", "").lower()


def _fold(data: Mapping[Any, Any]) -> dict[str, Any]:
    """Case- and underscore-insensitive view of a dict; the first non-empty value wins."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        nk = _norm_key(key)
        if nk not in out or (_is_blank(out[nk]) and not _is_blank(value)):
            out[nk] = value
    return out


def _is_blank(value: object) -> bool:
    return value is None or (isinstance(value, str) and value.strip() == "")


def _get(data: Mapping[str, Any], *keys: str) -> Any:
    """The first non-blank value among the (normalised) keys, else None."""
    for key in keys:
        value = data.get(_norm_key(key))
        if not _is_blank(value):
            return value
    return None


def _word(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise CodecError(f"expected a word, got {type(value).__name__}")
    return str(value).strip().upper().replace("-", "_").replace(" ", "_")


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return str(value).strip()
    raise CodecError(f"expected text, got {type(value).__name__}")


def _id_text(value: object, name: str) -> str:
    try:
        return _text(value)
    except CodecError as exc:
        raise CodecError(f"{name}: {exc}") from None


def _number(value: object, name: str) -> float:
    if value is None:
        return 0.0
    if isinstance(value, bool):
        raise CodecError(f"{name}: expected a number, got a boolean")
    if isinstance(value, (int, float)):
        result = float(value)
    elif isinstance(value, str):
        text = value.strip().replace(",", "")
        if text == "":
            return 0.0
        try:
            result = float(text)
        except ValueError:
            raise CodecError(f"{name}: {value!r} is not a number") from None
    else:
        raise CodecError(f"{name}: expected a number, got {type(value).__name__}")
    if not math.isfinite(result):
        raise CodecError(f"{name}: {value!r} is not a finite number")
    return result


def _int(value: object, name: str) -> int:
    result = _number(value, name)
    if not result.is_integer():
        raise CodecError(f"{name}: {value!r} is not a whole number")
    if result < 0:
        raise CodecError(f"{name}: {value!r} is negative")
    return int(result)


def _lenient_int(value: object) -> int:
    try:
        return _int(value, "")
    except CodecError:
        return 0


def _flag(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return value != 0
    if isinstance(value, str):
        return value.strip().upper() in {"1", "TRUE", "Y", "YES"}
    return False


_NULL_DATES = ("0001-01-01", "1970-01-01 00:00:00", "NA", "N/A", "NULL", "NONE")


def _time(value: object) -> datetime | None:
    """IST wall time "YYYY-MM-DD HH:MM:SS" -> tz-aware; null-ish or unreadable -> None.

    Lenient on purpose: a cosmetic field must never cost us an order update.
    """
    if not isinstance(value, str):
        return None
    text = value.strip()
    if not text or text.upper().startswith(_NULL_DATES):
        return None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        try:
            parsed = datetime.strptime(text, "%d/%m/%Y %H:%M:%S")
        except ValueError:
            return None
    if parsed.year <= 1:
        return None
    try:
        return to_ist(parsed)
    except (ValueError, OverflowError):
        return None


# --- enum parsers (accept short codes and full names, any case) -------------------------

_SIDES = {"B": Side.BUY, "BUY": Side.BUY, "S": Side.SELL, "SELL": Side.SELL}

_ORDER_TYPES = {
    "LMT": OrderType.LIMIT,
    "LIMIT": OrderType.LIMIT,
    "L": OrderType.LIMIT,
    "MKT": OrderType.MARKET,
    "MARKET": OrderType.MARKET,
    "SL": OrderType.STOP_LOSS,
    "STOP_LOSS": OrderType.STOP_LOSS,
    "STOPLOSS": OrderType.STOP_LOSS,
    "SL_L": OrderType.STOP_LOSS,
    "SLM": OrderType.STOP_LOSS_MARKET,
    "SL_M": OrderType.STOP_LOSS_MARKET,
    "STOP_LOSS_MARKET": OrderType.STOP_LOSS_MARKET,
    "STOPLOSS_MARKET": OrderType.STOP_LOSS_MARKET,
}

_PRODUCTS = {
    "C": Product.CNC,
    "CNC": Product.CNC,
    "I": Product.INTRADAY,
    "INTRADAY": Product.INTRADAY,
    "INTRA": Product.INTRADAY,
    "M": Product.MARGIN,
    "MARGIN": Product.MARGIN,
    "F": Product.MTF,
    "MTF": Product.MTF,
    "V": Product.CO,
    "CO": Product.CO,
    "B": Product.BO,
    "BO": Product.BO,
}

_VALIDITIES = {"DAY": Validity.DAY, "IOC": Validity.IOC}

_STATUSES: dict[str, OrderStatus] = {s.value: s for s in OrderStatus}
_STATUSES.update(
    {
        "PARTTRADED": OrderStatus.PART_TRADED,
        "PARTIALLY_TRADED": OrderStatus.PART_TRADED,
        "PARTIALLY_FILLED": OrderStatus.PART_TRADED,
        "CANCELED": OrderStatus.CANCELLED,
        "CONFIRM": OrderStatus.PENDING,  # slicing response only: accepted, open
        "CONFIRMED": OrderStatus.PENDING,
    }
)

_SEGMENT_LETTERS: dict[tuple[str, str], Segment] = {
    ("NSE", "E"): Segment.NSE_EQ,
    ("NSE", "D"): Segment.NSE_FNO,
    ("NSE", "C"): Segment.NSE_CURRENCY,
    ("BSE", "E"): Segment.BSE_EQ,
    ("BSE", "D"): Segment.BSE_FNO,
    ("BSE", "C"): Segment.BSE_CURRENCY,
    ("MCX", "M"): Segment.MCX_COMM,
}
_SEGMENT_ALIASES = {s.value: s for s in Segment} | {
    "NSE": Segment.NSE_EQ,
    "BSE": Segment.BSE_EQ,
    "MCX": Segment.MCX_COMM,
    "NSE_FO": Segment.NSE_FNO,
    "BSE_FO": Segment.BSE_FNO,
    "CUR": Segment.NSE_CURRENCY,
    "FNO": Segment.NSE_FNO,
    "INDEX": Segment.IDX_I,
}


def _enum(table: Mapping[str, Any], value: object, name: str) -> Any:
    if _is_blank(value):
        raise CodecError(f"{name} is missing")
    word = _word(value)
    try:
        return table[word]
    except KeyError:
        raise CodecError(f"unknown {name} {value!r}") from None


def parse_order_status(value: object) -> OrderStatus:
    """Dhan's status word in any casing ("Cancelled", "Part_Traded") -> OrderStatus."""
    result: OrderStatus = _enum(_STATUSES, value, "status")
    return result


def parse_product(value: object) -> Product:
    result: Product = _enum(_PRODUCTS, value, "product")
    return result


def parse_segment(value: object) -> Segment:
    """A REST exchangeSegment name ("NSE_EQ", any case) -> Segment."""
    result: Segment = _enum(_SEGMENT_ALIASES, value, "exchange segment")
    return result


def _socket_segment(data: Mapping[str, Any]) -> Segment:
    exchange = _word(_get(data, "Exchange"))
    letter = _word(_get(data, "Segment"))
    full = _get(data, "ExchangeSegment")
    if full is not None:
        return parse_segment(full)
    if letter == "I":
        return Segment.IDX_I
    if (exchange, letter) in _SEGMENT_LETTERS:
        return _SEGMENT_LETTERS[(exchange, letter)]
    # Defensive: a full name in either field ("NSE_EQ").
    for candidate in (letter, exchange):
        if candidate in _SEGMENT_ALIASES and "_" in candidate:
            return _SEGMENT_ALIASES[candidate]
    if not exchange and not letter:
        raise CodecError("Exchange/Segment is missing")
    raise CodecError(f"unknown exchange segment {exchange!r}+{letter!r}")


def _settle_status(status: OrderStatus, quantity: int, filled: int) -> OrderStatus:
    """Socket alerts have no PART_TRADED: an open order with fills is part-traded."""
    if status in (OrderStatus.PENDING, OrderStatus.TRANSIT) and 0 < filled < quantity:
        return OrderStatus.PART_TRADED
    return status  # a full fill is announced with TRADED; never guess it


_ENDED_UNFILLED = frozenset({OrderStatus.CANCELLED, OrderStatus.REJECTED, OrderStatus.EXPIRED})


def _filled(data: Mapping[str, Any], quantity: int, status: OrderStatus, *filled_keys: str) -> int:
    raw_filled = _get(data, *filled_keys)
    if raw_filled is not None:
        return _int(raw_filled, "filled quantity")
    if any(_norm_key(key) in data for key in filled_keys):
        return 0  # present but blank: "" -> 0
    if status in _ENDED_UNFILLED:
        # Live Dhan reports remainingQuantity 0 on a cancelled, unfilled order (L7): the
        # remainder of an order that ended says nothing about its fills.
        return 0
    remaining = _get(data, "RemainingQuantity")
    if remaining is not None:
        return max(quantity - _int(remaining, "remaining quantity"), 0)
    return 0


def _leg_from_name(value: object) -> str:
    word = _word(value) if isinstance(value, str) else ""
    return word if word in LEG_NAMES else ""


def _amo_time(value: object) -> AmoTime | None:
    word = _word(value) if isinstance(value, str) else ""
    try:
        return AmoTime(word)
    except ValueError:
        return None


# --- socket dialect -----------------------------------------------------------------------


def _decode_socket_data(data: Mapping[Any, Any]) -> OrderSnapshot:
    d = _fold(data)
    order_id = _id_text(_get(d, "OrderNo", "OrderId"), "OrderNo")
    if not order_id:
        raise CodecError("OrderNo is missing")
    product = parse_product(_get(d, "Product", "ProductType"))
    quantity = _int(_get(d, "Quantity"), "Quantity")
    raw_status = parse_order_status(_get(d, "Status", "OrderStatus"))
    filled = _filled(d, quantity, raw_status, "TradedQty", "FilledQty")
    status = _settle_status(raw_status, quantity, filled)
    remarks = _safe_text(_get(d, "Remarks"))
    is_super = "SUPERORDER" in remarks.upper().replace(" ", "")
    leg = ""
    if product in (Product.CO, Product.BO) or is_super:
        leg_no = _lenient_int(_get(d, "LegNo"))
        leg = _LEG_BY_NUMBER.get(leg_no, "") or _leg_from_name(_get(d, "LegName"))
    parent = _get(d, "AlgoOrdNo")
    try:
        parent_id = _text(parent)
    except CodecError:
        parent_id = ""
    if parent_id in ("0", order_id):
        parent_id = ""
    validity_raw = _get(d, "Validity")
    return OrderSnapshot(
        order_id=order_id,
        client_id=_id_text(_get(d, "ClientId", "DhanClientId"), "ClientId"),
        status=status,
        side=_enum(_SIDES, _get(d, "TxnType", "TransactionType"), "TxnType"),
        order_type=_enum(_ORDER_TYPES, _get(d, "OrderType"), "OrderType"),
        product=product,
        validity=(
            Validity.DAY if validity_raw is None else _enum(_VALIDITIES, validity_raw, "Validity")
        ),
        segment=_socket_segment(d),
        security_id=_required_security(_get(d, "SecurityId")),
        quantity=quantity,
        filled_qty=filled,
        price=_number(_get(d, "Price"), "Price"),
        trigger_price=_number(_get(d, "TriggerPrice"), "TriggerPrice"),
        disclosed_qty=_int(_get(d, "DiscQuantity", "DisclosedQuantity"), "DiscQuantity"),
        avg_price=_number(_get(d, "AvgTradedPrice", "AverageTradedPrice"), "AvgTradedPrice"),
        ref_ltp=_number(_get(d, "RefLtp"), "RefLtp"),
        trading_symbol=_safe_text(_get(d, "Symbol", "DisplayName", "TradingSymbol")),
        correlation_id=_field_text(_get(d, "CorrelationId")),
        amo=_flag(_get(d, "OffMktFlag")) or _flag(_get(d, "AfterMarketOrder")),
        amo_time=_amo_time(_get(d, "AmoTime")),
        leg=leg,
        parent_order_id=parent_id,
        is_super_order=is_super,
        lot_size=_lenient_int(_get(d, "LotSize")),
        is_option=_socket_is_option(d),
        reason=_field_text(_get(d, "ReasonDescription", "OmsErrorDescription")),
        created_at=_time(_get(d, "OrderDateTime", "CreateTime")),
        updated_at=_time(_get(d, "LastUpdatedTime", "UpdateTime")),
        source=SnapshotSource.STREAM,
    )


_OPTION_INSTRUMENTS = frozenset({"OPTIDX", "OPTSTK", "OPTFUT", "OPTCUR"})
_NON_OPTION_INSTRUMENTS = frozenset(
    {"EQUITY", "INDEX", "FUTIDX", "FUTSTK", "FUTCOM", "FUTCUR", "FUTENR"}
)


def _socket_is_option(d: Mapping[str, Any]) -> bool | None:
    """The socket's OptType (CE/PE, XX when not an option) and Instrument (OPTIDX, FUTSTK...)."""
    opt_type = _safe_text(_get(d, "OptType")).upper()
    instrument = _safe_text(_get(d, "Instrument")).upper()
    if opt_type in ("CE", "PE") or instrument in _OPTION_INSTRUMENTS:
        return True
    if opt_type == "XX" or instrument in _NON_OPTION_INSTRUMENTS:
        return False
    return None


def _rest_is_option(d: Mapping[str, Any]) -> bool | None:
    """REST rows say CALL/PUT in drvOptionType; its "NA" placeholder proves nothing (the
    trade book sends it even for options), so it leaves the question open."""
    if _safe_text(_get(d, "drvOptionType")).upper() in ("CALL", "PUT", "CE", "PE"):
        return True
    return None


def _required_security(value: object) -> str:
    text = _id_text(value, "security id")
    if not text:
        raise CodecError("security id is missing")
    return text


def _safe_text(value: object) -> str:
    try:
        return _text(value)
    except CodecError:
        return ""


# Dhan's "not set" markers in text fields (L6): "NA" is not a correlationId, "0" not a code.
_PLACEHOLDERS = frozenset({"NA", "N/A", "NULL", "NONE", "-"})


def _field_text(value: object) -> str:
    """A free-text field with Dhan's placeholders read as empty."""
    text = _safe_text(value)
    return "" if text.upper() in _PLACEHOLDERS else text


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


_OPTION_TYPES = {"CE": "CE", "PE": "PE", "CALL": "CE", "PUT": "PE"}


def _positive_number(value: object) -> float:
    try:
        result = _number(value, "")
    except CodecError:
        return 0.0
    return result if result > 0 else 0.0


def socket_instrument_hint(raw: str | bytes | Mapping[str, Any]) -> InstrumentHint | None:
    """What an ``order_alert`` frame says about its instrument; None when it says nothing
    usable (not an alert, no segment or security id). Never raises."""
    try:
        message: object = json.loads(raw) if isinstance(raw, (str, bytes, bytearray)) else raw
        if not isinstance(message, Mapping):
            return None
        data = _fold(message).get("data")
        if not isinstance(data, Mapping):
            return None
        d = _fold(data)
        segment = _socket_segment(d)
        security_id = _id_text(_get(d, "SecurityId"), "SecurityId")
        if not security_id:
            return None
        option = _OPTION_TYPES.get(_word(_get(d, "OptType", "OptionType")), "")
        return InstrumentHint(
            segment=segment,
            security_id=security_id,
            lot_size=_lenient_int(_get(d, "LotSize")),
            tick_size=_positive_number(_get(d, "TickSize")),
            option_type=option,
            instrument_type=_field_text(_get(d, "Instrument", "InstrumentType")).upper(),
            symbol=_field_text(_get(d, "Symbol", "DisplayName")),
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
    top = _fold(message)
    type_value = top.get("type")
    message_type = type_value if isinstance(type_value, str) else ""
    if _norm_key(message_type) != "orderalert":
        if not message_type:
            return malformed("frame has no Type")
        return SocketDecodeResult(SocketDecodeKind.IGNORED, message_type=message_type)
    data = top.get("data")
    if not isinstance(data, Mapping):
        return malformed("order_alert without a Data object")
    try:
        snapshot = _decode_socket_data(data)
    except CodecError as exc:
        return malformed(f"order_alert: {exc}")
    return SocketDecodeResult(SocketDecodeKind.ORDER, snapshot=snapshot, message_type=message_type)


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
            order_id = _safe_text(_get(_fold(obj), "orderId"))
        except Exception:  # only for the message
            order_id = ""
        where = f"order {order_id}: " if order_id else ""
        raise CodecError(f"{where}{exc}") from None
    except Exception as exc:  # never anything but CodecError out of here
        raise CodecError(f"cannot decode order: {exc}") from None


def _decode_rest_order(obj: Mapping[str, Any]) -> OrderSnapshot:
    d = _fold(obj)
    order_id = _id_text(_get(d, "orderId"), "orderId")
    if not order_id:
        raise CodecError("orderId is missing")
    product = parse_product(_get(d, "productType"))
    quantity = _int(_get(d, "quantity"), "quantity")
    raw_status = parse_order_status(_get(d, "orderStatus"))
    filled = _filled(d, quantity, raw_status, "filledQty", "tradedQuantity")
    status = _settle_status(raw_status, quantity, filled)
    validity_raw = _get(d, "validity")
    parent_id = _field_text(_get(d, "parentOrderId"))
    if parent_id == "0":
        parent_id = ""
    return OrderSnapshot(
        order_id=order_id,
        client_id=_id_text(_get(d, "dhanClientId"), "dhanClientId"),
        status=status,
        side=_enum(_SIDES, _get(d, "transactionType"), "transactionType"),
        order_type=_enum(_ORDER_TYPES, _get(d, "orderType"), "orderType"),
        product=product,
        validity=(
            Validity.DAY if validity_raw is None else _enum(_VALIDITIES, validity_raw, "validity")
        ),
        segment=parse_segment(_get(d, "exchangeSegment")),
        security_id=_required_security(_get(d, "securityId")),
        quantity=quantity,
        filled_qty=filled,
        price=_number(_get(d, "price"), "price"),
        trigger_price=_number(_get(d, "triggerPrice"), "triggerPrice"),
        disclosed_qty=_int(_get(d, "disclosedQuantity"), "disclosedQuantity"),
        avg_price=_number(_get(d, "averageTradedPrice"), "averageTradedPrice"),
        trading_symbol=_safe_text(_get(d, "tradingSymbol")),
        correlation_id=_field_text(_get(d, "correlationId")),
        amo=_flag(_get(d, "afterMarketOrder")),
        amo_time=_amo_time(_get(d, "amoTime")),
        leg=_leg_from_name(_get(d, "legName")),
        parent_order_id="" if parent_id == order_id else parent_id,
        lot_size=_lenient_int(_get(d, "lotSize")),
        is_option=_rest_is_option(d),
        reason=_field_text(_get(d, "omsErrorDescription")),
        created_at=_time(_get(d, "createTime")),
        updated_at=_time(_get(d, "updateTime")),
        source=SnapshotSource.ORDER_BOOK,
    )


def decode_rest_orders(
    rows: Sequence[Any] | object,
) -> tuple[list[OrderSnapshot], list[CodecError]]:
    """A whole order book; one bad row costs only itself. Never raises."""
    if not isinstance(rows, (list, tuple)):
        return [], [CodecError(f"expected a list of orders, got {type(rows).__name__}")]
    snapshots: list[OrderSnapshot] = []
    errors: list[CodecError] = []
    for index, row in enumerate(rows):
        try:
            snapshots.append(decode_rest_order(row))
        except CodecError as exc:
            errors.append(CodecError(f"row {index}: {exc}"))
    return snapshots, errors


# --- encoding: our enums -> the SDK's strings --------------------------------------------

_SDK_AMO_TIMES = (AmoTime.OPEN, AmoTime.OPEN_30, AmoTime.OPEN_60)


def encode_place(params: OrderParams) -> dict[str, Any]:
    """Keyword arguments for ``dhanhq.place_order(**kwargs)``.

    Raises CodecError for params the SDK or Dhan would refuse before anything is sent
    (non-positive quantity, AMO at PRE_OPEN which the SDK does not offer, a BO order, for which
    OrderParams carries no profit/stop-loss values).
    """
    if params.quantity <= 0:
        raise CodecError(f"quantity must be positive, got {params.quantity}")
    if not params.security_id:
        raise CodecError("security id is missing")
    if params.product is Product.BO:
        raise CodecError("BO orders need profit/stop-loss values that OrderParams does not carry")
    amo_time = params.amo_time or AmoTime.OPEN
    if params.amo and amo_time not in _SDK_AMO_TIMES:
        raise CodecError(f"the dhanhq SDK cannot place an AMO order at {amo_time.value}")
    return {
        "security_id": str(params.security_id),
        "exchange_segment": params.segment.value,
        "transaction_type": params.side.value,
        "quantity": int(params.quantity),
        "order_type": params.order_type.value,
        "product_type": params.product.value,
        "price": float(params.price),
        "trigger_price": float(params.trigger_price),
        "disclosed_quantity": int(params.disclosed_qty),
        "after_market_order": bool(params.amo),
        "validity": params.validity.value,
        "amo_time": amo_time.value,
        "bo_profit_value": None,
        "bo_stop_loss_Value": None,
        "tag": params.correlation_id or None,
    }


def encode_modify(order_id: str, params: OrderParams, leg_name: str = "") -> dict[str, Any]:
    """Keyword arguments for ``dhanhq.modify_order(**kwargs)``.

    ``params.quantity`` is the TOTAL quantity of the order (Dhan v2), not a delta. The SDK sends
    every value as given, so the types are fixed here. An empty leg name goes out as null.
    """
    if not order_id:
        raise CodecError("order id is missing")
    if params.quantity <= 0:
        raise CodecError(f"quantity must be positive, got {params.quantity}")
    leg = leg_name.strip().upper()
    if leg and leg not in LEG_NAMES:
        raise CodecError(f"unknown leg name {leg_name!r}")
    return {
        "order_id": str(order_id),
        "order_type": params.order_type.value,
        "leg_name": leg or None,
        "quantity": int(params.quantity),
        "price": float(params.price),
        "trigger_price": float(params.trigger_price),
        "disclosed_quantity": int(params.disclosed_qty),
        "validity": params.validity.value,
    }
