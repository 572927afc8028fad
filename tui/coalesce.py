"""Event intake for the terminal: append cheaply now, fold by key later.

The engine calls the listener synchronously while it replicates, so the listener only appends
to a buffer. A flush (at most every ~100 ms) folds the buffer into a :class:`Batch`: the latest
value per key (leader order, follower copy, limiter account, connection account), the latest
stats and engine state, and alerts merged by their dedup key in order of last occurrence.

The buffer is bounded without ever dropping what matters: when it reaches its bound, the
listener folds it into the pending batch in place (amortised O(1) per event), so memory stays
proportional to the number of distinct keys, not to the event rate.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from engine.domain import Alert, OrderSnapshot
from engine.events import (
    AccountsChanged,
    AlertRaised,
    ConnectionChanged,
    CopyStepsChanged,
    EngineEvent,
    EngineStateChanged,
    FollowerOrderChanged,
    LeaderOrderSeen,
    LimiterChanged,
    PositionsRead,
    RecoveryCompleted,
    StatsUpdated,
)
from engine.views import (
    AccountView,
    CopyStepView,
    EngineStats,
    FollowerOrderView,
    LimiterView,
    PositionsView,
    RecoveryReport,
)

AlertKey = tuple[str, str | None, str | None, str]
FollowerKey = tuple[str, str]


@dataclass
class AlertOccurrence:
    """An alert and how many times it arrived (with the engine's own dedup count folded in)."""

    alert: Alert
    arrivals: int = 1


@dataclass
class Batch:
    """Everything that changed since the last flush, latest value per key."""

    leaders: dict[str, tuple[OrderSnapshot, datetime]] = field(default_factory=dict)
    followers: dict[FollowerKey, FollowerOrderView] = field(default_factory=dict)
    limiters: dict[str, LimiterView] = field(default_factory=dict)
    accounts: dict[str, AccountView] = field(default_factory=dict)
    steps: dict[str, CopyStepView] = field(default_factory=dict)
    positions: PositionsView | None = None
    connections: dict[str, ConnectionChanged] = field(default_factory=dict)
    alerts: dict[AlertKey, AlertOccurrence] = field(default_factory=dict)
    recoveries: list[RecoveryReport] = field(default_factory=list)
    stats: EngineStats | None = None
    state: EngineStateChanged | None = None
    last_leader_event_at: datetime | None = None
    events: int = 0

    def is_empty(self) -> bool:
        return self.events == 0

    def fold(self, event: EngineEvent) -> None:
        self.events += 1
        if isinstance(event, LeaderOrderSeen):
            oid = event.snapshot.order_id
            previous = self.leaders.get(oid)
            # keep the first time this flush saw it (for the row's time), the latest snapshot
            self.leaders[oid] = (event.snapshot, previous[1] if previous else event.at)
            if self.last_leader_event_at is None or event.at > self.last_leader_event_at:
                self.last_leader_event_at = event.at
        elif isinstance(event, FollowerOrderChanged):
            view = event.view
            self.followers[(view.follower, view.leader_order_id)] = view
        elif isinstance(event, LimiterChanged):
            self.limiters[event.view.account] = event.view
        elif isinstance(event, AccountsChanged):
            for account in event.views:
                self.accounts[account.account] = account
                self.limiters.pop(account.account, None)  # the account view is newer
        elif isinstance(event, CopyStepsChanged):
            for step in event.steps:
                self.steps[step.leader_order_id] = step
        elif isinstance(event, PositionsRead):
            self.positions = event.view
        elif isinstance(event, StatsUpdated):
            self.stats = event.stats
        elif isinstance(event, AlertRaised):
            key = event.alert.dedup_key
            seen = self.alerts.pop(key, None)  # re-insert: order of last occurrence
            if seen is None:
                self.alerts[key] = AlertOccurrence(event.alert)
            else:
                self.alerts[key] = AlertOccurrence(event.alert, seen.arrivals + 1)
        elif isinstance(event, ConnectionChanged):
            self.connections[event.account] = event
        elif isinstance(event, EngineStateChanged):
            self.state = event
        elif isinstance(event, RecoveryCompleted):
            self.recoveries.append(event.report)
            del self.recoveries[:-20]
        # Unknown event types are counted and ignored: a newer engine must not break the view.

    def trim_alerts(self, keep: int) -> None:
        while len(self.alerts) > keep:
            self.alerts.pop(next(iter(self.alerts)))


class EventCoalescer:
    """The bounded buffer between the engine's listener and the screen's flush."""

    def __init__(self, max_buffer: int = 10_000, max_alerts: int = 500) -> None:
        self._buffer: deque[EngineEvent] = deque()
        self._max_buffer = max_buffer
        self._max_alerts = max_alerts
        self._pending = Batch()
        self.received = 0
        self.folded_early = 0
        self.last_event_at = float("-inf")  # time.perf_counter() of the newest event
        # Set by the screen: asks its loop's thread to call `fold_now` (a listener called on
        # another thread must not fold itself: the flush drains the pending batch meanwhile).
        self.fold_soon: Callable[[], None] | None = None
        self._fold_asked = False

    def __len__(self) -> int:
        return len(self._buffer)

    def append(self, event: EngineEvent) -> None:
        """The listener's whole job: O(1), never raises, never blocks."""
        self._buffer.append(event)
        self.received += 1
        self.last_event_at = time.perf_counter()
        if len(self._buffer) >= self._max_buffer:
            self.folded_early += 1
            self._fold_buffer()

    def append_from_thread(self, event: EngineEvent) -> None:
        """For a listener called off the loop's thread (the engine on a thread of its own): a
        deque append is atomic; a full buffer is folded on the loop's thread (`fold_soon`)."""
        self._buffer.append(event)
        self.received += 1
        self.last_event_at = time.perf_counter()
        if len(self._buffer) >= self._max_buffer and not self._fold_asked:
            fold_soon = self.fold_soon
            if fold_soon is not None:
                self._fold_asked = True
                fold_soon()

    def fold_now(self) -> None:
        """Fold the buffer into the pending batch (on the loop's thread), as `append` does
        when it is full."""
        self._fold_asked = False
        self.folded_early += 1
        self._fold_buffer()

    def _fold_buffer(self) -> None:
        buffer = self._buffer
        pending = self._pending
        while buffer:
            pending.fold(buffer.popleft())
        pending.trim_alerts(self._max_alerts)

    def drain(self) -> Batch:
        """Everything received since the last drain, coalesced by key."""
        self._fold_buffer()
        batch, self._pending = self._pending, Batch()
        return batch

    def has_pending(self) -> bool:
        return bool(self._buffer) or not self._pending.is_empty()


def merge_alert_count(on_screen: int | None, occurrence: AlertOccurrence) -> int:
    """How many times an alert has happened, as the pane shows it.

    The engine may already dedup (``Alert.count`` > 1 means "this stands for N"); the same
    dedup key arriving again as a fresh alert (count 1) adds to what is on screen.
    """
    engine_count = occurrence.alert.count
    if on_screen is None:
        return max(engine_count, occurrence.arrivals)
    if engine_count > 1:
        return max(on_screen, engine_count)
    return on_screen + occurrence.arrivals
