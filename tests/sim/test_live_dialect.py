"""The simulator's default answers are live Dhan's (§8b of shared/dhan-api-facts.md), row by
row, through the real dhanhq SDK where the SDK is involved; each profile switch changes exactly
the answer it names."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from engine.simulator import BUILTIN_PROFILES, DhanSimulator, ProfileError, load_profile
from engine.simulator.cli import main as sim_main

from .conftest import FOLLOWER, LEADER, LEADER_TOKEN, OrderSocket, call, limit_buy, make_sdk

pytestmark = pytest.mark.e2e

HEADERS = {"access-token": LEADER_TOKEN, "client-id": LEADER, "Content-Type": "application/json"}
GENERIC = "Missing required fields, bad values for parameters etc."


def ok(result: dict[str, Any]) -> Any:
    assert result["status"] == "success", result
    return result["data"]


async def raw(sim: DhanSimulator, method: str, path: str, body: Any = None) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session:
        kwargs: dict[str, Any] = {"headers": HEADERS}
        if body is not None:
            kwargs["json"] = body
        async with session.request(method, sim.rest_url + path, **kwargs) as resp:
            return resp.status, await resp.text()


def nifty_call(**overrides: Any) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "security_id": "48211",
        "exchange_segment": "NSE_FNO",
        "transaction_type": "BUY",
        "quantity": 65,
        "order_type": "LIMIT",
        "product_type": "MARGIN",
        "price": 200.0,
    }
    kwargs.update(overrides)
    return kwargs


# ---- L1, and the unsettled correlation-id lookup -------------------------------------------
async def test_l1_unknown_order_id_is_400_dh905_generic(live_sim: DhanSimulator) -> None:
    sdk = make_sdk(live_sim)
    res = await call(sdk.get_order_by_id, "52269999999")
    assert res["status"] == "failure"
    assert res["remarks"] == {
        "error_code": "DH-905",
        "error_type": "Input_Exception",
        "error_message": GENERIC,
    }
    for method, path in (("GET", "/orders/123"), ("DELETE", "/orders/123"), ("GET", "/trades/9")):
        status, text = await raw(live_sim, method, path)
        assert status == 400 and json.loads(text)["errorCode"] == "DH-905", (method, path)


async def test_unknown_correlation_id_answers_per_profile(live_sim: DhanSimulator) -> None:
    sdk = make_sdk(live_sim)
    res = await call(sdk.get_order_by_correlationID, "never-sent")
    assert res["status"] == "failure" and res["remarks"]["error_code"] == "DH-905"
    assert (await raw(live_sim, "GET", "/orders/external/never-sent"))[0] == 400

    live_sim.set_profile("lookup-dh907")
    res = await call(sdk.get_order_by_correlationID, "never-sent")
    assert res["remarks"]["error_code"] == "DH-907"
    assert (await raw(live_sim, "GET", "/orders/external/never-sent"))[0] == 404

    live_sim.set_profile("lookup-empty200")
    assert await raw(live_sim, "GET", "/orders/external/never-sent") == (200, "")
    res = await call(sdk.get_order_by_correlationID, "never-sent")
    assert res["status"] == "failure" and "Expecting value" in res["remarks"]  # the SDK's view

    live_sim.set_profile("lookup-emptylist")
    assert ok(await call(sdk.get_order_by_correlationID, "never-sent")) == []
    # An unknown order id keeps the live answer under every lookup profile.
    assert (await call(sdk.get_order_by_id, "1"))["remarks"]["error_code"] == "DH-905"


async def test_classic_unknown_order_id_is_404_dh907(live_sim: DhanSimulator) -> None:
    live_sim.set_profile("classic")
    res = await call(make_sdk(live_sim).get_order_by_id, "123")
    assert res["remarks"]["error_code"] == "DH-907"


# ---- L4: one-element list -----------------------------------------------------------------
async def test_l4_order_by_id_and_by_correlation_are_one_element_lists(
    live_sim: DhanSimulator,
) -> None:
    sdk = make_sdk(live_sim)
    oid = ok(await call(sdk.place_order, **limit_buy(tag="cid-l4")))["orderId"]
    by_id = ok(await call(sdk.get_order_by_id, oid))
    by_cid = ok(await call(sdk.get_order_by_correlationID, "cid-l4"))
    assert isinstance(by_id, list) and len(by_id) == 1 and by_id[0]["orderId"] == oid
    assert isinstance(by_cid, list) and by_cid[0]["orderId"] == oid
    live_sim.set_profile(load_profile("live").model_copy(update={"order_by_id_shape": "object"}))
    assert ok(await call(sdk.get_order_by_id, oid))["orderId"] == oid


# ---- L6, L7, L8: placeholders, remaining quantity, trade rows -----------------------------
async def test_l6_placeholders_in_order_rows(live_sim: DhanSimulator) -> None:
    sdk = make_sdk(live_sim)
    oid = ok(await call(sdk.place_order, **limit_buy()))["orderId"]
    row = ok(await call(sdk.get_order_by_id, oid))[0]
    assert row["correlationId"] == "NA" and row["legName"] == "NA"
    assert row["drvOptionType"] == "NA" and row["omsErrorCode"] == "0"
    assert row["drvExpiryDate"] == "0001-01-01"
    assert row["exchangeOrderId"] not in ("", "0")  # accepted by the exchange
    option = ok(await call(sdk.place_order, **nifty_call()))["orderId"]
    row = ok(await call(sdk.get_order_by_id, option))[0]
    assert row["drvOptionType"] == "CALL" and row["drvExpiryDate"] == "2026-12-01"
    # RMS refuses before the exchange sees it: exchangeOrderId stays "0".
    rejected = ok(await call(sdk.place_order, **limit_buy(quantity=1000)))["orderId"]
    row = ok(await call(sdk.get_order_by_id, rejected))[0]
    assert row["orderStatus"] == "REJECTED" and row["exchangeOrderId"] == "0"


async def test_l7_cancelled_unfilled_order_has_remaining_zero(live_sim: DhanSimulator) -> None:
    sdk = make_sdk(live_sim)
    oid = ok(await call(sdk.place_order, **limit_buy()))["orderId"]
    ok(await call(sdk.cancel_order, oid))
    row = ok(await call(sdk.get_order_by_id, oid))[0]
    assert row["orderStatus"] == "CANCELLED"
    assert row["remainingQuantity"] == 0 and row["filledQty"] == 0 and row["quantity"] == 10


async def test_l8_trade_rows(live_sim: DhanSimulator) -> None:
    sdk = make_sdk(live_sim)
    oid = ok(await call(sdk.place_order, **nifty_call(price=230.0)))["orderId"]  # marketable
    trades = ok(await call(sdk.get_trade_book, oid))
    assert len(trades) == 1
    trade = trades[0]
    assert trade["drvOptionType"] == "NA"  # even for an option
    assert trade["drvExpiryDate"] == "2026-12-01" and trade["customSymbol"] is None


# ---- L9, L10 -------------------------------------------------------------------------------
async def test_l9_modify_body_is_tolerant(live_sim: DhanSimulator) -> None:
    sdk = make_sdk(live_sim)
    oid = ok(await call(sdk.place_order, **limit_buy()))["orderId"]
    res = ok(await call(sdk.modify_order, oid, "LIMIT", "NA", 10, 1490.0, 0, 0, "DAY"))
    assert res["orderId"] == oid
    body = {
        "dhanClientId": FOLLOWER,  # not the caller: evidently not checked by live Dhan
        "orderId": oid,
        "orderType": "LIMIT",
        "legName": "NA",
        "quantity": 10,
        "price": 1480.0,
        "validity": "DAY",
    }
    status, _ = await raw(live_sim, "PUT", f"/orders/{oid}", body)
    assert status == 200
    assert live_sim.orders(LEADER)[0]["price"] == 1480.0
    live_sim.set_profile("classic")
    status, text = await raw(live_sim, "PUT", f"/orders/{oid}", body)
    assert status == 400 and json.loads(text)["errorCode"] == "DH-905"


async def test_l10_unknown_endpoint_is_a_framework_404(live_sim: DhanSimulator) -> None:
    status, text = await raw(live_sim, "GET", "/no/such/endpoint")
    body = json.loads(text)
    assert status == 404 and set(body) == {"timestamp", "status", "error", "path"}
    assert body["status"] == 404 and body["path"] == "/v2/no/such/endpoint"
    res = await call(make_sdk(live_sim).dhan_http.get, "/no/such/endpoint")
    assert res["status"] == "failure" and res["remarks"]["error_code"] is None


# ---- L2, L3, L12: the socket ---------------------------------------------------------------
async def test_l2_l3_l12_socket_is_camel_title_with_duplicates(live_sim: DhanSimulator) -> None:
    sock = await OrderSocket.connect(live_sim)
    try:
        oid = ok(await call(make_sdk(live_sim).place_order, **limit_buy(tag="cam")))["orderId"]
        transit, pending = await sock.take(2)
        live_sim.cancel_manual_order(LEADER, oid)
        cancelled = await sock.next()
    finally:
        await sock.close()
    assert [transit["status"], pending["status"], cancelled["status"]] == [
        "Transit",
        "Pending",
        "Cancelled",
    ]
    for key in ("orderNo", "txnType", "tradedQty", "exchOrderNo", "correlationId", "lotSize"):
        assert key in pending, key
    assert not any(k[:1].isupper() for k in pending)
    assert pending["orderNo"] == oid and pending["txnType"] == "B"
    for key in ("refLtp", "tickSize", "instrumentType", "series", "multiplier", "algoId"):
        assert key in pending, key
    assert pending["goodTillDaysDate"] == "0001-01-01"


async def test_pascal_upper_profile_socket(live_sim: DhanSimulator) -> None:
    live_sim.set_profile("pascal-upper")
    sock = await OrderSocket.connect(live_sim)
    try:
        ok(await call(make_sdk(live_sim).place_order, **limit_buy()))
        _, pending = await sock.take(2)
    finally:
        await sock.close()
    assert pending["Status"] == "PENDING" and "OrderNo" in pending
    assert pending["refLtp"] == pending["RefLtp"]  # L12 duplicates beside the PascalCase keys
    assert pending["GoodTillDaysDate"] == "0001-01-01"


async def test_part_traded_profile_sends_part_traded(live_sim: DhanSimulator) -> None:
    for profile, expected in (("live", "Pending"), ("part-traded", "Part_Traded")):
        live_sim.set_profile(profile)
        sock = await OrderSocket.connect(live_sim)
        try:
            live_sim.set_liquidity("NSE_EQ", "2885", 4)
            oid = live_sim.place_manual_order(
                LEADER, transaction_type="BUY", exchange_segment="NSE_EQ", security_id="2885",
                quantity=10, order_type="LIMIT", price=1550.0,
            )  # fmt: skip
            alerts = await sock.take(3)
            live_sim.cancel_manual_order(LEADER, oid)
            await sock.next()
        finally:
            live_sim.set_liquidity("NSE_EQ", "2885", None)
            await sock.close()
        assert alerts[2]["status"] == expected and alerts[2]["tradedQty"] == 4


async def test_modify_alert_switch(live_sim: DhanSimulator) -> None:
    sdk = make_sdk(live_sim)
    for profile, alerts_expected in (("live", 1), ("no-modify-alert", 0)):
        live_sim.set_profile(profile)
        sock = await OrderSocket.connect(live_sim)
        try:
            oid = ok(await call(sdk.place_order, **limit_buy()))["orderId"]
            await sock.take(2)
            ok(await call(sdk.modify_order, oid, "LIMIT", "", 10, 1490.0, 0, 0, "DAY"))
            assert len(await sock.drain()) == alerts_expected, profile
            assert live_sim.orders(LEADER)[-1]["price"] == 1490.0  # the book shows it either way
        finally:
            await sock.close()


# ---- cancel, SL-M, MPP ----------------------------------------------------------------------
async def test_cancel_answers_json_200_or_empty_202(live_sim: DhanSimulator) -> None:
    sdk = make_sdk(live_sim)
    oid = ok(await call(sdk.place_order, **limit_buy()))["orderId"]
    assert ok(await call(sdk.cancel_order, oid)) == {"orderId": oid, "orderStatus": "CANCELLED"}
    live_sim.set_profile("cancel-202")
    oid = ok(await call(sdk.place_order, **limit_buy()))["orderId"]
    status, text = await raw(live_sim, "DELETE", f"/orders/{oid}")
    assert (status, text) == (202, "")
    assert live_sim.orders(LEADER)[-1]["orderStatus"] == "CANCELLED"


async def test_api_slm_refused_or_accepted_and_filled(live_sim: DhanSimulator) -> None:
    sdk = make_sdk(live_sim)
    slm = limit_buy(order_type="STOP_LOSS_MARKET", price=0, trigger_price=1560.0)
    res = await call(sdk.place_order, **slm)
    assert res["status"] == "failure" and res["remarks"]["error_code"] == "DH-906"
    live_sim.set_profile("slm-accept-fill")
    oid = ok(await call(sdk.place_order, **slm))["orderId"]
    row = ok(await call(sdk.get_order_by_id, oid))[0]
    assert row["orderType"] == "LIMIT" and row["triggerPrice"] == 0.0  # trigger dropped (L5)
    assert row["orderStatus"] == "TRADED" and row["averageTradedPrice"] == 1545.6
    assert row["price"] == 1561.05  # LTP 1545.60 x 1.01 on the 0.05 tick


async def test_mpp_band_from_a_profile_file(live_sim: DhanSimulator, tmp_path: Path) -> None:
    path = tmp_path / "probe.json"
    path.write_text(json.dumps({"mpp_band_pct": 2.0, "socket_keys": "pascal"}))
    live_sim.set_profile(str(path))
    assert (
        live_sim.profile.socket_keys == "pascal" and live_sim.profile.socket_status_case == "title"
    )
    oid = ok(await call(make_sdk(live_sim).place_order, **limit_buy(order_type="MARKET", price=0)))[
        "orderId"
    ]
    row = live_sim.orders(LEADER)[-1]
    assert row["orderId"] == oid and row["orderType"] == "LIMIT"
    assert row["price"] == pytest.approx(1576.5)  # 1545.60 x 1.02 = 1576.51 -> tick 0.05


# ---- profiles as files and names ----------------------------------------------------------
def test_profile_files_refuse_unknown_keys_and_bad_values(tmp_path: Path) -> None:
    bad_key = tmp_path / "a.json"
    bad_key.write_text(json.dumps({"socket_keys": "camel", "sokcet_case": "upper"}))
    with pytest.raises(ProfileError, match="unknown key 'sokcet_case'") as err:
        load_profile(str(bad_key))
    assert "\n" not in str(err.value)
    bad_value = tmp_path / "b.json"
    bad_value.write_text(json.dumps({"invalid_ip_code": "DH-999"}))
    with pytest.raises(ProfileError, match="invalid_ip_code"):
        load_profile(str(bad_value))
    with pytest.raises(ProfileError, match="unknown profile 'nope'"):
        load_profile("nope")
    assert set(BUILTIN_PROFILES) >= {
        "live", "classic", "lookup-dh907", "lookup-empty200", "lookup-emptylist",
        "pascal-upper", "part-traded", "no-modify-alert", "cancel-202", "slm-accept-fill",
    }  # fmt: skip
    assert load_profile(None) == BUILTIN_PROFILES["live"]


def test_cli_refuses_a_bad_profile_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "p.json"
    bad.write_text(json.dumps({"extra": 1}))
    with pytest.raises(SystemExit) as exc:
        sim_main(["--account", f"{LEADER}:{LEADER_TOKEN}", "--profile", str(bad)])
    assert exc.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert "unknown key 'extra'" in last and LEADER_TOKEN not in last


async def test_control_api_reads_and_switches_the_profile(live_sim: DhanSimulator) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(live_sim.control_url + "/profile") as resp:
            assert (await resp.json())["unknown_order_id"] == "dh905_400"
        body = {"name": "pascal-upper", "cancel_response": "empty_202"}
        async with session.post(live_sim.control_url + "/profile", json=body) as resp:
            assert resp.status == 200
        async with session.post(live_sim.control_url + "/profile", json={"bogus": 1}) as resp:
            refused = await resp.json()
    assert resp.status == 400 and "unknown key 'bogus'" in refused["errorMessage"]
    assert live_sim.profile.socket_keys == "pascal" and live_sim.profile.cancel_response == (
        "empty_202"
    )
    assert live_sim.state()["profile"]["socket_status_case"] == "upper"
