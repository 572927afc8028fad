"""OrderStream against a tiny loopback WebSocket server that speaks Dhan's order-update protocol."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve

from engine.clock import SystemClock
from engine.dhan.order_stream import LOGIN_REFUSED, OrderStream
from engine.domain import ConnectionState, OrderSnapshot, OrderStatus

TOKEN = "tok-SECRET-ws-8d2b41"
CLIENT = "1100001111"

# The fake server logs through its own quiet logger: websockets' server side would otherwise
# log the received login frame (with the token) at DEBUG, which is not what is under test.
_server_log = logging.getLogger("tests.fake_dhan_ws")
_server_log.setLevel(logging.WARNING)


def alert(order_id: str = "5001", client: str = CLIENT, status: str = "Pending") -> str:
    return json.dumps(
        {
            "Type": "order_alert",
            "Data": {
                "Exchange": "NSE",
                "Segment": "E",
                "SecurityId": "1333",
                "ClientId": client,
                "OrderNo": order_id,
                "Product": "I",
                "TxnType": "B",
                "OrderType": "LMT",
                "Validity": "DAY",
                "Quantity": 10,
                "TradedQty": 0,
                "Price": 1500.5,
                "Status": status,
                "LastUpdatedTime": "2026-11-23 10:00:00",
            },
        }
    )


Script = Callable[[ServerConnection, int], Awaitable[None]]


async def _hold(ws: ServerConnection, index: int) -> None:
    await ws.wait_closed()


@dataclass
class FakeOrderSocket:
    url: str = ""
    logins: list[Any] = field(default_factory=list)
    script: Script = _hold
    connections: int = 0

    async def handler(self, ws: ServerConnection) -> None:
        index = self.connections
        self.connections += 1
        raw = await ws.recv()
        self.logins.append(json.loads(raw))
        await self.script(ws, index)


@pytest.fixture
async def server() -> AsyncIterator[FakeOrderSocket]:
    fake = FakeOrderSocket()
    async with serve(fake.handler, "127.0.0.1", 0, logger=_server_log) as srv:
        host, port = next(iter(srv.sockets)).getsockname()[:2]
        fake.url = f"ws://{host}:{port}"
        yield fake


@dataclass
class Recorder:
    snapshots: list[OrderSnapshot] = field(default_factory=list)
    states: list[tuple[ConnectionState, str]] = field(default_factory=list)
    malformed: list[tuple[str, str]] = field(default_factory=list)
    connected: int = 0

    async def on_snapshot(self, snap: OrderSnapshot) -> None:
        self.snapshots.append(snap)

    def on_state(self, state: ConnectionState, detail: str) -> None:
        self.states.append((state, detail))

    async def on_connected(self) -> None:
        self.connected += 1

    def on_malformed(self, raw: str, error: str) -> None:
        self.malformed.append((raw, error))

    def count(self, state: ConnectionState) -> int:
        return sum(1 for s, _ in self.states if s is state)


def make_stream(url: str, rec: Recorder, **overrides: Any) -> OrderStream:
    kwargs: dict[str, Any] = {
        "account": "leader",
        "client_id": CLIENT,
        "access_token": TOKEN,
        "url": url,
        "on_snapshot": rec.on_snapshot,
        "on_state": rec.on_state,
        "on_connected": rec.on_connected,
        "on_malformed": rec.on_malformed,
        "idle_timeout_s": 30.0,
        "backoff_initial_s": 0.02,
        "backoff_max_s": 0.1,
        "rng": random.Random(7),
    }
    kwargs.update(overrides)
    return OrderStream(**kwargs)


async def eventually(check: Callable[[], bool], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


@pytest.fixture
async def running() -> AsyncIterator[Callable[[OrderStream], asyncio.Task[None]]]:
    started: list[tuple[OrderStream, asyncio.Task[None]]] = []

    def start(stream: OrderStream) -> asyncio.Task[None]:
        task = asyncio.create_task(stream.run())
        started.append((stream, task))
        return task

    yield start
    for stream, task in started:
        await stream.stop()
        await asyncio.wait_for(task, timeout=5)


async def test_login_frame_and_snapshots(server: FakeOrderSocket, running: Any) -> None:
    async def script(ws: ServerConnection, index: int) -> None:
        await ws.send(alert("1"))
        await ws.send(alert("2", client="9999999999"))  # another account's order: dropped
        await ws.send(json.dumps({"Type": "heartbeat"}))  # ignored
        await ws.send(alert("3", status="Traded"))
        await ws.wait_closed()

    server.script = script
    rec = Recorder()
    stream = make_stream(server.url, rec)
    running(stream)
    await eventually(lambda: len(rec.snapshots) == 2)
    assert server.logins == [
        {"LoginReq": {"MsgCode": 42, "ClientId": CLIENT, "Token": TOKEN}, "UserType": "SELF"}
    ]
    assert isinstance(server.logins[0]["LoginReq"]["MsgCode"], int)
    assert [s.order_id for s in rec.snapshots] == ["1", "3"]
    assert rec.snapshots[1].status is OrderStatus.TRADED
    assert stream.dropped_foreign == 1
    assert rec.connected == 1
    assert rec.states[:2] == [(ConnectionState.CONNECTING, ""), (ConnectionState.CONNECTED, "")]
    assert stream.last_message_mono is not None
    assert stream.reconnects == 0


async def test_a_hold_keeps_frames_queued_then_all_are_handled_in_order(
    server: FakeOrderSocket, running: Any
) -> None:
    """While the engine's sends go first (engine.dispatch.send_line), a follower's frames wait
    in the socket's queue: none is lost, none reordered."""
    released = asyncio.Event()
    held = 0

    async def hold() -> None:
        nonlocal held
        if not released.is_set():
            held += 1
            await released.wait()

    async def script(ws: ServerConnection, index: int) -> None:
        for i in range(5):
            await ws.send(alert(str(i)))
        await ws.wait_closed()

    server.script = script
    rec = Recorder()
    running(make_stream(server.url, rec, hold=hold))
    await eventually(lambda: held == 1)
    await asyncio.sleep(0.05)  # the five frames have arrived by now
    assert rec.snapshots == []
    released.set()
    await eventually(lambda: len(rec.snapshots) == 5)
    assert [s.order_id for s in rec.snapshots] == ["0", "1", "2", "3", "4"]


