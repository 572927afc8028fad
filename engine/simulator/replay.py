"""Replay of a recorded leader session (``copytrade run --record DIR``) in a simulated account.

``DIR/socket.jsonl`` holds one JSON object a line: ``{"at": ISO time, "account": "leader",
"frame": "<raw socket frame text>"}``. Each ``order_alert`` frame of the leader is one recorded
state of one order; the replay re-enacts those states in order, at the recorded relative times,
in the chosen account: the first frame of an order number places it, later frames change its
price / quantity / type (a modification), add fills (TradedQty rising, at TradedPrice) and set
its status (cancelled, rejected, expired, traded). The simulator's REST book and socket then
show the same orders, under the simulator's own order numbers (the recorded ones are mapped).

Frames are read the way the engine must read them: keys case-insensitively, status words in
any case, short codes (B/S, LMT/MKT/SL/SLM, C/I/M/F/V/B) and Exchange + Segment letters.
Replayed orders are never matched against the simulator's prices: fills come only from the
recording. Frames that are not JSON, not order alerts, or of other accounts are skipped (they
re-enact nothing); a line of the file itself that is not a JSON object is refused.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from .exchange import Exchange, ReplayFields, SimOrder
from .instruments import NULL_DATE, SimInstrument

SOCKET_SEGMENTS: dict[tuple[str, str], str] = {
    ("NSE", "E"): "NSE_EQ",
    ("NSE", "D"): "NSE_FNO",
    ("NSE", "C"): "NSE_CURRENCY",
    ("BSE", "E"): "BSE_EQ",
    ("BSE", "D"): "BSE_FNO",
    ("BSE", "C"): "BSE_CURRENCY",
    ("MCX", "M"): "MCX_COMM",
    ("NSE", "I"): "IDX_I",
}
ORDER_TYPES = {"LMT": "LIMIT", "MKT": "MARKET", "SL": "STOP_LOSS", "SLM": "STOP_LOSS_MARKET"}
PRODUCTS = {"C": "CNC", "I": "INTRADAY", "M": "MARGIN", "F": "MTF", "V": "CO", "B": "BO"}
SIDES = {"B": "BUY", "S": "SELL"}
STATUSES = frozenset(
    {"TRANSIT", "PENDING", "PART_TRADED", "TRADED", "CANCELLED", "REJECTED", "EXPIRED"}
)


class ReplayError(ValueError):
    """A recording that cannot be replayed; the message is one line for the user."""


@dataclass(frozen=True, slots=True)
class ReplayEvent:
    offset: float  # seconds after the first recorded frame
    data: dict[str, Any]  # the alert's Data, keys lower-cased


def load_recording(directory: str | Path, account: str = "leader") -> list[ReplayEvent]:
    path = Path(directory) / "socket.jsonl"
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ReplayError(f"cannot read {path}: {exc.strerror}") from None
    stamped: list[tuple[datetime, dict[str, Any]]] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            raise ReplayError(f"{path}:{number}: not a JSON object") from None
        if not isinstance(entry, dict) or not isinstance(entry.get("frame"), str):
            raise ReplayError(f"{path}:{number}: needs an object with 'at' and 'frame'")
        try:
            at = datetime.fromisoformat(str(entry.get("at")))
        except ValueError:
            raise ReplayError(f"{path}:{number}: 'at' is not an ISO time") from None
        if entry.get("account", account) != account:
            continue
        data = _alert_data(entry["frame"])
        if data is not None:
            stamped.append((at, data))
    if not stamped:
        return []
    first = stamped[0][0]
    return [ReplayEvent(max((at - first).total_seconds(), 0.0), data) for at, data in stamped]


def _alert_data(frame: str) -> dict[str, Any] | None:
    try:
        message = json.loads(frame)
    except ValueError:
        return None
    if not isinstance(message, dict):
        return None
    lowered = {str(k).lower(): v for k, v in message.items()}
    if str(lowered.get("type", "")).lower() != "order_alert":
        return None
    data = lowered.get("data")
    if not isinstance(data, dict):
        return None
    return {str(k).lower(): v for k, v in data.items()}


def _text(data: dict[str, Any], key: str, default: str = "") -> str:
    value = data.get(key)
    return default if value is None else str(value).strip()


def _number(data: dict[str, Any], key: str) -> float:
    try:
        return float(data.get(key) or 0.0)
    except (TypeError, ValueError):
        return 0.0


def _status(data: dict[str, Any]) -> str:
    word = _text(data, "status").upper().replace(" ", "_")
    return word if word in STATUSES else "PENDING"


def fields_of(data: dict[str, Any]) -> ReplayFields:
    order_type = _text(data, "ordertype").upper()
    product = _text(data, "product").upper()
    correlation = _text(data, "correlationid")
    return ReplayFields(
        source=_text(data, "source", "N") or "N",
        side=SIDES.get(_text(data, "txntype").upper(), "BUY"),
        product=PRODUCTS.get(product, product or "INTRADAY"),
        order_type=ORDER_TYPES.get(order_type, order_type or "LIMIT"),
        validity=_text(data, "validity", "DAY").upper() or "DAY",
        quantity=int(_number(data, "quantity")),
        price=_number(data, "price"),
        trigger_price=_number(data, "triggerprice"),
        traded_qty=int(_number(data, "tradedqty")),
        traded_price=_number(data, "tradedprice") or _number(data, "avgtradedprice"),
        status=_status(data),
        reason=_text(data, "reasondescription"),
        correlation_id="" if correlation.upper() == "NA" else correlation,
        amo=_text(data, "offmktflag") == "1",
    )


def instrument_of(data: dict[str, Any]) -> SimInstrument:
    """The instrument a frame describes (used when the simulator's master lacks it)."""
    exchange, segment_letter = _text(data, "exchange").upper(), _text(data, "segment").upper()
    segment = SOCKET_SEGMENTS.get((exchange, segment_letter), "NSE_EQ")
    security_id = _text(data, "securityid")
    symbol = _text(data, "symbol", security_id) or security_id
    instrument = _text(data, "instrument", "EQUITY") or "EQUITY"
    price = _number(data, "price") or _number(data, "refltp") or 100.0
    return SimInstrument(
        segment=segment,
        security_id=security_id,
        symbol=symbol,
        display_name=_text(data, "displayname", symbol) or symbol,
        instrument=instrument,
        lot_size=max(int(_number(data, "lotsize")), 1),
        tick_size=_number(data, "ticksize") or 0.05,
        expiry=_text(data, "expirydate", NULL_DATE) or NULL_DATE,
        strike=_number(data, "strikeprice"),
        opt_type=_text(data, "opttype", "XX") or "XX",
        default_price=price,
    )


class Replayer:
    """Re-enacts recorded frames in one account of an Exchange."""

    def __init__(self, exchange: Exchange, client_id: str) -> None:
        self.exchange = exchange
        self.client_id = client_id
        self.orders: dict[str, SimOrder] = {}  # recorded order number -> simulator order

    def apply(self, data: dict[str, Any]) -> SimOrder | None:
        recorded_no = _text(data, "orderno")
        if not recorded_no:
            return None
        fields = fields_of(data)
        order = self.orders.get(recorded_no)
        if order is None:
            inst = instrument_of(data)
            known = self.exchange.master.get(inst.segment, inst.security_id)
            order = self.exchange.replay_place(self.client_id, known or inst, fields)
            self.orders[recorded_no] = order
        else:
            self.exchange.replay_apply(order, fields)
        return order

    async def run(
        self,
        events: list[ReplayEvent],
        speed: float = 1.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        for event in events:
            delay = start + event.offset / speed - loop.time()
            if delay > 0:
                await sleep(delay)
            self.apply(event.data)
