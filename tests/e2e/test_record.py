"""``copytrade run --record DIR`` against the simulator: every REST exchange and order-socket
frame is written, and no access token or client id is in what was written."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import pytest

from engine.simulator.server import DhanSimulator
from tests.e2e.conftest import ALPHA, BETA, DEFAULT_FOLLOWERS, LEADER, NIFTY_CE, detailed_master_url

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

ROOT = Path(__file__).resolve().parents[2]


def env_file(sim: DhanSimulator, tmp_path: Path) -> Path:
    lines = {
        "COPYTRADE_LEADER__CLIENT_ID": LEADER[0],
        "COPYTRADE_LEADER__ACCESS_TOKEN": LEADER[1],
        "COPYTRADE_FOLLOWERS": json.dumps(DEFAULT_FOLLOWERS),
        "COPYTRADE_DHAN__REST_URL": sim.rest_url,
        "COPYTRADE_DHAN__ORDER_WS_URL": sim.ws_url,
        "COPYTRADE_DB_PATH": str(tmp_path / "engine.db"),
        "COPYTRADE_ENFORCE_MARKET_HOURS": "false",
        "COPYTRADE_INSTRUMENTS_URL": detailed_master_url(sim),
    }
    path = tmp_path / "record.env"
    path.write_text("".join(f"{k}='{v}'\n" for k, v in lines.items()), encoding="utf-8")
    return path


def all_sockets_up(sim: DhanSimulator) -> bool:
    return all(a["sockets"] >= 1 for a in sim.state()["accounts"])


async def until(predicate: object, timeout: float, what: str) -> None:
    assert callable(predicate)
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def test_run_record_writes_what_dhan_sent_without_tokens_or_client_ids(
    sim: DhanSimulator, tmp_path: Path
) -> None:
    record_dir = tmp_path / "recording"
    env = {k: v for k, v in os.environ.items() if not k.startswith("COPYTRADE_")}
    for proxy in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy"):
        env.pop(proxy, None)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tui.cli",
        "run",
        "--headless",
        "--record",
        str(record_dir),
        "--env-file",
        str(env_file(sim, tmp_path)),
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        await until(lambda: all_sockets_up(sim), 20, "the engine's three sockets")
        ltp = sim.price(*NIFTY_CE)
        sim.place_manual_order(
            LEADER[0],
            transactionType="BUY",
            exchangeSegment=NIFTY_CE[0],
            securityId=NIFTY_CE[1],
            quantity=65,
            orderType="LIMIT",
            price=round(ltp * 0.97, 1),
            productType="INTRADAY",
        )
        await until(lambda: bool(sim.orders(ALPHA[0])), 20, "alpha's copy")
        await until(lambda: bool(sim.orders(BETA[0])), 20, "beta's copy")
        await asyncio.sleep(0.5)  # the copies' own alerts reach the follower sockets
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(proc.communicate(), 20)
    rest = (record_dir / "rest.jsonl").read_text(encoding="utf-8")
    frames = (record_dir / "socket.jsonl").read_text(encoding="utf-8")
    exchanges = [json.loads(line) for line in rest.splitlines()]
    received = [json.loads(line) for line in frames.splitlines()]
    placed = [e for e in exchanges if e["method"] == "POST" and e["path"] == "/v2/orders"]
    assert {e["account"] for e in placed} == {"alpha", "beta"}, stderr.decode()[-2000:]
    assert all(e["response"]["status"] == 200 for e in placed)
    assert {r["account"] for r in received} >= {"leader", "alpha", "beta"}
    assert "CLIENT-1" in rest + frames
    for secret in (LEADER[1], ALPHA[1], BETA[1], LEADER[0], ALPHA[0], BETA[0]):
        assert secret not in rest and secret not in frames, f"{secret!r} was recorded"
