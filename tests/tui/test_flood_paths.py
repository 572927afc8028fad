"""What keeps a key fast under a flood: the collector's policy, the footer's rebuilds, the help
screen kept, and flushes that yield to keys without ever starving the panes."""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Iterator

import pytest
from textual.widget import Widget
from textual.widgets import Footer

from engine.domain import OrderStatus
from tests.tui.conftest import SIZE, settle
from tests.tui.fakes import FakeEngine, FixedClock, alert_raised, leader_seen
from tui.app import CopyTradeApp
from tui.cockpit import ENGINE_BUSY_MAX_DELAY_S, ENGINE_QUIET_S, INPUT_FLUSH_MAX_DELAY_S
from tui.collector import YOUNG_THRESHOLD, CollectorPolicy
from tui.screens.help import HelpScreen
from tui.widgets.steady_footer import SteadyFooter


def footer_keys(app: CopyTradeApp) -> list[str]:
    footer = app.screen_stack[0].query_one(Footer)
    return [str(getattr(key, "key", "")) for key in footer.children if key.display]


def test_collector_policy_freezes_and_restores() -> None:
    before = gc.get_threshold()
    policy = CollectorPolicy()
    policy.apply()
    try:
        assert policy.applied
        assert gc.get_threshold()[0] == YOUNG_THRESHOLD
        assert gc.get_freeze_count() > 0
    finally:
        policy.restore()
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
    policy.apply()  # after restore (the app unmounted): nothing is applied again
    assert not policy.applied
    assert gc.get_threshold() == before


async def test_the_app_applies_the_policy_while_it_runs(app: CopyTradeApp) -> None:
    before = gc.get_threshold()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert app.collector.applied
        assert gc.get_threshold()[0] == YOUNG_THRESHOLD
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


async def test_footer_is_not_rebuilt_when_its_keys_stay(app: CopyTradeApp) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        footer = app.screen.query_one(Footer)
        keys_before = list(footer.children)
        assert [str(getattr(k, "key", "")) for k in keys_before][:2] == ["k", "r"]
        await pilot.press("tab")  # focus moves: the bindings refresh, the keys stay
        await pilot.press("tab")
        await pilot.pause()
        assert list(footer.children) == keys_before  # the same widgets: no rebuild


async def test_the_footer_is_built_once_as_the_app_starts(
    app: CopyTradeApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    builds: list[int] = []  # keys drawn by each build
    compose = SteadyFooter.compose

    def counted(footer: SteadyFooter) -> Iterator[Widget]:
        keys = list(compose(footer))
        builds.append(len(keys))
        yield from keys

    monkeypatch.setattr(SteadyFooter, "compose", counted)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert {"k", "q"} <= set(footer_keys(app))
        await pilot.press("tab")  # bindings refreshed again: still no rebuild
        await pilot.pause()
        await pilot.pause()
        # two signals as the app starts: one build (two before, a second swapping the keys)
        assert [n for n in builds if n] == [builds[-1]]


async def test_help_still_hides_the_keys_that_do_nothing_beneath_it(
    app: CopyTradeApp,
) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        everything = footer_keys(app)
        assert {"k", "s", "t", "f", "q"} <= set(everything)
        widgets = list(app.screen_stack[0].query_one(Footer).children)
        await pilot.press("question_mark")
        await pilot.pause()
        beneath = footer_keys(app)
        assert "s" not in beneath and "t" not in beneath  # not from under the help
        assert "k" in beneath and "q" in beneath  # the kill switch still works
        await pilot.press("escape")
        await pilot.pause()
        assert footer_keys(app) == everything
        # hidden and shown again, never rebuilt: the same key widgets throughout
        assert list(app.screen_stack[0].query_one(Footer).children) == widgets


async def test_help_screen_is_built_once_and_shown_again(app: CopyTradeApp) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("question_mark")
        first = app.screen
        assert isinstance(first, HelpScreen)
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)
        await pilot.press("f1")
        assert app.screen is first
        assert "kill switch" in str(first.query_one("#help-keys").render())
        await pilot.press("escape")
        assert len(app.screen_stack) == 1


