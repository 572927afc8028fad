"""Automatic safety freezes, only the trader kills: end to end with the real dhanhq SDK.

A refused leader token and a dark leader feed freeze the engine: nothing new is copied, every
copy already at Dhan (above all the protective stop-losses) stays, and the freeze clears itself
after a resync once the cause is gone. A loss-limit freeze survives a restart and only the
trader clears it.
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from engine.check import Verdict, check_safety_state
from engine.domain import EngineState
from engine.events import AlertRaised, FreezeChanged
from engine.live.supervision import Supervisor
from engine.store import Store
from tests.e2e.conftest import (
    ALPHA,
    LEADER,
    LOSS_LIMITED_ALPHA,
    NIFTY_CE,
    World,
    WorldFactory,
    frozen_by_its_loss,
    make_settings,
)

pytestmark = pytest.mark.e2e


def alerts(world: World, code: str) -> list[AlertRaised]:
    return [e for e in world.events if isinstance(e, AlertRaised) and e.alert.code == code]


def open_orders(world: World, who: str) -> dict[str, dict[str, object]]:
    return {
        str(o["orderId"]): o
        for o in world.orders(who)
        if o["orderStatus"] in ("PENDING", "TRANSIT", "PART_TRADED")
    }


def deletes(world: World, client_id: str, since: int) -> list[dict[str, object]]:
    return [
        r
        for r in world.sim.requests[since:]
        if r["client_id"] == client_id and r["method"] == "DELETE"
    ]


async def protected_long(world: World) -> float:
    """The leader buys (filled at once) and protects it with a resting stop-loss sell; both
    copied to both followers. Returns the last price."""
    ltp = world.sim.price(*NIFTY_CE)
    world.place(price=ltp + 1, qty=65)
    await world.until(
        lambda: any(o["filledQty"] == 65 for o in world.orders("alpha")), what="alpha filled"
    )
    world.place(side="SELL", order_type="STOP_LOSS", price=ltp - 21, triggerPrice=ltp - 20, qty=65)
    await world.until(lambda: len(open_orders(world, "alpha")) == 1, what="alpha's stop rests")
    await world.until(lambda: len(open_orders(world, "beta")) == 1, what="beta's stop rests")
    await world.settle()
    return ltp


async def test_leader_token_refused_keeps_the_stops_then_renewed_clears_after_a_resync(
    make_world: WorldFactory,
) -> None:
    world = await make_world(risk_check_interval_s="0.1")
    ltp = await protected_long(world)
    stops = set(open_orders(world, "alpha")), set(open_orders(world, "beta"))
    refused_at = len(world.sim.requests)

    world.sim.expire_token(LEADER[0])
    await world.until(lambda: world.eng.state is EngineState.FROZEN, 15, "engine frozen")
    await world.until(lambda: bool(alerts(world, "ENGINE_FROZEN")), 5, "told")  # just after
    [frozen] = alerts(world, "ENGINE_FROZEN")
    assert "token" in frozen.alert.message and "stays" in frozen.alert.message
    assert any(isinstance(e, FreezeChanged) and e.account == "" for e in world.events)
    # While frozen the leader places another order: nothing new is copied.
    world.place(price=ltp - 40, qty=65)
    await asyncio.sleep(0.6)
    await world.settle()
    # The protective copies were never cancelled (the old behaviour stripped them).
    assert not deletes(world, ALPHA[0], refused_at)
    assert (set(open_orders(world, "alpha")), set(open_orders(world, "beta"))) == stops
    assert world.eng.status()["state"] == "FROZEN"

    world.sim.renew_token(LEADER[0], LEADER[1])
    await world.until(lambda: bool(alerts(world, "FREEZE_CLEARED")), 20, "freeze cleared")
    assert world.eng.state is EngineState.ARMED
    assert "resync done" in alerts(world, "FREEZE_CLEARED")[-1].alert.message
    # What the leader placed while frozen and still rests is copied once the freeze clears.
    await world.until(lambda: len(open_orders(world, "alpha")) == 2, 10, "late copy")
    await world.until(lambda: len(open_orders(world, "beta")) == 2, 10, "late copy")
    assert stops[0] <= set(open_orders(world, "alpha"))
    assert stops[1] <= set(open_orders(world, "beta"))
    # Durable: the store no longer holds the freeze.
    store = world.eng.store
    assert store is not None and await store.freezes() == []


class Gate:
    """A loopback TCP gate in front of the simulator's order socket: open it forwards, shut it
    drops every connection and refuses new ones (the leader's feed goes dark)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.open = True
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def shut(self) -> None:
        self.open = False
        for w in list(self._writers):
            w.close()

    async def stop(self) -> None:
        self.shut()
        if self._server is not None:
            self._server.close()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.open:
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._writers |= {writer, up_writer}
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(src, dst))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        dst.close()
        self._writers.discard(dst)


