"""Order-API rate limits, and every injected fault."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import websockets

from engine.clock import ManualClock
from engine.simulator import DhanSimulator
from engine.simulator.limits import SlidingWindowLimiter

from .conftest import LEADER, LEADER_TOKEN, OrderSocket, call, limit_buy, make_sdk

pytestmark = pytest.mark.e2e


async def test_13_orders_in_one_second_10_accepted_3_dh904() -> None:
    clock = ManualClock()  # frozen: all 13 arrive in the same instant
    sim = DhanSimulator(accounts={LEADER: LEADER_TOKEN}, clock=clock)
    await sim.start(port=0)
    try:
        sdk = make_sdk(sim)
        results = [await call(sdk.place_order, **limit_buy()) for _ in range(13)]
        accepted = [r for r in results if r["status"] == "success"]
        refused = [r for r in results if r["status"] == "failure"]
        assert len(accepted) == 10 and len(refused) == 3
        for r in refused:
            assert r["remarks"]["error_code"] == "DH-904"
            # §8b L11: live Dhan types a throttled call "Input_Exception"; key on the code
            assert r["remarks"]["error_type"] == "Input_Exception"
        assert len(sim.orders(LEADER)) == 10  # refused requests were not executed
        assert [r["status"] for r in sim.requests] == [200] * 10 + [429] * 3
        # GETs are not counted
        assert (await call(sdk.get_order_list))["status"] == "success"
        clock.advance(0.999)
        assert (await call(sdk.place_order, **limit_buy()))["status"] == "failure"
        clock.advance(0.002)
        assert (await call(sdk.place_order, **limit_buy()))["status"] == "success"
    finally:
        await sim.stop()


async def test_13_concurrent_orders_on_the_real_clock(sim: DhanSimulator) -> None:
    sdks = [make_sdk(sim) for _ in range(13)]
    results = await asyncio.gather(*(call(s.place_order, **limit_buy()) for s in sdks))
    codes = sorted(r["remarks"]["error_code"] if r["remarks"] else "ok" for r in results)
    assert codes == ["DH-904"] * 3 + ["ok"] * 10


def test_minute_hour_day_windows() -> None:
    limiter = SlidingWindowLimiter()
    t = 0.0
    for _ in range(250):
        assert limiter.try_acquire(t) is None
        t += 0.11
    over = limiter.try_acquire(t)
    assert over is not None and (over.window_seconds, over.limit) == (60.0, 250)
    hour = SlidingWindowLimiter(((1.0, 10), (3600.0, 3)))
    assert hour.try_acquire(0) is None and hour.try_acquire(10) is None
    assert hour.try_acquire(20) is None
    assert hour.try_acquire(3599) is not None
    assert hour.try_acquire(3600.5) is None


async def test_fail_next_answers_dh908_without_executing(sim: DhanSimulator, leader: Any) -> None:
    sim.faults.fail_next(2, status=503)
    for _ in range(2):
        res = await call(leader.place_order, **limit_buy())
        assert res["remarks"]["error_code"] == "DH-908"
    assert sim.orders(LEADER) == []
    assert (await call(leader.place_order, **limit_buy()))["status"] == "success"
    sim.faults.fail_next(1, match="POST /v2/orders")
    assert (await call(leader.get_order_list))["status"] == "success"
    assert (await call(leader.place_order, **limit_buy()))["status"] == "failure"


async def test_fail_after_accept_refuses_in_words_an_order_it_placed(
    sim: DhanSimulator, leader: Any
) -> None:
    sim.faults.fail_next(1, status=400, code="DH-906", after_accept=True, match="POST /v2/orders")
    res = await call(leader.place_order, **limit_buy(tag="said-no-1"))
    assert res["status"] == "failure" and res["remarks"]["error_code"] == "DH-906"
    (order,) = sim.orders(LEADER)
    assert order["correlationId"] == "said-no-1" and order["orderStatus"] == "PENDING"
    assert sim.requests[-1]["status"] == 400 and sim.requests[-1]["error_code"] == "DH-906"


async def test_delay_before_accept_times_out_without_an_order(sim: DhanSimulator) -> None:
    sdk = make_sdk(sim)
    sdk.dhan_http.timeout = 0.2
    sim.faults.delay_next(1, 0.6)
    res = await call(sdk.place_order, **limit_buy(tag="slow-1"))
    assert res["status"] == "failure" and "timed out" in str(res["remarks"]).lower()
    await asyncio.sleep(0.6)
    assert sim.orders(LEADER) == []


async def test_delay_after_accept_is_the_ambiguous_timeout(sim: DhanSimulator) -> None:
    sdk = make_sdk(sim)
    sdk.dhan_http.timeout = 0.2
    sim.faults.delay_next(1, 0.6, after_accept=True)
    t0 = time.monotonic()
    res = await call(sdk.place_order, **limit_buy(tag="amb-1"))
    assert res["status"] == "failure" and time.monotonic() - t0 < 0.55
    found = await call(sdk.get_order_by_correlationID, "amb-1")
    assert found["status"] == "success" and found["data"]["orderStatus"] == "PENDING"


async def test_reset_next(sim: DhanSimulator, leader: Any) -> None:
    sim.faults.reset_next(1)
    res = await call(leader.place_order, **limit_buy(tag="rst-1"))
    assert res["status"] == "failure" and isinstance(res["remarks"], str)
    assert sim.orders(LEADER) == []
    sim.faults.reset_next(1, after_accept=True)
    res = await call(leader.place_order, **limit_buy(tag="rst-2"))
    assert res["status"] == "failure"
    assert [o["correlationId"] for o in sim.orders(LEADER)] == ["rst-2"]
    assert (await call(leader.get_order_list))["status"] == "success"


async def test_drop_sockets_then_reconnect(sim: DhanSimulator) -> None:
    sock = await OrderSocket.connect(sim)
    sim.faults.drop_sockets()
    await sock.closed()
    assert isinstance(sock.ws.close_code, int) or sock.ws.close_code is None
    again = await OrderSocket.connect(sim)
    sim.place_manual_order(
        LEADER, transaction_type="BUY", exchange_segment="NSE_EQ", security_id="2885",
        quantity=1, order_type="LIMIT", price=1500.0,
    )  # fmt: skip
    assert len(await again.take(2)) == 2
    await again.close()


async def test_pause_loses_alerts_resume_delivers_new_ones(
    sim: DhanSimulator, leader_socket: OrderSocket
) -> None:
    sim.faults.pause_delivery()
    oid = sim.place_manual_order(
        LEADER, transaction_type="BUY", exchange_segment="NSE_EQ", security_id="2885",
        quantity=1, order_type="LIMIT", price=1500.0,
    )  # fmt: skip
    assert await leader_socket.drain() == []
    assert len(sim.alerts_dropped) == 2
    sim.faults.resume_delivery()
    sim.cancel_manual_order(LEADER, oid)
    (alert,) = await leader_socket.take(1)
    assert alert["Status"] == "CANCELLED"
    assert not leader_socket.ws.close_code  # the socket stayed open throughout


async def test_duplicate_next_alerts(sim: DhanSimulator, leader_socket: OrderSocket) -> None:
    sim.faults.duplicate_next_alerts(2)
    sim.place_manual_order(
        LEADER, transaction_type="BUY", exchange_segment="NSE_EQ", security_id="2885",
        quantity=1, order_type="MARKET",
    )  # fmt: skip
    alerts = await leader_socket.take(5)
    assert [a["Status"] for a in alerts] == ["TRANSIT", "TRANSIT", "PENDING", "PENDING", "TRADED"]
    assert await leader_socket.drain() == []


async def test_reorder_next_alerts(sim: DhanSimulator, leader_socket: OrderSocket) -> None:
    sim.faults.reorder_next_alerts(2)
    sim.place_manual_order(
        LEADER, transaction_type="BUY", exchange_segment="NSE_EQ", security_id="2885",
        quantity=1, order_type="MARKET",
    )  # fmt: skip
    alerts = await leader_socket.take(3)
    assert [a["Status"] for a in alerts] == ["PENDING", "TRANSIT", "TRADED"]
    # a held alert with no partner is flushed after a short while
    sim.faults.reorder_next_alerts(2)
    oid = sim.place_manual_order(
        LEADER, transaction_type="BUY", exchange_segment="NSE_EQ", security_id="2885",
        quantity=1, order_type="LIMIT", price=1400.0,
    )  # fmt: skip
    alerts = await leader_socket.take(2)
    assert [a["Status"] for a in alerts] == ["PENDING", "TRANSIT"]
    sim.faults.reorder_next_alerts(2)
    sim.cancel_manual_order(LEADER, oid)
    (alert,) = await leader_socket.take(1, wait=1.0)
    assert alert["Status"] == "CANCELLED"


async def test_expire_token_closes_sockets_and_refuses_rest(
    sim: DhanSimulator, leader: Any
) -> None:
    sock = await OrderSocket.connect(sim)
    sim.faults.expire_token(LEADER)
    await sock.closed()
    assert sock.ws.close_code == 4001
    res = await call(leader.get_order_list)
    assert res["remarks"]["error_code"] == "DH-901"
    ws = await websockets.connect(sim.ws_url, proxy=None)
    login = {"LoginReq": {"MsgCode": 42, "ClientId": LEADER, "Token": LEADER_TOKEN}}
    await ws.send(__import__("json").dumps({**login, "UserType": "SELF"}))
    with pytest.raises(websockets.ConnectionClosed):
        await asyncio.wait_for(ws.recv(), 2)
    assert ws.close_code == 4001


async def test_delay_with_a_patient_client_executes_late(sim: DhanSimulator, leader: Any) -> None:
    sim.faults.delay_next(1, 0.3)
    t0 = time.monotonic()
    res = await call(leader.place_order, **limit_buy())
    assert res["status"] == "success" and time.monotonic() - t0 >= 0.3
    assert len(sim.orders(LEADER)) == 1


async def test_stop_is_clean_with_sockets_and_a_held_request() -> None:
    sim = DhanSimulator(accounts={LEADER: LEADER_TOKEN})
    await sim.start(port=0)
    before = asyncio.all_tasks()
    sock = await OrderSocket.connect(sim)
    sdk = make_sdk(sim)
    sim.faults.delay_next(1, 30.0)
    held = asyncio.ensure_future(call(sdk.get_order_list))
    await asyncio.sleep(0.1)
    t0 = time.monotonic()
    await sim.stop()
    assert time.monotonic() - t0 < 3.0
    await sock.closed()
    await asyncio.wait_for(held, 5)
    leftover = {t for t in asyncio.all_tasks() - before if not t.done()}
    leftover.discard(asyncio.current_task())
    assert not [t for t in leftover if t is not sock._reader]


async def test_exit_all_positions_cancels_and_squares_off(sim: DhanSimulator, leader: Any) -> None:
    await call(leader.place_order, **limit_buy(order_type="MARKET", price=0, quantity=3))
    await call(leader.place_order, **limit_buy(price=1400.0))
    res = await call(leader.exit_all_positions)
    assert res["status"] == "success"
    statuses = [o["orderStatus"] for o in sim.orders(LEADER)]
    assert statuses == ["TRADED", "CANCELLED", "TRADED"]
    (pos,) = (await call(leader.get_positions))["data"]
    assert pos["netQty"] == 0
