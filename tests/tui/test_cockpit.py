"""The cockpit against the fake engine: positions and accounts panes, copies in step and the
lagging copy, "new above" titles, sparklines, and every new dialog on its no and yes paths."""

from __future__ import annotations

import html
import re
from datetime import timedelta

from pydantic import SecretStr
from textual.widgets import Button, Input, Select, Sparkline, Static

from engine.domain import EngineState
from engine.views import SyncPreview
from tests.tui.conftest import SIZE, RecordingApp, commands_done, settle
from tests.tui.fakes import (
    T0,
    FakeEngine,
    account_views,
    alert_raised,
    leader_seen,
    populate,
    populate_cockpit,
    stats_updated,
    sync_preview,
    uncopied,
)
from tui.app import CopyTradeApp
from tui.screens.alert_detail import AlertScreen
from tui.screens.confirm import ConfirmScreen
from tui.screens.help import HelpScreen
from tui.screens.token import TokenScreen


def screen_text(app: CopyTradeApp) -> str:
    """What the terminal shows, as text (the SVG's text runs, joined line by line)."""
    svg = app.export_screenshot()
    runs = re.findall(r"<text[^>]*>([^<]*)</text>", svg)
    return html.unescape("".join(runs)).replace("\xa0", " ")


def details(app: CopyTradeApp) -> str:
    return str(app.screen.query_one("#dialog-details-text", Static).content)


def message(app: CopyTradeApp) -> str:
    return str(app.screen.query_one("#dialog-message", Static).content)


def no_has_focus(app: CopyTradeApp) -> bool:
    return isinstance(app.focused, Button) and app.focused.id == "no"


async def show_cockpit(
    pilot: object, app: CopyTradeApp, engine: FakeEngine, frozen: str = ""
) -> None:
    engine.accounts = account_views(frozen)
    populate(engine)
    populate_cockpit(engine, frozen)
    await settle(pilot, app)  # type: ignore[arg-type]


# --- panes ----------------------------------------------------------------------------------


async def test_positions_pane_shows_targets_differences_and_pnl(
    app: CopyTradeApp, engine: FakeEngine
) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await show_cockpit(pilot, app, engine)
        table = app.positions_table
        keys = table.keys()
        assert keys[0] == "NSE_EQ:2885:INTRADAY|leader"  # instrument first, then its followers
        assert keys[-3:] == ["total|leader", "total|follower-a", "total|follower-b"]
        assert table.cells_of("NSE_EQ:2885:INTRADAY|leader")[:4] == (
            "RELIANCE",
            "+10",
            "",
            "the leader",
        )
        assert table.cell_text("NSE_EQ:2885:INTRADAY|follower-a", "who") == "  follower-a"
        assert table.cell_text("total|follower-a", "who") == "P&L follower-a"
        assert table.cell_text("NSE_EQ:2885:INTRADAY|follower-a", "diff") == "in line"
        assert table.cell_text("NSE_EQ:2885:INTRADAY|follower-b", "diff") == "-10 closing"
        assert table.cell_text("NSE_EQ:1594:INTRADAY|follower-a", "diff") == "+5 not closing"
        assert "red" in str(table.shown_cell("NSE_EQ:1594:INTRADAY|follower-a", "diff").style)
        assert table.cell_text("NSE_EQ:2885:INTRADAY|follower-a", "unrealised") == "+62.25"
        assert table.cell_text("total|leader", "diff") == "+290.00"
        assert "Positions · 2 instruments · read 10:14:56" in str(table.border_title)


async def test_accounts_pane_shows_state_token_ip_and_rate_in_words(
    app: CopyTradeApp, engine: FakeEngine
) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await show_cockpit(pilot, app, engine, frozen="follower-b")
        pane = app.accounts_pane
        assert list(pane.cards) == ["leader", "follower-a", "follower-b"]
        leader = pane.cards["leader"].plain()
        assert "ARMED" in leader and "token 20h12m left; mints from PIN+TOTP" in leader
        a = pane.cards["follower-a"].plain()
        assert "2 open copies · 1 by hand · from 127.0.0.2" in a
        assert "token 50m00s left; cannot renew" in a
        assert "second ██░░░░░░ 3 of 10 used" in a and "day    █░░░░░░░ 380 of 7000 used" in a
        assert "queue 1 · waited 2 · Dhan refusals 0" in a
        b = pane.cards["follower-b"].plain()
        assert "FROZEN  Dhan refused the token (expired)" in b
        assert "Dhan refusals 1" in b


