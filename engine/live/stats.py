"""Replication statistics: latency, slippage, counts, published once a second."""

from __future__ import annotations

import statistics
from collections import deque
from datetime import datetime

from engine.views import EngineStats


class Stats:
    def __init__(self) -> None:
        self.latencies: deque[float] = deque(maxlen=5000)
        self.slippages: deque[float] = deque(maxlen=5000)
        self.replicated = 0
        self.failed = 0
        self.last_leader_event_at: datetime | None = None

    def snapshot(self, disconnects: int) -> EngineStats:
        lat = sorted(self.latencies)
        p50 = statistics.median(lat) if lat else None
        p99 = lat[min(len(lat) - 1, round(0.99 * (len(lat) - 1)))] if lat else None
        return EngineStats(
            replicated=self.replicated,
            failed=self.failed,
            latency_p50_ms=p50,
            latency_p99_ms=p99,
            mean_slippage=statistics.fmean(self.slippages) if self.slippages else None,
            disconnects=disconnects,
            last_leader_event_at=self.last_leader_event_at,
        )
