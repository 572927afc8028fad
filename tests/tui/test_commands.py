"""Keys and commands: kill switch, resume, resync, timeline, quit, odd key presses."""

from __future__ import annotations

import asyncio

from textual.widgets import Button, DataTable, Static

from engine.domain import EngineState
from engine.views import RecoveryReport
from tests.tui.conftest import SIZE, RecordingApp, commands_done, settle
from tests.tui.fakes import FakeEngine, FixedClock, leader_seen, sample_timeline
from tui.app import CopyTradeApp
from tui.screens.confirm import ConfirmScreen
from tui.screens.help import HelpScreen
from tui.screens.timeline import TimelineScreen


def dialog_text(app: CopyTradeApp) -> str:
    return str(app.screen.query_one("#dialog-message", Static).content)


async def test_mount_subscribes_and_runs_engine_unmount_stops(engine: FakeEngine) -> None:
    app = CopyTradeApp(engine, clock=FixedClock())
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert engine.count("subscribe") == 1
        assert engine.count("run") == 1
        assert len(engine.bus._listeners) == 1
    assert engine.count("stop") == 1
    assert engine.bus._listeners == []


async def test_kill_dialog_defaults_to_no(app: CopyTradeApp, engine: FakeEngine) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("k")
        assert isinstance(app.screen, ConfirmScreen)
        text = dialog_text(app)
        assert "Cancel 7 open follower orders in 2 accounts" in text
        assert "send nothing new until you resume" in text
        assert isinstance(app.focused, Button) and app.focused.id == "no"
        await pilot.press("enter")  # Enter on the focused No
        assert not isinstance(app.screen, ConfirmScreen)
        await pilot.press("K")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmScreen)
        assert engine.count("kill") == 0
        assert "ARMED" in app.status_line.plain


async def test_kill_yes_then_resume(app: CopyTradeApp, engine: FakeEngine) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("K")
        await pilot.click("#yes")
        await commands_done(app)
        await settle(pilot, app)
        assert engine.calls.count(("kill", "manual kill switch")) == 1
        assert "KILLED" in app.status_line.plain
        # K while KILLED offers resume, again defaulting to No
        await pilot.press("k")
        assert isinstance(app.screen, ConfirmScreen)
        assert app.screen.id == "confirm-resume"
        assert isinstance(app.focused, Button) and app.focused.id == "no"
        await pilot.press("enter")
        assert engine.count("resume") == 0
        await pilot.press("k", "y")
        await commands_done(app)
        await settle(pilot, app)
        assert engine.count("resume") == 1
        assert engine.count("kill") == 1
        assert "ARMED" in app.status_line.plain


async def test_keys_inside_the_dialog_do_nothing_harmful(
    app: CopyTradeApp, engine: FakeEngine
) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("k")
        first = app.screen
        await pilot.press("k", "K", "r", "R", "q", "t", "f", "question_mark")
        assert app.screen is first  # no second dialog, no help, no quit
        assert len(app.screen_stack) == 2
        assert engine.count("resync") == 0 and engine.count("kill") == 0
        await pilot.press("escape")
        assert engine.count("kill") == 0
        assert app.is_running


async def test_resync_reports_and_ignores_a_second_r(app: RecordingApp, engine: FakeEngine) -> None:
    gate = asyncio.Event()
    engine.resync_gate = gate
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("r")
        await pilot.pause()
        assert "recovering…" in app.status_line.plain
        await pilot.press("R")  # while the first one runs
        await pilot.pause()
        assert engine.count("resync") == 1
        assert any("already running" in n for n in app.notices)
        gate.set()
        await commands_done(app)
        await settle(pilot, app)
        assert engine.count("resync") == 1
        assert "recovering…" not in app.status_line.plain
        messages = app.notices
        assert any(
            "12 leader orders checked, 3 actions taken, 1 discrepancy" in m for m in messages
        )
        assert any("12 leader orders checked" in line for line in app.alerts_pane.lines())
        # a later R runs again
        await pilot.press("r")
        await commands_done(app)
        assert engine.count("resync") == 2


async def test_resync_failure_is_an_alert_not_a_crash(
    app: CopyTradeApp, engine: FakeEngine
) -> None:
    async def broken() -> RecoveryReport:
        raise ConnectionError("order book unavailable")

    engine.resync = broken  # type: ignore[method-assign]
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("r")
        await commands_done(app)
        await settle(pilot, app)
        assert app.is_running
        assert any("Resync failed" in line for line in app.alerts_pane.lines())


async def test_enter_on_leader_row_opens_timeline(app: CopyTradeApp, engine: FakeEngine) -> None:
    engine.timelines["L1"] = sample_timeline("L1")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("enter")  # empty table: nothing happens
        await pilot.pause()
        assert engine.count("timeline") == 0
        assert len(app.screen_stack) == 1
        engine.publish(leader_seen("L1"))
        await settle(pilot, app)
        app.leader_table.focus()
        await pilot.press("enter")
        await commands_done(app)
        await pilot.pause()
        assert isinstance(app.screen, TimelineScreen)
        assert engine.calls[-1] == ("timeline", "L1")
        table = app.screen.query_one(DataTable)
        assert table.row_count == 8
        texts = [str(table.get_row_at(i)[3]) for i in range(table.row_count)]
        assert any("placed: order 5211" in t for t in texts)
        await pilot.press("escape")
        assert not isinstance(app.screen, TimelineScreen)


