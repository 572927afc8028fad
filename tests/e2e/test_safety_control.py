"""Control without the terminal: the trader's kill, resume and the re-place offer, from the
engine API and from `copytrade kill/resume/status` against a running headless engine (its own
process), with the real dhanhq SDK against the simulator."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

from engine.domain import EngineState
from engine.simulator.server import DhanSimulator
from tests.e2e.conftest import (
    ALPHA,
    BETA,
    DEFAULT_FOLLOWERS,
    LEADER,
    RELIANCE,
    World,
    WorldFactory,
    frozen_by_its_loss,
)

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]


def open_copies(world: World, who: str) -> list[dict[str, Any]]:
    return [o for o in world.orders(who) if o["orderStatus"] == "PENDING"]


async def test_kill_then_resume_offers_the_uncopied_orders_and_replaces_them_once_asked(
    world: World,
) -> None:
    first, second = world.place(price=200.0), world.place(price=199.0)
    await world.until(lambda: len(open_copies(world, "alpha")) == 2, what="alpha copies")
    await world.until(lambda: len(open_copies(world, "beta")) == 2, what="beta copies")
    await world.settle()

    await world.eng.kill("trader pressed K")
    await world.until(lambda: not open_copies(world, "alpha"), what="alpha cancelled")
    await world.until(lambda: not open_copies(world, "beta"), what="beta cancelled")
    third = world.place(price=198.0)  # placed while killed: not copied
    await asyncio.sleep(0.3)
    await world.settle()
    assert not open_copies(world, "alpha")

    report = await world.eng.resume()
    assert report.state == EngineState.ARMED.value and report.replaced == ()
    offered = {o.leader_order_id: o for o in report.uncopied}
    assert set(offered) == {first, second, third}
    assert set(offered[third].followers) == {"alpha", "beta"}
    assert offered[first].side == "BUY" and offered[first].quantity == 65
    assert await world.eng.uncopied_orders() == list(report.uncopied)
    await asyncio.sleep(0.3)
    await world.settle()
    assert not open_copies(world, "alpha")  # listed, not placed

    again = await world.eng.resume(replace_open=True)
    assert set(again.replaced) == {first, second, third} and again.uncopied == ()
    await world.until(lambda: len(open_copies(world, "alpha")) == 3, what="alpha re-placed")
    await world.until(lambda: len(open_copies(world, "beta")) == 3, what="beta re-placed")
    await world.settle()
    # Each under a fresh correlationId: no id reused, no order twice.
    cids = [o["correlationId"] for o in world.orders("alpha")]
    assert len(cids) == len(set(cids)) == 5
    assert await world.eng.uncopied_orders() == []
    quantities = sorted(o["quantity"] for o in open_copies(world, "beta"))
    assert quantities == [130, 130, 130]


def _env_file(path: Path, sim: DhanSimulator, db: Path) -> Path:
    values = {
        "COPYTRADE_LEADER__CLIENT_ID": LEADER[0],
        "COPYTRADE_LEADER__ACCESS_TOKEN": LEADER[1],
        "COPYTRADE_FOLLOWERS": json.dumps(DEFAULT_FOLLOWERS),
        "COPYTRADE_DHAN__REST_URL": sim.rest_url,
        "COPYTRADE_DHAN__ORDER_WS_URL": sim.ws_url,
        "COPYTRADE_DB_PATH": str(db),
        "COPYTRADE_ENFORCE_MARKET_HOURS": "false",
    }
    path.write_text("".join(f"{k}='{v}'\n" for k, v in values.items()))
    return path


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COPYTRADE_")}
    env["NO_PROXY"] = "127.0.0.1,localhost"
    return env


async def copytrade(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tui.cli",
        *args,
        cwd=REPO,
        env=_clean_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def until(predicate: Any, timeout: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


async def test_copytrade_kill_and_resume_drive_a_running_headless_engine(
    sim: DhanSimulator, tmp_path: Path
) -> None:
    db = tmp_path / "headless.db"
    env_file = _env_file(tmp_path / "headless.env", sim, db)
    engine = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tui.cli",
        "run",
        "--headless",
        "--env-file",
        str(env_file),
        cwd=REPO,
        env=_clean_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    db_args = ("--db-path", str(db), "--json")

    async def status() -> dict[str, Any]:
        code, out, _ = await copytrade("status", *db_args)
        return json.loads(out) if code == 0 else {}

    def copies(who: str) -> list[dict[str, Any]]:
        return [o for o in sim.orders(who) if o["orderStatus"] == "PENDING"]

    def place(price: float) -> str:
        return sim.place_manual_order(
            LEADER[0],
            transactionType="BUY",
            exchangeSegment=RELIANCE[0],
            securityId=RELIANCE[1],
            quantity=5,
            orderType="LIMIT",
            price=price,
            productType="CNC",
        )

    try:

        async def armed() -> bool:
            return (await status()).get("state") == "ARMED"

        await until(armed, 30, "the headless engine answering ARMED")
        first = place(1200.0)

        async def copied() -> bool:
            return len(copies(ALPHA[0])) == 1 and len(copies(BETA[0])) == 1

        await until(copied, 15, "copies")

        code, out, err = await copytrade("kill", "--reason", "leaving the desk", *db_args)
        assert code == 0, err

        async def cancelled() -> bool:
            return not copies(ALPHA[0]) and not copies(BETA[0])

        await until(cancelled, 15, "copies cancelled by the kill")
        assert (await status())["state"] == "KILLED"
        second = place(1199.0)
        await asyncio.sleep(0.5)
        assert not copies(ALPHA[0])

        code, out, err = await copytrade("resume", *db_args)
        assert code == 0, err
        report = json.loads(out)
        assert report["state"] == "ARMED" and report["replaced"] == []
        assert {o["leader_order_id"] for o in report["uncopied"]} == {first, second}
        code, out, err = await copytrade("resume", "--replace-open", "--db-path", str(db))
        assert code == 0, err
        assert "placed again for 2 leader orders" in out

        async def replaced() -> bool:
            return len(copies(ALPHA[0])) == 2 and len(copies(BETA[0])) == 2

        await until(replaced, 15, "copies placed again")
    finally:
        if engine.returncode is None:
            engine.send_signal(signal.SIGTERM)
        out_b, err_b = await asyncio.wait_for(engine.communicate(), 30)
    assert engine.returncode == 0, err_b.decode()[-2000:]
    log = out_b.decode()
    assert '"state":"KILLED"' in log and LEADER[1] not in log + err_b.decode()
    assert "Traceback" not in err_b.decode()
    # The control socket went with the engine.
    code, _, err = await copytrade("status", "--db-path", str(db))
    assert code == 2 and "no engine is running" in err


async def test_copytrade_status_and_unfreeze_reach_the_engine_under_any_runner(
    make_world: WorldFactory,
) -> None:
    world, ltp = await frozen_by_its_loss(make_world)
    waiting = world.place(price=ltp - 30, qty=65)
    db = ("--db-path", str(world.db))

    code, out, err = await copytrade("status", *db, "--json")
    assert code == 0, err
    status = json.loads(out)
    assert status["state"] == "ARMED"  # one follower frozen is not the engine
    [alpha] = status["followers"]
    assert "loss limit" in alpha["frozen"]

    code, out, err = await copytrade("unfreeze", "--account", "alpha", *db)
    assert code == 0, err
    assert "freeze cleared" in out and "LOSS_LIMIT" in out
    assert world.eng.follower_stop_reason("alpha") == ""
    await world.until(lambda: world.eng.mirror("alpha", waiting) is not None, 10, "copied")
    code, out, err = await copytrade("unfreeze", *db)
    assert code == 0 and "nothing is frozen" in out
