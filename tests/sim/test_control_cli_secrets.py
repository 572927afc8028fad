"""The /sim control API, the CLI, and the rule that no token ever leaves the simulator."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from dhanhq import DhanContext, dhanhq

from engine.simulator import DhanSimulator
from engine.simulator.cli import main as cli_main

from .conftest import (
    FOLLOWER,
    FOLLOWER_TOKEN,
    LEADER,
    LEADER_TOKEN,
    TOKENS,
    OrderSocket,
    call,
    ctl,
    limit_buy,
    make_sdk,
)

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


async def test_control_api_over_http(sim: DhanSimulator, leader: Any) -> None:
    sock = await OrderSocket.connect(sim)
    status, body = await ctl(sim, "POST", "/accounts", {"clientId": "1000000003", "token": "t3"})
    assert status == 200 and "1000000003" in sim.exchange.accounts
    order = {
        "transactionType": "BUY", "exchangeSegment": "NSE_EQ", "securityId": "2885",
        "quantity": 2, "orderType": "LIMIT", "price": 1500.0, "productType": "CNC",
    }  # fmt: skip
    status, body = await ctl(sim, "POST", f"/accounts/{LEADER}/orders", order)
    assert status == 200
    oid = body["orderId"]
    status, _ = await ctl(sim, "PUT", f"/accounts/{LEADER}/orders/{oid}", {"price": 1501.0})
    assert status == 200
    _, pending, modified = await sock.take(3)
    assert pending["Source"] == "N" and modified["Price"] == 1501.0
    price = {"exchangeSegment": "NSE_EQ", "securityId": "2885", "price": 1499.0}
    status, body = await ctl(sim, "POST", "/prices", price)
    assert status == 200
    (traded,) = await sock.take(1)
    assert traded["Status"] == "TRADED"
    low = {**order, "price": 1400.0}
    oid2 = (await ctl(sim, "POST", f"/accounts/{LEADER}/orders", low))[1]["orderId"]
    status, body = await ctl(sim, "DELETE", f"/accounts/{LEADER}/orders/{oid2}")
    assert status == 200 and body["orderStatus"] == "CANCELLED"
    status, body = await ctl(sim, "POST", "/faults", {"kind": "fail_next", "n": 1})
    assert status == 200 and body["faults"]["requestFaults"][0]["remaining"] == 1
    assert (await call(leader.get_order_list))["remarks"]["error_code"] == "DH-908"
    status, body = await ctl(sim, "POST", "/faults", {"kind": "explode"})
    assert status == 400 and body["errorCode"] == "DH-905"
    status, body = await ctl(sim, "GET", "/requests?since=0")
    assert status == 200 and body["next"] == len(sim.requests)
    assert body["items"][-1]["path"] == "/v2/orders"
    status, body = await ctl(sim, "GET", "/alerts?since=2")
    assert body["items"][0]["seq"] == 2 and body["next"] == len(sim.alerts_sent)
    status, body = await ctl(sim, "GET", "/state")
    assert {a["clientId"] for a in body["accounts"]} == {LEADER, FOLLOWER, "1000000003"}
    status, body = await ctl(sim, "POST", "/tokens/expire", {"clientId": LEADER})
    await sock.closed()
    assert (await call(leader.get_order_list))["remarks"]["error_code"] == "DH-901"
    status, body = await ctl(sim, "POST", "/accounts/1000000009/orders", order)
    assert status == 401 and body["errorCode"] == "DH-901"


async def test_request_log_fields(sim: DhanSimulator, leader: Any) -> None:
    await call(leader.place_order, **limit_buy(tag="log-1"))
    (rec,) = sim.requests
    assert rec["client_id"] == LEADER and rec["method"] == "POST" and rec["path"] == "/v2/orders"
    assert rec["json"]["correlationId"] == "log-1" and rec["status"] == 200
    assert isinstance(rec["monotonic"], float) and rec["wall"]


async def test_no_token_anywhere(
    sim: DhanSimulator, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    leader = make_sdk(sim)
    follower = make_sdk(sim, FOLLOWER, FOLLOWER_TOKEN)
    sock = await OrderSocket.connect(sim)
    await call(leader.place_order, **limit_buy(tag="t"))
    await call(follower.place_order, **limit_buy(order_type="MARKET", price=0))
    await call(make_sdk(sim, LEADER, "wrong").get_order_list)
    # a token smuggled into a body is scrubbed from the request log
    async with aiohttp.ClientSession() as session:
        headers = {"access-token": LEADER_TOKEN, "client-id": LEADER}
        await session.post(sim.rest_url + "/orders", data="{bad " + LEADER_TOKEN, headers=headers)
    sim.faults.fail_next(1)
    await call(leader.get_positions)
    sim.faults.expire_token(LEADER)
    await sock.closed()
    await call(leader.get_order_list)
    await asyncio.sleep(0.05)
    out, err = capsys.readouterr()
    dumped = json.dumps(
        [sim.requests, sim.alerts_sent, sim.state(), sim.orders(LEADER)], default=str
    )
    for token in TOKENS:
        assert token not in out and token not in err
        assert token not in caplog.text
        assert token not in dumped
        assert token not in repr(sim.exchange.account(LEADER))
    assert "***" in dumped


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_cli_serves_until_sigint() -> None:
    port = _free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine.simulator", "--port", str(port),
         "--account", f"{LEADER}:{LEADER_TOKEN}", "--account", f"{FOLLOWER}:{FOLLOWER_TOKEN}"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        first = ""
        while "Ctrl-C" not in first:  # read the whole banner before using communicate()
            line = proc.stdout.readline()
            assert line, "simulator exited early"
            first += line
        assert f"127.0.0.1:{port}" in first
        sim_url = f"http://127.0.0.1:{port}/v2"
        ctx = DhanContext(LEADER, LEADER_TOKEN)
        ctx.dhan_http.base_url = sim_url
        res = dhanhq(ctx).place_order(**limit_buy())
        assert res["status"] == "success"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    text = first + out + err
    assert LEADER in text and FOLLOWER in text
    for token in TOKENS:
        assert token not in text


def test_cli_rejects_a_malformed_account_without_echoing_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as info:
        cli_main(["--account", "no-colon-secretvalue"])
    assert info.value.code == 2
    assert "secretvalue" not in capsys.readouterr().err
