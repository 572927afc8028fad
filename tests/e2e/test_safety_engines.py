"""One engine per database and per follower account, end to end with the real dhanhq SDK.

A second engine on the same database refuses to start (one line, exit 2 from the command). A
second engine on the same accounts with another database sees copies under our correlationIds
that it did not send: it freezes those followers with a CRITICAL alert and places nothing.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.domain import FreezeCause
from engine.engine import Engine
from engine.events import AlertRaised, EngineEvent
from engine.instance_lock import AnotherEngineRunning
from tests.e2e.conftest import ALPHA, BETA, DEFAULT_FOLLOWERS, LEADER, WorldFactory, make_settings

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]


def settings_env(rest_url: str, ws_url: str, db: Path) -> dict[str, str]:
    return {
        "COPYTRADE_LEADER__CLIENT_ID": LEADER[0],
        "COPYTRADE_LEADER__ACCESS_TOKEN": LEADER[1],
        "COPYTRADE_FOLLOWERS": json.dumps(DEFAULT_FOLLOWERS),
        "COPYTRADE_DHAN__REST_URL": rest_url,
        "COPYTRADE_DHAN__ORDER_WS_URL": ws_url,
        "COPYTRADE_DB_PATH": str(db),
        "COPYTRADE_ENFORCE_MARKET_HOURS": "false",
    }


async def test_a_second_engine_on_the_same_database_refuses_to_start(
    make_world: WorldFactory, tmp_path: Path
) -> None:
    world = await make_world()
    second = Engine(make_settings(world.sim, world.db))
    with pytest.raises(AnotherEngineRunning) as refused:
        await asyncio.wait_for(second.run(), 5)
    assert str(world.db.resolve()) in str(refused.value)
    assert f"pid {os.getpid()}" in str(refused.value)

    # The command: one line on stderr, exit code 2, no traceback, no token.
    env = {k: v for k, v in os.environ.items() if not k.startswith("COPYTRADE_")}
    env_file = tmp_path / "second.env"
    values = settings_env(world.sim.rest_url, world.sim.ws_url, world.db)
    env_file.write_text("".join(f"{k}='{v}'\n" for k, v in values.items()))
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "tui.cli", "run", "--headless", "--env-file", str(env_file)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "another engine is already running on" in lines[0]
    assert "Traceback" not in done.stderr and LEADER[1] not in done.stderr
    # The first engine was never disturbed.
    world.place(price=200.0)
    await world.follower_order("alpha")


async def test_a_second_engine_on_the_same_accounts_freezes_its_followers_and_sends_nothing(
    make_world: WorldFactory, tmp_path: Path
) -> None:
    world = await make_world()
    world.place(price=200.0)
    await world.follower_order("alpha")
    await world.follower_order("beta")
    await world.settle()

    events: list[EngineEvent] = []
    second = Engine(make_settings(world.sim, tmp_path / "other.db"))
    second.subscribe(events.append)
    task = asyncio.create_task(second.run())
    try:
        await asyncio.wait_for(second.wait_started(), 10)
        await world.until(
            lambda: (
                bool(second.follower_stop_reason("alpha"))
                and bool(second.follower_stop_reason("beta"))
            ),
            10,
            "the second engine's followers frozen",
        )
        duplicate = [
            e.alert
            for e in events
            if isinstance(e, AlertRaised) and e.alert.code == "DUPLICATE_ENGINE"
        ]
        assert {a.follower for a in duplicate} == {"alpha", "beta"}
        assert all(a.severity.value == "CRITICAL" for a in duplicate)
        assert "another engine" in second.follower_stop_reason("alpha")
        store = second.store
        assert store is not None
        for _ in range(100):  # stored right after it takes effect
            causes = {(a, c) for a, c, _ in await store.freezes()}
            if ("alpha", FreezeCause.DUPLICATE_ENGINE.value) in causes:
                break
            await asyncio.sleep(0.05)
        assert ("alpha", FreezeCause.DUPLICATE_ENGINE.value) in causes

        # The leader trades on: the first engine copies once, the second sends nothing.
        posts_before = len(world.posts("alpha")), len(world.posts("beta"))
        world.place(price=199.0)
        await world.follower_order("alpha", 2)
        await world.follower_order("beta", 2)
        await asyncio.sleep(0.5)
        await second.settle()
        await world.settle()
        assert (len(world.posts("alpha")), len(world.posts("beta"))) == (
            posts_before[0] + 1,
            posts_before[1] + 1,
        )
        assert len(world.orders("alpha")) == 2 and len(world.orders("beta")) == 2
        # The first engine was not fooled: its copies are its own.
        assert world.eng.follower_stop_reason("alpha") == ""
    finally:
        await second.stop()
        await asyncio.wait_for(task, 15)
    assert ALPHA[0] and BETA[0]


async def test_two_engines_racing_on_the_same_accounts_stop_duplicating_after_the_first_order(
    make_world: WorldFactory, tmp_path: Path
) -> None:
    """Both started before any order: the first leader order may reach a follower from both
    (the same correlationId, the same names); the second sighting freezes that follower in
    at least one engine, and no later leader order is copied twice."""
    world = await make_world()
    events: list[EngineEvent] = []
    second = Engine(make_settings(world.sim, tmp_path / "other.db"))
    second.subscribe(events.append)
    task = asyncio.create_task(second.run())
    try:
        await asyncio.wait_for(second.wait_started(), 10)
        await asyncio.sleep(0.3)  # both feeds up
        world.place(price=200.0)
        await world.follower_order("alpha")
        await world.follower_order("beta")

        def frozen_somewhere(name: str) -> bool:
            return bool(world.eng.follower_stop_reason(name) or second.follower_stop_reason(name))

        await world.until(
            lambda: frozen_somewhere("alpha") and frozen_somewhere("beta"), 10, "a freeze each"
        )
        await world.settle()
        await second.settle()
        before = len(world.orders("alpha")), len(world.orders("beta"))
        world.place(price=199.0)
        await asyncio.sleep(1.0)
        await world.settle()
        await second.settle()
        after = len(world.orders("alpha")), len(world.orders("beta"))
        assert after[0] - before[0] <= 1 and after[1] - before[1] <= 1, (before, after)
    finally:
        await second.stop()
        await asyncio.wait_for(task, 15)
