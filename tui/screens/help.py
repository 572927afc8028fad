"""The keys, listed from the app's own bindings so the list cannot drift from what works."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from rich.markup import escape
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static


class HelpScreen(ModalScreen[None]):
    """Over the dimmed main screen (the market stays in view); the app's keys, such as the
    kill switch, still work while it is open."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Close", id="help.close"),
        Binding("question_mark", "close", "Close", show=False),
        Binding("f1", "close", "Close", show=False),
    ]

    def __init__(self, keys: Sequence[tuple[str, str]]) -> None:
        super().__init__()
        self.keys = list(keys)

    def compose(self) -> ComposeResult:
        width = max((len(k) for k, _ in self.keys), default=4) + 2
        lines = [f"[b]{escape(key):<{width}}[/b]{escape(what)}" for key, what in self.keys]
        with Vertical(id="help-box"):
            yield Static("Keys", id="help-title")
            yield Static("\n".join(lines), id="help-keys", markup=True)
            yield Static("Esc closes this help.", id="help-foot")

    def action_close(self) -> None:
        self.dismiss(None)
