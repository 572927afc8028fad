"""The life of one leader order across every follower, as the engine recorded it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from engine.clock import to_ist
from engine.views import TimelineEntry
from tui.format import one_line

_KIND_STYLE = {
    "leader": "bold cyan",
    "intent": "yellow",
    "broker": "",
    "fill": "green",
    "alert": "bold red",
}


def entry_time(entry: TimelineEntry) -> str:
    at = to_ist(entry.at)
    return at.strftime("%H:%M:%S.") + f"{at.microsecond // 1000:03d}"


class TimelineScreen(Screen[None]):
    """A full screen (not modal) so the kill switch and the other app keys still work here."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Close", id="timeline.close"),
    ]

    def __init__(self, leader_order_id: str, entries: Sequence[TimelineEntry]) -> None:
        super().__init__()
        self.leader_order_id = leader_order_id
        self.entries = sorted(entries, key=lambda e: e.at)

    def compose(self) -> ComposeResult:
        with Vertical(id="timeline-box"):
            yield Static(
                f"Timeline of leader order {one_line(self.leader_order_id, 40)}"
                f" · {len(self.entries)} entries · Esc closes",
                id="timeline-title",
            )
            table: DataTable[Text] = DataTable(id="timeline-table", cursor_type="row")
            yield table
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#timeline-table", DataTable)
        table.add_column("Time", width=12, key="time")
        table.add_column("Kind", width=6, key="kind")
        table.add_column("Follower", width=12, key="follower")
        table.add_column("What happened", width=84, key="text")
        if not self.entries:
            table.add_row(Text("-"), Text("-"), Text("-"), Text("no entries recorded", "dim"))
        for index, entry in enumerate(self.entries):
            style = _KIND_STYLE.get(entry.kind, "")
            table.add_row(
                Text(entry_time(entry), style=style),
                Text(one_line(entry.kind, 6), style=style),
                Text(one_line(entry.follower or "", 40), style=style),
                Text(one_line(entry.text, 400), style=style),
                key=str(index),
            )
        table.focus()

    def action_close(self) -> None:
        self.dismiss(None)
