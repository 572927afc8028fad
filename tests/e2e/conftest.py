"""End-to-end harness: the simulator on 127.0.0.1, the real engine with the real dhanhq SDK.

The only thing pointed anywhere is the SDK's base URL and the socket URL (via settings).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from engine.clock import Clock
from engine.config import Settings, load_settings
from engine.domain import ConnectionState
from engine.engine import BrokerFactory, Engine, default_broker_factory
from engine.events import EngineEvent, RecoveryCompleted
from engine.simulator.server import DhanSimulator
from tests.sim_profile import sim_profile

for _var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
    os.environ.pop(_var, None)
os.environ["NO_PROXY"] = "127.0.0.1,localhost"

LEADER = ("1000000001", "tok-leader-e2e")
ALPHA = ("1000000002", "tok-alpha-e2e")
BETA = ("1000000003", "tok-beta-e2e")
NIFTY_CE = ("NSE_FNO", "48211")  # lot 65
RELIANCE = ("NSE_EQ", "2885")

DEFAULT_FOLLOWERS: list[dict[str, Any]] = [
    {"name": "alpha", "client_id": ALPHA[0], "access_token": ALPHA[1]},
    {
        "name": "beta",
        "client_id": BETA[0],
        "access_token": BETA[1],
        "sizing": {"kind": "multiplier", "multiplier": 2},
    },
]


def detailed_master_url(sim: DhanSimulator) -> str:
    return sim.scrip_master_url.replace("api-scrip-master.csv", "api-scrip-master-detailed.csv")


def make_settings(
    sim: DhanSimulator, db: Path, followers: list[dict[str, Any]] | None = None, **extra: str
) -> Settings:
    env = {
        "COPYTRADE_LEADER__CLIENT_ID": LEADER[0],
        "COPYTRADE_LEADER__ACCESS_TOKEN": LEADER[1],
        "COPYTRADE_FOLLOWERS": json.dumps(followers or DEFAULT_FOLLOWERS),
        "COPYTRADE_DHAN__REST_URL": sim.rest_url,
        "COPYTRADE_DHAN__ORDER_WS_URL": sim.ws_url,
        "COPYTRADE_DHAN__TIMEOUT_S": "3",
        "COPYTRADE_DB_PATH": str(db),
        "COPYTRADE_ENFORCE_MARKET_HOURS": "false",
        "COPYTRADE_RECONCILE_INTERVAL_S": "3600",
        # Dhan's scrip master as the simulator serves it (lot, tick, freeze quantity).
        "COPYTRADE_INSTRUMENTS_URL": detailed_master_url(sim),
    }
    env.update({f"COPYTRADE_{k.upper()}": v for k, v in extra.items()})
    return load_settings(env_file=None, environ=env)


@dataclass
class World:
    sim: DhanSimulator
    db: Path
    followers: list[dict[str, Any]]
    extra: dict[str, str]
    broker_factory: BrokerFactory = default_broker_factory
    clock: Clock | None = None  # the engine's (None: the system's)
    engine: Engine | None = None
    task: asyncio.Task[None] | None = None
    events: list[EngineEvent] = field(default_factory=list)

    @property
    def eng(self) -> Engine:
        assert self.engine is not None
        return self.engine

    async def start_engine(self) -> Engine:
        settings = make_settings(self.sim, self.db, self.followers, **self.extra)
        # No instrument book given: the engine loads the simulator's scrip master itself.
        self.engine = Engine(settings, clock=self.clock, broker_factory=self.broker_factory)
        self.engine.subscribe(self.events.append)
        self.task = asyncio.create_task(self.engine.run())
        await asyncio.wait_for(self.engine.wait_started(), 10)
        recoveries = len(self.recoveries())
        await self.until(lambda: len(self.recoveries()) > recoveries, 10, "startup recovery")
        return self.engine

    def recoveries(self) -> list[RecoveryCompleted]:
        return [e for e in self.events if isinstance(e, RecoveryCompleted)]

    def connected(self) -> bool:
        return self.eng.leader_connection() is ConnectionState.CONNECTED

    async def stop_engine(self) -> None:
        if self.engine is not None and self.task is not None:
            await self.engine.stop()
            await asyncio.wait_for(self.task, 15)
        self.engine, self.task = None, None

    async def crash_engine(self) -> None:
        """Like kill -9 as far as the broker is concerned: tasks cancelled, nothing tidied."""
        assert self.task is not None
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(self.task, 15)
        self.engine, self.task = None, None

    async def until(
        self, predicate: Callable[[], bool], timeout: float = 8.0, what: str = "condition"
    ) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"timed out waiting for {what}")

    async def settle(self) -> None:
        await self.eng.settle(timeout=15)

    # --- the leader trades by hand on Dhan's web (or a follower, ``by``) --------------------

    def place(
        self,
        key: tuple[str, str] = NIFTY_CE,
        side: str = "BUY",
        qty: int = 65,
        order_type: str = "LIMIT",
        price: float = 0.0,
        by: tuple[str, str] = LEADER,
        **extra: Any,
    ) -> str:
        return self.sim.place_manual_order(
            by[0],
            transactionType=side,
            exchangeSegment=key[0],
            securityId=key[1],
            quantity=qty,
            orderType=order_type,
            price=price,
            productType=extra.pop("productType", "INTRADAY" if key[0] != "NSE_EQ" else "CNC"),
            **extra,
        )

    def modify(self, order_id: str, **fields: Any) -> None:
        self.sim.modify_manual_order(LEADER[0], order_id, **fields)

    def cancel(self, order_id: str) -> None:
        self.sim.cancel_manual_order(LEADER[0], order_id)

    def orders(self, who: str) -> list[dict[str, Any]]:
        cid = {"leader": LEADER[0], "alpha": ALPHA[0], "beta": BETA[0]}[who]
        return self.sim.orders(cid)

    def posts(self, who: str) -> list[dict[str, Any]]:
        return self._order_requests(who, "POST", "/v2/orders")

    def modifies(self, who: str) -> list[dict[str, Any]]:
        return self._order_requests(who, "PUT", "/v2/orders/")

    def _order_requests(self, who: str, method: str, path: str) -> list[dict[str, Any]]:
        cid = {"leader": LEADER[0], "alpha": ALPHA[0], "beta": BETA[0]}[who]
        return [
            r
            for r in self.sim.requests
            if r["client_id"] == cid and r["method"] == method and r["path"].startswith(path)
        ]

    async def follower_order(
        self, who: str, count: int = 1, timeout: float = 8.0
    ) -> list[dict[str, Any]]:
        await self.until(lambda: len(self.orders(who)) >= count, timeout, f"{count} {who} orders")
        return self.orders(who)


@pytest.fixture
async def sim() -> AsyncIterator[DhanSimulator]:
    simulator = DhanSimulator(
        accounts={LEADER[0]: LEADER[1], ALPHA[0]: ALPHA[1], BETA[0]: BETA[1]},
        profile=sim_profile(),
    )
    await simulator.start(host="127.0.0.1", port=0)
    try:
        yield simulator
    finally:
        await simulator.stop()


WorldFactory = Callable[..., Awaitable[World]]


@pytest.fixture
async def make_world(sim: DhanSimulator, tmp_path: Path) -> AsyncIterator[WorldFactory]:
    worlds: list[World] = []

    async def factory(
        followers: list[dict[str, Any]] | None = None,
        start: bool = True,
        broker_factory: BrokerFactory = default_broker_factory,
        clock: Clock | None = None,
        **extra: str,
    ) -> World:
        world = World(
            sim,
            tmp_path / "engine.db",
            followers or DEFAULT_FOLLOWERS,
            extra,
            broker_factory,
            clock,
        )
        worlds.append(world)
        if start:
            await world.start_engine()
        return world

    yield factory
    for world in worlds:
        if world.engine is not None:
            await world.stop_engine()


@pytest.fixture
async def world(make_world: WorldFactory) -> World:
    return await make_world()


# alpha with a daily loss limit of 100 (a 65-lot position down 10 breaches it).
LOSS_LIMITED_ALPHA: list[dict[str, Any]] = [
    {
        "name": "alpha",
        "client_id": ALPHA[0],
        "access_token": ALPHA[1],
        "risk": {"daily_loss_limit": 100},
    }
]


async def frozen_by_its_loss(make_world: WorldFactory) -> tuple[World, float]:
    """alpha, its loss limit checked every 0.1 s, copies a buy of 65 filled at once; then
    the market falls 10 and stays there, and alpha is frozen. The world, and the price
    before the fall."""
    world = await make_world(followers=LOSS_LIMITED_ALPHA, risk_check_interval_s="0.1")
    ltp = world.sim.price(*NIFTY_CE)
    world.place(price=ltp + 1, qty=65)
    await world.until(lambda: any(o["filledQty"] == 65 for o in world.orders("alpha")))
    world.sim.set_price(*NIFTY_CE, ltp - 10)  # 65 x -10: past the 100 limit
    await world.until(lambda: bool(world.eng.follower_stop_reason("alpha")), 10, "frozen")
    return world, ltp
