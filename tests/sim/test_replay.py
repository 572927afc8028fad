"""Replay of a recorded leader session: the frames one simulator sent are written as
``copytrade run --record`` writes them, and a second simulator re-enacts them so that its REST
book and its socket show the same orders."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pyotp
import pytest
import websockets
from dhanhq import DhanContext, DhanLogin, dhanhq

from engine.clock import IST
from engine.simulator import DhanSimulator
from engine.simulator.cli import main as sim_main
from engine.simulator.replay import ReplayError, load_recording

from .conftest import FOLLOWER, FOLLOWER_TOKEN, LEADER, LEADER_TOKEN, OrderSocket, limit_buy

pytestmark = pytest.mark.e2e

COMPARED = (
    "orderStatus", "transactionType", "exchangeSegment", "productType", "orderType",
    "securityId", "quantity", "price", "triggerPrice", "filledQty", "averageTradedPrice",
    "correlationId",
)  # fmt: skip


async def record_session(tmp_path: Path) -> tuple[Path, list[dict[str, Any]], list[str]]:
    """A leader session on a PascalCase / upper-case simulator, recorded frame by frame."""
    source = DhanSimulator(accounts={LEADER: LEADER_TOKEN}, profile="pascal-upper")
    await source.start(port=0)
    sock = await OrderSocket.connect(source)
    try:
        source.set_liquidity("NSE_EQ", "2885", 4)
        part = source.place_manual_order(
            LEADER, transaction_type="BUY", exchange_segment="NSE_EQ", security_id="2885",
            quantity=10, order_type="LIMIT", price=1550.0, correlation_id="tag-1",
        )  # fmt: skip
        resting = source.place_manual_order(
            LEADER, transaction_type="SELL", exchange_segment="NSE_FNO", security_id="48211",
            quantity=130, order_type="LIMIT", price=260.0, product_type="MARGIN",
        )  # fmt: skip
        source.modify_manual_order(LEADER, resting, price=255.0, quantity=195)
        source.set_liquidity("NSE_EQ", "2885", None)
        source.set_price("NSE_EQ", "2885", 1549.0)  # the rest of the partial fills
        source.cancel_manual_order(LEADER, resting)
        source.place_manual_order(
            LEADER, transaction_type="BUY", exchange_segment="MCX_COMM", security_id="458305",
            quantity=100, order_type="MARKET", product_type="INTRADAY",
        )  # fmt: skip
        await sock.drain()
        assert len(source.orders(LEADER)) == 3 and part
        book = source.orders(LEADER)
        statuses = [a["status"] for a in source.alerts_sent]
        start = datetime(2026, 12, 1, 10, 0, tzinfo=IST)
        lines = [
            {
                "at": (start + timedelta(milliseconds=20 * i)).isoformat(),
                "account": "leader",
                "frame": json.dumps(alert["message"]),
            }
            for i, alert in enumerate(source.alerts_sent)
        ]
    finally:
        await sock.close()
        await source.stop()
    # What a recording also holds: a frame that is not JSON and another account's frame.
    lines.insert(1, {"at": lines[0]["at"], "account": "leader", "frame": "{not json"})
    other = json.loads(lines[2]["frame"])
    lines.insert(2, {"at": lines[0]["at"], "account": "alpha", "frame": json.dumps(other)})
    directory = tmp_path / "recorded"
    directory.mkdir()
    (directory / "socket.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    return directory, book, statuses


async def test_replay_reenacts_the_leader_book_and_socket(tmp_path: Path) -> None:
    directory, recorded_book, recorded_statuses = await record_session(tmp_path)
    events = load_recording(directory)
    assert len(events) == len(recorded_statuses)  # the junk and the other account are skipped
    assert events[-1].offset == pytest.approx(0.02 * (len(events) - 1))
    target = DhanSimulator(accounts={LEADER: LEADER_TOKEN, FOLLOWER: FOLLOWER_TOKEN})
    await target.start(port=0)
    try:
        replay = target.start_replay(events, LEADER, speed=4.0)
        await asyncio.sleep(0.1)
        assert target.orders(LEADER) == []  # waits for the leader's socket
        sock = await OrderSocket.connect(target)
        await asyncio.wait_for(replay.task, 5.0)
        alerts = await sock.drain()
        await sock.close()
        replayed_book = target.orders(LEADER)
        assert target.orders(FOLLOWER) == []
    finally:
        await target.stop()
    assert [{k: o[k] for k in COMPARED} for o in replayed_book] == [
        {k: o[k] for k in COMPARED} for o in recorded_book
    ]
    assert [a["status"].upper() for a in alerts] == recorded_statuses
    assert [o["orderStatus"] for o in replayed_book] == ["TRADED", "CANCELLED", "TRADED"]
    assert replayed_book[0]["filledQty"] == 10 and len(replay.replayer.orders) == 3


def test_bad_recordings_are_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ReplayError, match="cannot read"):
        load_recording(tmp_path)
    (tmp_path / "socket.jsonl").write_text('{"at": "2026-12-01T10:00:00", "frame": "{}"}\nnope\n')
    with pytest.raises(ReplayError, match=r"socket.jsonl:2: not a JSON object"):
        load_recording(tmp_path)
    (tmp_path / "socket.jsonl").write_text('{"at": "yesterday", "frame": "{}"}\n')
    with pytest.raises(ReplayError, match="not an ISO time"):
        load_recording(tmp_path)
    with pytest.raises(SystemExit) as exc:
        sim_main(["--account", f"{LEADER}:{LEADER_TOKEN}", "--replay", str(tmp_path)])
    assert exc.value.code == 2
    assert "not an ISO time" in capsys.readouterr().err.strip().splitlines()[-1]


async def test_copytrade_sim_flags_in_a_subprocess(tmp_path: Path) -> None:
    """``python -m engine.simulator`` with a profile, a TOTP account, a whitelist and a replay:
    each works, and no token, PIN or TOTP secret reaches its output."""
    directory, recorded_book, _ = await record_session(tmp_path)
    pin, secret = "246810", pyotp.random_base32()
    args = [
        sys.executable, "-m", "engine.simulator", "--port", "0", "--profile", "classic",
        "--account", f"{LEADER}:{LEADER_TOKEN}", "--account", f"{FOLLOWER}:{FOLLOWER_TOKEN}",
        "--totp", f"{LEADER}={pin}:{secret}", "--ip-whitelist", f"{FOLLOWER}=127.0.0.2",
        "--replay", str(directory), "--replay-speed", "10",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env
    )
    banner = ""
    try:
        assert proc.stdout is not None
        while "Ctrl-C" not in banner:
            line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
            assert line, "simulator exited early"
            banner += line
        found = re.search(r"REST (http://\S+)/v2\s+order socket (ws://\S+)", banner)
        assert found is not None and "profile: classic" in banner
        base, ws_url = found.group(1), found.group(2)
        login = DhanLogin(LEADER)
        login.AUTH_BASE_URL, login.API_BASE_URL = base, base + "/v2"
        minted = await asyncio.to_thread(login.generate_token, pin, pyotp.TOTP(secret).now())
        ctx = DhanContext(FOLLOWER, FOLLOWER_TOKEN)
        ctx.dhan_http.base_url = base + "/v2"
        refused = await asyncio.to_thread(dhanhq(ctx).place_order, **limit_buy())
        assert refused["remarks"]["error_code"] == "DH-911"  # sent from 127.0.0.1
        ws = await websockets.connect(ws_url, proxy=None)
        login_frame = {"LoginReq": {"MsgCode": 42, "ClientId": LEADER, "Token": LEADER_TOKEN}}
        await ws.send(json.dumps({**login_frame, "UserType": "SELF"}))
        frames = []
        async with aiohttp.ClientSession() as session:
            for _ in range(100):
                async with session.get(f"{base}/sim/accounts/{LEADER}/orders") as resp:
                    book = await resp.json()
                if [o["orderStatus"] for o in book] == ["TRADED", "CANCELLED", "TRADED"]:
                    break
                await asyncio.sleep(0.05)
        while True:
            try:
                frames.append(json.loads(await asyncio.wait_for(ws.recv(), 0.3)))
            except TimeoutError:
                break
        await ws.close()
        assert [o["filledQty"] for o in book] == [o["filledQty"] for o in recorded_book]
        assert frames and all("OrderNo" in f["Data"] for f in frames)  # classic: PascalCase
        proc.send_signal(signal.SIGINT)
        out, err = await asyncio.wait_for(proc.communicate(), 15)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0
    text = banner + out.decode() + err.decode()
    for secret_text in (LEADER_TOKEN, FOLLOWER_TOKEN, pin, secret, minted["accessToken"]):
        assert secret_text not in text
