"""Alerts, newest first, severity-coloured, merged by dedup key with a count.

With the pane focused, ↑/↓ pick an alert and Enter opens it in full.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Mapping
from typing import ClassVar

from rich.text import Text
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.widgets import Static

from engine.domain import Alert
from tui.coalesce import AlertKey, AlertOccurrence, merge_alert_count
from tui.format import SEVERITY_SHORT, SEVERITY_STYLE, TIMES, alert_message, hms
from tui.screens.alert_detail import AlertScreen

_DIGITS = re.compile(r"\d")


def alert_text(alert: Alert, count: int) -> Text:
    style = SEVERITY_STYLE.get(alert.severity, "")
    head = f"{hms(alert.at)} {SEVERITY_SHORT.get(alert.severity, alert.severity.value):<4}"
    if count > 1:
        head += f" {TIMES}{count}"
    return Text(f"{head} {alert_message(alert)}", style=style)


def _shape(plain: str) -> str:
    return _DIGITS.sub("0", plain)


class AlertItem(Static):
    DEFAULT_CSS = """
    AlertItem { height: auto; }
    AlertItem.-selected { background: $accent 40%; }
    """

    def __init__(self, alert: Alert, count: int) -> None:
        super().__init__(alert_text(alert, count))
        self.alert = alert
        self.count = count

    def show(self, alert: Alert, count: int) -> None:
        if (alert, count) != (self.alert, self.count):
            before = alert_text(self.alert, self.count).plain
            text = alert_text(alert, count)
            self.alert = alert
            self.count = count
            # A repeat usually changes digits only (its time, its count): the same shape
            # wraps the same, so a repaint suffices, not a re-layout of the screen.
            self.update(text, layout=_shape(text.plain) != _shape(before))

    def plain(self) -> str:
        return alert_text(self.alert, self.count).plain


class AlertsPane(VerticalScroll):
    """One item per dedup key; a repeat updates its item's count and moves it to the top."""

    DEFAULT_CSS = """
    AlertsPane { height: 1fr; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up", "pick(-1)", "Previous alert", show=False),
        Binding("down", "pick(1)", "Next alert", show=False),
        Binding("enter", "open", "Open alert", id="alerts.open"),
    ]

    def __init__(self, *, cap: int = 100, id: str | None = "alerts") -> None:
        super().__init__(id=id)
        self.cap = cap
        self.items: OrderedDict[AlertKey, AlertItem] = OrderedDict()  # oldest first
        self.picked: AlertItem | None = None

    def lines(self) -> list[str]:
        """Plain text of the items, top (newest) first."""
        return [item.plain() for item in reversed(self.items.values())]

    def apply_alerts(self, alerts: Mapping[AlertKey, AlertOccurrence]) -> int:
        fresh = list(alerts.items())[-self.cap :]
        if not fresh:
            return 0
        for key, occurrence in fresh:  # oldest first: each one goes on top of the last
            item = self.items.pop(key, None)
            count = merge_alert_count(item.count if item else None, occurrence)
            if item is None:
                item = AlertItem(occurrence.alert, count)
                if self.children:
                    self.mount(item, before=0)
                else:
                    self.mount(item)
            else:
                item.show(occurrence.alert, count)
                # Already on top (a repeat of the newest alert): moving it would re-lay out
                # the pane for nothing.
                if item.parent is self and self.children[0] is not item:
                    self.move_child(item, before=0)
            self.items[key] = item
        while len(self.items) > self.cap:
            _, old = self.items.popitem(last=False)
            if old is self.picked:
                self.picked = None
            old.remove()
        return len(fresh)

    # --- picking and opening ---------------------------------------------------------------

    def _shown(self) -> list[AlertItem]:
        return [child for child in self.children if isinstance(child, AlertItem)]

    def action_pick(self, step: int) -> None:
        shown = self._shown()
        if not shown:
            return
        index = shown.index(self.picked) if self.picked in shown else -1
        index = min(max(index + step, 0), len(shown) - 1)
        self.pick(shown[index])

    def pick(self, item: AlertItem | None) -> None:
        if self.picked is not None:
            self.picked.remove_class("-selected")
        self.picked = item
        if item is not None:
            item.add_class("-selected")
            self.scroll_to_widget(item, animate=False)

    def action_open(self) -> None:
        item = self.picked
        if item is None or item.parent is not self:
            shown = self._shown()
            if not shown:
                return
            item = shown[0]
            self.pick(item)
        self.app.push_screen(AlertScreen(item.alert, item.count))

    def on_focus(self) -> None:
        if self.picked is None or self.picked.parent is not self:
            shown = self._shown()
            self.pick(shown[0] if shown else None)
