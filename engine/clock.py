"""Injected time, so market hours, rate limits and timeouts are testable without sleeping."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Protocol

import pytz

IST = pytz.timezone("Asia/Kolkata")


class Clock(Protocol):
    def now(self) -> datetime:
        """Wall-clock time, tz-aware, in IST."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (for windows and timeouts)."""

    async def sleep(self, seconds: float) -> None: ...


def _ist_now_zone() -> tuple[timedelta, tzinfo]:
    now = datetime.now(IST)
    offset, zone = now.utcoffset(), now.tzinfo
    assert offset is not None and zone is not None
    return offset, zone


# IST has had one offset (+05:30) since 1945, so the time now is UTC moved by it, tagged with
# the very tzinfo pytz gives: the same datetime as datetime.now(IST) at half its cost (pytz
# converts through its transition table every call; the engine reads the clock ~17 times a copy).
_IST_OFFSET, _IST_ZONE = _ist_now_zone()


class SystemClock:
    def now(self) -> datetime:
        return (datetime.now(UTC) + _IST_OFFSET).replace(tzinfo=_IST_ZONE)

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(seconds, 0.0))


class ManualClock:
    """A clock tests move by hand; `sleep` advances it instead of waiting."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or IST.localize(datetime(2026, 11, 23, 10, 0, 0))
        self._mono = 1000.0

    def now(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)
        self._mono += seconds

    async def sleep(self, seconds: float) -> None:
        self.advance(max(seconds, 0.0))
        await asyncio.sleep(0)


def to_ist(naive_or_aware: datetime) -> datetime:
    """Dhan sends IST wall times with no zone; make them tz-aware."""
    if naive_or_aware.tzinfo is None:
        return IST.localize(naive_or_aware)
    return naive_or_aware.astimezone(IST)
