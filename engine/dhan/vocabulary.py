"""Dhan's vocabulary -> our domain enums: short socket codes (TxnType B/S, OrderType LMT/MKT/
SL/SLM, Product C/I/M/F/V/B, Exchange + Segment letters) and REST's full names, in any case;
super-order legs, AMO times and whether an order is an option."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.dhan.fields import CodecError, as_word, is_blank, pick, safe_text
from engine.domain import AmoTime, OrderStatus, OrderType, Product, Segment, Side, Validity

LEG_NAMES = ("ENTRY_LEG", "STOP_LOSS_LEG", "TARGET_LEG")
LEG_BY_NUMBER = {1: "ENTRY_LEG", 2: "STOP_LOSS_LEG", 3: "TARGET_LEG"}

SIDES = {"B": Side.BUY, "BUY": Side.BUY, "S": Side.SELL, "SELL": Side.SELL}

ORDER_TYPES = {
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

PRODUCTS = {
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

VALIDITIES = {"DAY": Validity.DAY, "IOC": Validity.IOC}

STATUSES: dict[str, OrderStatus] = {s.value: s for s in OrderStatus}
STATUSES.update(
    {
        "PARTTRADED": OrderStatus.PART_TRADED,
        "PARTIALLY_TRADED": OrderStatus.PART_TRADED,
        "PARTIALLY_FILLED": OrderStatus.PART_TRADED,
        "CANCELED": OrderStatus.CANCELLED,
        "CONFIRM": OrderStatus.PENDING,  # slicing response only: accepted, open
        "CONFIRMED": OrderStatus.PENDING,
    }
)

SEGMENT_LETTERS: dict[tuple[str, str], Segment] = {
    ("NSE", "E"): Segment.NSE_EQ,
    ("NSE", "D"): Segment.NSE_FNO,
    ("NSE", "C"): Segment.NSE_CURRENCY,
    ("BSE", "E"): Segment.BSE_EQ,
    ("BSE", "D"): Segment.BSE_FNO,
    ("BSE", "C"): Segment.BSE_CURRENCY,
    ("MCX", "M"): Segment.MCX_COMM,
}
SEGMENT_ALIASES = {s.value: s for s in Segment} | {
    "NSE": Segment.NSE_EQ,
    "BSE": Segment.BSE_EQ,
    "MCX": Segment.MCX_COMM,
    "NSE_FO": Segment.NSE_FNO,
    "BSE_FO": Segment.BSE_FNO,
    "CUR": Segment.NSE_CURRENCY,
    "FNO": Segment.NSE_FNO,
    "INDEX": Segment.IDX_I,
}


def lookup(table: Mapping[str, Any], value: object, name: str) -> Any:
    if is_blank(value):
        raise CodecError(f"{name} is missing")
    word = as_word(value)
    try:
        return table[word]
    except KeyError:
        raise CodecError(f"unknown {name} {value!r}") from None


def parse_order_status(value: object) -> OrderStatus:
    """Dhan's status word in any casing ("Cancelled", "Part_Traded") -> OrderStatus."""
    result: OrderStatus = lookup(STATUSES, value, "status")
    return result


def parse_product(value: object) -> Product:
    result: Product = lookup(PRODUCTS, value, "product")
    return result


def parse_segment(value: object) -> Segment:
    """A REST exchangeSegment name ("NSE_EQ", any case) -> Segment."""
    result: Segment = lookup(SEGMENT_ALIASES, value, "exchange segment")
    return result


def socket_segment(data: Mapping[str, Any]) -> Segment:
    exchange = as_word(pick(data, "Exchange"))
    letter = as_word(pick(data, "Segment"))
    full = pick(data, "ExchangeSegment")
    if full is not None:
        return parse_segment(full)
    if letter == "I":
        return Segment.IDX_I
    if (exchange, letter) in SEGMENT_LETTERS:
        return SEGMENT_LETTERS[(exchange, letter)]
    # Defensive: a full name in either field ("NSE_EQ").
    for candidate in (letter, exchange):
        if candidate in SEGMENT_ALIASES and "_" in candidate:
            return SEGMENT_ALIASES[candidate]
    if not exchange and not letter:
        raise CodecError("Exchange/Segment is missing")
    raise CodecError(f"unknown exchange segment {exchange!r}+{letter!r}")


def leg_from_name(value: object) -> str:
    word = as_word(value) if isinstance(value, str) else ""
    return word if word in LEG_NAMES else ""


def parse_amo_time(value: object) -> AmoTime | None:
    word = as_word(value) if isinstance(value, str) else ""
    try:
        return AmoTime(word)
    except ValueError:
        return None


OPTION_INSTRUMENTS = frozenset({"OPTIDX", "OPTSTK", "OPTFUT", "OPTCUR"})
NON_OPTION_INSTRUMENTS = frozenset(
    {"EQUITY", "INDEX", "FUTIDX", "FUTSTK", "FUTCOM", "FUTCUR", "FUTENR"}
)


def socket_is_option(d: Mapping[str, Any]) -> bool | None:
    """The socket's OptType (CE/PE, XX when not an option) and Instrument (OPTIDX, FUTSTK...)."""
    opt_type = safe_text(pick(d, "OptType")).upper()
    instrument = safe_text(pick(d, "Instrument")).upper()
    if opt_type in ("CE", "PE") or instrument in OPTION_INSTRUMENTS:
        return True
    if opt_type == "XX" or instrument in NON_OPTION_INSTRUMENTS:
        return False
    return None


def rest_is_option(d: Mapping[str, Any]) -> bool | None:
    """REST rows say CALL/PUT in drvOptionType; its "NA" placeholder proves nothing (the
    trade book sends it even for options), so it leaves the question open."""
    if safe_text(pick(d, "drvOptionType")).upper() in ("CALL", "PUT", "CE", "PE"):
        return True
    return None


OPTION_TYPES = {"CE": "CE", "PE": "PE", "CALL": "CE", "PUT": "PE"}
