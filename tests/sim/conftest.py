"""Fixtures: a DhanSimulator on an ephemeral loopback port, the real dhanhq SDK pointed at it,
and a minimal order-socket client speaking Dhan's protocol with `websockets` (never the SDK's
OrderUpdate, which prints the token)."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
import websockets
from dhanhq import DhanContext, dhanhq

from engine.simulator import DhanSimulator

for _var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
    os.environ.pop(_var, None)
os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"

LEADER = "1000000001"
LEADER_TOKEN = "tokL-9f8e7d6c5b4a-secret"
FOLLOWER = "1000000002"
FOLLOWER_TOKEN = "tokF-1a2b3c4d5e6f-secret"
TOKENS = (LEADER_TOKEN, FOLLOWER_TOKEN)


@pytest.fixture
async def sim() -> AsyncIterator[DhanSimulator]:
    """The mechanics tests (matching, faults, limits, socket plumbing) were written against the
    classic dialect and keep it; the live answers have their own tests (test_live_dialect)."""
    simulator = DhanSimulator(
        accounts={LEADER: LEADER_TOKEN, FOLLOWER: FOLLOWER_TOKEN}, profile="classic"
    )
    await simulator.start(host="127.0.0.1", port=0)
    try:
        yield simulator
    finally:
        await simulator.stop()


@pytest.fixture
async def live_sim() -> AsyncIterator[DhanSimulator]:
    """The simulator with its default (live) profile."""
    simulator = DhanSimulator(accounts={LEADER: LEADER_TOKEN, FOLLOWER: FOLLOWER_TOKEN})
    await simulator.start(host="127.0.0.1", port=0)
    try:
        yield simulator
    finally:
        await simulator.stop()


def make_sdk(sim: DhanSimulator, client_id: str = LEADER, token: str = LEADER_TOKEN) -> Any:
    ctx = DhanContext(client_id, token)
    ctx.dhan_http.base_url = sim.rest_url
    ctx.dhan_http.timeout = 10
    return dhanhq(ctx)


@pytest.fixture
def leader(sim: DhanSimulator) -> Any:
    return make_sdk(sim, LEADER, LEADER_TOKEN)


@pytest.fixture
def follower(sim: DhanSimulator) -> Any:
    return make_sdk(sim, FOLLOWER, FOLLOWER_TOKEN)


async def ctl(sim: DhanSimulator, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """One request to the simulator's control API: its status and JSON body."""
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, sim.control_url + path, json=body) as resp,
    ):
        return resp.status, await resp.json()


async def call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Runs a blocking SDK call off the event loop (the simulator lives on the loop)."""
    return await asyncio.to_thread(fn, *args, **kwargs)


def limit_buy(**overrides: Any) -> dict[str, Any]:
    """place_order kwargs for a RELIANCE limit buy below the market (rests)."""
    kwargs: dict[str, Any] = {
        "security_id": "2885",
        "exchange_segment": "NSE_EQ",
        "transaction_type": "BUY",
        "quantity": 10,
        "order_type": "LIMIT",
        "product_type": "CNC",
        "price": 1500.0,
    }
    kwargs.update(overrides)
    return kwargs


class OrderSocket:
    """Dhan's order-update socket, client side, read into a queue of `Data` dicts."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.messages: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._reader = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def connect(
        cls, sim: DhanSimulator, client_id: str = LEADER, token: str = LEADER_TOKEN
    ) -> OrderSocket:
        ws = await websockets.connect(sim.ws_url, proxy=None)
        login = {"LoginReq": {"MsgCode": 42, "ClientId": client_id, "Token": token}}
        await ws.send(json.dumps({**login, "UserType": "SELF"}))
        sock = cls(ws)
        await asyncio.sleep(0.05)  # no ack is sent; give the server a moment to register us
        return sock

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                await self.messages.put(json.loads(raw))
        except websockets.ConnectionClosed:
            pass

    async def next(self, wait: float = 2.0) -> dict[str, Any]:
        message = await asyncio.wait_for(self.messages.get(), wait)
        assert message["Type"] == "order_alert"
        data: dict[str, Any] = message["Data"]
        return data

    async def take(self, n: int, wait: float = 2.0) -> list[dict[str, Any]]:
        return [await self.next(wait) for _ in range(n)]

    async def drain(self, settle: float = 0.15) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        while True:
            try:
                out.append(await self.next(settle))
            except TimeoutError:
                return out

    async def closed(self, wait: float = 2.0) -> None:
        await asyncio.wait_for(self._reader, wait)

    async def close(self) -> None:
        await self.ws.close()
        await asyncio.wait_for(self._reader, 2.0)


@pytest.fixture
async def leader_socket(sim: DhanSimulator) -> AsyncIterator[OrderSocket]:
    sock = await OrderSocket.connect(sim)
    try:
        yield sock
    finally:
        await sock.close()
