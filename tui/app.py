"""The copy-trading terminal: a view over the engine.

It renders engine events and sends commands (kill, resume, resync, timeline); it decides
nothing about orders. The engine runs as a long-lived worker; `copytrade` gives it a thread
and loop of its own (tui/engine_thread.py), so a repaint never holds a copy back. Its events
land in a bounded buffer (the listener only appends), and a flush at most every
`flush_interval` seconds folds them by key and applies them as keyed diffs, one
`batch_update()` for all panes.

Layout: tui/cockpit.py (panes, lifecycle, event intake), tui/trader_actions.py (keys and
dialogs), tui/dialog_text.py (their words).
"""

from __future__ import annotations

from tui.dialog_text import (
    kill_message,
    resume_line,
    resync_summary,
    sync_lines,
    sync_report_line,
    uncopied_lines,
)
from tui.trader_actions import KILL_REASON, TraderActions

__all__ = [
    "KILL_REASON",
    "CopyTradeApp",
    "kill_message",
    "resume_line",
    "resync_summary",
    "sync_lines",
    "sync_report_line",
    "uncopied_lines",
]


class CopyTradeApp(TraderActions):
    """The terminal. Give it an engine; it subscribes, runs it in a worker and renders it."""

    # Textual resolves a relative CSS_PATH against the module of the running app's class: here.
    CSS_PATH = "app.tcss"
    ENABLE_COMMAND_PALETTE = False
    HORIZONTAL_BREAKPOINTS = [
        (0, "-narrow"),
        (110, "-wide"),
    ]
    # Under 28 rows, three tables stacked show no rows at all: the follower orders give way
    # (a leader order's copies in step, and its timeline, still say how each copy is doing).
    VERTICAL_BREAKPOINTS = [
        (0, "-short"),
        (28, "-tall"),
    ]
