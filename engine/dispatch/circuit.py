"""A circuit breaker per follower account: repeated broker failures stop sending for a while.

CLOSED: requests flow. After `threshold` consecutive failures it OPENs (an alert says so) and
refuses requests for `cooldown_s`; then HALF_OPEN lets one request through: a success closes
it, a failure opens it again. Time is injected.
"""

from __future__ import annotations

from enum import StrEnum

from engine.clock import Clock


class CircuitState(StrEnum):
    CLOSED = "CLOSED"
    OPEN = "OPEN"
    HALF_OPEN = "HALF_OPEN"


class CircuitBreaker:
    def __init__(self, clock: Clock, *, threshold: int = 5, cooldown_s: float = 30.0) -> None:
        self._clock = clock
        self.threshold = threshold
        self.cooldown_s = cooldown_s
        self.failures = 0
        self._opened_at: float | None = None
        self._trial_in_flight = False

    @property
    def state(self) -> CircuitState:
        if self._opened_at is None:
            return CircuitState.CLOSED
        if self._clock.monotonic() - self._opened_at >= self.cooldown_s:
            return CircuitState.HALF_OPEN
        return CircuitState.OPEN

    def allow(self) -> bool:
        """May a request go now? In HALF_OPEN only one trial at a time."""
        state = self.state
        if state is CircuitState.CLOSED:
            return True
        if state is CircuitState.HALF_OPEN and not self._trial_in_flight:
            self._trial_in_flight = True
            return True
        return False

    def release_trial(self) -> None:
        """The half-open trial was allowed but nothing was sent (a risk limit, a kill, a
        rate-limit answer): let the next request be the trial instead. A no-op otherwise."""
        self._trial_in_flight = False

    def retry_in(self) -> float:
        if self._opened_at is None:
            return 0.0
        return max(self.cooldown_s - (self._clock.monotonic() - self._opened_at), 0.1)

    def record_success(self) -> bool:
        """True when this success closed an open circuit."""
        was_open = self._opened_at is not None
        self.failures = 0
        self._opened_at = None
        self._trial_in_flight = False
        return was_open

    def record_failure(self) -> bool:
        """True when this failure opened the circuit (a CLOSED -> OPEN or a failed trial)."""
        self.failures += 1
        trial = self._trial_in_flight
        self._trial_in_flight = False
        if trial or (self._opened_at is None and self.failures >= self.threshold):
            self._opened_at = self._clock.monotonic()
            return True
        return False
