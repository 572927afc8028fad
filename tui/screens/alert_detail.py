"""One alert in full: its whole text, code, severity, time, account and order."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from engine.domain import Alert
from tui.format import hms, one_line, redact


def alert_full_text(alert: Alert, count: int) -> str:
    lines = [
        f"{alert.severity.value} · {alert.code} · {hms(alert.at)} IST",
    ]
    if count > 1:
        lines[0] += f" · {count} times"
    if alert.follower:
        lines.append(f"Account: {one_line(alert.follower, 60)}")
    if alert.leader_order_id:
        lines.append(f"Leader order: {one_line(alert.leader_order_id, 60)}")
    lines.append("")
    lines.append(redact(alert.message).strip())
    return "\n".join(lines)


class AlertScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,enter,q", "close", "Close", id="alert.close"),
    ]

    def __init__(self, alert: Alert, count: int = 1) -> None:
        super().__init__()
        self.alert = alert
        self.count = count

    def compose(self) -> ComposeResult:
        with Vertical(id="alert-box"):
            yield Static(
                f"Alert · {self.alert.severity.value}",
                id="alert-title",
                classes=f"severity-{self.alert.severity.value.lower()}",
            )
            with VerticalScroll(id="alert-body"):
                yield Static(alert_full_text(self.alert, self.count), markup=False)
            yield Button("Close", id="close", variant="primary")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(None)

    def action_close(self) -> None:
        self.dismiss(None)
