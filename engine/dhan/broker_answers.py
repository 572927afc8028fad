"""What a :class:`~engine.dhan.broker.DhanBroker` read answers (positions, funds, profile,
the correlation lookup, the order book) and the lenient readers of the raw rows they come from."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from engine.clock import to_ist
from engine.dhan.codec import CodecError
from engine.domain import OrderSnapshot, Product, Segment

__all__ = [
    "CorrelationLookup",
    "Existence",
    "Funds",
    "OrderBook",
    "Position",
    "Profile",
    "lenient_float",
    "lenient_whole",
    "lower_keys",
    "optional_whole",
    "parse_token_validity",
    "row_correlation",
]


@dataclass(frozen=True, slots=True)
class Position:
    segment: Segment
    security_id: str
    symbol: str
    product: Product
    net_qty: int
    buy_avg: float
    sell_avg: float
    realized_pnl: float
    unrealized_pnl: float
    # Bought and sold today, and carried in from earlier days (None: the answer did not say):
    # how many fills the row counts (engine.live.account_holdings).
    day_buy_qty: int | None = None
    day_sell_qty: int | None = None
    carried_buy_qty: int | None = None
    carried_sell_qty: int | None = None


@dataclass(frozen=True, slots=True)
class Funds:
    available: float  # Dhan's misspelled ``availabelBalance``
    sod_limit: float
    utilized: float


@dataclass(frozen=True, slots=True)
class Profile:
    client_id: str
    token_valid_until: datetime | None  # IST, tz-aware; None when Dhan did not say


class Existence(StrEnum):
    FOUND = "FOUND"  # Dhan showed the order(s) carrying the correlationId
    ABSENT_FROM_BOOK = "ABSENT_FROM_BOOK"  # the whole book was read; no order carries it
    UNKNOWN = "UNKNOWN"  # no safe answer: neither place again nor assume it exists


@dataclass(frozen=True, slots=True)
class CorrelationLookup:
    """The answer of :meth:`DhanBroker.find_by_correlation`."""

    existence: Existence
    # FOUND: every order with the id (slices: several). UNKNOWN may carry the orders seen so
    # far (an order exists, but a row that may be another slice was unreadable).
    orders: tuple[OrderSnapshot, ...] = ()
    reason: str = ""  # UNKNOWN: why; otherwise where the answer came from
    from_book: bool = False  # True when the order book (not the lookup) settled it

    @property
    def snapshot(self) -> OrderSnapshot | None:
        """The furthest-along order (FOUND), else None."""
        if not self.orders:
            return None
        return max(self.orders, key=lambda s: s.progress_key())


class OrderBook(list[OrderSnapshot]):
    """The day's orders; ``errors`` lists the rows that could not be decoded (none are lost
    silently, and one bad row never costs the others)."""

    def __init__(self, snapshots: list[OrderSnapshot], errors: list[CodecError]) -> None:
        super().__init__(snapshots)
        self.errors: list[CodecError] = errors


def lenient_float(value: object) -> float:
    try:
        result = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0.0
    return result if result == result and abs(result) != float("inf") else 0.0


def lenient_whole(value: object) -> int:
    return int(lenient_float(value))


def optional_whole(value: object) -> int | None:
    """A whole quantity, or None when the answer has none (missing, not a number)."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        result = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    if result != result or abs(result) == float("inf") or result != int(result):
        return None
    return int(result)


def lower_keys(obj: Mapping[Any, Any]) -> dict[str, Any]:
    return {str(k).lower(): v for k, v in obj.items()}


_CORRELATION_KEY = "correlationid"
_NO_CORRELATION = frozenset({"", "NA", "N/A", "NULL", "NONE"})


def row_correlation(row: Mapping[Any, Any]) -> str:
    """A raw order-book row's correlationId ("" for Dhan's "NA" placeholder, L6)."""
    for key, value in row.items():
        if str(key).replace("_", "").lower() == _CORRELATION_KEY and isinstance(value, str):
            text = value.strip()
            return "" if text.upper() in _NO_CORRELATION else text
    return ""


def parse_token_validity(text: object) -> datetime | None:
    """Profile ``tokenValidity`` is "DD/MM/YYYY HH:MM" IST (unlike every other Dhan date)."""
    if not isinstance(text, str) or not text.strip():
        return None
    for fmt in ("%d/%m/%Y %H:%M", "%d/%m/%Y %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"):
        try:
            return to_ist(datetime.strptime(text.strip(), fmt))
        except ValueError:
            continue
    return None
