"""The system clock reads IST as pytz does, only cheaper."""

from __future__ import annotations

from datetime import datetime, timedelta

from engine.clock import IST, SystemClock


def test_system_clock_reads_ist_as_pytz_does() -> None:
    before = datetime.now(IST)
    now = SystemClock().now()
    after = datetime.now(IST)
    assert before <= now <= after
    assert now.tzinfo is before.tzinfo  # the very zone pytz gives: equal, hashable, same repr
    assert now.utcoffset() == timedelta(hours=5, minutes=30)
    assert now.isoformat().endswith("+05:30")
