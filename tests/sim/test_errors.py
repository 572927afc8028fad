"""Every refusal answers in Dhan's error shape, an HTTP status and a message naming the field."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from engine.simulator import DhanSimulator

from .conftest import LEADER, LEADER_TOKEN, call, limit_buy, make_sdk

pytestmark = pytest.mark.e2e

HEADERS = {"access-token": LEADER_TOKEN, "client-id": LEADER, "Content-Type": "application/json"}
GOOD = {
    "dhanClientId": LEADER,
    "transactionType": "BUY",
    "exchangeSegment": "NSE_EQ",
    "productType": "CNC",
    "orderType": "LIMIT",
    "validity": "DAY",
    "securityId": "2885",
    "quantity": 10,
    "price": 1500.0,
    "triggerPrice": 0,
    "disclosedQuantity": 0,
    "afterMarketOrder": False,
}


async def rest(
    sim: DhanSimulator,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
    data: str | None = None,
) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session:
        kwargs: dict[str, Any] = {"headers": HEADERS if headers is None else headers}
        if data is not None:
            kwargs["data"] = data
        elif body is not None:
            kwargs["json"] = body
        async with session.request(method, sim.rest_url + path, **kwargs) as resp:
            text = await resp.text()
            try:
                import json

                return resp.status, json.loads(text) if text else None
            except ValueError:
                return resp.status, text


def assert_error(status: int, body: Any, http: int, code: str, *words: str) -> None:
    assert status == http, (status, body)
    assert set(body) == {"errorType", "errorCode", "errorMessage"}
    assert body["errorCode"] == code
    for word in words:
        assert word in body["errorMessage"], (word, body["errorMessage"])


@pytest.mark.parametrize(
    ("headers", "why"),
    [
        ({}, "missing"),
        ({"access-token": "wrong", "client-id": LEADER}, "wrong token"),
        ({"access-token": LEADER_TOKEN, "client-id": "1000000009"}, "wrong client"),
        ({"client-id": LEADER}, "no token"),
    ],
)
async def test_auth_failures_are_401_dh901(
    sim: DhanSimulator, headers: dict[str, str], why: str
) -> None:
    for method, path in (("GET", "/orders"), ("POST", "/orders"), ("GET", "/fundlimit")):
        status, body = await rest(sim, method, path, GOOD if method == "POST" else None, headers)
        assert_error(status, body, 401, "DH-901")
        assert body["errorType"] == "Invalid_Authentication"
    assert sim.orders(LEADER) == []


async def test_expired_token_is_401(sim: DhanSimulator) -> None:
    sim.faults.expire_token(LEADER)
    status, body = await rest(sim, "GET", "/orders")
    assert_error(status, body, 401, "DH-901", "expired")
    sim.renew_token(LEADER, "tokL-new")
    status, _ = await rest(sim, "GET", "/orders", headers={**HEADERS, "access-token": "tokL-new"})
    assert status == 200


BAD_FIELDS = [
    ({"transactionType": "BUYY"}, "transactionType"),
    ({"exchangeSegment": "NSE"}, "exchangeSegment"),
    ({"productType": "DELIVERY"}, "productType"),
    ({"orderType": "LMT"}, "orderType"),
    ({"validity": "GTC"}, "validity"),
    ({"quantity": 0}, "quantity"),
    ({"quantity": -5}, "quantity"),
    ({"quantity": "ten"}, "quantity"),
    ({"quantity": 2.5}, "quantity"),
    ({"price": 0}, "price"),
    ({"price": 1500.03}, "price"),
    ({"price": -1}, "price"),
    ({"orderType": "STOP_LOSS", "triggerPrice": 0}, "triggerPrice"),
    ({"orderType": "STOP_LOSS_MARKET", "triggerPrice": 0}, "triggerPrice"),
    ({"disclosedQuantity": 2}, "disclosedQuantity"),
    ({"disclosedQuantity": 11}, "disclosedQuantity"),
    ({"afterMarketOrder": True, "amoTime": "LATER"}, "amoTime"),
    ({"afterMarketOrder": True}, "amoTime"),
    ({"correlationId": "x" * 26}, "correlationId"),
    ({"correlationId": "bad/char"}, "correlationId"),
    ({"correlationId": "semi;colon"}, "correlationId"),
    ({"securityId": "999999"}, "securityId"),
    ({"securityId": ""}, "securityId"),
    ({"exchangeSegment": "IDX_I", "securityId": "13"}, "not tradable"),
    ({"exchangeSegment": "NSE_FNO", "securityId": "48211", "quantity": 10}, "lot size 65"),
    (
        {"exchangeSegment": "NSE_FNO", "securityId": "48211", "quantity": 65, "productType": "CNC"},
        "productType",
    ),
    ({"dhanClientId": "1000000002"}, "dhanClientId"),
]


@pytest.mark.parametrize(("change", "field"), BAD_FIELDS)
async def test_bad_fields_are_400_dh905_naming_the_field(
    sim: DhanSimulator, change: dict[str, Any], field: str
) -> None:
    status, body = await rest(sim, "POST", "/orders", {**GOOD, **change})
    assert_error(status, body, 400, "DH-905", field)
    assert body["errorType"] == "Input_Exception"
    assert sim.orders(LEADER) == []


async def test_missing_fields_and_malformed_json(sim: DhanSimulator) -> None:
    for name in ("transactionType", "exchangeSegment", "productType", "orderType", "securityId"):
        body = {k: v for k, v in GOOD.items() if k != name}
        status, answer = await rest(sim, "POST", "/orders", body)
        assert_error(status, answer, 400, "DH-905", name)
    status, answer = await rest(sim, "POST", "/orders", data="{not json")
    assert_error(status, answer, 400, "DH-905", "JSON")
    status, answer = await rest(sim, "POST", "/orders", data="[1, 2]")
    assert_error(status, answer, 400, "DH-905", "object")
    status, answer = await rest(sim, "PUT", "/orders/52260000001", data="\xff\x00garbage")
    assert answer["errorCode"] in ("DH-905", "DH-907")


async def test_good_body_is_accepted_over_raw_http(sim: DhanSimulator) -> None:
    status, body = await rest(sim, "POST", "/orders", GOOD)
    assert status == 200 and body["orderStatus"] == "TRANSIT"


async def test_unknown_order_id_is_dh907(sim: DhanSimulator) -> None:
    for method, path in (("GET", "/orders/123"), ("DELETE", "/orders/123"), ("GET", "/trades/123")):
        status, body = await rest(sim, method, path)
        assert_error(status, body, 404, "DH-907", "123")
    status, body = await rest(
        sim,
        "PUT",
        "/orders/123",
        {"orderType": "LIMIT", "validity": "DAY", "quantity": 1, "price": 1},
    )
    assert_error(status, body, 404, "DH-907")
    status, body = await rest(sim, "GET", "/no/such/endpoint")
    assert_error(status, body, 404, "DH-907")


async def test_modify_of_finished_orders_is_dh906(sim: DhanSimulator, leader: Any) -> None:
    traded = (await call(leader.place_order, **limit_buy(order_type="MARKET", price=0)))["data"]
    cancelled = (await call(leader.place_order, **limit_buy()))["data"]
    await call(leader.cancel_order, cancelled["orderId"])
    rejected = (await call(leader.place_order, **limit_buy(quantity=5000)))["data"]
    for oid, word in (
        (traded["orderId"], "TRADED"),
        (cancelled["orderId"], "CANCELLED"),
        (rejected["orderId"], "REJECTED"),
    ):
        body = {"orderType": "LIMIT", "validity": "DAY", "quantity": 10, "price": 1400.0}
        status, answer = await rest(sim, "PUT", f"/orders/{oid}", body)
        assert_error(status, answer, 400, "DH-906", word)
        res = await call(leader.cancel_order, oid)
        assert res["remarks"]["error_code"] == "DH-906"


async def test_bad_modify_fields(sim: DhanSimulator, leader: Any) -> None:
    oid = (await call(leader.place_order, **limit_buy()))["data"]["orderId"]
    base = {"orderType": "LIMIT", "validity": "DAY", "quantity": 10, "price": 1500.0}
    for change, word in (
        ({"orderType": None}, "orderType"),
        ({"validity": "GTT"}, "validity"),
        ({"quantity": 0}, "quantity"),
        ({"price": 0}, "price"),
        ({"orderType": "STOP_LOSS"}, "triggerPrice"),
        ({"disclosedQuantity": 1}, "disclosedQuantity"),
        ({"legName": "MIDDLE_LEG"}, "legName"),
        ({"orderId": "1"}, "orderId"),
    ):
        status, answer = await rest(sim, "PUT", f"/orders/{oid}", {**base, **change})
        assert_error(status, answer, 400, "DH-905", word)
    res = await call(leader.modify_order, oid, "LIMIT", None, "abc", 1500.0, 0, 0, "DAY")
    assert (
        res["remarks"]["error_code"] == "DH-905" and "quantity" in res["remarks"]["error_message"]
    )


async def test_api_slm_refused_and_sdk_shape(sim: DhanSimulator, leader: Any) -> None:
    res = await call(
        leader.place_order,
        **limit_buy(order_type="STOP_LOSS_MARKET", price=0, trigger_price=1600.0),
    )
    assert res["status"] == "failure" and res["data"] == ""
    assert res["remarks"]["error_code"] == "DH-906"
    assert res["remarks"]["error_type"] == "Order_Error"
    assert "stop loss are not allowed through API" in res["remarks"]["error_message"]


async def test_handlers_never_crash(sim: DhanSimulator) -> None:
    weird: list[Any] = [None, 1, "x", [], {"quantity": {"a": 1}}, {"securityId": [1]}]
    for body in weird:
        status, answer = await rest(sim, "POST", "/orders", data=__import__("json").dumps(body))
        assert status in (400, 401) and answer["errorCode"].startswith("DH-90")
    status, answer = await rest(sim, "POST", "/killswitch?killSwitchStatus=MAYBE")
    assert_error(status, answer, 400, "DH-905", "killSwitchStatus")


async def test_internal_bug_is_dh908(sim: DhanSimulator, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(sim.exchange, "available", boom)
    status, body = await rest(sim, "GET", "/fundlimit")
    assert_error(status, body, 500, "DH-908")
    sdk = make_sdk(sim)
    res = await call(sdk.get_fund_limits)
    assert res["remarks"]["error_code"] == "DH-908"
