"""The order-update socket: login, Dhan's socket dialect field by field, every order change."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import pytest
import websockets

from engine.simulator import DhanSimulator

from .conftest import FOLLOWER, LEADER, LEADER_TOKEN, OrderSocket, call, limit_buy

pytestmark = pytest.mark.e2e
IST_TIME = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")


async def test_api_order_alerts_transit_then_pending_field_by_field(
    sim: DhanSimulator, leader: Any, leader_socket: OrderSocket
) -> None:
    res = await call(leader.place_order, **limit_buy(tag="sock-1", disclosed_quantity=5))
    oid = res["data"]["orderId"]
    transit, pending = await leader_socket.take(2)
    assert transit["Status"] == "TRANSIT" and pending["Status"] == "PENDING"
    d = pending
    assert d["OrderNo"] == oid and isinstance(d["OrderNo"], str)
    assert d["ExchOrderNo"] and d["ExchOrderNo"] != "0"
    assert (d["Exchange"], d["Segment"]) == ("NSE", "E")
    assert d["TxnType"] == "B" and d["OrderType"] == "LMT" and d["Product"] == "C"
    assert d["Validity"] == "DAY" and d["Source"] == "P"
    assert d["SecurityId"] == "2885" and d["ClientId"] == LEADER
    assert d["Quantity"] == 10 and d["TradedQty"] == 0 and d["RemainingQuantity"] == 10
    assert d["DiscQuantity"] == 5
    assert d["Price"] == 1500.0 and d["TriggerPrice"] == 0.0
    assert d["TradedPrice"] == 0.0 and d["AvgTradedPrice"] == 0.0
    assert d["CorrelationId"] == "sock-1" and d["OffMktFlag"] == "0" and d["MktType"] == "NL"
    assert d["LegNo"] == 1 and d["Instrument"] == "EQUITY" and d["Symbol"] == "RELIANCE"
    assert d["DisplayName"] and d["LotSize"] == 1 and d["OptType"] == "XX"
    assert d["StrikePrice"] == 0.0 and d["ExpiryDate"] == "0001-01-01 00:00:00"
    for key in ("OrderDateTime", "ExchOrderTime", "LastUpdatedTime"):
        assert IST_TIME.match(d[key]), key
    assert "Remarks" in d and "ReasonDescription" in d
    assert transit["ExchOrderTime"] == "0001-01-01 00:00:00"
    # every key PascalCase
    assert all(k[0].isupper() for k in d)


async def test_modification_is_a_new_alert_same_order_no(
    leader: Any, leader_socket: OrderSocket
) -> None:
    oid = (await call(leader.place_order, **limit_buy()))["data"]["orderId"]
    await leader_socket.take(2)
    await call(leader.modify_order, oid, "LIMIT", None, 30, 1495.5, 0, 0, "DAY")
    (mod,) = await leader_socket.take(1)
    assert mod["OrderNo"] == oid and mod["Status"] == "PENDING"
    assert mod["Quantity"] == 30 and mod["Price"] == 1495.5
    await call(leader.cancel_order, oid)
    (cancel,) = await leader_socket.take(1)
    assert cancel["Status"] == "CANCELLED" and cancel["OrderNo"] == oid


async def test_fills_partial_stays_pending_on_socket_part_traded_in_rest(
    sim: DhanSimulator, leader: Any, leader_socket: OrderSocket
) -> None:
    sim.set_liquidity("NSE_EQ", "2885", 4)
    oid = (await call(leader.place_order, **limit_buy(quantity=10, price=1500.0)))["data"][
        "orderId"
    ]
    await leader_socket.take(2)
    sim.set_price("NSE_EQ", "2885", 1499.0)
    (part,) = await leader_socket.take(1)
    assert part["Status"] == "PENDING" and part["TradedQty"] == 4
    assert part["RemainingQuantity"] == 6 and part["TradedPrice"] == 1500.0
    rest = (await call(leader.get_order_by_id, oid))["data"]
    assert rest["orderStatus"] == "PART_TRADED" and rest["filledQty"] == 4
    sim.set_price("NSE_EQ", "2885", 1498.0)
    sim.set_price("NSE_EQ", "2885", 1497.0)
    second, third = await leader_socket.take(2)
    assert second["TradedQty"] == 8 and third["TradedQty"] == 10
    assert third["Status"] == "TRADED" and third["AvgTradedPrice"] == 1500.0


async def test_manual_orders_have_source_n_and_market_stays_market(
    sim: DhanSimulator, leader_socket: OrderSocket
) -> None:
    oid = sim.place_manual_order(
        LEADER, transaction_type="SELL", exchange_segment="NSE_FNO", security_id="52874",
        quantity=30, order_type="MARKET", product_type="INTRADAY",
    )  # fmt: skip
    transit, pending, traded = await leader_socket.take(3)
    assert [a["Status"] for a in (transit, pending, traded)] == ["TRANSIT", "PENDING", "TRADED"]
    assert traded["Source"] == "N" and traded["OrderType"] == "MKT" and traded["OrderNo"] == oid
    assert (traded["Exchange"], traded["Segment"]) == ("NSE", "D")
    assert traded["TxnType"] == "S" and traded["Product"] == "I"
    assert (
        traded["OptType"] == "CE" and traded["LotSize"] == 30 and traded["Instrument"] == "OPTIDX"
    )
    assert traded["StrikePrice"] == 59000.0 and traded["ExpiryDate"].startswith("2026-12-29")
    assert traded["TradedPrice"] == 1185.4
    mcx = sim.place_manual_order(
        LEADER, transaction_type="BUY", exchange_segment="MCX_COMM", security_id="458305",
        quantity=100, order_type="LIMIT", price=5700.0, product_type="MARGIN",
    )  # fmt: skip
    alerts = await leader_socket.take(2)
    assert alerts[1]["OrderNo"] == mcx and (alerts[1]["Exchange"], alerts[1]["Segment"]) == (
        "MCX",
        "M",
    )
    sim.modify_manual_order(LEADER, mcx, price=5701.0)
    sim.cancel_manual_order(LEADER, mcx)
    mod, cancel = await leader_socket.take(2)
    assert mod["Price"] == 5701.0 and mod["Status"] == "PENDING" and cancel["Status"] == "CANCELLED"


async def test_socket_product_and_type_codes(
    sim: DhanSimulator, leader_socket: OrderSocket
) -> None:
    cases = [
        ("CNC", "LIMIT", "C", "LMT"),
        ("INTRADAY", "STOP_LOSS", "I", "SL"),
        ("MARGIN", "STOP_LOSS_MARKET", "M", "SLM"),
        ("MTF", "LIMIT", "F", "LMT"),
        ("CO", "LIMIT", "V", "LMT"),
    ]
    for product, otype, pcode, tcode in cases:
        sim.place_manual_order(
            LEADER, transaction_type="BUY", exchange_segment="NSE_EQ", security_id="1333",
            quantity=1, order_type=otype, product_type=product, price=1000.0,
            trigger_price=1100.0,
        )  # fmt: skip
        _, pending = await leader_socket.take(2)
        assert (pending["Product"], pending["OrderType"]) == (pcode, tcode)


async def test_multiple_sockets_and_isolation(sim: DhanSimulator, leader: Any) -> None:
    a = await OrderSocket.connect(sim)
    b = await OrderSocket.connect(sim)
    f = await OrderSocket.connect(sim, FOLLOWER, "tokF-1a2b3c4d5e6f-secret")
    try:
        await call(leader.place_order, **limit_buy())
        assert [x["Status"] for x in await a.take(2)] == ["TRANSIT", "PENDING"]
        assert [x["Status"] for x in await b.take(2)] == ["TRANSIT", "PENDING"]
        assert await f.drain() == []
    finally:
        for sock in (a, b, f):
            await sock.close()


async def test_ordered_delivery_per_socket(sim: DhanSimulator, leader_socket: OrderSocket) -> None:
    ids = [
        sim.place_manual_order(
            LEADER,
            transaction_type="BUY",
            exchange_segment="NSE_EQ",
            security_id="11536",
            quantity=1,
            order_type="LIMIT",
            price=3000.0,
            product_type="CNC",
        )
        for _ in range(20)
    ]
    alerts = await leader_socket.take(40)
    assert [a["OrderNo"] for a in alerts] == [i for i in ids for _ in range(2)]
    sent = [s for s in sim.alerts_sent if s["client_id"] == LEADER]
    assert len(sent) == 40 and all("monotonic" in s and "status" in s for s in sent)


@pytest.mark.parametrize(
    ("login", "code"),
    [
        (
            {"LoginReq": {"MsgCode": 42, "ClientId": LEADER, "Token": "bad"}, "UserType": "SELF"},
            4001,
        ),
        ({"LoginReq": {"MsgCode": 42, "ClientId": "999", "Token": LEADER_TOKEN}}, 4001),
        ({"LoginReq": {"MsgCode": 41, "ClientId": LEADER, "Token": LEADER_TOKEN}}, 1008),
        ({"Login": {}}, 1008),
        ("not json", 1008),
    ],
)
async def test_bad_login_closes(sim: DhanSimulator, login: Any, code: int) -> None:
    async with websockets.connect(sim.ws_url, proxy=None) as ws:
        await ws.send(login if isinstance(login, str) else json.dumps(login))
        with pytest.raises(websockets.ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), 2)
    assert info.value.rcvd is not None and info.value.rcvd.code == code
    assert LEADER_TOKEN not in info.value.rcvd.reason


async def test_msgcode_as_string_is_accepted(sim: DhanSimulator) -> None:
    ws = await websockets.connect(sim.ws_url, proxy=None)
    login = {"LoginReq": {"MsgCode": "42", "ClientId": LEADER, "Token": LEADER_TOKEN}}
    await ws.send(json.dumps({**login, "UserType": "SELF"}))
    sock = OrderSocket(ws)
    await asyncio.sleep(0.05)
    sim.place_manual_order(
        LEADER, transaction_type="BUY", exchange_segment="NSE_EQ", security_id="2885",
        quantity=1, order_type="LIMIT", price=1500.0,
    )  # fmt: skip
    assert len(await sock.take(2)) == 2
    await sock.close()


async def test_title_case_status_switch(sim: DhanSimulator, leader_socket: OrderSocket) -> None:
    sim.set_profile("classic")
    sim.set_profile(sim.profile.model_copy(update={"socket_status_case": "title"}))
    oid = sim.place_manual_order(
        LEADER, transaction_type="BUY", exchange_segment="NSE_EQ", security_id="2885",
        quantity=1, order_type="LIMIT", price=1500.0,
    )  # fmt: skip
    sim.cancel_manual_order(LEADER, oid)
    alerts = await leader_socket.take(3)
    assert [a["Status"] for a in alerts] == ["Transit", "Pending", "Cancelled"]


async def test_amo_flag_and_rejection_reason(
    sim: DhanSimulator, leader: Any, leader_socket: OrderSocket
) -> None:
    await call(leader.place_order, **limit_buy(after_market_order=True, amo_time="OPEN"))
    _, pending = await leader_socket.take(2)
    assert pending["OffMktFlag"] == "1"
    res = await call(leader.place_order, **limit_buy(quantity=1000, price=1500.0))
    assert res["status"] == "success"
    _, rejected = await leader_socket.take(2)
    assert rejected["Status"] == "REJECTED"
    assert rejected["ReasonDescription"].startswith("RMS: Insufficient funds")
    order = (await call(leader.get_order_by_id, res["data"]["orderId"]))["data"]
    assert order["orderStatus"] == "REJECTED" and "Insufficient" in order["omsErrorDescription"]
