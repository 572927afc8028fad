"""The face the engine shows to a UI or a headless runner.

A view subscribes to events and sends commands; it decides nothing about orders.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from pydantic import SecretStr

from engine.control.protocol import ResumeReport, UncopiedOrder
from engine.domain import EngineState
from engine.events import EngineEvent
from engine.views import (
    AccountView,
    CopyStepView,
    FollowerOrderView,
    KillPreview,
    LimiterView,
    PositionsView,
    RecoveryReport,
    SyncPreview,
    SyncReport,
    TimelineEntry,
)


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

    async def resume(self, replace_open: bool = False) -> ResumeReport | None:
        """Back to ARMED after a kill; only ever by an explicit command. With `replace_open`
        the leader's open orders without a copy are placed again (see `uncopied_orders`)."""

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

    # --- the cockpit (read models and the dialogs' commands) -------------------------------

    def account_views(self) -> list[AccountView]:
        """Every account's state, token, source address and rate use, now."""

    def positions_view(self) -> PositionsView:
        """The last positions read from Dhan (refreshed by the engine on a timer)."""

    def copy_steps(self) -> list[CopyStepView]:
        """Per leader order, how many copies are in step and which lag, now."""

    async def uncopied_orders(self) -> list[UncopiedOrder]:
        """The leader's open orders that some follower has no working copy of."""

    async def sync_preview(self) -> SyncPreview:
        """Reads positions now: per follower and instrument, the order a sync would place."""

    async def sync_positions(self, preview: SyncPreview) -> SyncReport:
        """Place the orders of a preview the trader confirmed (each re-checked first)."""

    async def clear_freeze(self, account: str) -> str:
        """The trader clears a freeze ("" = the engine's); one line saying what happened."""

    async def replace_token(self, account: str, token: SecretStr) -> str:
        """Use a new access token for `account` from now on; one line, never the token."""
