"""Textual's Footer, rebuilt only when the keys it shows change.

Textual's Footer recomposes (removes and mounts a widget per key, then re-lays out the
screen) whenever its screen's bindings are refreshed, often several times per key press
(focus moves, a screen resumes) with the same keys as before. Each rebuild also leaves the old
key widgets referenced by the footer's `compact` watchers, so the heap grew with every press.
Here the footer is rebuilt only when the keys its screen offers differ from those it shows
(a dialog opening still hides the keys that do nothing beneath it, as before).
"""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer

ShownKeys = tuple[tuple[Binding, str, bool, str], ...]


def shown_keys(screen: Screen[Any]) -> ShownKeys:
    """What a footer draws for a screen: each shown binding and whether it is enabled."""
    app = screen.app
    return tuple(
        (binding, app.get_key_display(binding), enabled, tooltip)
        for _node, binding, enabled, tooltip in screen.active_bindings.values()
        if binding.show
    )


class SteadyFooter(Footer):
    def __init__(self) -> None:
        super().__init__()
        self._ready = False  # bindings known (Footer composes nothing before)
        self._shown: ShownKeys | None = None  # what the last compose drew

    def compose(self) -> ComposeResult:
        # Read here, when Footer's compose reads them: a rebuild runs after it was asked for
        # (a dialog may have opened since), and this is what it draws.
        self._shown = shown_keys(self.screen) if self._ready else None
        yield from super().compose()

    def bindings_changed(self, screen: Screen[Any]) -> None:
        self._ready = True
        if self._shown is not None and shown_keys(screen) == self._shown:
            return  # the keys it shows are still the keys: no rebuild
        super().bindings_changed(screen)
