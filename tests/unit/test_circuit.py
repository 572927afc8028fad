from __future__ import annotations

from engine.clock import ManualClock
from engine.dispatch.circuit import CircuitBreaker, CircuitState


def state_now(cb: CircuitBreaker) -> CircuitState:
    # A call, so the type checker does not carry an earlier state check past clock.advance().
    return cb.state


def test_opens_after_threshold_then_half_opens_and_closes_on_success() -> None:
    clock = ManualClock()
    cb = CircuitBreaker(clock, threshold=3, cooldown_s=10)
    assert not cb.record_failure() and not cb.record_failure()
    assert cb.record_failure()
    assert cb.state is CircuitState.OPEN and not cb.allow()
    clock.advance(10)
    assert state_now(cb) is CircuitState.HALF_OPEN
    assert cb.allow() and not cb.allow()  # one trial at a time
    assert cb.record_success()
    assert state_now(cb) is CircuitState.CLOSED and cb.allow()


def test_failed_trial_opens_again() -> None:
    clock = ManualClock()
    cb = CircuitBreaker(clock, threshold=1, cooldown_s=5)
    cb.record_failure()
    clock.advance(5)
    assert cb.allow()
    assert cb.record_failure()
    assert cb.state is CircuitState.OPEN
    assert 0 < cb.retry_in() <= 5


def test_success_resets_the_count() -> None:
    cb = CircuitBreaker(ManualClock(), threshold=2)
    cb.record_failure()
    cb.record_success()
    assert not cb.record_failure()
    assert cb.state is CircuitState.CLOSED
