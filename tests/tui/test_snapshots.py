"""Snapshots of the terminal in fixed states (fixed events, a frozen clock), at 120x40.

Regenerate after an intended visual change with:
    .venv/bin/python -m pytest tests/tui/test_snapshots.py --snapshot-update
"""

from __future__ import annotations

from collections.abc import Callable

from textual.pilot import Pilot

from tests.tui.conftest import SIZE, commands_done
from tests.tui.fakes import FakeEngine, FixedClock, populate, sample_timeline
from tui.app import CopyTradeApp

SnapCompare = Callable[..., bool]


def make_app() -> tuple[CopyTradeApp, FakeEngine]:
    engine = FakeEngine()
    engine.timelines["1125112300001"] = sample_timeline("1125112300001")
    return CopyTradeApp(engine, clock=FixedClock()), engine


def populated(engine: FakeEngine, app: CopyTradeApp) -> Callable[[Pilot[None]], object]:
    async def run_before(pilot: Pilot[None]) -> None:
        populate(engine)
        app.flush_events()
        await pilot.pause()

    return run_before


def test_main_screen(snap_compare: SnapCompare) -> None:
    app, engine = make_app()
    assert snap_compare(app, terminal_size=SIZE, run_before=populated(engine, app))


def test_main_screen_narrow(snap_compare: SnapCompare) -> None:
    app, engine = make_app()
    assert snap_compare(app, terminal_size=(80, 24), run_before=populated(engine, app))


def test_kill_confirmation(snap_compare: SnapCompare) -> None:
    app, engine = make_app()
    assert snap_compare(app, terminal_size=SIZE, run_before=populated(engine, app), press=["k"])


def test_killed_state(snap_compare: SnapCompare) -> None:
    app, engine = make_app()

    async def run_before(pilot: Pilot[None]) -> None:
        populate(engine)
        app.flush_events()
        await pilot.press("k", "y")
        await commands_done(app)
        app.clear_notifications()
        app.flush_events()
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)
    assert engine.count("kill") == 1


def test_timeline_screen(snap_compare: SnapCompare) -> None:
    app, engine = make_app()

    async def run_before(pilot: Pilot[None]) -> None:
        populate(engine)
        app.flush_events()
        await pilot.pause()
        await pilot.press("down", "down", "down", "enter")  # the oldest order, 1125112300001
        await commands_done(app)
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)
    assert ("timeline", "1125112300001") in engine.calls
