"""The face the engine shows to a UI or a headless runner.

A view subscribes to events and sends commands; it decides nothing about orders.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from engine.domain import EngineState
from engine.events import EngineEvent
from engine.views import FollowerOrderView, KillPreview, LimiterView, RecoveryReport, TimelineEntry


class EngineHandle(Protocol):
    @property
    def state(self) -> EngineState: ...

    def subscribe(self, listener: Callable[[EngineEvent], None]) -> Callable[[], None]:
        """Listen to every event from now on; returns the function that unsubscribes."""

    async def run(self) -> None:
        """Run until `stop()`; the TUI runs this in a worker, the headless runner awaits it."""

    async def stop(self) -> None: ...

    async def kill(self, reason: str) -> None:
        """KILLED: nothing new is sent, open follower orders are cancelled first in line."""

    async def resume(self) -> None:
        """Back to ARMED after a kill; only ever by an explicit command."""

    async def resync(self) -> RecoveryReport:
        """Read the leader's order book and converge every follower now (the R key)."""

    def kill_preview(self) -> KillPreview: ...

    def in_flight(self) -> int:
        """Broker calls sent and not yet answered, plus queued actions (for a safe quit)."""

    async def timeline(self, leader_order_id: str) -> list[TimelineEntry]: ...

    def follower_views(self) -> list[FollowerOrderView]: ...

    def limiter_views(self) -> list[LimiterView]: ...

    def market_label(self) -> str:
        """The market session now, e.g. "NSE open 09:15-15:30 IST" or "holiday (...)"."""