async def test_malformed_frame_does_not_end_the_connection(
    server: FakeOrderSocket, running: Any
) -> None:
    async def script(ws: ServerConnection, index: int) -> None:
        await ws.send("this is not json {")
        await ws.send(json.dumps({"Type": "order_alert", "Data": {"OrderNo": "1"}}))
        await ws.send(alert("7"))
        await ws.wait_closed()

    server.script = script
    rec = Recorder()
    running(make_stream(server.url, rec))
    await eventually(lambda: len(rec.snapshots) == 1)
    assert [m[0] for m in rec.malformed] == [
        "this is not json {",
        json.dumps({"Type": "order_alert", "Data": {"OrderNo": "1"}}),
    ]
    assert "not JSON" in rec.malformed[0][1]
    assert rec.snapshots[0].order_id == "7"
    assert server.connections == 1


async def test_a_failing_callback_does_not_end_the_connection(
    server: FakeOrderSocket, running: Any
) -> None:
    async def script(ws: ServerConnection, index: int) -> None:
        await ws.send(alert("1"))
        await ws.send(alert("2"))
        await ws.wait_closed()

    server.script = script
    seen: list[str] = []

    async def explode(snap: OrderSnapshot) -> None:
        seen.append(snap.order_id)
        if snap.order_id == "1":
            raise RuntimeError("consumer bug")

    rec = Recorder()
    running(make_stream(server.url, rec, on_snapshot=explode))
    await eventually(lambda: seen == ["1", "2"])
    assert server.connections == 1


