"""The real dhanhq SDK against the simulator's REST v2: every call the product uses."""

from __future__ import annotations

import re
from typing import Any

import pytest
from dhanhq import DhanLogin

from engine.simulator import DhanSimulator

from .conftest import FOLLOWER, LEADER, LEADER_TOKEN, call, limit_buy

pytestmark = pytest.mark.e2e

ORDER_FIELDS = [
    "dhanClientId",
    "orderId",
    "exchangeOrderId",
    "correlationId",
    "orderStatus",
    "transactionType",
    "exchangeSegment",
    "productType",
    "orderType",
    "validity",
    "tradingSymbol",
    "securityId",
    "quantity",
    "disclosedQuantity",
    "price",
    "triggerPrice",
    "afterMarketOrder",
    "boProfitValue",
    "boStopLossValue",
    "legName",
    "createTime",
    "updateTime",
    "exchangeTime",
    "drvExpiryDate",
    "drvOptionType",
    "drvStrikePrice",
    "omsErrorCode",
    "omsErrorDescription",
    "algoId",
    "remainingQuantity",
    "averageTradedPrice",
    "filledQty",
]
IST_TIME = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")


def ok(result: dict[str, Any]) -> Any:
    assert result["status"] == "success", result
    return result["data"]


async def test_place_returns_order_id_and_transit(sim: DhanSimulator, leader: Any) -> None:
    data = ok(await call(leader.place_order, **limit_buy(tag="cid-1")))
    assert data["orderStatus"] == "TRANSIT"
    assert data["orderId"].isdigit() and int(data["orderId"]) >= 52260000001
    second = ok(await call(leader.place_order, **limit_buy()))
    assert int(second["orderId"]) > int(data["orderId"])
    body = sim.requests[0]["json"]
    assert body["dhanClientId"] == LEADER and body["correlationId"] == "cid-1"


async def test_order_object_has_every_rest_field(leader: Any) -> None:
    placed = ok(await call(leader.place_order, **limit_buy(tag="cid-2", disclosed_quantity=5)))
    order = ok(await call(leader.get_order_by_id, placed["orderId"]))
    assert isinstance(order, dict)
    assert set(ORDER_FIELDS) <= set(order)
    assert order["orderStatus"] == "PENDING"
    assert order["transactionType"] == "BUY" and order["exchangeSegment"] == "NSE_EQ"
    assert order["orderType"] == "LIMIT" and order["productType"] == "CNC"
    assert order["tradingSymbol"] == "RELIANCE" and order["securityId"] == "2885"
    assert order["quantity"] == 10 and order["remainingQuantity"] == 10
    assert order["filledQty"] == 0 and order["disclosedQuantity"] == 5
    assert order["price"] == 1500.0 and order["correlationId"] == "cid-2"
    for key in ("createTime", "updateTime", "exchangeTime", "drvExpiryDate"):
        assert IST_TIME.match(order[key]), key
    assert order["drvExpiryDate"] == "0001-01-01 00:00:00"
    book = ok(await call(leader.get_order_list))
    assert [o["orderId"] for o in book] == [placed["orderId"]]


async def test_modify_sends_total_quantity_and_keeps_the_order(
    sim: DhanSimulator, leader: Any
) -> None:
    oid = ok(await call(leader.place_order, **limit_buy()))["orderId"]
    res = ok(await call(leader.modify_order, oid, "LIMIT", None, 20, 1490.0, 0, 0, "DAY"))
    assert res == {"orderId": oid, "orderStatus": "PENDING"}
    order = ok(await call(leader.get_order_by_id, oid))
    assert order["quantity"] == 20 and order["price"] == 1490.0
    assert sim.requests[-2]["method"] == "PUT" and sim.requests[-2]["json"]["quantity"] == 20


async def test_cancel_answers_json_with_cancelled(leader: Any) -> None:
    oid = ok(await call(leader.place_order, **limit_buy()))["orderId"]
    res = ok(await call(leader.cancel_order, oid))
    assert res == {"orderId": oid, "orderStatus": "CANCELLED"}
    assert ok(await call(leader.get_order_by_id, oid))["orderStatus"] == "CANCELLED"


async def test_empty_202_cancel_switch(sim: DhanSimulator, leader: Any) -> None:
    sim.set_profile("cancel-202")
    oid = ok(await call(leader.place_order, **limit_buy()))["orderId"]
    res = await call(leader.cancel_order, oid)
    assert res["status"] == "failure" and "Expecting value" in res["remarks"]
    assert ok(await call(leader.get_order_by_id, oid))[0]["orderStatus"] == "CANCELLED"


async def test_market_fill_trades_positions_and_funds(sim: DhanSimulator, leader: Any) -> None:
    before = ok(await call(leader.get_fund_limits))
    assert before["availabelBalance"] == 1_000_000.0 and before["sodLimit"] == 1_000_000.0
    oid = ok(await call(leader.place_order, **limit_buy(order_type="MARKET", price=0, quantity=4)))[
        "orderId"
    ]
    order = ok(await call(leader.get_order_by_id, oid))
    assert order["orderStatus"] == "TRADED" and order["filledQty"] == 4
    assert order["averageTradedPrice"] == 1545.6
    trades = ok(await call(leader.get_trade_book))
    assert sim.requests[-1]["path"] == "/v2/trades/"
    assert len(trades) == 1 and trades[0]["tradedQuantity"] == 4
    assert trades[0]["orderId"] == oid and trades[0]["tradedPrice"] == 1545.6
    assert ok(await call(leader.get_trade_book, oid))[0]["exchangeTradeId"]
    sim.set_price("NSE_EQ", "2885", 1555.6)
    (pos,) = ok(await call(leader.get_positions))
    assert pos["netQty"] == 4 and pos["positionType"] == "LONG" and pos["buyAvg"] == 1545.6
    assert pos["unrealizedProfit"] == 40.0 and pos["realizedProfit"] == 0.0
    after = ok(await call(leader.get_fund_limits))
    assert after["availabelBalance"] == pytest.approx(1_000_000.0 - 4 * 1545.6)
    # sell at a profit: realised P&L, position closed
    sim.place_manual_order(
        LEADER, transaction_type="SELL", exchange_segment="NSE_EQ", security_id="2885",
        quantity=4, order_type="MARKET", product_type="CNC",
    )  # fmt: skip
    (pos,) = ok(await call(leader.get_positions))
    assert pos["netQty"] == 0 and pos["positionType"] == "CLOSED"
    assert pos["realizedProfit"] == 40.0 and pos["sellAvg"] == 1555.6
    funds = ok(await call(leader.get_fund_limits))
    assert funds["availabelBalance"] == pytest.approx(1_000_040.0)


