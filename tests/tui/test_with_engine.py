"""The terminal driving the real engine against the simulator (the demo's wiring, no script):
K (no / yes / resume), R, Enter and q as a trader presses them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from engine.demo import ALPHA_ID, BETA_ID, LEADER_ID, DemoSession
from engine.domain import ConnectionState, EngineState
from tests.tui.fakes import FixedClock
from tui.app import CopyTradeApp
from tui.screens.confirm import ConfirmScreen
from tui.screens.timeline import TimelineScreen

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