async def test_server_close_reconnects_and_reruns_on_connected(
    server: FakeOrderSocket, running: Any
) -> None:
    async def script(ws: ServerConnection, index: int) -> None:
        await ws.send(alert(str(index)))
        if index == 0:
            await ws.close(code=1011, reason="keepalive ping timeout")
        else:
            await ws.wait_closed()

    server.script = script
    rec = Recorder()
    stream = make_stream(server.url, rec)
    running(stream)
    await eventually(lambda: len(rec.snapshots) == 2)
    assert rec.connected == 2
    assert stream.reconnects == 1
    assert len(server.logins) == 2
    states = [s for s, _ in rec.states]
    assert states == [
        ConnectionState.CONNECTING,
        ConnectionState.CONNECTED,
        ConnectionState.DISCONNECTED,
        ConnectionState.CONNECTING,
        ConnectionState.CONNECTED,
    ]
    assert "1011" in rec.states[2][1] and "retrying" in rec.states[2][1]


class RecordingClock(SystemClock):
    def __init__(self) -> None:
        self.sleeps: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        await super().sleep(seconds)


async def test_login_refused_is_reported_and_backs_off_capped(
    server: FakeOrderSocket, running: Any
) -> None:
    async def script(ws: ServerConnection, index: int) -> None:
        await ws.close(code=4001 if index % 2 else 1008, reason="Invalid token")

    server.script = script
    rec = Recorder()
    clock = RecordingClock()
    # idle/ping intervals far from the backoff values, so the backoff sleeps can be picked out
    stream = make_stream(
        server.url,
        rec,
        clock=clock,
        idle_timeout_s=40.0,
        backoff_initial_s=0.02,
        backoff_max_s=0.08,
    )
    running(stream)
    await eventually(lambda: server.connections >= 6)
    refused = [d for s, d in rec.states if s is ConnectionState.DISCONNECTED]
    assert refused[:5] == [LOGIN_REFUSED] * 5
    backoffs = [s for s in clock.sleeps if s < 1.0]
    assert len(backoffs) >= 5
    expected = [0.02, 0.04, 0.08, 0.08, 0.08]
    for got, cap in zip(backoffs, expected, strict=False):
        assert cap / 2 <= got <= cap


async def test_connect_failure_is_reported_and_retried(running: Any) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    rec = Recorder()
    running(make_stream(f"ws://127.0.0.1:{port}", rec))
    await eventually(lambda: rec.count(ConnectionState.DISCONNECTED) >= 3)
    detail = next(d for s, d in rec.states if s is ConnectionState.DISCONNECTED)
    assert detail.startswith("connect failed") and "retrying" in detail
    assert rec.connected == 0


async def test_idle_watchdog_stalls_then_reconnects(server: FakeOrderSocket, running: Any) -> None:
    async def script(ws: ServerConnection, index: int) -> None:
        if index == 0:
            ws.transport.pause_reading()  # silent peer: no frames, no pongs
            await asyncio.sleep(0.8)
            ws.transport.abort()
        else:
            await ws.wait_closed()

    server.script = script
    rec = Recorder()
    stream = make_stream(server.url, rec, idle_timeout_s=0.3, ping_interval_s=0.05)
    running(stream)
    await eventually(lambda: rec.connected == 2)
    states = [s for s, _ in rec.states]
    assert states[:4] == [
        ConnectionState.CONNECTING,
        ConnectionState.CONNECTED,
        ConnectionState.STALLED,
        ConnectionState.CONNECTING,
    ]
    assert "no data or pong" in rec.states[2][1]
    assert stream.reconnects == 1


async def test_pongs_keep_a_quiet_connection_alive(server: FakeOrderSocket, running: Any) -> None:
    rec = Recorder()
    running(make_stream(server.url, rec, idle_timeout_s=0.3, ping_interval_s=0.05))
    await asyncio.sleep(1.0)  # > 3 idle timeouts with no frame at all, only pongs
    assert rec.count(ConnectionState.STALLED) == 0
    assert server.connections == 1