async def test_leader_feed_dark_freezes_and_back_clears_then_copies_what_waited(
    make_world: WorldFactory,
) -> None:
    world = await make_world(start=False)
    gate = Gate(world.sim.port)
    await gate.start()
    try:
        world.extra.update(
            dhan__order_ws_url=f"ws://127.0.0.1:{gate.port}/",
            leader_dark_kill_after_s="0.5",
            risk_check_interval_s="0.1",
        )
        await world.start_engine()
        ltp = await protected_long(world)
        stops = set(open_orders(world, "alpha"))

        gate.shut()
        await world.until(lambda: world.eng.state is EngineState.FROZEN, 10, "engine frozen")
        await world.until(lambda: bool(alerts(world, "ENGINE_FROZEN")), 5, "told")
        assert "dark" in alerts(world, "ENGINE_FROZEN")[0].alert.message
        world.place(price=ltp - 40, qty=65)  # unseen while dark
        await asyncio.sleep(0.5)
        assert set(open_orders(world, "alpha")) == stops

        gate.open = True
        await world.until(lambda: bool(alerts(world, "FREEZE_CLEARED")), 40, "feed back")
        assert world.eng.state is EngineState.ARMED
        await world.until(lambda: len(open_orders(world, "alpha")) == 2, 10, "late copy")
        assert stops <= set(open_orders(world, "alpha"))
        assert "leader dark is over" in alerts(world, "FREEZE_CLEARED")[-1].alert.message
    finally:
        await world.stop_engine()
        await gate.stop()


async def test_a_loss_limit_freeze_survives_a_restart_and_only_the_trader_clears_it(
    make_world: WorldFactory,
) -> None:
    world, ltp = await frozen_by_its_loss(make_world)

    await world.stop_engine()
    # The pre-open check says so before the engine starts again.
    rows = check_safety_state(make_settings(world.sim, world.db, LOSS_LIMITED_ALPHA))
    assert [(r.account, r.check, r.verdict) for r in rows] == [("alpha", "frozen", Verdict.WARN)]
    assert "loss limit" in rows[0].detail
    world.events.clear()
    world.sim.set_price(*NIFTY_CE, ltp + 50)  # back in profit: the freeze stays all the same
    await world.start_engine()
    assert "loss limit" in world.eng.follower_stop_reason("alpha")
    assert alerts(world, "STILL_FROZEN")
    await asyncio.sleep(0.5)
    assert world.eng.follower_stop_reason("alpha")  # no self-clearing

    world.place(price=ltp + 40, qty=65)
    await asyncio.sleep(0.3)
    await world.settle()
    assert len(world.orders("alpha")) == 1  # nothing new while frozen

    report = await world.eng.resume()  # the trader clears it
    assert "freeze cleared" not in report.message or report.state == "ARMED"
    assert world.eng.follower_stop_reason("alpha") == ""
    await world.follower_order("alpha", 2)  # the order that waited is copied now


async def test_the_traders_clear_of_a_loss_limit_holds_while_the_loss_lasts(
    make_world: WorldFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The trader clears a loss-limit freeze while the loss is still there: that limit is
    not checked again that day. The risk loop (every 0.1 s) runs while the clear is still
    being written, and must not freeze the follower again under the trader's hands."""
    world, ltp = await frozen_by_its_loss(make_world)

    writing = asyncio.Event()
    written = asyncio.Event()
    clear_freeze = Store.clear_freeze

    async def slow_clear_freeze(store: Store, account: str, cause: str) -> None:
        writing.set()
        await written.wait()  # the store is slow: the risk loop runs meanwhile
        await clear_freeze(store, account, cause)

    rounds = 0
    check_loss_limits = Supervisor._check_loss_limits

    async def counted(supervisor: Supervisor) -> None:
        nonlocal rounds
        await check_loss_limits(supervisor)
        rounds += 1

    monkeypatch.setattr(Store, "clear_freeze", slow_clear_freeze)
    monkeypatch.setattr(Supervisor, "_check_loss_limits", counted)
    clearing = asyncio.create_task(world.eng.resume())
    await asyncio.wait_for(writing.wait(), 10)
    seen = rounds
    await world.until(lambda: rounds >= seen + 2, 10, "two loss checks during the write")
    written.set()
    await asyncio.wait_for(clearing, 10)

    assert world.eng.follower_stop_reason("alpha") == ""
    waiting = world.place(price=ltp - 30, qty=65)
    await world.until(lambda: world.eng.mirror("alpha", waiting) is not None, 10, "copied")
    assert world.eng.follower_stop_reason("alpha") == ""
