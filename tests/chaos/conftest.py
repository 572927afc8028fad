"""Chaos harness: the e2e World (simulator in this process, real engine, real dhanhq SDK) with
every follower mutation and engine state change logged, and one shared convergence check
(`bench.convergence`) at the end of each case."""

from __future__ import annotations

import json
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from bench.convergence import (
    CallLog,
    FollowerSpec,
    MirrorInfo,
    Report,
    Snapshot,
    lots_from_sim_state,
    wait_converged,
)
from bench.engine_proc import recording_factory
from engine.domain import EngineState
from engine.events import EngineStateChanged
from engine.simulator.server import DhanSimulator
from tests.e2e.conftest import ALPHA, BETA, DEFAULT_FOLLOWERS, LEADER, World
from tests.sim_profile import sim_profile

FOLLOWERS = [FollowerSpec("alpha", ALPHA[0], 1.0), FollowerSpec("beta", BETA[0], 2.0)]
CLIENT_OF = {"alpha": ALPHA[0], "beta": BETA[0]}


class ChaosWorld(World):
    log: CallLog

    async def kill(self, reason: str = "chaos") -> None:
        self.log.state("KILLED")  # before: nothing may start from this moment on
        await self.eng.kill(reason)

    async def resume(self) -> None:
        t = time.monotonic()
        await self.eng.resume()
        self.log.state("ARMED", t)

    def snapshot_now(self) -> Snapshot:
        mirrors: dict[tuple[str, str], MirrorInfo] = {}
        killed = False
        if self.engine is not None:
            for m in self.engine.follower_views():
                mirrors[(m.follower, m.leader_order_id)] = MirrorInfo(
                    m.mirror_state.value, m.reason
                )
            killed = self.engine.state is EngineState.KILLED
        return Snapshot(
            leader_orders=self.sim.orders(LEADER[0]),
            follower_orders={f.name: self.sim.orders(f.client_id) for f in FOLLOWERS},
            placements={f.name: self.sim.placements(f.client_id) for f in FOLLOWERS},
            mirrors=mirrors,
            calls=self.log,
            engine_killed=killed,
        )


@pytest.fixture
async def sim() -> AsyncIterator[DhanSimulator]:
    accounts = {LEADER[0]: LEADER[1], ALPHA[0]: ALPHA[1], BETA[0]: BETA[1]}
    simulator = DhanSimulator(accounts=accounts, funds=1_000_000_000.0, profile=sim_profile())
    await simulator.start(host="127.0.0.1", port=0)
    try:
        yield simulator
    finally:
        await simulator.stop()


ChaosFactory = Callable[..., Awaitable[ChaosWorld]]


@pytest.fixture
async def chaos_world(sim: DhanSimulator, tmp_path: Path) -> AsyncIterator[ChaosFactory]:
    worlds: list[ChaosWorld] = []

    async def factory(
        followers: list[dict[str, Any]] | None = None, start: bool = True, **extra: str
    ) -> ChaosWorld:
        log = CallLog()
        world = ChaosWorld(
            sim,
            tmp_path / "engine.db",
            followers or DEFAULT_FOLLOWERS,
            extra,
            recording_factory(log),
        )
        world.log = log
        worlds.append(world)
        if start:
            await start_engine(world)
        return world

    yield factory
    for world in worlds:
        if world.engine is not None:
            await world.stop_engine()


async def start_engine(world: ChaosWorld) -> None:
    """Start (or restart) the engine with the state-change listener attached first."""
    original = world.events
    world.events = _Tee(original, world.log)
    await world.start_engine()


class _Tee(list[Any]):
    """The World's event list, also feeding engine state changes into the call log."""

    def __init__(self, base: list[Any], log: CallLog) -> None:
        super().__init__(base)
        self._log = log

    def append(self, event: Any) -> None:
        super().append(event)
        if isinstance(event, EngineStateChanged) and event.state in (
            EngineState.ARMED,
            EngineState.KILLED,
        ):
            self._log.state(event.state.value)


async def assert_converged(
    world: ChaosWorld,
    case: str,
    *,
    timeout: float = 30.0,
    allow_explained: bool = False,
    extra: dict[str, Any] | None = None,
) -> Report:
    """Wait for the followers to converge on the leader, then assert the guarantees:
    nothing lost, duplicated, mismatched, or sent while KILLED. Unless `allow_explained`,
    no copy may be explained away by a skip or a failure either (none is expected)."""

    async def snap() -> Snapshot:
        return world.snapshot_now()

    lots = lots_from_sim_state(world.sim.state()["prices"])
    rep = await wait_converged(snap, FOLLOWERS, lots, timeout=timeout)
    record(case, rep, extra)
    assert rep.ok, rep.summary()
    if not allow_explained:
        assert not rep.explained, rep.summary()
    return rep


def record(case: str, rep: Report, extra: dict[str, Any] | None = None) -> None:
    """Also append the figures to $CHAOS_REPORT (a JSONL file) when set, for the write-up."""
    path = os.environ.get("CHAOS_REPORT")
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"case": case, **rep.as_dict(), **(extra or {})}) + "\n")
