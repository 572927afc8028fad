"""The engine without a screen: every event as one JSON line, SIGINT/SIGTERM stop it cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from typing import Any, TextIO

from engine.api import EngineHandle
from engine.events import EngineEvent, LimiterChanged, StatsUpdated
from engine.secrets import redact_json
from engine.store.serialization import to_jsonable

# Limiter and stats change many times a second; a log line per second per account is enough.
_THROTTLED = (LimiterChanged, StatsUpdated)
_THROTTLE_S = 1.0


def event_to_json(event: EngineEvent) -> str:
    """One line: the event's fields (by the store's TypeAdapters), its type name, redacted."""
    body: dict[str, Any] = to_jsonable(event)
    body["event"] = type(event).__name__
    return redact_json(body, _json_line)


def _json_line(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"), sort_keys=True)


class JsonLinesLog:
    def __init__(self, out: TextIO, loop_time: Any) -> None:
        self._out = out
        self._time = loop_time
        self._last: dict[tuple[str, str], float] = {}

    def __call__(self, event: EngineEvent) -> None:
        if isinstance(event, _THROTTLED):
            account = event.view.account if isinstance(event, LimiterChanged) else ""
            key = (type(event).__name__, account)
            now = self._time()
            if now - self._last.get(key, -1e9) < _THROTTLE_S:
                return
            self._last[key] = now
        self._out.write(event_to_json(event) + "\n")
        self._out.flush()


async def run_headless(
    engine: EngineHandle, *, out: TextIO = sys.stdout, stop_after_s: float | None = None
) -> int:
    loop = asyncio.get_running_loop()
    unsubscribe = engine.subscribe(JsonLinesLog(out, loop.time))

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
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
    return 0
