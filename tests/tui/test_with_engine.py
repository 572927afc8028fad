"""The terminal driving the real engine against the simulator (the demo's wiring, no script):
K (no / yes / resume), R, Enter and q as a trader presses them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from textual.widgets import Input, Select

from engine.demo import ALPHA_ID, BETA_ID, LEADER_ID, DemoSession
from engine.domain import ConnectionState, EngineState
from tests.tui.fakes import FixedClock
from tui.app import CopyTradeApp
from tui.screens.confirm import ConfirmScreen
from tui.screens.timeline import TimelineScreen
from tui.screens.token import TokenScreen

pytestmark = pytest.mark.e2e
SIZE = (160, 46)


async def until(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def open_copies(session: DemoSession) -> int:
    return sum(
        1
        for cid in (ALPHA_ID, BETA_ID)
        for o in session.sim.orders(cid)
        if o["orderStatus"] in ("PENDING", "TRANSIT", "PART_TRADED")
    )


async def started(session: DemoSession) -> None:
    await until(
        lambda: session.engine.leader_connection() is ConnectionState.CONNECTED,
        what="engine",
    )
    await asyncio.sleep(0.3)  # the startup recovery


def leader_buy(session: DemoSession, price: float = 150.0, qty: int = 130) -> str:
    return session.sim.place_manual_order(
        LEADER_ID,
        transactionType="BUY",
        exchangeSegment="NSE_FNO",
        securityId="48211",
        quantity=qty,
        orderType="LIMIT",
        price=price,
        productType="INTRADAY",
    )


async def test_kill_no_yes_and_resume_with_the_real_engine(tmp_path: Path) -> None:
    session = DemoSession(db_path=tmp_path / "t.db", script=False)
    app = CopyTradeApp(session, demo=True, clock=FixedClock())
    async with app.run_test(size=SIZE) as pilot:
        await started(session)
        for price in (150.0, 149.0, 148.0):
            leader_buy(session, price)
        await until(lambda: open_copies(session) == 6, what="6 open copies")
        await pilot.press("k")
        assert isinstance(app.screen, ConfirmScreen)
        assert "Cancel 6 open follower orders in 2 accounts" in str(
            app.screen.query_one("#dialog-message").render()
        )
        await pilot.press("enter")  # No has the focus
        await pilot.pause(0.3)
        assert session.state is EngineState.ARMED and open_copies(session) == 6
        await pilot.press("k")
        await pilot.click("#yes")
        await until(lambda: session.state is EngineState.KILLED, what="KILLED")
        await until(lambda: open_copies(session) == 0, what="every copy cancelled")
        app.flush_events()
        await pilot.pause(0.3)
        assert "KILLED" in app.status_line.plain
        leader_buy(session, 147.0)  # nothing new while KILLED
        await until(lambda: len(session.engine.leader_orders()) == 4, what="the 4th order seen")
        await pilot.pause(0.5)
        assert open_copies(session) == 0
        await pilot.press("k")  # resume: the dialog lists the open leader orders without a copy
        await until(lambda: isinstance(app.screen, ConfirmScreen), what="the resume dialog")
        assert app.screen.id == "confirm-resume"
        listed = str(app.screen.query_one("#dialog-details-text").render())
        assert listed.count("no copy in alpha, beta") == 4  # 3 cancelled by the kill, 1 new
        await pilot.click("#yes")
        await until(lambda: app.screen.id == "confirm-replace", what="the re-place offer")
        await pilot.press("enter")  # No has the focus: resume without re-placing
        await until(lambda: session.state is EngineState.ARMED, what="ARMED")
        await pilot.pause(0.5)
        assert open_copies(session) == 0  # nothing re-placed
        leader_buy(session, 146.0)
        await until(lambda: open_copies(session) == 2, what="copies after resume")


async def test_r_enter_and_q_with_the_real_engine(tmp_path: Path) -> None:
    session = DemoSession(db_path=tmp_path / "t.db", script=False)
    app = CopyTradeApp(session, demo=True, clock=FixedClock())
    async with app.run_test(size=SIZE) as pilot:
        await started(session)
        order_id = leader_buy(session)
        await until(lambda: open_copies(session) == 2, what="copies")
        # R: recovery now; the result is shown as an alert line.
        await pilot.press("r")
        await until(
            lambda: any("leader orders checked" in line for line in app.alerts_pane.lines()),
            what="recovery shown",
        )
        # Enter on the leader order: its timeline, with the intents and broker answers.
        app.flush_events()
        app.leader_table.focus()
        app.leader_table.move_cursor(row=0)
        await pilot.press("enter")
        await until(lambda: isinstance(app.screen, TimelineScreen), what="timeline")
        screen = app.screen
        assert isinstance(screen, TimelineScreen)
        assert screen.leader_order_id == order_id
        kinds = {e.kind for e in screen.entries}
        assert {"leader", "intent", "broker"} <= kinds
        assert any("placed order" in e.text and e.follower == "alpha" for e in screen.entries)
        await pilot.press("escape")
        await pilot.pause(0.2)
        assert not isinstance(app.screen, TimelineScreen)
        # q with nothing in flight quits at once.
        await until(lambda: session.in_flight() == 0, what="idle")
        await pilot.press("q")
        await pilot.pause(0.5)
    assert session.state is EngineState.STOPPED


# --- the cockpit against the real engine ---------------------------------------------------


def follower_orders(session: DemoSession) -> int:
    return sum(len(session.sim.orders(cid)) for cid in (ALPHA_ID, BETA_ID))


def position_keys(app: CopyTradeApp) -> list[str]:
    return app.positions_table.keys()


async def test_positions_pane_and_sync_preview_with_the_real_engine(tmp_path: Path) -> None:
    session = DemoSession(db_path=tmp_path / "t.db", script=False)
    # The leader bought before the engine started (Dhan's times have whole seconds): history,
    # never copied.
    session.leader.hold_before_start()
    await asyncio.sleep(1.1)
    app = CopyTradeApp(session, demo=True, clock=FixedClock())
    async with app.run_test(size=SIZE) as pilot:
        await started(session)
        bank = "NSE_FNO:52875:INTRADAY"
        await until(lambda: f"{bank}|alpha" in position_keys(app), what="the positions read")
        table = app.positions_table
        assert table.cells_of(f"{bank}|leader")[:2] == ("BANKNIFTY-Dec2026-59000-PE", "+60")
        assert table.cells_of(f"{bank}|alpha")[1:4] == ("0", "+120", "-120 not closing")
        assert "P&L alpha" in table.cell_text("total|alpha", "who")
        accounts = app.accounts_pane
        await until(lambda: {"leader", "alpha", "beta"} <= set(accounts.cards), what="accounts")
        assert all("ARMED" in line for line in accounts.lines())
        assert "second " in accounts.cards["alpha"].plain()
        placed_before = follower_orders(session)
        await pilot.press("s")  # the preview, then No
        await until(lambda: app.screen.id == "confirm-sync", what="the sync preview")
        preview = str(app.screen.query_one("#dialog-details-text").render())
        assert "alpha      BUY     120  BANKNIFTY-Dec2026-59000-PE" in preview
        assert "beta       BUY      30  BANKNIFTY-Dec2026-59000-PE" in preview
        await pilot.press("enter")
        await pilot.pause(0.5)
        assert follower_orders(session) == placed_before
        await pilot.press("s")  # again, and Yes: whatever the engine placed, it says so
        await until(lambda: app.screen.id == "confirm-sync", what="the sync preview")
        await pilot.press("y")
        await until(
            lambda: any("Position sync:" in line for line in app.alerts_pane.lines()),
            what="the sync's answer",
        )
        line = next(x for x in app.alerts_pane.lines() if "Position sync:" in x)
        placed = follower_orders(session) - placed_before
        assert f"{placed} order" in line


async def test_lagging_copy_is_shown_with_its_timer_with_the_real_engine(tmp_path: Path) -> None:
    session = DemoSession(db_path=tmp_path / "t.db", script=False)
    app = CopyTradeApp(session, demo=True, clock=FixedClock())
    async with app.run_test(size=SIZE) as pilot:
        await started(session)
        session.sim.set_liquidity("NSE_FNO", "48211", 65)  # a thin market: a lot at a time
        ltp = session.sim.price("NSE_FNO", "48211")
        order_id = leader_buy(session, price=round(ltp + 1.0, 1))
        await until(lambda: open_copies(session) >= 1, what="the copies")
        session.sim.set_price("NSE_FNO", "48211", ltp)  # the leader gets the next lot: filled
        table = app.leader_table
        await until(
            lambda: table.has_key(order_id) and "behind" in table.cell_text(order_id, "copies"),
            what="the lag shown",
        )
        assert table.cell_text(order_id, "copies").startswith("1/2 behind")
        lagging_row = f"alpha\x1f{order_id}"
        await until(
            lambda: (
                app.follower_table.has_key(lagging_row)
                and app.follower_table.cell_text(lagging_row, "status").startswith("behind")
            ),
            what="the lagging copy highlighted",
        )
        await pilot.pause(2.2)
        app.flush_events()
        assert int(table.cell_text(order_id, "copies").split()[2]) >= 2  # the timer runs


async def test_freeze_and_token_replacement_with_the_real_engine(tmp_path: Path) -> None:
    session = DemoSession(db_path=tmp_path / "t.db", script=False)
    app = CopyTradeApp(session, demo=True, clock=FixedClock())
    async with app.run_test(size=SIZE) as pilot:
        await started(session)
        session.sim.expire_token(BETA_ID)
        leader_buy(session, 150.0)
        beta = app.accounts_pane
        await until(
            lambda: "beta" in beta.cards and "FROZEN" in beta.cards["beta"].plain(),
            timeout=15,
            what="beta frozen",
        )
        await pilot.press("u")  # the freeze listed, and No
        await until(lambda: app.screen.id == "confirm-unfreeze", what="the clear-freeze dialog")
        listed = str(app.screen.query_one("#dialog-details-text").render())
        assert listed.startswith("beta: ") and "token" in listed
        await pilot.press("enter")
        await pilot.pause(0.3)
        assert "FROZEN" in beta.cards["beta"].plain()
        new_token = "demo-beta-token-typed"
        session.sim.renew_token(BETA_ID, new_token)
        await pilot.press("T")
        await until(lambda: isinstance(app.screen, TokenScreen), what="the token dialog")
        screen = app.screen
        assert isinstance(screen, TokenScreen)
        assert screen.query_one("#token-account", Select).value == "beta"  # the refused one
        screen.query_one("#token-input", Input).focus()
        await pilot.press(*new_token)
        await pilot.click("#yes")
        await until(
            lambda: "ARMED" in beta.cards["beta"].plain(), timeout=20, what="beta copying again"
        )
        assert any("beta: token replaced" in line for line in app.alerts_pane.lines()) or any(
            "access token replaced" in line for line in app.alerts_pane.lines()
        )
        leader_buy(session, 149.0)
        await until(
            lambda: any(o["orderStatus"] == "PENDING" for o in session.sim.orders(BETA_ID)),
            what="beta copies again",
        )
