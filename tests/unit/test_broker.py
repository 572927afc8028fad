"""DhanBroker against a tiny loopback server that answers like Dhan, through the real SDK."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pytest
from aiohttp import web

from engine.clock import to_ist
from engine.dhan.broker import DhanBroker, Existence, Funds, OrderBook, Position, Profile
from engine.dhan.errors import (
    AnswerShape,
    BrokerError,
    BrokerResult,
    ResultKind,
    classify,
    sanitize,
)
from engine.domain import OrderParams, OrderStatus, OrderType, Product, Segment, Side, Validity

TOKEN = "tok-SECRET-5f3a9c1e77"  # not JWT-shaped on purpose: our own masking must catch it
CLIENT = "1100001111"

PARAMS = OrderParams(
    side=Side.BUY,
    order_type=OrderType.LIMIT,
    product=Product.INTRADAY,
    validity=Validity.DAY,
    segment=Segment.NSE_EQ,
    security_id="1333",
    quantity=10,
    price=1500.5,
    correlation_id="CPY-ABCDEFGHIJKLMNOP-0",
)


def _order(order_id: str = "5001", status: str = "PENDING", **extra: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "dhanClientId": CLIENT,
        "orderId": order_id,
        "correlationId": "CPY-ABCDEFGHIJKLMNOP-0",
        "orderStatus": status,
        "transactionType": "BUY",
        "exchangeSegment": "NSE_EQ",
        "productType": "INTRADAY",
        "orderType": "LIMIT",
        "validity": "DAY",
        "tradingSymbol": "HDFCBANK",
        "securityId": "1333",
        "quantity": 10,
        "disclosedQuantity": 0,
        "price": 1500.5,
        "triggerPrice": 0,
        "afterMarketOrder": False,
        "legName": "NA",
        "createTime": "2026-11-23 10:00:00",
        "updateTime": "2026-11-23 10:00:01",
        "remainingQuantity": 10,
        "averageTradedPrice": 0,
        "filledQty": 0,
    }
    row.update(extra)
    return row


def _dh_error(http: int, code: str, message: str) -> web.Response:
    body = {"errorType": "Error", "errorCode": code, "errorMessage": message}
    return web.json_response(body, status=http)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class FakeDhan:
    """Routes ``(METHOD, path)`` to handlers a test sets; records every request."""

    routes: dict[tuple[str, str], Handler] = field(default_factory=dict)
    requests: list[tuple[str, str, dict[str, str], str]] = field(default_factory=list)
    url: str = ""

    def on(self, method: str, path: str, handler: Handler) -> None:
        self.routes[(method, path)] = handler

    def answer(self, method: str, path: str, response: Callable[[], web.StreamResponse]) -> None:
        async def handler(_: web.Request) -> web.StreamResponse:
            return response()

        self.on(method, path, handler)

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        body = await request.text()
        self.requests.append((request.method, request.path_qs, dict(request.headers), body))
        path = request.path.removeprefix("/v2")
        handler = self.routes.get((request.method, path))
        if handler is None:
            return _dh_error(404, "DH-910", f"no route for {request.method} {path}")
        return await handler(request)


@pytest.fixture
async def dhan() -> AsyncIterator[FakeDhan]:
    fake = FakeDhan()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", fake.dispatch)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    fake.url = f"http://{host}:{port}/v2"
    yield fake
    await runner.cleanup()


@pytest.fixture
async def broker(dhan: FakeDhan) -> AsyncIterator[DhanBroker]:
    b = DhanBroker(CLIENT, TOKEN, dhan.url, timeout_s=0.5)
    yield b
    await b.close()


def _no_token(*items: object) -> None:
    for item in items:
        assert TOKEN not in repr(item)
        assert TOKEN not in str(item)


# --- mutations ----------------------------------------------------------------------------


async def test_place_ok_sends_correlation_id_as_tag(dhan: FakeDhan, broker: DhanBroker) -> None:
    dhan.answer(
        "POST", "/orders", lambda: web.json_response({"orderId": "5001", "orderStatus": "TRANSIT"})
    )
    result = await broker.place(PARAMS)
    assert result == BrokerResult(ResultKind.OK, order_id="5001", status=OrderStatus.TRANSIT)
    assert not result.retryable
    method, path, headers, body = dhan.requests[0]
    assert (method, path) == ("POST", "/v2/orders")
    assert headers["client-id"] == CLIENT
    assert headers["access-token"] == TOKEN  # the SDK sends it; only in the header
    sent = json.loads(body)
    assert sent["correlationId"] == "CPY-ABCDEFGHIJKLMNOP-0"
    assert sent["dhanClientId"] == CLIENT
    assert sent["quantity"] == 10 and sent["price"] == 1500.5
    assert sent["transactionType"] == "BUY" and sent["exchangeSegment"] == "NSE_EQ"


@pytest.mark.parametrize(
    ("http", "code", "kind", "retryable"),
    [
        (400, "DH-905", ResultKind.REFUSED, False),
        (400, "DH-906", ResultKind.REFUSED, False),
        (403, "DH-911", ResultKind.REFUSED, False),
        (400, "DH-903", ResultKind.REFUSED, False),
        (400, "DH-907", ResultKind.REFUSED, False),
        (429, "DH-904", ResultKind.RATE_LIMITED, True),
        (401, "DH-901", ResultKind.AUTH_FAILED, False),
        (403, "DH-902", ResultKind.AUTH_FAILED, False),
        (500, "DH-908", ResultKind.AMBIGUOUS, False),
        (502, "DH-909", ResultKind.AMBIGUOUS, False),
        (500, "DH-910", ResultKind.AMBIGUOUS, False),
        (400, "RS-9005", ResultKind.AMBIGUOUS, False),
    ],
)
async def test_place_error_codes(
    dhan: FakeDhan, broker: DhanBroker, http: int, code: str, kind: ResultKind, retryable: bool
) -> None:
    dhan.answer("POST", "/orders", lambda: _dh_error(http, code, f"message for {code}"))
    result = await broker.place(PARAMS)
    assert result.kind is kind
    assert result.error_code == code
    assert result.message == f"message for {code}"
    assert result.retryable is retryable


async def test_place_html_502_is_ambiguous(dhan: FakeDhan, broker: DhanBroker) -> None:
    html = "<html><body><h1>502 Bad Gateway</h1></body></html>"
    dhan.answer(
        "POST", "/orders", lambda: web.Response(text=html, status=502, content_type="text/html")
    )
    result = await broker.place(PARAMS)
    assert result.kind is ResultKind.AMBIGUOUS
    assert "not a JSON answer" in result.message


async def test_place_timeout_is_ambiguous(dhan: FakeDhan, broker: DhanBroker) -> None:
    async def slow(_: web.Request) -> web.Response:
        await asyncio.sleep(1)
        return web.json_response({"orderId": "5001", "orderStatus": "TRANSIT"})

    dhan.on("POST", "/orders", slow)
    started = time.monotonic()
    result = await broker.place(PARAMS)
    assert time.monotonic() - started < 0.95
    assert result.kind is ResultKind.AMBIGUOUS
    assert "timed out" in result.message.lower()


async def test_connection_refused_is_ambiguous_for_place_and_transient_for_reads() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    b = DhanBroker(CLIENT, TOKEN, f"http://127.0.0.1:{port}/v2", timeout_s=0.5)
    try:
        result = await b.place(PARAMS)
        assert result.kind is ResultKind.AMBIGUOUS
        with pytest.raises(BrokerError) as info:
            await b.order_book()
        assert info.value.result.kind is ResultKind.TRANSIENT
        assert info.value.result.retryable
        _no_token(result, info.value, info.value.result)
    finally:
        await b.close()


async def test_place_not_sent_when_params_cannot_be_encoded(
    dhan: FakeDhan, broker: DhanBroker
) -> None:
    result = await broker.place(
        OrderParams(Side.BUY, OrderType.LIMIT, Product.CNC, Validity.DAY, Segment.NSE_EQ, "1", 0)
    )
    assert result.kind is ResultKind.REFUSED
    assert result.error_code == "LOCAL"
    assert dhan.requests == []


async def test_modify_sends_total_quantity(dhan: FakeDhan, broker: DhanBroker) -> None:
    dhan.answer(
        "PUT",
        "/orders/5001",
        lambda: web.json_response({"orderId": "5001", "orderStatus": "PENDING"}),
    )
    params = OrderParams(
        Side.BUY,
        OrderType.STOP_LOSS,
        Product.INTRADAY,
        Validity.DAY,
        Segment.NSE_EQ,
        "1333",
        25,
        price=101.0,
        trigger_price=100.5,
    )
    result = await broker.modify("5001", params)
    assert result == BrokerResult(ResultKind.OK, order_id="5001", status=OrderStatus.PENDING)
    method, path, _, body = dhan.requests[0]
    assert (method, path) == ("PUT", "/v2/orders/5001")
    sent = json.loads(body)
    assert sent["quantity"] == 25
    assert sent["orderType"] == "STOP_LOSS"
    assert sent["triggerPrice"] == 100.5
    assert sent["legName"] is None


async def test_cancel_json_answer(dhan: FakeDhan, broker: DhanBroker) -> None:
    dhan.answer(
        "DELETE",
        "/orders/5001",
        lambda: web.json_response({"orderId": "5001", "orderStatus": "CANCELLED"}, status=202),
    )
    result = await broker.cancel("5001")
    assert result == BrokerResult(ResultKind.OK, order_id="5001", status=OrderStatus.CANCELLED)
    assert len(dhan.requests) == 1


async def test_cancel_empty_202_confirmed_by_get(dhan: FakeDhan, broker: DhanBroker) -> None:
    dhan.answer("DELETE", "/orders/5001", lambda: web.Response(status=202))
    dhan.answer("GET", "/orders/5001", lambda: web.json_response(_order("5001", "CANCELLED")))
    result = await broker.cancel("5001")
    assert result == BrokerResult(ResultKind.OK, order_id="5001", status=OrderStatus.CANCELLED)
    assert [r[:2] for r in dhan.requests] == [
        ("DELETE", "/v2/orders/5001"),
        ("GET", "/v2/orders/5001"),
    ]


async def test_cancel_empty_202_but_already_traded(dhan: FakeDhan, broker: DhanBroker) -> None:
    dhan.answer("DELETE", "/orders/5001", lambda: web.Response(status=202))
    dhan.answer("GET", "/orders/5001", lambda: web.json_response([_order("5001", "TRADED")]))
    result = await broker.cancel("5001")
    assert result.kind is ResultKind.REFUSED
    assert result.status is OrderStatus.TRADED


async def test_cancel_empty_202_still_open_stays_ambiguous(
    dhan: FakeDhan, broker: DhanBroker
) -> None:
    dhan.answer("DELETE", "/orders/5001", lambda: web.Response(status=202))
    dhan.answer("GET", "/orders/5001", lambda: web.json_response(_order("5001", "PENDING")))
    result = await broker.cancel("5001")
    assert result.kind is ResultKind.AMBIGUOUS
    assert result.status is OrderStatus.PENDING


async def test_cancel_refused(dhan: FakeDhan, broker: DhanBroker) -> None:
    dhan.answer("DELETE", "/orders/5001", lambda: _dh_error(400, "DH-906", "Order already traded"))
    result = await broker.cancel("5001")
    assert result.kind is ResultKind.REFUSED
    assert result.message == "Order already traded"
    assert len(dhan.requests) == 1  # a clear refusal needs no confirmation


async def test_kill_switch(dhan: FakeDhan, broker: DhanBroker) -> None:
    dhan.answer(
        "POST",
        "/killswitch",
        lambda: web.json_response(
            {
                "dhanClientId": CLIENT,
                "killSwitchStatus": "Kill Switch has been successfully activated",
            }
        ),
    )
    dhan.answer(
        "GET",
        "/killswitch",
        lambda: web.json_response({"dhanClientId": CLIENT, "killSwitchStatus": "ACTIVATE"}),
    )
    result = await broker.kill_switch(True)
    assert result.kind is ResultKind.OK
    assert dhan.requests[0][1] == "/v2/killswitch?killSwitchStatus=ACTIVATE"
    assert await broker.kill_switch_status() is True
    dhan.answer(
        "GET",
        "/killswitch",
        lambda: web.json_response({"dhanClientId": CLIENT, "killSwitchStatus": "DEACTIVATE"}),
    )
    assert await broker.kill_switch_status() is False
    dhan.answer("GET", "/killswitch", lambda: web.Response(status=502, text="bad gateway"))
    assert await broker.kill_switch_status() is None


# --- reads --------------------------------------------------------------------------------


async def test_order_book_keeps_good_rows_and_reports_bad_ones(
    dhan: FakeDhan, broker: DhanBroker
) -> None:
    rows = [_order("1"), _order("2", "WEIRD"), _order("3", "Traded", filledQty=10)]
    dhan.answer("GET", "/orders", lambda: web.json_response(rows))
    book = await broker.order_book()
    assert isinstance(book, OrderBook)
    assert [s.order_id for s in book] == ["1", "3"]
    assert book[1].status is OrderStatus.TRADED
    assert len(book.errors) == 1 and "WEIRD" in str(book.errors[0])
    assert broker.last_codec_errors == book.errors


async def test_order_book_failures_raise(dhan: FakeDhan, broker: DhanBroker) -> None:
    dhan.answer("GET", "/orders", lambda: _dh_error(401, "DH-901", "Invalid token"))
    with pytest.raises(BrokerError) as info:
        await broker.order_book()
    assert info.value.result.kind is ResultKind.AUTH_FAILED
    dhan.answer("GET", "/orders", lambda: web.Response(status=502, text="<html>502</html>"))
    with pytest.raises(BrokerError) as info:
        await broker.order_book()
    assert info.value.result.kind is ResultKind.TRANSIENT


async def test_order_by_id(dhan: FakeDhan, broker: DhanBroker) -> None:
    dhan.answer(
        "GET", "/orders/1", lambda: web.json_response(_order("1", "PART_TRADED", filledQty=4))
    )
    snap = await broker.order_by_id("1")
    assert snap is not None and snap.status is OrderStatus.PART_TRADED and snap.filled_qty == 4
    dhan.answer("GET", "/orders/2", lambda: _dh_error(400, "DH-907", "No data present"))
    assert await broker.order_by_id("2") is None


async def test_order_by_correlation(dhan: FakeDhan, broker: DhanBroker) -> None:
    cid = "CPY-ABCDEFGHIJKLMNOP-0"
    path = f"/orders/external/{cid}"
    dhan.answer("GET", path, lambda: web.json_response(_order("7")))
    found = await broker.order_by_correlation(cid)
    assert found is not None and found.order_id == "7" and found.correlation_id == cid
    # sliced: several orders share the id; the one furthest along wins
    dhan.answer(
        "GET", path, lambda: web.json_response([_order("7"), _order("8", "TRADED", filledQty=10)])
    )
    found = await broker.order_by_correlation(cid)
    assert found is not None and found.order_id == "8"
    empty_answers: list[list[Any] | dict[str, Any]] = [[], {}]
    for empty in empty_answers:
        dhan.answer("GET", path, functools.partial(web.json_response, empty))
        assert await broker.order_by_correlation(cid) is None
    dhan.answer("GET", path, lambda: _dh_error(400, "DH-907", "No data present"))
    assert await broker.order_by_correlation(cid) is None
    dhan.answer("GET", path, lambda: _dh_error(404, "DH-905", "Order not found"))
    assert await broker.order_by_correlation(cid) is None


@pytest.mark.parametrize(
    "response",
    [
        lambda: web.Response(
            status=502, text="<html>502 Bad Gateway</html>", content_type="text/html"
        ),
        lambda: web.Response(status=200),
        lambda: _dh_error(500, "DH-908", "Internal Server Error"),
        lambda: _dh_error(429, "DH-904", "Too many requests"),
        lambda: _dh_error(401, "DH-901", "Invalid token"),
        lambda: web.json_response({"orderId": 5}),  # an order we cannot read
    ],
)
async def test_order_by_correlation_unclear_answers_raise(
    dhan: FakeDhan, broker: DhanBroker, response: Callable[[], web.StreamResponse]
) -> None:
    dhan.answer("GET", "/orders/external/CPY-X", response)
    with pytest.raises(BrokerError):
        await broker.order_by_correlation("CPY-X")


async def test_order_by_correlation_timeout_raises(dhan: FakeDhan, broker: DhanBroker) -> None:
    async def slow(_: web.Request) -> web.Response:
        await asyncio.sleep(1)
        return web.json_response([])

    dhan.on("GET", "/orders/external/CPY-X", slow)
    with pytest.raises(BrokerError) as info:
        await broker.order_by_correlation("CPY-X")
    assert info.value.result.kind is ResultKind.TRANSIENT


async def test_positions_funds_profile(dhan: FakeDhan, broker: DhanBroker) -> None:
    dhan.answer(
        "GET",
        "/positions",
        lambda: web.json_response(
            [
                {
                    "dhanClientId": CLIENT,
                    "tradingSymbol": "TCS",
                    "securityId": "11536",
                    "positionType": "LONG",
                    "exchangeSegment": "NSE_EQ",
                    "productType": "CNC",
                    "buyAvg": 3345.8,
                    "buyQty": 40,
                    "sellAvg": 0.0,
                    "sellQty": 0,
                    "netQty": 40,
                    "realizedProfit": 0.0,
                    "unrealizedProfit": 6122.0,
                },
                {
                    "tradingSymbol": "NIFTY-Dec2026-FUT",
                    "securityId": "35001",
                    "exchangeSegment": "NSE_FNO",
                    "productType": "MARGIN",
                    "netQty": -75,
                    "carryForwardBuyQty": "75",  # numbers may come as text (facts §8.10)
                    "carryForwardSellQty": 0,
                    "dayBuyQty": 0,
                    "daySellQty": 150,
                },
                {"exchangeSegment": "INX_EQ", "productType": "CNC"},
            ]
        ),
    )
    positions = await broker.positions()
    assert positions == [
        # Without day and carried quantities: None, not 0 (what it counts is not said).
        Position(Segment.NSE_EQ, "11536", "TCS", Product.CNC, 40, 3345.8, 0.0, 0.0, 6122.0),
        Position(
            Segment.NSE_FNO,
            "35001",
            "NIFTY-Dec2026-FUT",
            Product.MARGIN,
            -75,
            0.0,
            0.0,
            0.0,
            0.0,
            day_buy_qty=0,
            day_sell_qty=150,
            carried_buy_qty=75,
            carried_sell_qty=0,
        ),
    ]
    assert len(broker.last_codec_errors) == 1
    dhan.answer(
        "GET",
        "/fundlimit",
        lambda: web.json_response(
            {
                "dhanClientId": CLIENT,
                "availabelBalance": 98440.0,
                "sodLimit": 113642,
                "collateralAmount": 0.0,
                "utilizedAmount": 15202.0,
                "withdrawableBalance": 98310.0,
            }
        ),
    )
    assert await broker.fund_limits() == Funds(
        available=98440.0, sod_limit=113642.0, utilized=15202.0
    )
    dhan.answer(
        "GET",
        "/profile",
        lambda: web.json_response(
            {"dhanClientId": CLIENT, "tokenValidity": "30/03/2025 15:37", "activeSegment": "Equity"}
        ),
    )
    profile = await broker.profile()
    assert profile == Profile(CLIENT, to_ist(datetime(2025, 3, 30, 15, 37)))
    assert dhan.requests[-1][2]["access-token"] == TOKEN
    dhan.answer("GET", "/fundlimit", lambda: _dh_error(400, "DH-906", "Market is closed"))
    with pytest.raises(BrokerError) as info:
        await broker.fund_limits()
    assert info.value.result.kind is ResultKind.REFUSED


async def test_a_slow_account_does_not_block_another(dhan: FakeDhan) -> None:
    async def by_client(request: web.Request) -> web.Response:
        if request.headers["client-id"] == "slow":
            await asyncio.sleep(0.4)
        return web.json_response(
            {"orderId": request.headers["client-id"], "orderStatus": "TRANSIT"}
        )

    dhan.on("POST", "/orders", by_client)
    slow = DhanBroker("slow", TOKEN, dhan.url, timeout_s=5, max_workers=1)
    fast = DhanBroker("fast", TOKEN, dhan.url, timeout_s=5, max_workers=1)
    try:
        slow_tasks = [asyncio.create_task(slow.place(PARAMS)) for _ in range(3)]
        await asyncio.sleep(0.05)
        started = time.monotonic()
        result = await fast.place(PARAMS)
        assert result.order_id == "fast"
        assert time.monotonic() - started < 0.3
        assert all(r.kind is ResultKind.OK for r in await asyncio.gather(*slow_tasks))
    finally:
        await slow.close()
        await fast.close()


# --- secrets ------------------------------------------------------------------------------


async def test_token_never_in_results_repr_or_logs(
    dhan: FakeDhan, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    b = DhanBroker(CLIENT, TOKEN, dhan.url, timeout_s=0.3)
    try:
        assert TOKEN not in repr(b) and TOKEN not in str(b) and CLIENT in repr(b)
        # A server that echoes the token back in its error text.
        dhan.answer(
            "POST",
            "/orders",
            lambda: _dh_error(401, "DH-901", f"bad access-token {TOKEN} for {CLIENT}"),
        )
        r1 = await b.place(PARAMS)
        dhan.answer("POST", "/orders", lambda: _dh_error(400, "DH-905", f"token {TOKEN} rejected"))
        r2 = await b.place(PARAMS)
        dhan.answer("GET", "/orders", lambda: web.Response(status=502, text=f"<p>{TOKEN}</p>"))
        with pytest.raises(BrokerError) as info:
            await b.order_book()

        async def slow(_: web.Request) -> web.Response:
            await asyncio.sleep(1)
            return web.json_response({})

        dhan.on("DELETE", "/orders/1", slow)
        dhan.on("GET", "/orders/1", slow)
        r3 = await b.cancel("1")
        assert r1.kind is ResultKind.AUTH_FAILED and "access-token" in r1.message
        assert r2.kind is ResultKind.REFUSED and r2.message == "token *** rejected"
        assert r3.kind is ResultKind.AMBIGUOUS
        _no_token(r1, r2, r3, info.value, info.value.result)
        assert caplog.records  # failures were logged ...
        assert TOKEN not in caplog.text  # ... without the token
    finally:
        await b.close()
    with pytest.raises(TypeError):
        import pickle

        pickle.dumps(b)


# --- classification table (pure) ----------------------------------------------------------


def _failure(code: str | None, message: str = "m") -> dict[str, Any]:
    return {
        "status": "failure",
        "remarks": {"error_code": code, "error_type": "t", "error_message": message},
        "data": "",
    }


@pytest.mark.parametrize(
    ("response", "mutating", "kind"),
    [
        ({"status": "success", "remarks": "", "data": {"orderId": "1"}}, True, ResultKind.OK),
        (_failure("DH-904"), True, ResultKind.RATE_LIMITED),
        (_failure("DH-904"), False, ResultKind.RATE_LIMITED),
        (_failure("805"), False, ResultKind.RATE_LIMITED),
        (_failure("DH-901"), True, ResultKind.AUTH_FAILED),
        (_failure("DH-902"), False, ResultKind.AUTH_FAILED),
        (_failure("807"), False, ResultKind.AUTH_FAILED),
        (_failure("808"), True, ResultKind.AUTH_FAILED),
        (_failure("809"), True, ResultKind.AUTH_FAILED),
        (_failure("DH-809"), True, ResultKind.AUTH_FAILED),
        (_failure("DH-903"), True, ResultKind.REFUSED),
        (_failure("DH-905"), True, ResultKind.REFUSED),
        (_failure("DH-905"), False, ResultKind.REFUSED),
        (_failure("DH-905", "Order not found"), False, ResultKind.NOT_FOUND),
        (_failure("DH-906"), True, ResultKind.REFUSED),
        (_failure("DH-911"), True, ResultKind.REFUSED),
        (_failure("DH-907"), True, ResultKind.REFUSED),
        (_failure("DH-907"), False, ResultKind.NOT_FOUND),
        (_failure("DH-908"), True, ResultKind.AMBIGUOUS),
        (_failure("DH-909"), True, ResultKind.AMBIGUOUS),
        (_failure("DH-910"), True, ResultKind.AMBIGUOUS),
        (_failure("DH-908"), False, ResultKind.TRANSIENT),
        (_failure(None), True, ResultKind.AMBIGUOUS),
        (_failure(None), False, ResultKind.TRANSIENT),
        (
            {
                "status": "failure",
                "remarks": "Expecting value: line 1 column 1 (char 0)",
                "data": "",
            },
            True,
            ResultKind.AMBIGUOUS,
        ),
        (
            {
                "status": "failure",
                "remarks": "Expecting value: line 1 column 1 (char 0)",
                "data": "",
            },
            False,
            ResultKind.TRANSIENT,
        ),
        (
            {
                "status": "failure",
                "remarks": "HTTPConnectionPool(...): Read timed out.",
                "data": "",
            },
            True,
            ResultKind.AMBIGUOUS,
        ),
        (
            {"status": "failure", "remarks": "Invalid action 'X'. Must be ...", "data": ""},
            True,
            ResultKind.REFUSED,
        ),
        (None, True, ResultKind.AMBIGUOUS),
        ("garbage", False, ResultKind.TRANSIENT),
    ],
)
def test_classification_table(response: Any, mutating: bool, kind: ResultKind) -> None:
    assert classify(response, mutating=mutating).kind is kind


def test_sanitize() -> None:
    assert (
        sanitize("headers: {'access-token': 'abc', 'client-id': '1'}")
        == "headers: {'access-token': '***', 'client-id': '1'}"
    )
    assert sanitize("access_token=abc&x=1") == "access_token=***&x=1"
    # Dhan's own words are kept: only a token's value is masked.
    words = "DH-901: Client ID or user generated access token is invalid or expired."
    assert sanitize(words) == words
    assert sanitize(f"x {TOKEN} y", TOKEN) == "x *** y"
    jwt = "eyJhbGciOiJIUzUxMiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlMTIz"
    assert jwt not in sanitize(f"token was {jwt}")
    assert len(sanitize("x" * 5000)) < 600


# --- live Dhan answers (facts §8b) --------------------------------------------------------


def _live_error(http: int, code: str, message: str, error_type: str) -> web.Response:
    body = {"errorType": error_type, "errorCode": code, "errorMessage": message}
    return web.json_response(body, status=http)


async def test_unknown_order_id_dh905_is_refused_never_absent(
    dhan: FakeDhan, broker: DhanBroker
) -> None:
    # L1: what live Dhan answers for GET /orders/{unknown id}.
    dhan.answer(
        "GET",
        "/orders/999",
        lambda: _live_error(
            400,
            "DH-905",
            "Missing required fields, bad values for parameters etc.",
            "Input_Exception",
        ),
    )
    with pytest.raises(BrokerError) as info:
        await broker.order_by_id("999")
    assert info.value.result.kind is ResultKind.REFUSED
    assert info.value.result.shape is AnswerShape.DHAN_ERROR


async def test_order_by_id_one_element_list_or_object(dhan: FakeDhan, broker: DhanBroker) -> None:
    # L4: live Dhan answers GET /orders/{id} with a one-element list.
    dhan.answer(
        "GET", "/orders/1", lambda: web.json_response([_order("1", "TRADED", filledQty=10)])
    )
    snap = await broker.order_by_id("1")
    assert snap is not None and snap.status is OrderStatus.TRADED and snap.filled_qty == 10
    dhan.answer("GET", "/orders/1", lambda: web.json_response(_order("1", "TRADED", filledQty=10)))
    assert await broker.order_by_id("1") == snap


async def test_cancelled_live_row_reads_fills_from_filled_qty(
    dhan: FakeDhan, broker: DhanBroker
) -> None:
    # L7: a cancelled, unfilled order shows remainingQuantity 0.
    row = _order("3", "CANCELLED", remainingQuantity=0, filledQty=0, correlationId="NA")
    dhan.answer("GET", "/orders/3", lambda: web.json_response([row]))
    snap = await broker.order_by_id("3")
    assert snap is not None and snap.filled_qty == 0 and snap.correlation_id == ""


async def test_rate_limit_is_keyed_on_the_code_not_the_type(
    dhan: FakeDhan, broker: DhanBroker
) -> None:
    # L11: 429 DH-904 with errorType Input_Exception.
    dhan.answer(
        "POST",
        "/orders",
        lambda: _live_error(429, "DH-904", "Too many requests", "Input_Exception"),
    )
    result = await broker.place(PARAMS)
    assert result.kind is ResultKind.RATE_LIMITED and result.retryable
    with pytest.raises(BrokerError) as info:
        dhan.answer(
            "GET", "/orders", lambda: _live_error(429, "DH-904", "Too many", "Input_Exception")
        )
        await broker.order_book()
    assert info.value.result.kind is ResultKind.RATE_LIMITED


UNRECOGNISED_BODIES: list[tuple[int, Any]] = [
    # L10: a framework 404 without any DH code.
    (404, {"timestamp": "2025-03-02T10:00:00.000+00:00", "status": 404, "error": "Not Found",
           "path": "/v2/orders/external/CPY-X"}),
    # L13: other error bodies.
    (500, {"errorCode": "INTERNAL", "httpStatus": "INTERNAL_SERVER_ERROR",
           "internalErrorCode": "OMS-101", "internalErrorMessage": "something broke"}),
    (400, {"status": "failed", "data": {"DH-9XX": "unexpected"}}),
    (200, {"status": "failed", "data": {"807": "Access token is expired"}}),
    (400, ["not", "an", "object"]),
]  # fmt: skip


@pytest.mark.parametrize(("http", "body"), UNRECOGNISED_BODIES)
async def test_unrecognised_error_shapes_are_unknown_never_not_found(
    dhan: FakeDhan, broker: DhanBroker, http: int, body: Any
) -> None:
    path = "/orders/external/CPY-X"
    dhan.answer("GET", path, lambda: web.json_response(body, status=http))
    with pytest.raises(BrokerError) as info:
        await broker.order_by_correlation("CPY-X")
    assert info.value.result.kind is ResultKind.TRANSIENT
    assert info.value.result.shape is AnswerShape.UNRECOGNISED
    dhan.answer("POST", "/orders", lambda: web.json_response(body, status=http))
    placed = await broker.place(PARAMS)
    assert placed.kind is ResultKind.AMBIGUOUS and placed.shape is AnswerShape.UNRECOGNISED


@pytest.mark.parametrize(
    ("response", "shape"),
    [
        (lambda: web.Response(status=200), AnswerShape.NOT_JSON),
        (lambda: web.Response(status=202), AnswerShape.NOT_JSON),
        (
            lambda: web.Response(status=502, text="<html>502</html>", content_type="text/html"),
            AnswerShape.NOT_JSON,
        ),
    ],
)
async def test_sdk_failure_texts_are_typed(
    dhan: FakeDhan,
    broker: DhanBroker,
    response: Callable[[], web.StreamResponse],
    shape: AnswerShape,
) -> None:
    dhan.answer("POST", "/orders", response)
    result = await broker.place(PARAMS)
    assert result.kind is ResultKind.AMBIGUOUS and result.shape is shape


async def test_transport_error_is_typed() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    b = DhanBroker(CLIENT, TOKEN, f"http://127.0.0.1:{port}/v2", timeout_s=0.5)
    try:
        result = await b.place(PARAMS)
        assert result.kind is ResultKind.AMBIGUOUS and result.shape is AnswerShape.TRANSPORT
        lookup = await b.find_by_correlation("CPY-X")
        assert lookup.existence is Existence.UNKNOWN
    finally:
        await b.close()


# --- find_by_correlation: existence settled positively ------------------------------------

CID = "CPY-ABCDEFGHIJKLMNOP-0"
LOOKUP = f"/orders/external/{CID}"


async def test_find_by_correlation_found_by_the_lookup(dhan: FakeDhan, broker: DhanBroker) -> None:
    dhan.answer("GET", LOOKUP, lambda: web.json_response(_order("7")))
    found = await broker.find_by_correlation(CID)
    assert found.existence is Existence.FOUND and not found.from_book
    assert [s.order_id for s in found.orders] == ["7"]
    assert found.snapshot is not None and found.snapshot.order_id == "7"
    assert [r[1] for r in dhan.requests] == [f"/v2{LOOKUP}"]  # no book read needed


LOOKUP_MISSES: list[Callable[[], web.StreamResponse]] = [
    lambda: _dh_error(404, "DH-907", "No data present"),
    lambda: _live_error(400, "DH-905", "Missing required fields, bad values", "Input_Exception"),
    lambda: web.json_response([]),
    lambda: web.json_response({}),
    lambda: web.Response(status=200),
    lambda: web.json_response({"timestamp": "x", "status": 404, "error": "Not Found"}, status=404),
    lambda: _dh_error(500, "DH-908", "Internal Server Error"),
    # an order, but not ours ("NA" is no correlationId)
    lambda: web.json_response([_order("9", correlationId="NA")]),
]


@pytest.mark.parametrize("lookup_answer", LOOKUP_MISSES)
async def test_find_by_correlation_settles_absence_only_from_the_book(
    dhan: FakeDhan, broker: DhanBroker, lookup_answer: Callable[[], web.StreamResponse]
) -> None:
    dhan.answer("GET", LOOKUP, lookup_answer)
    others = [_order("1", correlationId="NA"), _order("2", correlationId="CPY-OTHER-0")]
    dhan.answer("GET", "/orders", lambda: web.json_response(others))
    absent = await broker.find_by_correlation(CID)
    assert absent.existence is Existence.ABSENT_FROM_BOOK and absent.from_book
    assert absent.orders == () and absent.snapshot is None
    # The same lookup answer with our order in the book: FOUND from the book.
    mine = [*others, _order("3", "TRADED", filledQty=10)]
    dhan.answer("GET", "/orders", lambda: web.json_response(mine))
    found = await broker.find_by_correlation(CID)
    assert found.existence is Existence.FOUND and found.from_book
    assert [s.order_id for s in found.orders] == ["3"]


@pytest.mark.parametrize(
    "book_answer",
    [
        lambda: _dh_error(500, "DH-908", "Internal Server Error"),
        lambda: _dh_error(429, "DH-904", "Too many requests"),
        lambda: web.Response(status=200),  # an empty body is not an empty book
        lambda: web.json_response({"status": "failed", "data": {}}),
        lambda: web.json_response(""),
        lambda: web.json_response({"orders": []}),
    ],
)
async def test_find_by_correlation_unknown_when_the_book_is_unreadable(
    dhan: FakeDhan, broker: DhanBroker, book_answer: Callable[[], web.StreamResponse]
) -> None:
    dhan.answer("GET", LOOKUP, lambda: _dh_error(400, "DH-907", "No data present"))
    dhan.answer("GET", "/orders", book_answer)
    unknown = await broker.find_by_correlation(CID)
    assert unknown.existence is Existence.UNKNOWN and unknown.reason


async def test_find_by_correlation_unknown_when_a_row_of_ours_is_unreadable(
    dhan: FakeDhan, broker: DhanBroker
) -> None:
    dhan.answer("GET", LOOKUP, lambda: web.json_response([]))
    broken = _order("4", transactionType="SIDEWAYS")
    dhan.answer("GET", "/orders", lambda: web.json_response([broken]))
    assert (await broker.find_by_correlation(CID)).existence is Existence.UNKNOWN
    # A book with a row that is not even an object cannot prove absence either.
    dhan.answer("GET", "/orders", lambda: web.json_response(["?"]))
    assert (await broker.find_by_correlation(CID)).existence is Existence.UNKNOWN
    # An unreadable row of someone else's does not hide our absence.
    other_broken = _order("5", transactionType="SIDEWAYS", correlationId="CPY-OTHER-0")
    dhan.answer("GET", "/orders", lambda: web.json_response([other_broken]))
    assert (await broker.find_by_correlation(CID)).existence is Existence.ABSENT_FROM_BOOK


async def test_find_by_correlation_returns_every_slice(dhan: FakeDhan, broker: DhanBroker) -> None:
    # The lookup shows one slice only; complete=True also reads the book for the others.
    dhan.answer("GET", LOOKUP, lambda: web.json_response([_order("11")]))
    slices = [_order("11"), _order("12", "TRADED", filledQty=10), _order("13")]
    dhan.answer(
        "GET", "/orders", lambda: web.json_response([*slices, _order("14", correlationId="NA")])
    )
    quick = await broker.find_by_correlation(CID)
    assert [s.order_id for s in quick.orders] == ["11"]
    full = await broker.find_by_correlation(CID, complete=True)
    assert full.existence is Existence.FOUND
    assert sorted(s.order_id for s in full.orders) == ["11", "12", "13"]
    assert full.snapshot is not None and full.snapshot.order_id == "12"
    # The book failing after the lookup found some: what the lookup showed stands.
    dhan.answer("GET", "/orders", lambda: _dh_error(500, "DH-908", "down"))
    partial = await broker.find_by_correlation(CID, complete=True)
    assert partial.existence is Existence.FOUND and [s.order_id for s in partial.orders] == ["11"]


# --- slicing ------------------------------------------------------------------------------


async def test_place_sliced_posts_to_slicing_and_returns_every_order_id(
    dhan: FakeDhan, broker: DhanBroker
) -> None:
    answer = [
        {"orderId": "21", "orderStatus": "CONFIRM"},
        {"orderId": "22", "orderStatus": "CONFIRM"},
        {"orderId": "23", "orderStatus": "TRANSIT"},
    ]
    dhan.answer("POST", "/orders/slicing", lambda: web.json_response(answer))
    result = await broker.place_sliced(PARAMS)
    assert result.kind is ResultKind.OK
    assert result.order_ids == ("21", "22", "23") and result.order_id == "21"
    method, path, _, body = dhan.requests[-1]
    assert (method, path) == ("POST", "/v2/orders/slicing")
    sent = json.loads(body)
    assert sent["correlationId"] == PARAMS.correlation_id and sent["quantity"] == 10


async def test_place_sliced_unclear_answers(dhan: FakeDhan, broker: DhanBroker) -> None:
    dhan.answer("POST", "/orders/slicing", lambda: web.json_response([]))
    assert (await broker.place_sliced(PARAMS)).kind is ResultKind.AMBIGUOUS
    dhan.answer("POST", "/orders/slicing", lambda: web.Response(status=504))
    assert (await broker.place_sliced(PARAMS)).kind is ResultKind.AMBIGUOUS
    dhan.answer(
        "POST", "/orders/slicing", lambda: _dh_error(400, "DH-906", "quantity above limits")
    )
    assert (await broker.place_sliced(PARAMS)).kind is ResultKind.REFUSED


# --- recording ----------------------------------------------------------------------------


async def test_rest_recording_has_no_token_and_no_client_id(dhan: FakeDhan, tmp_path: Any) -> None:
    from engine.dhan.recorder import JsonlRecorder

    recorder = JsonlRecorder(tmp_path, [CLIENT])
    b = DhanBroker(CLIENT, TOKEN, dhan.url, timeout_s=0.5, account="follower-1", recorder=recorder)
    dhan.answer(
        "POST", "/orders", lambda: web.json_response({"orderId": "1", "orderStatus": "TRANSIT"})
    )
    dhan.answer("GET", "/orders", lambda: web.json_response([_order("1")]))
    dhan.answer("GET", "/profile", lambda: web.json_response(
        {"dhanClientId": CLIENT, "tokenValidity": "30/03/2026 15:37", "accessToken": TOKEN}
    ))  # fmt: skip
    try:
        assert (await b.place(PARAMS)).ok
        assert len(await b.order_book()) == 1
        await b.profile()
    finally:
        await b.close()
        recorder.close()
    text = (tmp_path / "rest.jsonl").read_text()
    lines = [json.loads(line) for line in text.splitlines()]
    assert [(x["method"], x["path"]) for x in lines] == [
        ("POST", "/v2/orders"),
        ("GET", "/v2/orders"),
        ("GET", "/v2/profile"),
    ]
    assert {x["account"] for x in lines} == {"follower-1"}
    assert lines[0]["request"]["dhanClientId"] == "CLIENT-1"
    assert lines[0]["request"]["correlationId"] == PARAMS.correlation_id
    assert lines[0]["response"] == {
        "status": 200,
        "body": {"orderId": "1", "orderStatus": "TRANSIT"},
    }
    assert lines[1]["response"]["body"][0]["dhanClientId"] == "CLIENT-1"
    assert lines[2]["response"]["body"]["accessToken"] == "***"
    assert TOKEN not in text and CLIENT not in text
    assert "access-token" not in text.lower()
