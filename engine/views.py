"""Read models: what a front end renders (rows, gauges, reports), built by the engine.

Immutable, secret-free snapshots; a view holds them, never the engine's live records.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from engine.domain import MirrorState


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
