"""Alerts: deduplicated, bounded, and scrubbed of secrets before anyone sees them.

`raise_alert` returns the alert to publish, or None when the same alert (same code, follower,
leader order and message) was published less than `cooldown_s` ago; the repeat is counted, and
the next publication of that alert carries the count. `flush_due` publishes counted repeats whose
cooldown has passed even if the alert is not raised again, so a burst is never silently lost.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, replace

from engine.clock import Clock
from engine.domain import Alert, Severity
from engine.secrets import redact as redact_secrets

__all__ = ["REDACTION_FAILED", "AlertCenter"]

REDACTION_FAILED = "[alert message withheld: redaction failed]"

_Key = tuple[str, str | None, str | None, str]


@dataclass(slots=True)
class _Seen:
    alert: Alert  # the latest raise of this alert (its severity and time)
    published_at: float  # monotonic time of the last publication
    suppressed: int = 0  # repeats since then


class AlertCenter:
    def __init__(
        self,
        clock: Clock,
        cooldown_s: float = 30.0,
        capacity: int = 500,
        redact: Callable[[str], str] | None = None,
    ) -> None:
        """`redact` is applied to every message, followed by the process-wide secret
        redaction of `engine.secrets` (registered tokens and anything shaped like a JWT)."""
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._clock = clock
        self.cooldown_s = cooldown_s
        self.capacity = capacity
        self._redact = redact
        self._recent: deque[Alert] = deque(maxlen=capacity)
        self._seen: OrderedDict[_Key, _Seen] = OrderedDict()

    def _scrub(self, message: str) -> str:
        try:
            text = self._redact(message) if self._redact is not None else message
            return redact_secrets(text)
        except Exception:
            return REDACTION_FAILED

    def raise_alert(
        self,
        code: str,
        severity: Severity,
        message: str,
        follower: str | None = None,
        leader_order_id: str | None = None,
    ) -> Alert | None:
        """The alert to publish now, or None if it repeats one published within the cooldown."""
        alert = Alert(
            code=code,
            severity=severity,
            message=self._scrub(str(message)),
            at=self._clock.now(),
            follower=follower,
            leader_order_id=leader_order_id,
        )
        now = self._clock.monotonic()
        key = alert.dedup_key
        seen = self._seen.get(key)
        if seen is not None:
            self._seen.move_to_end(key)
            if now - seen.published_at < self.cooldown_s:
                seen.suppressed += 1
                seen.alert = alert
                return None
            alert = replace(alert, count=1 + seen.suppressed)
            seen.alert, seen.published_at, seen.suppressed = alert, now, 0
        else:
            self._seen[key] = _Seen(alert, now)
            while len(self._seen) > self.capacity:
                self._seen.popitem(last=False)
        self._recent.append(alert)
        return alert

    def flush_due(self) -> list[Alert]:
        """Repeats held back whose cooldown has passed, as alerts to publish now (each with
        the number of repeats it stands for)."""
        now = self._clock.monotonic()
        out: list[Alert] = []
        for seen in self._seen.values():
            if seen.suppressed and now - seen.published_at >= self.cooldown_s:
                alert = replace(seen.alert, count=seen.suppressed)
                seen.alert, seen.published_at, seen.suppressed = alert, now, 0
                self._recent.append(alert)
                out.append(alert)
        return out

    def recent(self) -> list[Alert]:
        """Published alerts, newest first (at most `capacity`)."""
        return list(reversed(self._recent))

    def remembered(self) -> int:
        """How many distinct alerts are remembered for the cooldown (at most `capacity`)."""
        return len(self._seen)

    def clear(self) -> None:
        self._recent.clear()
        self._seen.clear()