async def test_copies_in_step_and_the_lagging_copy(app: CopyTradeApp, engine: FakeEngine) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await show_cockpit(pilot, app, engine)
        leaders = app.leader_table
        assert leaders.cell_text("1125112300001", "copies") == "2/2"
        assert leaders.cell_text("1125112300002", "copies") == "0/2 behind 14 s"
        assert leaders.cell_text("1125112300003", "copies") == "-"
        followers = app.follower_table
        lagging = "follower-a\x1f1125112300002"
        assert followers.cell_text(lagging, "status") == "behind 14 s"
        assert "on yellow" in str(followers.shown_cell(lagging, "status").style)
        assert followers.cell_text("follower-b\x1f1125112300002", "status") == "FAILED"


async def test_new_orders_above_the_cursor_are_counted_in_the_title(
    app: CopyTradeApp, engine: FakeEngine
) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await show_cockpit(pilot, app, engine)
        table = app.leader_table
        table.focus()
        await pilot.press("down", "down")
        for n in range(3):
            engine.publish(leader_seen(f"NEW{n}", at=T0 + timedelta(seconds=n + 1)))
        await settle(pilot, app)
        assert table.cursor_key() == "1125112300002"  # the cursor stayed on its order
        assert "3 new above ↑" in str(table.border_title)
        await pilot.press(*["up"] * 5)  # back to the newest row
        await settle(pilot, app)
        assert table.cursor_row == 0
        assert "new above" not in str(table.border_title)


async def test_sparklines_sample_latency_and_rate_use(
    app: CopyTradeApp, engine: FakeEngine
) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await show_cockpit(pilot, app, engine)
        for latency in (120.0, 480.0):
            engine.publish(stats_updated(latency_p50_ms=latency, latency_p99_ms=900.0))
            app.flush_events()
            app.sample_sparklines()
        # Read before any await: the app's own one-a-second sample may add a point after.
        spark = app.query_one("#latency-spark", Sparkline)
        assert list(spark.data or [])[-2:] == [120.0, 480.0]
        await pilot.pause()
        assert spark.display
        assert "now 480 ms · peak 480 ms" in str(app.query_one("#latency-label", Static).content)
        card = app.accounts_pane.cards["follower-b"]
        assert list(card.history)[-2:] == [231 / 250, 231 / 250]  # the busiest window: minute


# --- dialogs --------------------------------------------------------------------------------


async def test_sync_preview_no_places_nothing(app: CopyTradeApp, engine: FakeEngine) -> None:
    engine.preview_sync = sync_preview()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("s")
        await commands_done(app)
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen) and app.screen.id == "confirm-sync"
        assert "Place 2 orders in 2 followers" in message(app)
        lines = details(app).splitlines()
        assert lines[0].split() == [
            "follower-a",
            "SELL",
            "5",
            "INFY",
            "INTRADAY",
            "(net",
            "-5",
            "->",
            "target",
            "-10)",
        ]
        assert lines[1].split()[:3] == ["follower-b", "SELL", "15"]
        assert lines[2] == "note: follower-c: positions unavailable (timeout)"
        assert no_has_focus(app)
        await pilot.press("enter")
        await commands_done(app)
        assert not isinstance(app.screen, ConfirmScreen)
        assert engine.count("sync_positions") == 0


async def test_sync_preview_yes_places_exactly_the_preview(
    app: RecordingApp, engine: FakeEngine
) -> None:
    engine.preview_sync = sync_preview()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("S")
        await commands_done(app)
        await pilot.pause()
        await pilot.press("y")
        await commands_done(app)
        await settle(pilot, app)
        sent = [arg for name, arg in engine.calls if name == "sync_positions"]
        assert sent == [engine.preview_sync]
        assert "Position sync: 2 orders placed" in app.notices
        assert any("Position sync: 2 orders placed" in line for line in app.alerts_pane.lines())


async def test_sync_with_nothing_to_do_opens_no_dialog(
    app: RecordingApp, engine: FakeEngine
) -> None:
    engine.preview_sync = SyncPreview()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("s")
        await commands_done(app)
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmScreen)
        assert "Every follower is at its target: nothing to sync." in app.notices


async def test_resume_lists_uncopied_orders_and_no_stays_killed(
    app: CopyTradeApp, engine: FakeEngine
) -> None:
    engine.engine_state = EngineState.KILLED
    engine.uncopied = uncopied()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("k")
        await commands_done(app)
        await pilot.pause()
        assert app.screen.id == "confirm-resume"
        assert "1 open leader order has no copy" in message(app)
        assert "SELL     25 INFY LIMIT @ 1580.00" in details(app)
        assert "no copy in follower-a, follower-b" in details(app)
        assert no_has_focus(app)
        await pilot.press("enter")
        await commands_done(app)
        assert engine.count("resume") == 0


