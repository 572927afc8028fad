"""A multi-window sliding rate limiter for one account's order API calls.

Dhan counts order requests per account in several windows at once (10/s, 250/min, 1000/h,
7000/day). We cannot see when Dhan counted a request, only that it happened somewhere between
the moment we let it go and the moment its response came back. So a slot occupies each window
from when it is acquired until ``window`` seconds after the request *completed*; a request still
in flight occupies "now" for as long as it is in flight.

Why that is enough for zero DH-904: take any span of one window's length at Dhan holding the
receipts of L+1 requests and look at the one acquired last, k. Every other request j was
acquired earlier and received less than a window before k was, so its completion (which is no
earlier than its receipt) plus the window lies after k's acquisition: at that moment all L of
them were counted, and k could not have been acquired. And it costs almost nothing: with fast
responses a burst runs at the theoretical rate (100 orders at 10/s take 9 s).
"""

from __future__ import annotations

import asyncio
import math
import random
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from engine.clock import Clock
from engine.views import LimiterView, LimitWindow

__all__ = [
    "DHAN_ORDER_WINDOWS",
    "RateLimiter",
    "Slot",
    "effective_limit",
]

DHAN_ORDER_WINDOWS: tuple[tuple[str, float, int], ...] = (
    ("second", 1.0, 10),
    ("minute", 60.0, 250),
    ("hour", 3600.0, 1000),
    ("day", 86400.0, 7000),
)

# Float slack when comparing monotonic times, so a waiter that slept exactly the computed
# delay is not refused over a rounding error (a nanosecond is far below any clock's jitter).
_EPS = 1e-9

BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 30.0
BACKOFF_JITTER = 0.2


@dataclass(eq=False, slots=True)
class Slot:
    """The right to send one request; hand it back with `RateLimiter.complete`."""

    account: str
    seq: int
    acquired_at: float  # monotonic
    completed_at: float | None = None  # monotonic; None while in flight


class _Window:
    __slots__ = ("done", "limit", "name", "nominal", "seconds")

    def __init__(self, name: str, seconds: float, nominal: int, limit: int) -> None:
        self.name = name
        self.seconds = seconds
        self.nominal = nominal
        self.limit = limit
        self.done: deque[float] = deque()  # completion times, oldest first

    def prune(self, now: float) -> None:
        done = self.done
        horizon = now + _EPS - self.seconds
        while done and done[0] <= horizon:
            done.popleft()


def effective_limit(limit: int, headroom: float) -> int:
    """The share of `limit` we use: floor(limit x (1 - headroom)), at least 1."""
    return max(1, math.floor(limit * (1.0 - headroom) + _EPS))


