"""The engine without a screen: every event as one JSON line (written behind the copies, see
``JsonLinesLog``), SIGINT/SIGTERM stop it cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sys
from collections.abc import Callable
from typing import Any, TextIO

from engine.api import EngineHandle
from engine.events import EngineEvent, LimiterChanged, StatsUpdated
from engine.secrets import redact_json
from engine.store.serialization import to_jsonable

log = logging.getLogger(__name__)

# Limiter and stats change many times a second; a log line per second per account is enough.
_THROTTLED = (LimiterChanged, StatsUpdated)
_THROTTLE_S = 1.0
# Lines are written once the events have paused this long. A line costs 35-60 us to
# serialise, redact and write, and a leader order fanned out to N followers publishes ~4
# events per copy while its copies are being sent. Written as they came, at 10 followers
# (bench.followers with this log attached, four runs each way, alternated): first copy
# 6.1-8.9 ms, last 13.1-17.0 ms; written after the pause: 4.9-6.3 ms and 10.5-13.5 ms.
QUIET_S = 0.05
# ... but never later than this after the first of them, under a stream that never pauses.
MAX_DELAY_S = 1.0

Schedule = Callable[[float, Callable[[], None]], object]


def event_to_json(event: EngineEvent) -> str:
    """One line: the event's fields (by the store's TypeAdapters), its type name, redacted."""
    body: dict[str, Any] = to_jsonable(event)
    body["event"] = type(event).__name__
    return redact_json(body, _json_line)


def _json_line(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"), sort_keys=True)


class JsonLinesLog:
    """An engine listener writing each event as one JSON line to ``out``.

    With ``call_later`` (the loop's), an event is only kept when it comes, and the lines are
    written behind the copies: once events pause for ``QUIET_S``, at most ``MAX_DELAY_S``
    after the first one kept, and by ``flush`` (call it when the engine stops). Without it,
    each line is written at once.
    """

    def __init__(
        self,
        out: TextIO,
        clock: Callable[[], float],
        *,
        call_later: Schedule | None = None,
        quiet_s: float = QUIET_S,
        max_delay_s: float = MAX_DELAY_S,
    ) -> None:
        self._out = out
        self._clock = clock
        self._call_later = call_later
        self._quiet_s = quiet_s
        self._max_delay_s = max_delay_s
        self._last: dict[tuple[str, str], float] = {}
        self._kept: list[EngineEvent] = []
        self._first_at = 0.0  # when the oldest event kept came
        self._latest_at = 0.0  # when the newest did
        self._due = False  # a write is scheduled

    def __call__(self, event: EngineEvent) -> None:
        now = self._clock()
        if isinstance(event, _THROTTLED):
            account = event.view.account if isinstance(event, LimiterChanged) else ""
            key = (type(event).__name__, account)
            if now - self._last.get(key, -1e9) < _THROTTLE_S:
                return
            self._last[key] = now
        self._kept.append(event)
        if self._call_later is None:
            self.flush()
            return
        self._latest_at = now
        if not self._due:
            self._due = True
            self._first_at = now
            self._call_later(self._quiet_s, self._when_due)

    def flush(self) -> None:
        """Write every event kept, in the order they came."""
        events, self._kept = self._kept, []
        if not events:
            return
        lines: list[str] = []
        for event in events:
            try:
                lines.append(event_to_json(event) + "\n")
            except Exception:  # one event that cannot be written must not take the others
                log.exception("headless log: %s could not be written", type(event).__name__)
        self._out.write("".join(lines))
        self._out.flush()

    def _when_due(self) -> None:
        now = self._clock()
        wait = min(self._latest_at + self._quiet_s, self._first_at + self._max_delay_s) - now
        if wait > 0 and self._call_later is not None:  # events still coming: later
            self._call_later(wait, self._when_due)
            return
        self._due = False
        try:
            self.flush()
        except Exception:  # a closed or broken stdout must not stop the engine
            log.exception("headless log: writing the events failed")


async def run_headless(
    engine: EngineHandle, *, out: TextIO = sys.stdout, stop_after_s: float | None = None
) -> int:
    loop = asyncio.get_running_loop()
    lines = JsonLinesLog(out, loop.time, call_later=loop.call_later)
    unsubscribe = engine.subscribe(lines)

    pending: set[asyncio.Task[None]] = set()

    def request_stop() -> None:
        task = loop.create_task(engine.stop())
        pending.add(task)
        task.add_done_callback(pending.discard)

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, request_stop)
    if stop_after_s:
        loop.call_later(stop_after_s, request_stop)
    try:
        await engine.run()
    finally:
        unsubscribe()
        try:
            lines.flush()  # what the last pause had not written yet
        except Exception:
            log.exception("headless log: writing the last events failed")
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
    return 0
