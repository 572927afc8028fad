"""The engine on a thread of its own (tui.engine_thread): every call the terminal makes runs on
the engine's loop, its events reach the terminal, and it ends with the terminal; then the
terminal driving the real engine so (K, resume, q)."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from engine.demo import ALPHA_ID, BETA_ID, LEADER_ID, DemoSession
from engine.domain import ConnectionState, EngineState
from engine.events import EngineEvent, EngineStateChanged
from engine.views import SyncPreview
from tests.tui.fakes import T0, FakeEngine, FixedClock
from tui.app import CopyTradeApp
from tui.engine_thread import SWITCH_INTERVAL_S, EngineOnItsOwnThread
from tui.screens.confirm import ConfirmScreen

VIEWS = (
    "kill_preview",
    "in_flight",
    "follower_views",
    "limiter_views",
    "market_label",
    "account_views",
    "positions_view",
    "copy_steps",
)
COMMANDS = (
    "kill",
    "resume",
    "resync",
    "timeline",
    "uncopied_orders",
    "sync_preview",
    "sync_positions",
    "clear_freeze",
    "replace_token",
)


@dataclass
class _ThreadNoting(FakeEngine):
    """The fake engine, noting which thread each of its handle's methods ran on."""

    ran_on: dict[str, int] = field(default_factory=dict)

    def __getattribute__(self, name: str) -> Any:
        value = super().__getattribute__(name)
        if name in VIEWS or name in COMMANDS or name in ("run", "stop"):
            ran_on: dict[str, int] = super().__getattribute__("ran_on")

            def noted(*args: Any, **kwargs: Any) -> Any:
                ran_on[name] = threading.get_ident()
                return value(*args, **kwargs)

            return noted
        return value


def _engine_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "copytrade-engine"]


async def _running(fake: _ThreadNoting, handle: EngineOnItsOwnThread) -> asyncio.Task[None]:
    runner = asyncio.create_task(handle.run())
    deadline = time.monotonic() + 10
    while "run" not in fake.ran_on:
        assert time.monotonic() < deadline, "the engine did not start"
        await asyncio.sleep(0.01)
    return runner


async def test_every_view_and_command_runs_on_the_engines_own_thread() -> None:
    fake = _ThreadNoting()
    handle = EngineOnItsOwnThread(fake)
    before = sys.getswitchinterval()
    runner = await _running(fake, handle)
    assert sys.getswitchinterval() == SWITCH_INTERVAL_S  # a woken engine waits at most this
    assert handle.kill_preview() == fake.preview
    assert handle.in_flight() == 0 and handle.market_label() == fake.market
    assert handle.follower_views() == [] and handle.limiter_views() == []
    assert handle.account_views() == [] and handle.copy_steps() == []
    assert handle.positions_view() == fake.positions
    await handle.kill("K pressed")
    assert handle.state is EngineState.KILLED
    assert await handle.resume() is not None
    assert await handle.resync() == fake.report
    assert await handle.timeline("L1") == []
    assert await handle.uncopied_orders() == []
    assert await handle.sync_preview() == fake.preview_sync
    assert (await handle.sync_positions(SyncPreview())).placed == 0
    assert await handle.clear_freeze("alpha") == "alpha: freeze cleared"
    assert await handle.replace_token("alpha", SecretStr("t0k3n")) == "alpha: token replaced"
    engine_thread = fake.ran_on["run"]
    assert engine_thread != threading.get_ident()
    assert {name: fake.ran_on[name] for name in (*VIEWS, *COMMANDS)} == {
        name: engine_thread for name in (*VIEWS, *COMMANDS)
    }
    await handle.stop()
    await asyncio.wait_for(runner, 10)
    assert fake.ran_on["stop"] == engine_thread
    assert _engine_threads() == []
    assert sys.getswitchinterval() == before


async def test_events_reach_the_terminals_listener_from_the_engines_thread() -> None:
    fake = _ThreadNoting()
    handle = EngineOnItsOwnThread(fake)
    heard: list[tuple[EngineEvent, int]] = []
    handle.subscribe(lambda event: heard.append((event, threading.get_ident())))
    runner = await _running(fake, handle)
    event = EngineStateChanged(at=T0, state=EngineState.KILLED, reason="K")

    async def publish() -> None:
        fake.publish(event)

    await handle.on_engine_loop(publish)
    assert heard == [(event, fake.ran_on["run"])]
    await handle.stop()
    await asyncio.wait_for(runner, 10)


async def test_an_engine_that_fails_raises_where_run_is_awaited() -> None:
    fake = _ThreadNoting(run_error=RuntimeError("database is locked by another engine"))
    handle = EngineOnItsOwnThread(fake)
    with pytest.raises(RuntimeError, match="locked by another engine"):
        await asyncio.wait_for(handle.run(), 10)
    assert _engine_threads() == []


