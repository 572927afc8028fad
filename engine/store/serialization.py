"""JSON for what the store keeps and what the headless log prints, by pydantic's TypeAdapter.

A dataclass is an object of its fields, an enum its value, a datetime ISO 8601, a tuple a list.
Reading ignores keys it does not know (a row written by a newer program still loads) and gives
datetimes at +05:30 back in the engine's IST zone. Every text made here has been through
``engine.secrets.redact``: no token reaches the database or the log.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timedelta
from typing import Any, TypeVar, cast

from pydantic import TypeAdapter

from engine.clock import IST
from engine.secrets import redact, redact_fields

_T = TypeVar("_T")
_IST_OFFSET = timedelta(hours=5, minutes=30)
_adapters: dict[type[Any], TypeAdapter[Any]] = {}


def adapter(tp: type[_T]) -> TypeAdapter[_T]:
    """The (cached) TypeAdapter of ``tp``: building one costs far more than using it."""
    found = _adapters.get(tp)
    if found is None:
        found = _adapters[tp] = TypeAdapter(tp)
    return cast("TypeAdapter[_T]", found)


def to_json(value: object) -> str:
    """Compact JSON of ``value``, secrets masked in its text (never in a number, a date or an
    id: the record must read back whole)."""
    tp = adapter(type(value))
    text = tp.dump_json(value).decode()
    if redact(text) == text:
        return text  # the usual case: nothing to mask, at the cost of one scan
    # Masked over the whole text, a PIN that is also a price or a quantity would leave
    # ``"quantity":***``, which is not JSON. So field by field, where a secret can be.
    return json.dumps(
        redact_fields(tp.dump_python(value, mode="json")), separators=(",", ":"), ensure_ascii=False
    )


def from_json(tp: type[_T], text: str | bytes) -> _T:
    """The inverse of ``to_json`` for a dataclass ``tp``."""
    return _in_engine_zone(adapter(tp).validate_json(text))


def to_jsonable(value: object) -> Any:
    """``value`` as plain JSON types (dict, list, str, number, bool, None); not redacted."""
    return adapter(type(value)).dump_python(value, mode="json")


def format_datetime(value: datetime) -> str:
    """A datetime column's text (ISO 8601, with its offset when it has one)."""
    return value.isoformat()


def format_optional_datetime(value: datetime | None) -> str | None:
    return None if value is None else format_datetime(value)


def parse_datetime(text: str) -> datetime:
    """ISO 8601 back to a datetime; +05:30 comes back in the engine's IST zone."""
    return _ist_if_at_ist_offset(datetime.fromisoformat(text))


def parse_optional_datetime(text: str | None) -> datetime | None:
    return None if text is None else parse_datetime(text)


def _ist_if_at_ist_offset(value: datetime) -> datetime:
    if value.utcoffset() == _IST_OFFSET:
        return value.astimezone(IST)
    return value


def _in_engine_zone(value: _T) -> _T:
    # pydantic gives an aware datetime a fixed-offset zone; the engine's are pytz IST (which
    # formats and does arithmetic as Asia/Kolkata). The stored dataclasses are flat, so their
    # own fields are all there is to look at.
    if not dataclasses.is_dataclass(value) or isinstance(value, type):
        return value
    zoned = {
        f.name: _ist_if_at_ist_offset(v)
        for f in dataclasses.fields(value)
        if isinstance(v := getattr(value, f.name), datetime) and v.utcoffset() == _IST_OFFSET
    }
    return dataclasses.replace(value, **zoned) if zoned else value
