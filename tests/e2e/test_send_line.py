"""A fan-out's copies go out before any of their answers is handled (engine.dispatch.send_line):
every follower's request of one leader order has left before the first copy is recorded as
acknowledged, and each copy's latency is still taken at Dhan's answer.

The line's bound (bookkeeping waits at most ``MAX_HOLD_S`` for a line kept full) is the unit
tests' concern: on a loaded machine 80 sends can take longer than it (CI, two test workers on
two CPUs: 73 of 80 had left when the bound let the first answer in). Here the bound is set out
of reach, so the test pins the order alone, whatever the machine's speed."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import engine.live.wiring
from engine.dispatch.send_line import SendLine
from engine.domain import MirrorState
from engine.events import CopySent, EngineEvent, FollowerOrderChanged
from engine.simulator.server import DhanSimulator
from tests.e2e.conftest import LEADER, World

pytestmark = pytest.mark.e2e

# Enough that the line is still long when the first answers come back.
FOLLOWERS = [(f"f{i}", str(1_000_000_100 + i), f"tok-f{i}-e2e") for i in range(80)]


@pytest.fixture
async def sim() -> AsyncIterator[DhanSimulator]:
    accounts = {LEADER[0]: LEADER[1]} | {cid: tok for _, cid, tok in FOLLOWERS}
    simulator = DhanSimulator(accounts=accounts)
    await simulator.start(host="127.0.0.1", port=0)
    try:
        yield simulator
    finally:
        await simulator.stop()


def followers() -> list[dict[str, Any]]:
    return [{"name": n, "client_id": cid, "access_token": tok} for n, cid, tok in FOLLOWERS]


def sent_then_acknowledged(events: list[EngineEvent], leader_id: str) -> list[str]:
    """The fan-out's story in order: "sent <follower>" and "live <follower>"."""
    story: list[str] = []
    for e in events:
        if isinstance(e, CopySent) and e.leader_order_id == leader_id:
            story.append(f"sent {e.follower}")
        elif (
            isinstance(e, FollowerOrderChanged)
            and e.view.leader_order_id == leader_id
            and e.view.mirror_state is MirrorState.LIVE
            and f"live {e.view.follower}" not in story
        ):
            story.append(f"live {e.view.follower}")
    return story


async def test_every_copy_leaves_before_the_first_answer_is_handled(
    sim: DhanSimulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine.live.wiring, "SendLine", functools.partial(SendLine, max_hold_s=60))
    world = World(sim, tmp_path / "engine.db", followers(), {})
    await world.start_engine()
    try:
        leader_id = world.place(price=200.0)
        names = [n for n, _, _ in FOLLOWERS]
        ids = [cid for _, cid, _ in FOLLOWERS]
        await world.until(lambda: all(sim.orders(c) for c in ids), 15, "every follower's copy")
        await world.settle()
        story = sent_then_acknowledged(world.events, leader_id)
        assert {s for s in story if s.startswith("sent")} == {f"sent {n}" for n in names}
        assert {s for s in story if s.startswith("live")} == {f"live {n}" for n in names}
        first_live = next(i for i, s in enumerate(story) if s.startswith("live"))
        assert all(s.startswith("sent") for s in story[:first_live]), story
        assert first_live == len(names), story  # every copy sent, then the answers
        latencies = [
            e.view.latency_ms
            for e in world.events
            if isinstance(e, FollowerOrderChanged)
            and e.view.leader_order_id == leader_id
            and e.view.latency_ms is not None
        ]
        assert latencies and all(0 < ms < 5_000 for ms in latencies)
    finally:
        await world.stop_engine()
