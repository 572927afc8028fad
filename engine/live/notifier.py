"""Telling the world: events to the bus, alerts (deduplicated by the alert center, stored and
published) and journal lines (the order timeline)."""

from __future__ import annotations

from engine.alerts import AlertCenter
from engine.clock import Clock
from engine.domain import Alert, Severity
from engine.events import AlertRaised, EngineEvent, EventBus
from engine.live.write_behind import WriteBehind


class Notifier:
    def __init__(
        self, clock: Clock, bus: EventBus, alerts: AlertCenter, writes: WriteBehind
    ) -> None:
        self._clock = clock
        self._bus = bus
        self._alerts = alerts
        self._writes = writes

    def publish(self, event: EngineEvent) -> None:
        self._bus.publish(event)

    def alert(
        self,
        code: str,
        severity: Severity,
        message: str,
        follower: str | None = None,
        leader_order_id: str | None = None,
    ) -> None:
        alert = self._alerts.raise_alert(
            code, severity, message, follower=follower, leader_order_id=leader_order_id
        )
        if alert is None:
            return
        self._writes.add_alert(alert)
        if leader_order_id:
            self.journal("alert", f"{severity.value}: {alert.message}", follower, leader_order_id)
        self._bus.publish(AlertRaised(self._clock.now(), alert))

    def journal(self, kind: str, text: str, follower: str | None, leader_id: str | None) -> None:
        self._writes.journal(self._clock.now(), kind, text, follower, leader_id)

    def publish_due_alerts(self) -> None:
        """Repeats held back by the cooldown, once it has passed."""
        for alert in self._alerts.flush_due():
            self._bus.publish(AlertRaised(self._clock.now(), alert))

    def recent_alerts(self) -> list[Alert]:
        return self._alerts.recent()