async def test_resume_yes_then_no_resumes_without_replacing(
    app: CopyTradeApp, engine: FakeEngine
) -> None:
    engine.engine_state = EngineState.KILLED
    engine.uncopied = uncopied()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("k")
        await commands_done(app)
        await pilot.pause()
        await pilot.press("y")
        await pilot.pause()
        assert app.screen.id == "confirm-replace"
        assert "1125112300002" in details(app)
        assert no_has_focus(app)
        await pilot.press("enter")
        await commands_done(app)
        await settle(pilot, app)
        assert ("resume", False) in engine.calls and engine.count("resume") == 1
        assert "ARMED" in app.status_line.plain


async def test_resume_yes_then_yes_replaces_the_open_orders(
    app: RecordingApp, engine: FakeEngine
) -> None:
    engine.engine_state = EngineState.KILLED
    engine.uncopied = uncopied()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("k")
        await commands_done(app)
        await pilot.pause()
        await pilot.press("y")
        await pilot.pause()
        await pilot.click("#yes")
        await commands_done(app)
        await settle(pilot, app)
        assert ("resume", True) in engine.calls and engine.count("resume") == 1
        assert "Resumed: replication is ARMED. 1 leader order re-placed." in app.notices


async def test_clear_freeze_no_and_yes(app: RecordingApp, engine: FakeEngine) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await show_cockpit(pilot, app, engine, frozen="follower-b")
        await pilot.press("u")
        assert app.screen.id == "confirm-unfreeze"
        assert details(app) == "follower-b: Dhan refused the token (expired)"
        assert no_has_focus(app)
        await pilot.press("enter")
        await commands_done(app)
        assert engine.count("clear_freeze") == 0
        await pilot.press("u", "y")
        await commands_done(app)
        assert ("clear_freeze", "follower-b") in engine.calls
        assert "follower-b: freeze cleared" in app.notices
        await pilot.press("u")
        assert not isinstance(app.screen, ConfirmScreen)
        assert "Nothing is frozen." in app.notices


async def test_replace_token_no_sends_nothing_and_empties_the_field(
    app: RecordingApp, engine: FakeEngine
) -> None:
    secret = "eyJhbGciOi.canary-typed-token.sig"
    async with app.run_test(size=SIZE) as pilot:
        await show_cockpit(pilot, app, engine)
        await pilot.press("T")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, TokenScreen) and no_has_focus(app)
        field = screen.query_one("#token-input", Input)
        assert field.password
        field.focus()
        await pilot.press(*secret)
        assert field.value == secret
        assert secret not in screen_text(app)  # masked while typed
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, TokenScreen)
        assert field.value == "" and screen.take_token() is None
        assert engine.count("replace_token") == 0
        assert all(secret not in notice for notice in app.notices)


async def test_replace_token_yes_hands_the_engine_a_secret(
    app: RecordingApp, engine: FakeEngine
) -> None:
    secret = "canary-typed-token-4d1f"
    async with app.run_test(size=SIZE) as pilot:
        await show_cockpit(pilot, app, engine)
        await pilot.press("T")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, TokenScreen)
        screen.query_one("#token-account", Select).value = "follower-a"
        await pilot.click("#yes")  # no token typed yet: refused with a line, dialog stays
        assert isinstance(app.screen, TokenScreen) and engine.count("replace_token") == 0
        screen.query_one("#token-input", Input).focus()
        await pilot.press(*secret, "enter")  # Enter moves to Replace, it does not send
        assert isinstance(app.screen, TokenScreen) and engine.count("replace_token") == 0
        await pilot.click("#yes")
        await commands_done(app)
        await pilot.pause()
        assert engine.tokens_received == [("follower-a", SecretStr(secret))]
        assert engine.tokens_received[0][1].get_secret_value() == secret
        assert "follower-a: token replaced" in app.notices
        assert all(secret not in notice for notice in app.notices)
        assert secret not in screen_text(app)


async def test_alert_opens_in_full_with_enter(app: CopyTradeApp, engine: FakeEngine) -> None:
    long_text = "Copy of 1125112300002 for follower-a rests at 1580.10 " + "market moved. " * 20
    async with app.run_test(size=SIZE) as pilot:
        engine.publish(alert_raised(long_text.strip(), code="COPY_LAGGING", follower="follower-a"))
        await settle(pilot, app)
        app.alerts_pane.focus()
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, AlertScreen)
        body = screen_text(app)
        assert "COPY_LAGGING" in body and "Account: follower-a" in body
        assert app.screen.alert.message == long_text.strip()
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, AlertScreen)


async def test_help_sits_over_the_main_screen(app: CopyTradeApp, engine: FakeEngine) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await show_cockpit(pilot, app, engine)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen) and app.screen.is_modal
        text = screen_text(app)
        assert "Keys" in text and "RELIANCE" in text  # the market view still shows beneath
        assert "position sync: preview the orders" in text
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)
