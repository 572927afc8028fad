"""Typed events the engine publishes, named as things that happened, and the bus that fans them out.

A UI or a log consumes them; none of them carries a secret. Every event is an immutable
dataclass so it can be handed across tasks and threads without copying.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from engine.domain import Alert, ConnectionState, EngineState, OrderSnapshot
from engine.views import (
    AccountView,
    CopyStepView,
    EngineStats,
    FollowerOrderView,
    LimiterView,
    PositionsView,
    RecoveryReport,
)

log = logging.getLogger(__name__)


# --- events -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EngineEvent:
    at: datetime


@dataclass(frozen=True, slots=True)
class LeaderOrderSeen(EngineEvent):
    snapshot: OrderSnapshot
    is_new: bool = False


@dataclass(frozen=True, slots=True)
class FollowerOrderChanged(EngineEvent):
    view: FollowerOrderView


@dataclass(frozen=True, slots=True)
class LimiterChanged(EngineEvent):
    view: LimiterView


@dataclass(frozen=True, slots=True)
class AlertRaised(EngineEvent):
    alert: Alert


@dataclass(frozen=True, slots=True)
class ConnectionChanged(EngineEvent):
    account: str
    state: ConnectionState
    detail: str = ""


@dataclass(frozen=True, slots=True)
class EngineStateChanged(EngineEvent):
    state: EngineState
    reason: str = ""


@dataclass(frozen=True, slots=True)
class CopySent(EngineEvent):
    """An order request leaving for a follower's Dhan, as sent (the log's "copy sent" line):
    `text` says side, type, quantity, price and trigger; `conversions` each change made for
    Dhan's API rules (e.g. MARKET sent as a protected LIMIT)."""

    follower: str
    leader_order_id: str
    action: str  # PLACE / MODIFY
    text: str
    conversions: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class FreezeChanged(EngineEvent):
    """The engine ("" account) or one follower froze, or one of its freezes cleared.
    `causes` is every cause still holding it (empty: no longer frozen)."""

    account: str  # "" for the whole engine, else the follower's name
    causes: tuple[str, ...]
    reason: str = ""


@dataclass(frozen=True, slots=True)
class RecoveryCompleted(EngineEvent):
    report: RecoveryReport


@dataclass(frozen=True, slots=True)
class StatsUpdated(EngineEvent):
    stats: EngineStats


@dataclass(frozen=True, slots=True)
class AccountsChanged(EngineEvent):
    """Accounts whose state, token or rate use changed since the last one (the cockpit)."""

    views: tuple[AccountView, ...]


@dataclass(frozen=True, slots=True)
class PositionsRead(EngineEvent):
    """Every account's positions, read again from Dhan (on a timer, never per order)."""

    view: PositionsView


@dataclass(frozen=True, slots=True)
class CopyStepsChanged(EngineEvent):
    """Leader orders whose copies-in-step count or lag changed."""

    steps: tuple[CopyStepView, ...]


EventListener = Callable[[EngineEvent], None]


@dataclass
class EventBus:
    """Fan-out of engine events to synchronous listeners (a UI posts them as messages).

    A listener that raises breaks nothing: its error is logged and the other listeners still
    hear the event, so one bad consumer cannot stop replication.
    """

    _listeners: list[EventListener] = field(default_factory=list)

    def subscribe(self, listener: EventListener) -> Callable[[], None]:
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    def publish(self, event: EngineEvent) -> None:
        for listener in tuple(self._listeners):
            try:
                listener(event)
            except Exception:  # a consumer's bug must not stop the engine; it is logged
                log.exception("event listener %r failed on %s", listener, type(event).__name__)
