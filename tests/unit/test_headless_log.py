"""The headless JSON lines are written behind the copies: kept when an event comes, written
once events pause (or at the latest bound), every one of them, in order."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from engine.events import EngineEvent, FollowerOrderChanged, LimiterChanged
from engine.headless import JsonLinesLog
from engine.views import LimiterView
from tests.store_helpers import T0
from tests.unit.test_store_serialization import every_event


@dataclass
class _Loop:
    """A clock and a ``call_later`` that run nothing until told."""

    now: float = 100.0
    timers: list[tuple[float, Callable[[], None]]] = field(default_factory=list)

    def time(self) -> float:
        return self.now

    def call_later(self, delay: float, callback: Callable[[], None]) -> object:
        self.timers.append((self.now + delay, callback))
        return None

    def advance(self, seconds: float) -> None:
        """Move the clock, running each timer that falls due on the way."""
        end = self.now + seconds
        while True:
            due = sorted((at, i) for i, (at, _) in enumerate(self.timers) if at <= end)
            if not due:
                break
            at, i = due[0]
            _, callback = self.timers.pop(i)
            self.now = at
            callback()
        self.now = end


def _log(loop: _Loop, out: io.StringIO) -> JsonLinesLog:
    return JsonLinesLog(out, loop.time, call_later=loop.call_later, quiet_s=0.05, max_delay_s=1.0)


def _events(out: io.StringIO) -> list[str]:
    return [json.loads(line)["event"] for line in out.getvalue().splitlines()]


def test_events_are_written_once_they_pause_all_of_them_in_order() -> None:
    loop, out = _Loop(), io.StringIO()
    log = _log(loop, out)
    events = [e for e in every_event() if not isinstance(e, LimiterChanged)]
    for event in events:
        log(event)
        loop.advance(0.01)  # a fan-out: events 10 ms apart
    assert out.getvalue() == ""
    loop.advance(0.039)
    assert out.getvalue() == ""  # 49 ms since the last one
    loop.advance(0.002)
    assert _events(out) == [type(e).__name__ for e in events]
    log(events[0])
    loop.advance(0.06)
    assert _events(out)[-1] == type(events[0]).__name__


def test_a_stream_that_never_pauses_is_written_at_the_latest_bound() -> None:
    loop, out = _Loop(), io.StringIO()
    log = _log(loop, out)
    event = every_event()[1]
    written_at: list[int] = []
    for _ in range(250):  # 2.5 s of events 10 ms apart
        log(event)
        loop.advance(0.01)
        written_at.append(len(out.getvalue().splitlines()))
    # The first write 1 s after the first event, the next 1 s after the first one it missed.
    assert written_at[98] == 0 and written_at[99] == 100
    assert written_at[198] == 100 and written_at[199] == 200
    assert out.getvalue().count("\n") == 200


def test_flush_writes_what_is_kept_and_the_timer_then_writes_nothing_twice() -> None:
    loop, out = _Loop(), io.StringIO()
    log = _log(loop, out)
    log(every_event()[0])
    log(every_event()[1])
    log.flush()
    assert _events(out) == ["LeaderOrderSeen", "FollowerOrderChanged"]
    loop.advance(2.0)
    assert len(_events(out)) == 2


def test_gauges_are_still_throttled_by_when_they_came() -> None:
    loop, out = _Loop(), io.StringIO()
    log = _log(loop, out)
    gauge = LimiterChanged(T0, LimiterView("alice", ()))
    log(gauge)
    log(gauge)  # within a second: dropped
    loop.advance(1.5)
    log(gauge)
    loop.advance(0.1)
    assert _events(out) == ["LimiterChanged", "LimiterChanged"]


class _Unwritable(FollowerOrderChanged):
    pass


def test_an_event_that_cannot_be_written_loses_no_other(
    caplog: pytest.LogCaptureFixture,
) -> None:
    loop, out = _Loop(), io.StringIO()
    log = _log(loop, out)
    good = every_event()[1]
    assert isinstance(good, FollowerOrderChanged)
    bad: EngineEvent = _Unwritable(T0, good.view)
    object.__setattr__(bad, "view", object())  # not a view: its serialiser refuses it
    log(good)
    log(bad)
    log(good)
    loop.advance(0.1)
    assert _events(out) == ["FollowerOrderChanged", "FollowerOrderChanged"]
    assert [r.getMessage() for r in caplog.records] == [
        "headless log: _Unwritable could not be written"
    ]


def test_without_a_loop_each_line_is_written_at_once() -> None:
    out = io.StringIO()
    log = JsonLinesLog(out, lambda: 0.0)
    log(every_event()[1])
    assert _events(out) == ["FollowerOrderChanged"]