async def test_stop_ends_run_promptly_while_connected(server: FakeOrderSocket) -> None:
    rec = Recorder()
    stream = make_stream(server.url, rec)
    task = asyncio.create_task(stream.run())
    await eventually(lambda: rec.connected == 1)
    started = time.monotonic()
    await stream.stop()
    await asyncio.wait_for(task, timeout=2)
    assert time.monotonic() - started < 1.0
    assert rec.states[-1] == (ConnectionState.DISCONNECTED, "stopped")


async def test_stop_ends_run_promptly_during_backoff(server: FakeOrderSocket) -> None:
    async def script(ws: ServerConnection, index: int) -> None:
        await ws.close(code=1011)

    server.script = script
    rec = Recorder()
    stream = make_stream(server.url, rec, backoff_initial_s=30.0, backoff_max_s=60.0)
    task = asyncio.create_task(stream.run())
    await eventually(lambda: rec.count(ConnectionState.DISCONNECTED) == 1)
    started = time.monotonic()
    await stream.stop()
    await asyncio.wait_for(task, timeout=2)
    assert time.monotonic() - started < 1.0


async def test_stop_while_on_connected_is_running(server: FakeOrderSocket) -> None:
    rec = Recorder()
    entered = asyncio.Event()

    async def slow_recovery() -> None:
        entered.set()
        await asyncio.sleep(30)

    stream = make_stream(server.url, rec, on_connected=slow_recovery)
    task = asyncio.create_task(stream.run())
    await asyncio.wait_for(entered.wait(), timeout=5)
    await stream.stop()
    await asyncio.wait_for(task, timeout=2)


async def test_token_never_logged_even_with_websockets_debug(
    server: FakeOrderSocket, caplog: pytest.LogCaptureFixture, running: Any
) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="websockets")
    caplog.set_level(logging.DEBUG, logger="websockets.client")

    async def script(ws: ServerConnection, index: int) -> None:
        await ws.send("garbage " + TOKEN)  # even a server echoing the token back
        await ws.send(alert("1"))
        await ws.close(code=4003, reason=f"bad token {TOKEN}")

    server.script = script
    rec = Recorder()
    stream = make_stream(server.url, rec)
    running(stream)
    await eventually(lambda: server.connections >= 2)
    await stream.stop()
    assert server.logins[0]["LoginReq"]["Token"] == TOKEN  # it was sent ...
    assert caplog.records  # ... things were logged ...
    assert TOKEN not in caplog.text  # ... but never the token
    assert all(TOKEN not in raw and TOKEN not in err for raw, err in rec.malformed)
    assert all(TOKEN not in detail for _, detail in rec.states)
    assert TOKEN not in repr(stream) and TOKEN not in str(stream)


async def test_watchdog_measures_silence_on_the_injected_clock(
    server: FakeOrderSocket, running: Any
) -> None:
    from engine.clock import ManualClock

    clock = ManualClock()
    rec = Recorder()
    # No pings at all (interval far away): only the clock decides when the line is silent.
    stream = make_stream(server.url, rec, clock=clock, idle_timeout_s=60.0, ping_interval_s=3600)
    running(stream)
    await eventually(lambda: rec.connected == 1)
    await asyncio.sleep(0.3)
    assert rec.count(ConnectionState.STALLED) == 0  # real time passes, the clock does not
    clock.advance(61)
    await eventually(lambda: rec.count(ConnectionState.STALLED) == 1)
    await eventually(lambda: rec.connected == 2)


def camel_alert(order_id: str, status: str = "Traded") -> str:
    """The live socket's dialect (facts §8b L2/L3/L6/L12): camelCase keys, Title-case status,
    placeholders, lower-camel instrument fields."""
    return json.dumps(
        {
            "Type": "order_alert",
            "Data": {
                "exchange": "MCX",
                "segment": "M",
                "securityId": "458305",
                "clientId": CLIENT,
                "orderNo": order_id,
                "product": "I",
                "txnType": "S",
                "orderType": "LMT",
                "validity": "DAY",
                "quantity": 200,
                "tradedQty": 200,
                "price": 5812.0,
                "status": status,
                "correlationId": "NA",
                "instrument": "FUTCOM",
                "lotSize": 100,
                "tickSize": 1.0,
                "optType": "XX",
                "symbol": "CRUDEOIL-18Dec2026-FUT",
                "lastUpdatedTime": "2026-11-23 10:00:00",
            },
        }
    )