async def test_enter_on_follower_row_opens_its_leader_timeline(
    app: CopyTradeApp, engine: FakeEngine
) -> None:
    from tests.tui.fakes import follower_changed

    async with app.run_test(size=SIZE) as pilot:
        engine.publish(follower_changed("follower-a", "L9"))
        await settle(pilot, app)
        app.follower_table.focus()
        await pilot.press("enter")
        await commands_done(app)
        await pilot.pause()
        assert engine.calls[-1] == ("timeline", "L9")
        assert isinstance(app.screen, TimelineScreen)
        # the kill switch still works from the timeline screen
        await pilot.press("k")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("escape", "escape")
        assert len(app.screen_stack) == 1


async def test_quit_without_orders_in_flight(app: CopyTradeApp, engine: FakeEngine) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("q")
        await pilot.pause()
        assert not app.is_running
    assert engine.count("stop") == 1


class _InFlightUnreadable(FakeEngine):
    def in_flight(self) -> int:
        raise RuntimeError("book lock timed out")


async def test_quit_asks_when_the_engine_cannot_say_what_is_in_flight() -> None:
    engine = _InFlightUnreadable()
    app = CopyTradeApp(engine, clock=FixedClock())
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("q")
        assert isinstance(app.screen, ConfirmScreen)
        assert dialog_text(app) == (
            "The engine can't say what is in flight (it did not answer: RuntimeError); quit anyway?"
        )
        assert isinstance(app.focused, Button) and app.focused.id == "no"
        await pilot.press("enter")
        await pilot.pause()
        assert app.is_running and engine.count("stop") == 0
        await pilot.press("q", "y")
        await commands_done(app)
        await pilot.pause()
        assert not app.is_running
    assert engine.count("stop") == 1


async def test_quit_asks_while_the_engine_is_starting_or_after_it_died(
    engine: FakeEngine,
) -> None:
    engine.engine_state = EngineState.STARTING
    app = CopyTradeApp(engine, clock=FixedClock())
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("q")
        assert dialog_text(app) == (
            "The engine can't say what is in flight (it is still starting); quit anyway?"
        )
        await pilot.press("escape")
        await pilot.pause()
        assert app.is_running
    crashed = FakeEngine(run_error=RuntimeError("socket task died"))
    app = CopyTradeApp(crashed, clock=FixedClock())
    async with app.run_test(size=SIZE) as pilot:
        for _ in range(50):  # until the terminal has seen the engine die
            if app.status_line.facts.engine_stopped:
                break
            await pilot.pause()
        assert app.status_line.facts.engine_stopped
        await pilot.press("q")
        assert dialog_text(app) == (
            "The engine can't say what is in flight (it is not running); quit anyway?"
        )
        await pilot.press("y")
        await commands_done(app)
        await pilot.pause()
        assert not app.is_running


async def test_quit_with_orders_in_flight_asks(app: CopyTradeApp, engine: FakeEngine) -> None:
    engine.in_flight_count = 3
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("q")
        assert isinstance(app.screen, ConfirmScreen)
        assert dialog_text(app) == "3 orders are in flight; quit anyway?"
        assert isinstance(app.focused, Button) and app.focused.id == "no"
        await pilot.press("enter")
        await pilot.pause()
        assert app.is_running
        assert engine.count("stop") == 0
        await pilot.press("q", "y")
        await commands_done(app)
        await pilot.pause()
        assert not app.is_running
    assert engine.count("stop") == 1


async def test_help_lists_the_keys(app: CopyTradeApp) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        text = str(app.screen.query_one("#help-keys", Static).content)
        for key in ("K", "R", "Enter", "q"):
            assert key in text
        await pilot.press("escape")
        await pilot.press("f1")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        assert len(app.screen_stack) == 1


async def test_footer_shows_binding_ids(app: CopyTradeApp) -> None:
    async with app.run_test(size=SIZE):
        ids = {b.id for b in app.BINDINGS if not isinstance(b, tuple) and hasattr(b, "id")}
        assert {"kill_switch", "resync", "help", "quit", "timeline"} <= ids
        shown = {b.binding.action for b in app.active_bindings.values()}
        assert {"kill_switch", "resync", "quit", "help"} <= shown


async def test_engine_crash_shows_critical_alert(engine: FakeEngine) -> None:
    engine.run_error = RuntimeError("store is locked")
    app = CopyTradeApp(engine, clock=FixedClock())
    async with app.run_test(size=SIZE) as pilot:
        await commands_done(app)
        await settle(pilot, app)
        assert app.is_running
        assert "ENGINE STOPPED" in app.status_line.plain
        lines = app.alerts_pane.lines()
        assert lines and "CRIT" in lines[0] and "store is locked" in lines[0]


async def test_kill_failure_is_critical(app: CopyTradeApp, engine: FakeEngine) -> None:
    async def broken(reason: str) -> None:
        raise TimeoutError("dispatcher did not answer")

    engine.kill = broken  # type: ignore[method-assign]
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("k", "y")
        await commands_done(app)
        await settle(pilot, app)
        assert app.is_running
        assert "CRIT" in app.alerts_pane.lines()[0]
        assert "kill switch failed" in app.alerts_pane.lines()[0]
        assert engine.state is EngineState.ARMED


async def test_r_and_k_during_a_kill_in_progress(app: RecordingApp, engine: FakeEngine) -> None:
    gate = asyncio.Event()
    engine.kill_gate = gate
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("k", "y")
        await pilot.pause()
        assert "killing…" in app.status_line.plain
        await pilot.press("r", "k")
        await pilot.pause()
        assert engine.count("resync") == 0
        assert len(app.screen_stack) == 1  # no second kill dialog
        messages = app.notices
        assert any("Wait for the kill switch" in m for m in messages)
        assert any("already being applied" in m for m in messages)
        gate.set()
        await commands_done(app)
        await settle(pilot, app)
        assert engine.count("kill") == 1
        assert "KILLED" in app.status_line.plain and "killing…" not in app.status_line.plain