async def test_a_terminal_closing_without_stop_stops_the_engine_and_its_thread() -> None:
    fake = _ThreadNoting()
    handle = EngineOnItsOwnThread(fake)
    runner = await _running(fake, handle)
    runner.cancel()  # Textual cancels its workers when the app exits
    with pytest.raises(asyncio.CancelledError):
        await runner
    assert fake.count("stop") == 1
    assert _engine_threads() == []


async def test_before_run_and_after_it_calls_go_straight_to_the_engine() -> None:
    fake = _ThreadNoting()
    handle = EngineOnItsOwnThread(fake)
    here = threading.get_ident()
    assert handle.market_label() == fake.market  # the cockpit's first paint, before run
    assert fake.ran_on["market_label"] == here
    runner = await _running(fake, handle)
    await handle.stop()
    await asyncio.wait_for(runner, 10)
    await handle.kill("after the end")
    assert fake.ran_on["kill"] == here


@dataclass
class _BrokenView(_ThreadNoting):
    def copy_steps(self) -> Any:
        raise ValueError("a read model bug")


async def test_a_view_that_raises_raises_for_the_terminal() -> None:
    fake = _BrokenView()
    handle = EngineOnItsOwnThread(fake)
    runner = await _running(fake, handle)
    with pytest.raises(ValueError, match="a read model bug"):
        handle.copy_steps()
    assert handle.in_flight() == 0  # and the engine's loop goes on
    await handle.stop()
    await asyncio.wait_for(runner, 10)


# --- the terminal driving the real engine on its thread ------------------------------------

SIZE = (160, 46)


async def _until(predicate: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


@pytest.mark.e2e
async def test_k_resume_and_q_with_the_real_engine_on_its_own_thread(tmp_path: Path) -> None:
    session = DemoSession(db_path=tmp_path / "t.db", script=False)
    handle = EngineOnItsOwnThread(session)

    async def on_engine(fn: Callable[[], Any]) -> Any:
        """The simulator and the session live on the engine's loop: read and drive them there."""

        async def call() -> Any:
            return fn()

        return await handle.on_engine_loop(call)

    async def open_copies() -> int:
        def count() -> int:
            return sum(
                1
                for cid in (ALPHA_ID, BETA_ID)
                for o in session.sim.orders(cid)
                if o["orderStatus"] in ("PENDING", "TRANSIT", "PART_TRADED")
            )

        return int(await on_engine(count))

    async def leader_buy(price: float) -> None:
        await on_engine(
            lambda: session.sim.place_manual_order(
                LEADER_ID,
                transactionType="BUY",
                exchangeSegment="NSE_FNO",
                securityId="48211",
                quantity=130,
                orderType="LIMIT",
                price=price,
                productType="INTRADAY",
            )
        )

    async def until_copies(n: int, what: str) -> None:
        deadline = time.monotonic() + 10
        while await open_copies() != n:
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            await asyncio.sleep(0.05)

    app = CopyTradeApp(handle, demo=True, clock=FixedClock())
    async with app.run_test(size=SIZE) as pilot:
        await _until(lambda: bool(_engine_threads()), "the engine's thread")
        connected = ConnectionState.CONNECTED
        deadline = time.monotonic() + 10
        while await on_engine(session.engine.leader_connection) is not connected:
            assert time.monotonic() < deadline, "the leader's socket"
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # the startup recovery
        for price in (150.0, 149.0):
            await leader_buy(price)
        await until_copies(4, "4 open copies")
        await pilot.press("k")
        assert isinstance(app.screen, ConfirmScreen)
        assert "Cancel 4 open follower orders in 2 accounts" in str(
            app.screen.query_one("#dialog-message").render()
        )
        await pilot.click("#yes")
        await _until(lambda: handle.state is EngineState.KILLED, "KILLED")
        await until_copies(0, "every copy cancelled")
        await _until(lambda: "KILLED" in app.status_line.plain, "KILLED on screen")
        await pilot.press("k")  # resume
        await _until(lambda: isinstance(app.screen, ConfirmScreen), "the resume dialog")
        await pilot.click("#yes")
        await _until(lambda: app.screen.id == "confirm-replace", "the re-place offer")
        await pilot.press("enter")  # No: resume without re-placing
        await _until(lambda: handle.state is EngineState.ARMED, "ARMED")
        await leader_buy(148.0)
        await until_copies(2, "copies after resume")
        await _until(lambda: handle.in_flight() == 0, "idle")
        await pilot.press("q")
        await pilot.pause(0.5)
    assert handle.state is EngineState.STOPPED
    assert _engine_threads() == []