class RateLimiter:
    def __init__(
        self,
        account: str,
        clock: Clock,
        windows: Sequence[tuple[str, float, int]] = DHAN_ORDER_WINDOWS,
        headroom: float = 0.0,
        rng: random.Random | None = None,
    ) -> None:
        if not 0.0 <= headroom < 1.0:
            raise ValueError(f"headroom must be in [0, 1), got {headroom}")
        if not windows:
            raise ValueError("at least one window is required")
        self.account = account
        self._clock = clock
        self._rng = rng or random.Random()
        self._windows: list[_Window] = []
        for name, seconds, limit in windows:
            if seconds <= 0 or limit < 1:
                raise ValueError(f"window {name!r}: seconds must be > 0 and limit >= 1")
            self._windows.append(_Window(name, seconds, limit, effective_limit(limit, headroom)))
        self._in_flight: set[Slot] = set()
        self._seq = 0
        self._throttled = 0
        self._dh904 = 0
        self._strikes = 0  # consecutive DH-904s since the last success
        self._blocked_until = -math.inf
        self._wakeup: asyncio.Event | None = None

    # --- state ----------------------------------------------------------------------------

    @property
    def throttled(self) -> int:
        return self._throttled

    @property
    def dh904(self) -> int:
        return self._dh904

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def blocked_for(self) -> float:
        """Seconds left of a DH-904 backoff (0 when none)."""
        return max(0.0, self._blocked_until - self._clock.monotonic())

    def _prune(self, now: float) -> None:
        for w in self._windows:
            w.prune(now)

    # --- acquiring ------------------------------------------------------------------------

    def try_acquire(self) -> Slot | None:
        """A slot if every window has room now (and no backoff is running), else None."""
        now = self._clock.monotonic()
        if now + _EPS < self._blocked_until:
            return None
        self._prune(now)
        busy = len(self._in_flight)
        for w in self._windows:
            if busy + len(w.done) >= w.limit:
                return None
        self._seq += 1
        slot = Slot(self.account, self._seq, now)
        self._in_flight.add(slot)
        return slot

    def wait_time(self) -> float:
        """Seconds until `try_acquire` could succeed: 0 if now, inf if only a completion can
        free a slot (in-flight requests fill a window)."""
        now = self._clock.monotonic()
        self._prune(now)
        wait = max(0.0, self._blocked_until - now)
        busy = len(self._in_flight)
        for w in self._windows:
            excess = busy + len(w.done) - w.limit + 1
            if excess <= 0:
                continue
            if excess > len(w.done):
                return math.inf
            wait = max(wait, w.done[excess - 1] + w.seconds - now)
        return wait

    async def acquire(self) -> Slot:
        """Wait for a slot. Counts one `throttled` when it had to wait."""
        waited = False
        while True:
            slot = self.try_acquire()
            if slot is not None:
                return slot
            if not waited:
                waited = True
                self._throttled += 1
            delay = self.wait_time()
            if self._wakeup is None:
                self._wakeup = asyncio.Event()
            if math.isinf(delay):
                await self._wakeup.wait()
            else:
                await self._sleep_or_wake(delay, self._wakeup)

    async def _sleep_or_wake(self, delay: float, wakeup: asyncio.Event) -> None:
        # A slot given back with `abandon` can free room before the computed delay is over.
        sleeper = asyncio.ensure_future(self._clock.sleep(delay))
        waker = asyncio.ensure_future(wakeup.wait())
        try:
            await asyncio.wait((sleeper, waker), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sleeper, waker):
                if not task.done():
                    task.cancel()

    def _wake(self) -> None:
        if self._wakeup is not None:
            self._wakeup.set()
            self._wakeup = None

    def complete(self, slot: Slot) -> None:
        """The request's response arrived (or it failed after being sent): stamp the time.

        The slot keeps occupying every window until `window` seconds after now. Completing a
        slot twice, or one this limiter did not hand out, does nothing.
        """
        if slot not in self._in_flight:
            return
        self._in_flight.discard(slot)
        now = self._clock.monotonic()
        slot.completed_at = now
        for w in self._windows:
            w.done.append(now)
        self._wake()

    def preload(self, ages_s: Iterable[float]) -> None:
        """Count requests an earlier process sent ``age`` seconds ago (after a restart), so
        a restart never hands out a fresh hour or day of Dhan's budget."""
        now = self._clock.monotonic()
        for age in sorted((a for a in ages_s if a >= 0), reverse=True):
            for w in self._windows:
                if age < w.seconds:
                    w.done.append(now - age)
        for w in self._windows:
            w.done = deque(sorted(w.done))

    def abandon(self, slot: Slot) -> None:
        """Give back a slot whose request was certainly never sent (e.g. kill switch, shutdown).

        Unlike `complete`, the slot stops counting at once. Only for requests that never left
        the process: if in doubt, use `complete`.
        """
        if slot in self._in_flight:
            self._in_flight.discard(slot)
            self._wake()

    # --- Dhan's verdicts ------------------------------------------------------------------

    def note_rate_limited(self, retry_after: float | None = None) -> float:
        """Dhan answered DH-904: back off. Returns the backoff in seconds.

        Exponential (0.5, 1, 2, 4 ... s, capped at 30 s) with +/-20% jitter, reset by
        `note_success`; a server-given `retry_after` is used as is. No slot is handed out until
        the backoff has passed.
        """
        self._dh904 += 1
        if retry_after is not None and retry_after >= 0:
            backoff = float(retry_after)
        else:
            base = BACKOFF_BASE_S * (2.0 ** min(self._strikes, 16))
            jitter = self._rng.uniform(1.0 - BACKOFF_JITTER, 1.0 + BACKOFF_JITTER)
            backoff = min(base * jitter, BACKOFF_CAP_S)
        self._strikes += 1
        self._blocked_until = max(self._blocked_until, self._clock.monotonic() + backoff)
        return backoff

    def note_success(self) -> None:
        """A request went through: the next DH-904 starts the backoff from 0.5 s again."""
        self._strikes = 0

    # --- view -----------------------------------------------------------------------------

    def view(self, queue_depth: int = 0) -> LimiterView:
        now = self._clock.monotonic()
        self._prune(now)
        busy = len(self._in_flight)
        return LimiterView(
            account=self.account,
            windows=tuple(LimitWindow(w.name, w.limit, busy + len(w.done)) for w in self._windows),
            queue_depth=queue_depth,
            throttled=self._throttled,
            dh904=self._dh904,
        )
