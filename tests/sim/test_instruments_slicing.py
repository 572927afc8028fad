"""Dhan's scrip master served from the simulator's instrument master, and freeze-quantity
slicing through POST /orders/slicing as Dhan documents it."""

from __future__ import annotations

import csv
import io
from typing import Any

import aiohttp
import pytest

from engine.simulator import DhanSimulator
from engine.simulator.scrip_master import COMPACT_COLUMNS, DETAILED_COLUMNS

from .conftest import LEADER, call, make_sdk

pytestmark = pytest.mark.e2e


async def fetch(url: str) -> tuple[int, str, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        return resp.status, resp.content_type, await resp.text()


def rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


async def test_compact_scrip_master_parses(live_sim: DhanSimulator) -> None:
    status, content_type, text = await fetch(live_sim.scrip_master_url)
    assert status == 200 and content_type == "text/csv"
    table = rows(text)
    assert tuple(table[0]) == COMPACT_COLUMNS
    by_id = {r["SEM_SMST_SECURITY_ID"]: r for r in table}
    crude = by_id["458305"]
    assert (crude["SEM_EXM_EXCH_ID"], crude["SEM_SEGMENT"]) == ("MCX", "M")
    assert float(crude["SEM_TICK_SIZE"]) / 100 == 1.0  # paise, as Dhan's file
    call_row = by_id["48211"]
    assert call_row["SEM_OPTION_TYPE"] == "CE" and float(call_row["SEM_LOT_UNITS"]) == 65
    assert call_row["SEM_EXPIRY_DATE"] == "2026-12-01 14:30:00"
    assert float(call_row["SEM_STRIKE_PRICE"]) == 26000 and call_row["SEM_EXPIRY_FLAG"] == "W"
    assert by_id["2885"]["SEM_OPTION_TYPE"] == "XX" and by_id["2885"]["SEM_SERIES"] == "EQ"


async def test_detailed_scrip_master_parses_with_freeze_quantity(live_sim: DhanSimulator) -> None:
    base = live_sim.scrip_master_url.removesuffix("api-scrip-master.csv")
    status, _, text = await fetch(base + "api-scrip-master-detailed.csv")
    assert status == 200
    header = text.splitlines()[0]
    assert header.endswith("SM_FREEZE_QTY,")  # Dhan's file ends every line with a comma
    table = rows(text)
    assert tuple(table[0])[: len(DETAILED_COLUMNS)] == DETAILED_COLUMNS
    by_id = {r["SECURITY_ID"]: r for r in table}
    nifty = by_id["48211"]
    assert nifty["OPTION_TYPE"] == "CE" and float(nifty["LOT_SIZE"]) == 65
    assert float(nifty["TICK_SIZE"]) / 100 == 0.05 and nifty["SM_FREEZE_QTY"] == "1756"
    assert nifty["UNDERLYING_SECURITY_ID"] == "26000" and nifty["SM_EXPIRY_DATE"] == "2026-12-01"
    banknifty_put = by_id["52875"]
    assert (
        banknifty_put["OPTION_TYPE"] == "PE" and banknifty_put["UNDERLYING_SYMBOL"] == "BANKNIFTY"
    )
    crude = by_id["458305"]
    assert float(crude["TICK_SIZE"]) / 100 == 1.0 and crude["INSTRUMENT"] == "FUTCOM"
    assert by_id["2885"]["SM_FREEZE_QTY"] == "0" and by_id["2885"]["ISIN"] == "INE002A01018"
    # The segment-wise list is the detailed form of one segment.
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            live_sim.rest_url + "/instrument/MCX_COMM",
            headers={"access-token": "tokL-9f8e7d6c5b4a-secret", "client-id": LEADER},
        ) as resp,
    ):
        only_mcx = rows(await resp.text())
    assert [r["SECURITY_ID"] for r in only_mcx] == ["458305"]


def nifty(quantity: int, **extra: Any) -> dict[str, Any]:
    return {
        "security_id": "48211",
        "exchange_segment": "NSE_FNO",
        "transaction_type": "BUY",
        "quantity": quantity,
        "order_type": "LIMIT",
        "product_type": "MARGIN",
        "price": 200.0,
        **extra,
    }


async def test_twice_the_largest_order_is_sliced_and_cancelled(live_sim: DhanSimulator) -> None:
    sdk = make_sdk(live_sim)
    largest = 1755  # 27 lots of 65: the most below NIFTY's freeze quantity 1756
    single = await call(sdk.place_order, **nifty(largest))
    assert single["status"] == "success"
    refused = await call(sdk.place_order, **nifty(largest + 65))
    assert refused["remarks"]["error_code"] == "DH-905"
    assert "freeze" in refused["remarks"]["error_message"]
    sliced = await call(sdk.place_order, **nifty(2 * largest, tag="slice-x2", should_slice=True))
    assert sliced["status"] == "success"
    answer = sliced["data"]
    assert isinstance(answer, list) and len(answer) == 2
    assert all(set(a) == {"orderId", "orderStatus"} for a in answer)
    request = live_sim.requests[-1]
    assert (request["method"], request["path"]) == ("POST", "/v2/orders/slicing")
    book = [o for o in live_sim.orders(LEADER) if o["correlationId"] == "slice-x2"]
    assert [o["quantity"] for o in book] == [largest, largest]
    for part in answer:
        assert (await call(sdk.cancel_order, part["orderId"]))["status"] == "success"
    assert {
        o["orderStatus"] for o in live_sim.orders(LEADER) if o["correlationId"] == "slice-x2"
    } == {"CANCELLED"}
    # The correlation lookup answers the latest slice.
    latest = (await call(sdk.get_order_by_correlationID, "slice-x2"))["data"][0]
    assert latest["orderId"] == answer[-1]["orderId"]
