"""Snapshots of the terminal in fixed states (fixed events, a frozen clock, sparklines sampled
by hand), at 120x40 unless said.

Regenerate after an intended visual change with:
    .venv/bin/python -m pytest tests/tui/test_snapshots.py --snapshot-update
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from textual.pilot import Pilot

from tests.tui.conftest import SIZE, commands_done
from tests.tui.fakes import (
    FakeEngine,
    FixedClock,
    account_views,
    populate,
    populate_cockpit,
    sample_timeline,
    stats_updated,
    sync_preview,
    uncopied,
)
from tui.app import CopyTradeApp

SnapCompare = Callable[..., bool]
COCKPIT_SIZE = (120, 35)
# A fixed latency history: the sparkline draws the same picture every run.
LATENCIES = (180.0, 190.0, 240.0, 420.0, 260.0, 200.0, 185.0, 610.0, 230.0, 188.0)


def make_app(frozen: str = "") -> tuple[CopyTradeApp, FakeEngine]:
    engine = FakeEngine()
    engine.timelines["1125112300001"] = sample_timeline("1125112300001")
    engine.accounts = account_views(frozen)
    engine.preview_sync = sync_preview()
    engine.uncopied = uncopied()
    # sample_every: sparklines are sampled by the test only, so the picture is fixed
    return CopyTradeApp(engine, clock=FixedClock(), sample_every=3600), engine


def populated(
    engine: FakeEngine, app: CopyTradeApp, frozen: str = "", keys: Sequence[str] = ()
) -> Callable[[Pilot[None]], object]:
    async def run_before(pilot: Pilot[None]) -> None:
        populate(engine)
        populate_cockpit(engine, frozen)
        app.flush_events()
        for latency in LATENCIES:
            engine.publish(stats_updated(latency_p50_ms=latency, latency_p99_ms=latency * 3))
            app.flush_events()
            app.sample_sparklines()
        await pilot.pause()
        for key in keys:
            await pilot.press(key)
            await commands_done(app)
            await pilot.pause()

    return run_before


def test_main_screen(snap_compare: SnapCompare) -> None:
    app, engine = make_app()
    assert snap_compare(app, terminal_size=SIZE, run_before=populated(engine, app))


def test_cockpit_at_120x35_with_a_freeze(snap_compare: SnapCompare) -> None:
    """The positions pane, every account's state (follower-b frozen), a lagging copy."""
    app, engine = make_app(frozen="follower-b")
    run_before = populated(engine, app, frozen="follower-b")
    assert snap_compare(app, terminal_size=COCKPIT_SIZE, run_before=run_before)


def test_positions_pane_focused(snap_compare: SnapCompare) -> None:
    app, engine = make_app()

    async def run_before(pilot: Pilot[None]) -> None:
        await populated(engine, app)(pilot)  # type: ignore[misc]
        app.positions_table.focus()
        await pilot.pause()

    assert snap_compare(app, terminal_size=COCKPIT_SIZE, run_before=run_before)


def test_main_screen_100x30(snap_compare: SnapCompare) -> None:
    app, engine = make_app()
    assert snap_compare(app, terminal_size=(100, 30), run_before=populated(engine, app))


def test_main_screen_narrow(snap_compare: SnapCompare) -> None:
    app, engine = make_app()
    assert snap_compare(app, terminal_size=(80, 24), run_before=populated(engine, app))


def test_kill_confirmation(snap_compare: SnapCompare) -> None:
    app, engine = make_app()
    assert snap_compare(app, terminal_size=SIZE, run_before=populated(engine, app), press=["k"])


def test_sync_preview_dialog(snap_compare: SnapCompare) -> None:
    app, engine = make_app()
    run_before = populated(engine, app, keys=["s"])
    assert snap_compare(app, terminal_size=COCKPIT_SIZE, run_before=run_before)


def test_clear_freeze_dialog(snap_compare: SnapCompare) -> None:
    app, engine = make_app(frozen="follower-b")
    run_before = populated(engine, app, frozen="follower-b", keys=["u"])
    assert snap_compare(app, terminal_size=COCKPIT_SIZE, run_before=run_before)


def test_replace_token_dialog(snap_compare: SnapCompare) -> None:
    app, engine = make_app()
    run_before = populated(engine, app, keys=["T"])
    assert snap_compare(app, terminal_size=COCKPIT_SIZE, run_before=run_before)


def test_resume_dialog_lists_uncopied_orders(snap_compare: SnapCompare) -> None:
    app, engine = make_app()

    async def run_before(pilot: Pilot[None]) -> None:
        await populated(engine, app)(pilot)  # type: ignore[misc]
        await pilot.press("k", "y")
        await commands_done(app)
        app.clear_notifications()
        app.flush_events()
        await pilot.press("k")
        await commands_done(app)
        await pilot.pause()

    assert snap_compare(app, terminal_size=COCKPIT_SIZE, run_before=run_before)


def test_help_over_the_dimmed_main_screen(snap_compare: SnapCompare) -> None:
    app, engine = make_app()
    run_before = populated(engine, app, keys=["question_mark"])
    assert snap_compare(app, terminal_size=COCKPIT_SIZE, run_before=run_before)


def test_alert_opened_in_full(snap_compare: SnapCompare) -> None:
    app, engine = make_app()

    async def run_before(pilot: Pilot[None]) -> None:
        await populated(engine, app)(pilot)  # type: ignore[misc]
        app.alerts_pane.focus()
        await pilot.press("enter")
        await pilot.pause()

    assert snap_compare(app, terminal_size=COCKPIT_SIZE, run_before=run_before)


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
