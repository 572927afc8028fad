"""Dhan's per-account order-API rate limits, as sliding windows on an injected monotonic clock.

Defaults are Dhan's 2026 order-API limits: 10 per any 1-second window, 250/min, 1000/h,
7000/day. Only accepted requests are counted; a refused request (HTTP 429, DH-904) is not
executed and does not use up the budget.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

DEFAULT_ORDER_LIMITS: tuple[tuple[float, int], ...] = (
    (1.0, 10),
    (60.0, 250),
    (3600.0, 1000),
    (86400.0, 7000),
)


@dataclass
class RateLimitExceeded:
    window_seconds: float
    limit: int


class SlidingWindowLimiter:
    def __init__(self, limits: tuple[tuple[float, int], ...] = DEFAULT_ORDER_LIMITS) -> None:
        self.limits = tuple(sorted(limits))
        self._stamps: deque[float] = deque()

    def try_acquire(self, now: float) -> RateLimitExceeded | None:
        """Counts one request at ``now`` unless a window is full; returns the full window."""
        longest = self.limits[-1][0] if self.limits else 0.0
        while self._stamps and self._stamps[0] <= now - longest:
            self._stamps.popleft()
        for window, limit in self.limits:
            in_window = sum(1 for t in self._stamps if t > now - window)
            if in_window >= limit:
                return RateLimitExceeded(window, limit)
        self._stamps.append(now)
        return None
