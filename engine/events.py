"""Typed events the engine publishes, named as things that happened.

A UI or a log consumes them; none of them carries a secret. Every event is an immutable
dataclass so it can be handed across tasks and threads without copying.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from engine.domain import OrderSnapshot


class Severity(StrEnum):
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"
    CRITICAL = "CRITICAL"


class EngineState(StrEnum):
    STARTING = "STARTING"
    ARMED = "ARMED"
    KILLED = "KILLED"
    STOPPED = "STOPPED"


class ConnectionState(StrEnum):
    CONNECTING = "CONNECTING"
    CONNECTED = "CONNECTED"
    DISCONNECTED = "DISCONNECTED"
    STALLED = "STALLED"  # open but silent past the idle watchdog


class MirrorState(StrEnum):
    """Where the engine is with one follower's copy of one leader order."""

    PLACING = "PLACING"  # intent written, placement not yet acknowledged
    LIVE = "LIVE"  # acknowledged by the broker; see broker_status
    DONE = "DONE"  # terminal at the broker (filled, cancelled, rejected, expired)
    REPLACING = "REPLACING"  # cancelled to re-place the rest under a new correlationId
    SKIPPED = "SKIPPED"  # never placed, and `reason` says why
    FAILED = "FAILED"  # the broker refused or the engine gave up; `reason` says why


@dataclass(frozen=True, slots=True)
class Alert:
    code: str  # stable machine code, e.g. "SIZED_TO_ZERO", "FOLLOWER_REJECTED"
    severity: Severity
    message: str  # one clear human sentence; never contains a secret
    at: datetime
    follower: str | None = None
    leader_order_id: str | None = None
    count: int = 1  # how many identical alerts this one stands for (dedup)

    @property
    def dedup_key(self) -> tuple[str, str | None, str | None, str]:
        return (self.code, self.follower, self.leader_order_id, self.message)


@dataclass(frozen=True, slots=True)
class FollowerOrderView:
    """One follower's copy of one leader order, as a UI row shows it."""

    follower: str
    leader_order_id: str
    correlation_id: str
    mirror_state: MirrorState
    follower_order_id: str = ""
    broker_status: str = ""  # Dhan's status word once known
    quantity: int = 0  # sized quantity
    filled_qty: int = 0
    avg_price: float = 0.0
    slippage: float | None = None  # per unit, signed so that positive = worse than the leader
    latency_ms: float | None = None  # leader snapshot seen -> follower placement acknowledged
    modifications: int = 0
    reason: str = ""
    symbol: str = ""
    updated_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class LimitWindow:
    name: str  # "second", "minute", "hour", "day"
    limit: int
    used: int

    @property
    def remaining(self) -> int:
        return max(self.limit - self.used, 0)


@dataclass(frozen=True, slots=True)
class LimiterView:
    account: str  # follower name, or "leader"
    windows: tuple[LimitWindow, ...]
    queue_depth: int = 0
    throttled: int = 0  # times a request had to wait for a token
    dh904: int = 0  # rate-limit refusals from Dhan


@dataclass(frozen=True, slots=True)
class EngineStats:
    replicated: int = 0
    failed: int = 0
    latency_p50_ms: float | None = None
    latency_p99_ms: float | None = None
    mean_slippage: float | None = None
    disconnects: int = 0
    last_leader_event_at: datetime | None = None

    @property
    def success_rate(self) -> float | None:
        total = self.replicated + self.failed
        return None if total == 0 else self.replicated / total


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    trigger: str  # "reconnect", "manual", "periodic", "startup"
    leader_orders_checked: int
    actions_taken: int
    discrepancies: tuple[str, ...] = ()
    duration_s: float = 0.0


@dataclass(frozen=True, slots=True)
class KillPreview:
    """What pulling the kill switch would do now, for the confirmation dialog."""

    open_follower_orders: int
    accounts: int
    queued_actions: int


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    at: datetime
    kind: str  # "leader", "intent", "broker", "fill", "alert"
    follower: str | None
    text: str


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
class RecoveryCompleted(EngineEvent):
    report: RecoveryReport


@dataclass(frozen=True, slots=True)
class StatsUpdated(EngineEvent):
    stats: EngineStats


EventListener = Callable[[EngineEvent], None]


@dataclass
class EventBus:
    """Fan-out of engine events to synchronous listeners (a UI posts them as messages).

    A listener that raises is removed from nothing and breaks nothing: its error is swallowed
    so one bad consumer cannot stop replication.
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
            with contextlib.suppress(Exception):  # a consumer's bug must not stop the engine
                listener(event)