async def test_keys_pressed_without_pause_never_starve_the_panes(
    app: CopyTradeApp, engine: FakeEngine
) -> None:
    """Each key defers the next flush; under keys pressed faster than that, the panes are
    still drawn at least every INPUT_FLUSH_MAX_DELAY_S, and nothing is lost."""
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        flushes_before = app.flushes
        published = 0
        loop = asyncio.get_running_loop()
        end = loop.time() + 4 * INPUT_FLUSH_MAX_DELAY_S
        while loop.time() < end:
            engine.publish(leader_seen(f"L{published:05d}"))
            engine.publish(alert_raised(f"alert {published % 3}"))
            published += 1
            await pilot.press("down")  # a key every ~50 ms, under the 150 ms quiet window
            await asyncio.sleep(0.05)
        assert app.flushes - flushes_before >= 2  # drawn meanwhile, not only at the end
        await settle(pilot, app)
        assert app.leader_table.has_key(f"L{published - 1:05d}")
        assert app.events_applied == app.coalescer.received


async def test_a_reused_row_shows_every_cell_of_its_new_order(engine: FakeEngine) -> None:
    """A new order takes the row of one pushed out; only differing cells are rewritten, and
    the row must still show exactly the new order's cells."""
    app = CopyTradeApp(engine, clock=FixedClock(), leader_rows=4)
    async with app.run_test(size=SIZE) as pilot:
        for i in range(4):
            engine.publish(leader_seen(f"L{i:03d}", status=OrderStatus.PENDING))
        await settle(pilot, app)
        # Two new orders push the two oldest out: one alike (PENDING), one not (TRADED).
        engine.publish(leader_seen("L004", status=OrderStatus.PENDING))
        engine.publish(leader_seen("L005", status=OrderStatus.TRADED, filled=10))
        await settle(pilot, app)
        table = app.leader_table
        shown_keys = table.keys()
        assert shown_keys == ["L005", "L004", "L003", "L002"]
        columns = [str(column.value) for column in table.columns]
        for key in shown_keys:
            for column in columns:
                shown = table.shown_cell(key, column).plain
                wanted = table.cell_text(key, column)
                assert shown == wanted or (shown.endswith("…") and wanted.startswith(shown[:-1])), (
                    key,
                    column,
                    shown,
                    wanted,
                )
        assert table.shown_cell("L005", "status").plain == "TRADED"
        assert table.shown_cell("L004", "status").plain == "PENDING"


async def test_a_flush_waits_for_the_engines_events_to_pause(
    app: CopyTradeApp, engine: FakeEngine
) -> None:
    """While the engine's events still come (a fan-out being sent), no repaint begins; once
    they pause it does, and a stream that never pauses is still drawn every
    ENGINE_BUSY_MAX_DELAY_S. (The flush timer's own decision, taken here by hand.)"""
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        before = app.flushes
        # The last flush just now, and cheap (on a loaded machine the start-up flush was
        # already older than ENGINE_BUSY_MAX_DELAY_S, and a busy stream is then drawn).
        app._last_flush_at = time.perf_counter()
        app._flush_not_before = 0.0
        engine.publish(leader_seen("L00001"))
        app._on_flush_timer()  # the event came just now
        assert app.flushes == before
        app.coalescer.last_event_at -= ENGINE_QUIET_S  # they paused
        app._on_flush_timer()
        assert app.flushes == before + 1 and app.leader_table.has_key("L00001")
        engine.publish(leader_seen("L00002"))  # still coming, but the last flush is old
        app._flush_not_before = 0.0
        app._last_flush_at -= ENGINE_BUSY_MAX_DELAY_S
        app._on_flush_timer()
        assert app.flushes == before + 2 and app.leader_table.has_key("L00002")