async def test_frames_are_recorded_redacted_and_instruments_taught(
    server: FakeOrderSocket, running: Any, tmp_path: Any
) -> None:
    from engine.dhan.codec import InstrumentHint
    from engine.dhan.recorder import JsonlRecorder
    from engine.domain import Segment

    async def script(ws: ServerConnection, index: int) -> None:
        await ws.send(alert("1"))
        await ws.send(camel_alert("2"))
        await ws.send("not json at all")
        await ws.wait_closed()

    server.script = script
    rec = Recorder()
    recorder = JsonlRecorder(tmp_path, [CLIENT])
    hints: list[InstrumentHint] = []
    stream = make_stream(server.url, rec, recorder=recorder, on_instrument=hints.append)
    running(stream)
    await eventually(lambda: len(rec.snapshots) == 2 and len(rec.malformed) == 1)
    recorder.close()
    # The live dialect decodes: camelCase keys, Title-case status, "NA" is no correlationId.
    assert rec.snapshots[1].status is OrderStatus.TRADED
    assert rec.snapshots[1].correlation_id == ""
    assert rec.snapshots[1].filled_qty == 200
    assert hints[-1] == InstrumentHint(
        segment=Segment.MCX_COMM,
        security_id="458305",
        lot_size=100,
        tick_size=1.0,
        option_type="",
        instrument_type="FUTCOM",
        symbol="CRUDEOIL-18Dec2026-FUT",
    )
    text = (tmp_path / "socket.jsonl").read_text()
    lines = [json.loads(line) for line in text.splitlines()]
    assert [line["account"] for line in lines] == ["leader"] * 3
    assert lines[2]["frame"] == "not json at all"
    assert json.loads(lines[1]["frame"])["Data"]["orderNo"] == "2"
    assert json.loads(lines[0]["frame"])["Data"]["ClientId"] == "CLIENT-1"
    # The login frame (with the token) is sent, never recorded; no client id lands anywhere.
    assert TOKEN not in text and CLIENT not in text
    assert not (tmp_path / "rest.jsonl").read_text()


async def test_a_new_token_is_sent_at_the_next_login_at_once(
    server: FakeOrderSocket, running: Any
) -> None:
    renewed = "tok-RENEWED-ws-51c9e0"
    sources: list[str] = []

    async def script(ws: ServerConnection, index: int) -> None:
        sources.append(str(ws.remote_address[0]))
        if server.logins[-1]["LoginReq"]["Token"] != renewed:
            await ws.close(code=4001, reason="Invalid token")
            return
        await ws.wait_closed()

    server.script = script
    rec = Recorder()
    # A long backoff: without the new token cutting it short, no second login in this test.
    stream = make_stream(
        server.url, rec, backoff_initial_s=60.0, backoff_max_s=60.0, source_ip="127.0.0.2"
    )
    running(stream)
    await eventually(lambda: rec.count(ConnectionState.DISCONNECTED) >= 1)
    assert [d for s, d in rec.states if s is ConnectionState.DISCONNECTED] == [LOGIN_REFUSED]
    assert stream.token_in_login == TOKEN  # the refused one, for the keeper

    stream.use_token(renewed)
    # (the login's frame, not the connection: a connection is counted before its login arrives)
    await eventually(lambda: len(server.logins) == 2, within=3.0)
    assert server.connections == 2
    assert server.logins[-1]["LoginReq"]["Token"] == renewed
    await eventually(lambda: stream.token_in_login == renewed)
    assert sources == ["127.0.0.2", "127.0.0.2"]  # the socket leaves from the account's address