async def test_correlation_lookup_latest_and_unknown(leader: Any) -> None:
    first = ok(await call(leader.place_order, **limit_buy(tag="dup")))["orderId"]
    second = ok(await call(leader.place_order, **limit_buy(tag="dup")))["orderId"]
    assert first != second
    found = ok(await call(leader.get_order_by_correlationID, "dup"))
    assert found["orderId"] == second and found["correlationId"] == "dup"
    missing = await call(leader.get_order_by_correlationID, "nope")
    assert missing["status"] == "failure" and missing["remarks"]["error_code"] == "DH-907"


async def test_accounts_see_only_their_own_orders(leader: Any, follower: Any) -> None:
    oid = ok(await call(leader.place_order, **limit_buy()))["orderId"]
    assert ok(await call(follower.get_order_list)) == []
    res = await call(follower.get_order_by_id, oid)
    assert res["remarks"]["error_code"] == "DH-907"
    res = await call(follower.cancel_order, oid)
    assert res["remarks"]["error_code"] == "DH-907"


async def test_kill_switch_cycle(leader: Any) -> None:
    assert ok(await call(leader.status_kill_switch))["killSwitchStatus"] == "DEACTIVATE"
    res = ok(await call(leader.kill_switch, "activate"))
    assert res["killSwitchStatus"] == "Kill Switch has been successfully activated"
    assert ok(await call(leader.status_kill_switch)) == {
        "dhanClientId": LEADER,
        "killSwitchStatus": "ACTIVATE",
    }
    refused = await call(leader.place_order, **limit_buy())
    assert refused["remarks"]["error_code"] == "DH-906"
    assert "Kill switch" in refused["remarks"]["error_message"]
    ok(await call(leader.kill_switch, "deactivate"))
    ok(await call(leader.place_order, **limit_buy()))


async def test_kill_switch_refused_with_pending_order_or_open_position(
    sim: DhanSimulator, leader: Any
) -> None:
    oid = ok(await call(leader.place_order, **limit_buy()))["orderId"]
    res = await call(leader.kill_switch, "activate")
    assert res["remarks"]["error_code"] == "DH-906" and "pending" in res["remarks"]["error_message"]
    ok(await call(leader.cancel_order, oid))
    ok(await call(leader.place_order, **limit_buy(order_type="MARKET", price=0)))
    res = await call(leader.kill_switch, "activate")
    assert (
        res["remarks"]["error_code"] == "DH-906" and "positions" in res["remarks"]["error_message"]
    )
    assert ok(await call(leader.status_kill_switch))["killSwitchStatus"] == "DEACTIVATE"


async def test_profile_via_dhan_login(sim: DhanSimulator) -> None:
    login = DhanLogin(LEADER)
    login.API_BASE_URL = sim.rest_url
    profile = await call(login.user_profile, LEADER_TOKEN)
    assert profile["dhanClientId"] == LEADER
    assert re.match(r"^\d{2}/\d{2}/\d{4} \d{2}:\d{2}$", profile["tokenValidity"])
    for key in ("activeSegment", "ddpi", "mtf", "dataPlan", "dataValidity"):
        assert key in profile
    with pytest.raises(Exception, match="DH-901"):
        await call(login.user_profile, "wrong-token")


async def test_slicing_splits_above_freeze_quantity(sim: DhanSimulator, leader: Any) -> None:
    # NIFTY 26000 CE: lot 65, SM_FREEZE_QTY 1756 -> at most 1755 (27 lots) per order
    res = ok(
        await call(
            leader.place_order,
            security_id="48211",
            exchange_segment="NSE_FNO",
            transaction_type="BUY",
            quantity=3900,
            order_type="LIMIT",
            product_type="MARGIN",
            price=200.0,
            tag="slice-1",
            should_slice=True,
        )
    )
    assert isinstance(res, list) and len(res) == 3
    book = ok(await call(leader.get_order_list))
    assert [o["quantity"] for o in book] == [1755, 1755, 390]
    assert {o["correlationId"] for o in book} == {"slice-1"}
    # One request: the checkers' record of what made each order tells slices from duplicates.
    assert set(sim.placements(LEADER).values()) == {book[0]["orderId"]}
    unsliced = await call(
        leader.place_order, security_id="48211", exchange_segment="NSE_FNO",
        transaction_type="BUY", quantity=3900, order_type="LIMIT", product_type="MARGIN",
        price=200.0,
    )  # fmt: skip
    assert unsliced["remarks"]["error_code"] == "DH-905"
    assert "freeze" in unsliced["remarks"]["error_message"]


async def test_follower_account_is_independent(sim: DhanSimulator, follower: Any) -> None:
    ok(await call(follower.place_order, **limit_buy()))
    assert len(sim.orders(FOLLOWER)) == 1 and sim.orders(LEADER) == []
