"""What every order request's answer does besides the copy's record: the in-flight count, the
per-minute count, the circuit breaker, the token check, and when to look at the order again."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from engine.clock import Clock
from engine.dhan.errors import BrokerResult, ResultKind
from engine.domain import Severity
from engine.live.accounts import FollowerRuntime
from engine.live.notifier import Notifier
from engine.live.tasks import TaskSet


class AnswerHandling:
    def __init__(
        self,
        clock: Clock,
        notifier: Notifier,
        tasks: TaskSet,
        stop_follower: Callable[[FollowerRuntime, str], None],
    ) -> None:
        self._clock = clock
        self._notifier = notifier
        self._tasks = tasks
        self._stop_follower = stop_follower
        self.calls_in_flight = 0

    async def call(self, request: Awaitable[BrokerResult]) -> BrokerResult:
        """One order request to the broker, counted while in flight (for a safe quit)."""
        self.calls_in_flight += 1
        try:
            return await request
        finally:
            self.calls_in_flight -= 1

    def note(self, f: FollowerRuntime, result: BrokerResult) -> None:
        """Every order request sent: its answer feeds the per-minute count, the circuit
        breaker and the token check."""
        f.orders_per_minute.record(self._clock.monotonic())
        if result.kind is ResultKind.OK:
            if f.circuit.record_success():
                self._notifier.alert(
                    "CIRCUIT_CLOSED",
                    Severity.INFO,
                    f"{f.name}: broker answering again; circuit closed",
                    f.name,
                )
            return
        if result.kind is ResultKind.RATE_LIMITED:
            return
        if result.kind is ResultKind.AUTH_FAILED:
            self._stop_follower(
                f,
                f"Dhan refused {f.name}'s token ({result.error_code}): invalid or expired; "
                f"give it a new one (copytrade token set {f.name})",
            )
        if f.circuit.record_failure():
            self._notifier.alert(
                "CIRCUIT_OPEN",
                Severity.ERROR,
                f"{f.name}: {f.circuit.failures} broker failures in a row "
                f"(last: {result.error_code} {result.message}); pausing this follower "
                f"for {f.circuit.cooldown_s:.0f}s",
                f.name,
            )

    def backoff(
        self, f: FollowerRuntime, result: BrokerResult, leader_id: str, urgent: bool = False
    ) -> None:
        if result.kind is ResultKind.RATE_LIMITED:
            delay = f.limiter.note_rate_limited()
            self._notifier.alert(
                "RATE_LIMITED",
                Severity.WARNING,
                f"{f.name}: Dhan answered DH-904 (rate limit); backing off {delay:.1f}s",
                f.name,
            )
        else:
            delay = 0.5
        self.mark_later(f, leader_id, delay, urgent)

    def hold_for_circuit(self, f: FollowerRuntime, leader_id: str) -> None:
        """The account keeps failing: hold this work until the breaker half-opens."""
        self._tasks.spawn(self._mark_later(f, leader_id, f.circuit.retry_in(), False), "circuit")

    def mark_later(self, f: FollowerRuntime, key: str, delay: float, urgent: bool) -> None:
        self._tasks.spawn(self._mark_later(f, key, delay, urgent), "retry")

    async def _mark_later(self, f: FollowerRuntime, key: str, delay: float, urgent: bool) -> None:
        await self._clock.sleep(delay)
        f.dispatcher.mark(key, urgent=urgent)
