"""Replay of a recorded leader session: the frames one simulator sent are written as
``copytrade run --record`` writes them, and a second simulator re-enacts them so that its REST
book and its socket show the same orders."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from engine.clock import IST
from engine.simulator import DhanSimulator
from engine.simulator.cli import main as sim_main
from engine.simulator.replay import ReplayError, load_recording

from .conftest import FOLLOWER, FOLLOWER_TOKEN, LEADER, LEADER_TOKEN, OrderSocket

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
