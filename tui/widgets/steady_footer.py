"""Textual's Footer, rebuilt only when the keys it shows change.

Textual's Footer recomposes (removes and mounts a widget per key, then re-lays out the
screen) whenever its screen's bindings are refreshed, often several times per key press
(focus moves, a screen resumes) with the same keys as before. Each rebuild also leaves the old
key widgets referenced by the footer's `compact` watchers, so the heap grew with every press.
Here the footer is rebuilt only when the keys its screen offers differ from those it shows.
A dialog or the help opening still hides the keys that do nothing beneath it, as before, but
by hiding their widgets (and showing them again when it closes) rather than by a rebuild: a
rebuild on each close cost about 50 ms, which a key pressed then waited for.

A rebuild runs a refresh after it was asked for, and reads the keys as they are then; signals
that arrive meanwhile (two as the app starts) wait for it instead of asking for another: the
footer was built twice at start-up, and a key widget held across the first was gone after the
second (a test on a loaded machine saw it). The last signal that waited is replayed once the
rebuild is done, so none is lost.
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
        self._rebuilding = False  # a rebuild asked for, not yet done
        self._waited: Screen[Any] | None = None  # the last signal that came meanwhile

    def compose(self) -> ComposeResult:
        # Read here, when Footer's compose reads them: a rebuild runs after it was asked for
        # (a dialog may have opened since), and this is what it draws.
        self._shown = shown_keys(self.screen) if self._ready else None
        yield from super().compose()

    def bindings_changed(self, screen: Screen[Any]) -> None:
        self._ready = True
        if self._rebuilding:
            self._waited = screen
            return
        if self._shown is None:
            self._rebuild(screen)
            return
        wanted = shown_keys(screen)
        if wanted == self._shown:
            self._show_only(None)  # the keys it was built with, all of them
        elif _within(wanted, self._shown):
            # Some keys do nothing now (a dialog is on top): hide them, no rebuild.
            self._show_only({(binding.key, binding.action) for binding, *_ in wanted})
        else:
            self._rebuild(screen)

    def _rebuild(self, screen: Screen[Any]) -> None:
        self._rebuilding = True
        super().bindings_changed(screen)  # the rebuild, after the next refresh (if any)
        if not self.call_after_refresh(self._rebuilt):  # queued behind it
            self._rebuilding = False  # not queued: the footer is closing

    def _rebuilt(self) -> None:
        self._rebuilding = False
        waited, self._waited = self._waited, None
        if waited is not None:
            self.bindings_changed(waited)

    def _show_only(self, keys: set[tuple[str, str]] | None) -> None:
        shown = 0
        for child in self.children:
            key = (getattr(child, "key", None), getattr(child, "action", None))
            visible = keys is None or key in keys
            if child.display != visible:
                child.display = visible
            shown += visible
        # Footer lays its keys out in a grid of one column per key.
        self.styles.grid_size_columns = max(shown, 1)


def _within(wanted: ShownKeys, built: ShownKeys) -> bool:
    """`wanted` is `built` with some keys left out (the rest in order, as they were)."""
    remaining = iter(built)
    return all(any(item == candidate for candidate in remaining) for item in wanted)
