"""Tolerant readers for the fields of Dhan's order data (socket frames and REST rows alike).

Keys are read case-insensitively with underscores, dashes and spaces ignored (``filled_qty`` ==
``filledQty`` == ``FilledQty``); the first non-blank value wins. Numbers may arrive as strings
(with thousands commas), whole numbers as floats; Dhan's placeholders for unset fields ("NA",
"N/A", "-", date-only "0001-01-01") read as empty (facts §8b L6/L8/L12). Times are IST wall
times made tz-aware. A value that cannot be read raises :class:`CodecError` naming the field,
except in the lenient readers, which fall back to empty / 0 for cosmetic fields.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from engine.clock import to_ist


class CodecError(ValueError):
    """Input that cannot be turned into a snapshot (or params that cannot be encoded)."""


def norm_key(key: object) -> str:
    if type(key) is str:
        known = _KNOWN_KEYS.get(key)
        if known is not None:
            return known
        normal = _normalise(key)
        if len(key) <= _CACHED_KEY_CHARS and len(_KNOWN_KEYS) < _MAX_KNOWN_KEYS:
            _KNOWN_KEYS[key] = normal
        return normal
    return _normalise(str(key))


def _normalise(key: str) -> str:
    return key.replace("_", "").replace("-", "").replace(" ", "").lower()


# Every frame and row repeats the same ~80 field names: a plain dict lookup each (this runs
# ~90 times per socket frame). Bounded: a long or novel key beyond it is normalised each time.
_KNOWN_KEYS: dict[str, str] = {}
_CACHED_KEY_CHARS = 64
_MAX_KNOWN_KEYS = 1024


def fold(data: Mapping[Any, Any]) -> dict[str, Any]:
    """Case- and underscore-insensitive view of a dict; the first non-empty value wins."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        nk = norm_key(key)
        if nk not in out or (is_blank(out[nk]) and not is_blank(value)):
            out[nk] = value
    return out


def is_blank(value: object) -> bool:
    return value is None or (isinstance(value, str) and value.strip() == "")


def pick(data: Mapping[str, Any], *keys: str) -> Any:
    """The first non-blank value among the (normalised) keys, else None."""
    for key in keys:
        value = data.get(norm_key(key))
        # is_blank, written out: ~50 picks a socket frame; the call cost ~5 of its ~43 us.
        if value is None or (isinstance(value, str) and value.strip() == ""):
            continue
        return value
    return None


def as_word(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise CodecError(f"expected a word, got {type(value).__name__}")
    return str(value).strip().upper().replace("-", "_").replace(" ", "_")


def as_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return str(value).strip()
    raise CodecError(f"expected text, got {type(value).__name__}")


def id_text(value: object, name: str) -> str:
    try:
        return as_text(value)
    except CodecError as exc:
        raise CodecError(f"{name}: {exc}") from None


def as_number(value: object, name: str) -> float:
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


def whole_number(value: object, name: str) -> int:
    result = as_number(value, name)
    if not result.is_integer():
        raise CodecError(f"{name}: {value!r} is not a whole number")
    if result < 0:
        raise CodecError(f"{name}: {value!r} is negative")
    return int(result)


def lenient_int(value: object) -> int:
    try:
        return whole_number(value, "")
    except CodecError:
        return 0


def as_flag(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return value != 0
    if isinstance(value, str):
        return value.strip().upper() in {"1", "TRUE", "Y", "YES"}
    return False


_NULL_DATES = ("0001-01-01", "1970-01-01 00:00:00", "NA", "N/A", "NULL", "NONE")


def as_time(value: object) -> datetime | None:
    """IST wall time "YYYY-MM-DD HH:MM:SS" -> tz-aware; null-ish or unreadable -> None.

    Lenient on purpose: a cosmetic field must never cost us an order update.
    """
    if not isinstance(value, str):
        return None
    return _parse_time(value)


@functools.lru_cache(maxsize=4096)
def _parse_time(value: str) -> datetime | None:
    # Cached: an order book read every few seconds repeats the same few hundred timestamps,
    # and localising one (pytz) costs more than the rest of the row. datetimes are immutable.
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


def required_security(value: object) -> str:
    text = id_text(value, "security id")
    if not text:
        raise CodecError("security id is missing")
    return text


def safe_text(value: object) -> str:
    try:
        return as_text(value)
    except CodecError:
        return ""


# Dhan's "not set" markers in text fields (L6): "NA" is not a correlationId, "0" not a code.
_PLACEHOLDERS = frozenset({"NA", "N/A", "NULL", "NONE", "-"})


def field_text(value: object) -> str:
    """A free-text field with Dhan's placeholders read as empty."""
    text = safe_text(value)
    return "" if text.upper() in _PLACEHOLDERS else text


def positive_number(value: object) -> float:
    try:
        result = as_number(value, "")
    except CodecError:
        return 0.0
    return result if result > 0 else 0.0
