"""DhanSimulator: Dhan's REST v2 and order-update WebSocket on loopback, plus a control API.

One aiohttp application serves:
- ``/v2/...``: Dhan's REST API (auth by ``access-token`` + ``client-id`` headers).
- ``/``: the order-update WebSocket (login with ``{"LoginReq": {"MsgCode": 42, ...}}``).
- ``/sim/...``: control endpoints for other processes (no auth; loopback clients only).

Choices where Dhan's docs are unsettled:
- DELETE /orders/{id} answers 200 with ``{"orderId", "orderStatus": "CANCELLED"}``. Dhan's docs
  also describe an empty "202 Accepted"; ``empty_cancel_response=True`` answers that way
  (the dhanhq SDK then reports a failure with "Expecting value...", as it does against Dhan).
- POST /orders answers ``{"orderId", "orderStatus": "TRANSIT"}`` even when the order is
  rejected by RMS right after (the rejection arrives on the socket and in the order book);
  POST /orders/slicing answers an array of those.
- GET /orders/{id} and GET /orders/external/{correlationId} answer one object (the latest
  order with that correlation id); unknown ids answer DH-907 with HTTP 404.
- Order-API rate limits count POST/PUT/DELETE under /v2/orders only, before validation.
- A bad login on the socket closes it with 4001 (bad or expired token) or 1008 (malformed);
  a successful login gets no acknowledgement, the socket just stays open.

Tokens are never logged or recorded: ``requests`` holds no headers, and aiohttp's access log
is disabled.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import itertools
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aiohttp import WSMsgType, web

from engine.clock import IST, Clock

from .errors import SimError, input_error
from .exchange import Exchange, SimAccount, SimOrder
from .faults import REORDER_FLUSH_SECONDS, Faults
from .instruments import InstrumentMaster
from .limits import DEFAULT_ORDER_LIMITS
from .session import MarketSession
from .wire import (
    decode_modify,
    decode_place,
    funds_rest,
    order_alert,
    order_rest,
    position_rest,
    trade_rest,
)

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
LOGIN_TIMEOUT = 10.0
RAW_BODY = web.RequestKey("raw_body", str)
ACCOUNT = web.RequestKey("account", SimAccount)


@dataclass
class _Alert:
    client_id: str
    order_no: str
    status: str
    text: str
    message: dict[str, Any]


@dataclass(eq=False)
class _Conn:
    conn_id: int
    client_id: str
    ws: web.WebSocketResponse
    request: web.Request
    queue: asyncio.Queue[_Alert | None] = field(default_factory=asyncio.Queue)
    task: asyncio.Task[None] | None = None


def _camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


class DhanSimulator:
    def __init__(
        self,
        accounts: dict[str, str] | None = None,
        clock: Clock | None = None,
        real_hours: bool = False,
        seed: int = 0,
        *,
        funds: float = 1_000_000.0,
        mpp: float = 0.01,
        reject_api_slm: bool = True,
        empty_cancel_response: bool = False,
        status_case: str = "upper",
        order_limits: tuple[tuple[float, int], ...] = DEFAULT_ORDER_LIMITS,
        max_modifications: int = 25,
        master: InstrumentMaster | None = None,
    ) -> None:
        self.exchange = Exchange(
            clock,
            master=master,
            session=MarketSession(real_hours),
            seed=seed,
            mpp=mpp,
            reject_api_slm=reject_api_slm,
            max_modifications=max_modifications,
            order_limits=order_limits,
            listener=self._on_order_change,
        )
        self.empty_cancel_response = empty_cancel_response
        self.status_case = status_case
        self.faults = Faults(self._drop_sockets, self._expire_token)
        self.requests: list[dict[str, Any]] = []
        self.alerts_sent: list[dict[str, Any]] = []
        self.alerts_dropped: list[dict[str, Any]] = []
        self._conns: list[_Conn] = []
        self._conn_ids = itertools.count(1)
        self._held: dict[str, tuple[_Alert, asyncio.TimerHandle | None]] = {}
        self._side_tasks: set[asyncio.Task[Any]] = set()
        self._stopping = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._port = 0
        self._host = "127.0.0.1"
        for client_id, token in (accounts or {}).items():
            self.add_account(client_id, token, funds)

    # ---- lifecycle ----------------------------------------------------------------------------
    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._stopping = asyncio.Event()
        app = web.Application(middlewares=[self._middleware], client_max_size=1024**2)
        self._routes(app)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        addresses = self._runner.addresses
        self._host = host
        self._port = int(addresses[0][1]) if addresses else port

    async def stop(self) -> None:
        self._stopping.set()
        for _alert, timer in list(self._held.values()):
            if timer is not None:
                timer.cancel()
        self._held.clear()
        for conn in list(self._conns):
            with contextlib.suppress(Exception):
                await conn.ws.close(code=1001, message=b"server shutdown")
        for conn in list(self._conns):
            conn.queue.put_nowait(None)
        tasks = [c.task for c in self._conns if c.task is not None] + list(self._side_tasks)
        if tasks:
            await asyncio.wait(tasks, timeout=2.0)
        for task in tasks:
            if not task.done():
                task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def port(self) -> int:
        return self._port

    @property
    def rest_url(self) -> str:
        return f"http://{self._host}:{self._port}/v2"

    @property
    def ws_url(self) -> str:
        return f"ws://{self._host}:{self._port}/"

    @property
    def control_url(self) -> str:
        return f"http://{self._host}:{self._port}/sim"

    # ---- control API (call from the event loop's thread) -------------------------------------
    def add_account(self, client_id: str, token: str, funds: float = 1_000_000.0) -> None:
        self.exchange.add_account(str(client_id), token, funds)

    def renew_token(self, client_id: str, token: str) -> None:
        acct = self.exchange.account(client_id)
        acct.token = token
        acct.token_expired = False
        acct.token_issued = self.exchange.now()

    def expire_token(self, client_id: str) -> None:
        self._expire_token(client_id)

    def set_price(self, segment: str, security_id: str | int, price: float) -> None:
        self.exchange.set_price(segment, str(security_id), float(price))

    def set_liquidity(self, segment: str, security_id: str | int, qty: int | None) -> None:
        self.exchange.set_liquidity(segment, str(security_id), qty)

    def price(self, segment: str, security_id: str | int) -> float:
        return self.exchange.last_price(self.exchange.instrument(segment, str(security_id)))

    def place_manual_order(self, client_id: str, **fields: Any) -> str:
        """An order typed on Dhan's web (Source "N"). Fields use REST names (camelCase or
        snake_case): transactionType, exchangeSegment, productType, orderType, securityId,
        quantity, price, triggerPrice, validity, disclosedQuantity, afterMarketOrder, amoTime,
        correlationId. Raises SimError like the REST API would answer."""
        body = {_camel(k): v for k, v in fields.items()}
        body.setdefault("validity", "DAY")
        body.setdefault("productType", "CNC")
        req = decode_place(body)
        return self.exchange.place(client_id, req, source="N").order_id

    def modify_manual_order(self, client_id: str, order_id: str, **fields: Any) -> None:
        order = self.exchange.get_order(client_id, order_id)
        body: dict[str, Any] = {
            "orderType": order.requested_type,
            "validity": order.validity,
            "quantity": order.quantity,
            "price": order.price,
            "triggerPrice": order.trigger_price,
            "disclosedQuantity": order.disclosed_qty,
        }
        body.update({_camel(k): v for k, v in fields.items()})
        self.exchange.modify(client_id, order_id, decode_modify(body, str(order_id)), source="N")

    def cancel_manual_order(self, client_id: str, order_id: str) -> None:
        self.exchange.cancel(client_id, order_id)

    def end_of_day(self) -> None:
        self.exchange.end_of_day()

    def orders(self, client_id: str) -> list[dict[str, Any]]:
        return [order_rest(o) for o in self.exchange.account(client_id).orders]

    def trades(self, client_id: str) -> list[dict[str, Any]]:
        return [trade_rest(t) for t in self.exchange.account(client_id).trades]

    def positions(self, client_id: str) -> list[dict[str, Any]]:
        acct = self.exchange.account(client_id)
        return [
            position_rest(client_id, p, self.exchange.last_price(p.inst))
            for p in acct.positions.values()
        ]

    def funds(self, client_id: str) -> dict[str, Any]:
        acct = self.exchange.account(client_id)
        return funds_rest(
            client_id, acct.funds, self.exchange.available(acct), self.exchange.blocked(acct)
        )

    def state(self) -> dict[str, Any]:
        ex = self.exchange
        return {
            "restUrl": self.rest_url,
            "wsUrl": self.ws_url,
            "now": ex.now().strftime("%Y-%m-%d %H:%M:%S"),
            "accounts": [
                {
                    "clientId": a.client_id,
                    "tokenExpired": a.token_expired,
                    "killSwitch": "ACTIVATE" if a.kill_switch else "DEACTIVATE",
                    "orders": len(a.orders),
                    "openOrders": sum(1 for o in a.orders if o.is_open),
                    "trades": len(a.trades),
                    "sockets": sum(1 for c in self._conns if c.client_id == a.client_id),
                    "funds": self.funds(a.client_id),
                }
                for a in ex.accounts.values()
            ],
            "prices": [
                {
                    "exchangeSegment": i.segment,
                    "securityId": i.security_id,
                    "tradingSymbol": i.symbol,
                    "lotSize": i.lot_size,
                    "tickSize": i.tick_size,
                    "freezeQty": i.freeze_qty,
                    "ltp": ex.last_price(i),
                    "liquidity": ex.liquidity.get(i.key),
                }
                for i in ex.master.all()
            ],
            "faults": self.faults.state(),
            "requests": len(self.requests),
            "alertsSent": len(self.alerts_sent),
        }

    # ---- alerts -------------------------------------------------------------------------------
    def _on_order_change(self, order: SimOrder) -> None:
        message = order_alert(order, self.exchange.last_price(order.inst), self.status_case)
        alert = _Alert(
            client_id=order.client_id,
            order_no=order.order_id,
            status=message["Data"]["Status"],
            text=json.dumps(message),
            message=message,
        )
        faults = self.faults
        held = self._held.pop(order.client_id, None)
        if held is not None:
            partner, timer = held
            if timer is not None:
                timer.cancel()
            self._deliver_with_duplicates(alert)
            self._deliver_with_duplicates(partner)
            return
        if faults.reorder_remaining > 0:
            faults.reorder_remaining = max(faults.reorder_remaining - 2, 0)
            timer = None
            with contextlib.suppress(RuntimeError):
                timer = asyncio.get_running_loop().call_later(
                    REORDER_FLUSH_SECONDS, self._flush_held, order.client_id
                )
            self._held[order.client_id] = (alert, timer)
            return
        self._deliver_with_duplicates(alert)

    def _flush_held(self, client_id: str) -> None:
        held = self._held.pop(client_id, None)
        if held is not None:
            self._deliver_with_duplicates(held[0])

    def _deliver_with_duplicates(self, alert: _Alert) -> None:
        copies = 1
        if self.faults.duplicate_remaining > 0:
            self.faults.duplicate_remaining -= 1
            copies = 2
        for _ in range(copies):
            self._deliver(alert)

    def _deliver(self, alert: _Alert) -> None:
        for conn in self._conns:
            if conn.client_id != alert.client_id:
                continue
            if self.faults.is_paused(alert.client_id):
                self.alerts_dropped.append(
                    {
                        "monotonic": time.monotonic(),
                        "client_id": alert.client_id,
                        "order_no": alert.order_no,
                        "status": alert.status,
                        "conn_id": conn.conn_id,
                    }
                )
                continue
            conn.queue.put_nowait(alert)

    async def _sender(self, conn: _Conn) -> None:
        while True:
            alert = await conn.queue.get()
            if alert is None or conn.ws.closed:
                return
            try:
                await conn.ws.send_str(alert.text)
            except Exception:  # the peer went away; the reader side cleans up
                return
            self.alerts_sent.append(
                {
                    "seq": len(self.alerts_sent),
                    "monotonic": time.monotonic(),
                    "wall": datetime.now(IST).isoformat(),
                    "client_id": alert.client_id,
                    "order_no": alert.order_no,
                    "status": alert.status,
                    "conn_id": conn.conn_id,
                    "message": alert.message,
                }
            )

    def _drop_sockets(self, client_id: str | None) -> None:
        for conn in list(self._conns):
            if client_id is None or conn.client_id == client_id:
                transport = conn.request.transport
                if transport is not None:
                    transport.abort()
                conn.queue.put_nowait(None)

    def _expire_token(self, client_id: str) -> None:
        acct = self.exchange.account(client_id)
        acct.token_expired = True
        for conn in list(self._conns):
            if conn.client_id == client_id:
                self._spawn(conn.ws.close(code=4001, message=b"token expired"))
                conn.queue.put_nowait(None)

    def _spawn(self, coro: Awaitable[Any]) -> None:
        async def run() -> None:
            with contextlib.suppress(Exception):
                await coro

        task = asyncio.get_running_loop().create_task(run())
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)

    async def _ws_handler(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        try:
            msg = await ws.receive(timeout=LOGIN_TIMEOUT)
        except TimeoutError:
            await ws.close(code=1008, message=b"login timeout")
            return ws
        if msg.type != WSMsgType.TEXT:
            await ws.close(code=1008, message=b"malformed login")
            return ws
        acct = self._socket_login(msg.data)
        if isinstance(acct, tuple):
            code, reason = acct
            await ws.close(code=code, message=reason.encode())
            return ws
        conn = _Conn(next(self._conn_ids), acct.client_id, ws, request)
        conn.task = asyncio.get_running_loop().create_task(self._sender(conn))
        self._conns.append(conn)
        try:
            async for _ in ws:
                pass  # the order socket ignores client frames after login
        finally:
            with contextlib.suppress(ValueError):
                self._conns.remove(conn)
            conn.queue.put_nowait(None)
            with contextlib.suppress(Exception):
                await conn.task
        return ws

    def _socket_login(self, text: str) -> SimAccount | tuple[int, str]:
        try:
            message = json.loads(text)
        except ValueError:
            return (1008, "malformed login: not JSON")
        if not isinstance(message, dict) or not isinstance(message.get("LoginReq"), dict):
            return (1008, "malformed login: LoginReq missing")
        login = message["LoginReq"]
        if login.get("MsgCode") not in (42, "42"):
            return (1008, "malformed login: MsgCode must be 42")
        if message.get("UserType", "SELF") != "SELF":
            return (1008, "unsupported UserType")
        client_id, token = login.get("ClientId"), login.get("Token")
        if not isinstance(client_id, str | int) or not isinstance(token, str):
            return (1008, "malformed login: ClientId and Token required")
        try:
            return self.exchange.authenticate(str(client_id), token)
        except SimError:
            return (4001, "authentication failed: invalid or expired token")

    # ---- HTTP plumbing -------------------------------------------------------------------------
    def _routes(self, app: web.Application) -> None:
        r = app.router
        r.add_get("/", self._ws_handler)
        r.add_post("/v2/orders", self._place)
        r.add_post("/v2/orders/slicing", self._place_slicing)
        r.add_get("/v2/orders", self._order_book)
        r.add_get("/v2/orders/external/{cid}", self._order_by_correlation)
        r.add_get("/v2/orders/{order_id}", self._order_by_id)
        r.add_put("/v2/orders/{order_id}", self._modify)
        r.add_delete("/v2/orders/{order_id}", self._cancel)
        r.add_get("/v2/trades", self._trade_book)
        r.add_get("/v2/trades/", self._trade_book)
        r.add_get("/v2/trades/{order_id}", self._trades_of_order)
        r.add_get("/v2/positions", self._positions)
        r.add_delete("/v2/positions", self._exit_all)
        r.add_get("/v2/fundlimit", self._fundlimit)
        r.add_get("/v2/killswitch", self._killswitch_status)
        r.add_post("/v2/killswitch", self._killswitch)
        r.add_get("/v2/profile", self._profile)
        r.add_post("/sim/prices", self._ctl_prices)
        r.add_post("/sim/accounts", self._ctl_add_account)
        r.add_get("/sim/accounts/{client_id}/orders", self._ctl_orders)
        r.add_post("/sim/accounts/{client_id}/orders", self._ctl_place)
        r.add_put("/sim/accounts/{client_id}/orders/{order_id}", self._ctl_modify)
        r.add_delete("/sim/accounts/{client_id}/orders/{order_id}", self._ctl_cancel)
        r.add_post("/sim/faults", self._ctl_faults)
        r.add_get("/sim/requests", self._ctl_requests)
        r.add_get("/sim/alerts", self._ctl_alerts)
        r.add_post("/sim/tokens/expire", self._ctl_expire)
        r.add_post("/sim/tokens/renew", self._ctl_renew)
        r.add_post("/sim/end-of-day", self._ctl_end_of_day)
        r.add_get("/sim/state", self._ctl_state)

    def _scrub(self, text: str) -> str:
        for acct in self.exchange.accounts.values():
            if acct.token and acct.token in text:
                text = text.replace(acct.token, "***")
        return text

    @staticmethod
    def _error(err: SimError) -> web.Response:
        return web.json_response(err.body(), status=err.http_status)

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        try:
            if path.startswith("/sim"):
                return await self._control(request, handler)
            if path.startswith("/v2"):
                return await self._rest(request, handler)
            return await handler(request)
        except SimError as err:
            return self._error(err)
        except web.HTTPException as exc:
            if exc.status == 404:
                return self._error(SimError("DH-907", f"No such endpoint: {path}", 404))
            if exc.status == 405:
                return self._error(
                    SimError("DH-905", f"Method {request.method} not allowed on {path}", 405)
                )
            return self._error(SimError("DH-910", exc.reason, exc.status))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("simulator bug while handling %s %s", request.method, path)
            return self._error(SimError("DH-908", "Internal server error"))

    async def _control(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        remote = request.remote or ""
        try:
            loopback = ipaddress.ip_address(remote).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise SimError("DH-902", "The simulator's control API is for loopback clients", 403)
        return await handler(request)

    async def _rest(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            raw = await request.text()
        except Exception:
            raw = ""
        request[RAW_BODY] = raw
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = self._scrub(raw[:2000])
        client_id = request.headers.get("client-id") or request.headers.get("dhanClientId")
        record: dict[str, Any] = {
            "seq": len(self.requests),
            "monotonic": time.monotonic(),
            "wall": datetime.now(IST).isoformat(),
            "sim_time": self.exchange.now().strftime("%Y-%m-%d %H:%M:%S"),
            "client_id": client_id,
            "method": request.method,
            "path": request.path,
            "query": dict(request.query),
            "json": body if not isinstance(body, str) else None,
            "raw": body if isinstance(body, str) else None,
            "status": None,
            "error_code": None,
        }
        self.requests.append(record)
        fault = self.faults.take_request_fault(request.method, request.path)
        if fault is not None and not fault.after_accept:
            if fault.kind == "reset":
                record["status"] = "reset"
                self._abort(request)
                raise SimError("DH-909", "connection reset")
            if fault.kind == "fail":
                err = SimError("DH-908", "Internal server error", fault.status)
                record["status"], record["error_code"] = err.http_status, err.code
                return self._error(err)
            if fault.kind == "delay":
                await self._hold(fault.seconds)
                transport = request.transport
                if transport is None or transport.is_closing():
                    record["status"] = "client-gone"  # the client gave up: never executed
                    raise SimError("DH-909", "client went away during the delay")
        try:
            response = await self._authorised(request, handler, client_id)
        except SimError as err:
            response = self._error(err)
            record["error_code"] = err.code
        record["status"] = response.status
        if fault is not None and fault.after_accept:
            if fault.kind == "delay":
                await self._hold(fault.seconds)
            elif fault.kind == "reset":
                record["status"] = "reset"
                self._abort(request)
        return response

    async def _authorised(
        self, request: web.Request, handler: Handler, client_id: str | None
    ) -> web.StreamResponse:
        token = request.headers.get("access-token")
        acct = self.exchange.authenticate(client_id, token)
        request[ACCOUNT] = acct
        if request.method in ("POST", "PUT", "DELETE") and request.path.startswith("/v2/orders"):
            self.exchange.check_rate(acct)
        return await handler(request)

    async def _hold(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)

    @staticmethod
    def _abort(request: web.Request) -> None:
        transport = request.transport
        if transport is not None:
            transport.abort()

    @staticmethod
    def _body(request: web.Request) -> Any:
        raw = request.get(RAW_BODY, "")
        if not raw:
            return {}
        try:
            return json.loads(raw)
        except ValueError:
            raise input_error("Malformed JSON in the request body") from None

    @staticmethod
    def _acct(request: web.Request) -> SimAccount:
        return request[ACCOUNT]

    # ---- REST handlers ---------------------------------------------------------------------------
    async def _place(self, request: web.Request) -> web.Response:
        acct = self._acct(request)
        req = decode_place(self._body(request), acct.client_id)
        order = self.exchange.place(acct.client_id, req, source="P")
        return web.json_response({"orderId": order.order_id, "orderStatus": "TRANSIT"})

    async def _place_slicing(self, request: web.Request) -> web.Response:
        acct = self._acct(request)
        req = decode_place(self._body(request), acct.client_id)
        orders = self.exchange.place_sliced(acct.client_id, req, source="P")
        return web.json_response(
            [{"orderId": o.order_id, "orderStatus": "TRANSIT"} for o in orders]
        )

    async def _modify(self, request: web.Request) -> web.Response:
        acct = self._acct(request)
        order_id = request.match_info["order_id"]
        self.exchange.get_order(acct.client_id, order_id)
        req = decode_modify(self._body(request), order_id, acct.client_id)
        order = self.exchange.modify(acct.client_id, order_id, req, source="P")
        return web.json_response({"orderId": order.order_id, "orderStatus": order.status})

    async def _cancel(self, request: web.Request) -> web.Response:
        acct = self._acct(request)
        order = self.exchange.cancel(acct.client_id, request.match_info["order_id"])
        if self.empty_cancel_response:
            return web.Response(status=202)
        return web.json_response({"orderId": order.order_id, "orderStatus": "CANCELLED"})

    async def _order_book(self, request: web.Request) -> web.Response:
        return web.json_response(self.orders(self._acct(request).client_id))

    async def _order_by_id(self, request: web.Request) -> web.Response:
        acct = self._acct(request)
        order = self.exchange.get_order(acct.client_id, request.match_info["order_id"])
        return web.json_response(order_rest(order))

    async def _order_by_correlation(self, request: web.Request) -> web.Response:
        acct = self._acct(request)
        order = self.exchange.by_correlation(acct.client_id, request.match_info["cid"])
        return web.json_response(order_rest(order))

    async def _trade_book(self, request: web.Request) -> web.Response:
        return web.json_response(self.trades(self._acct(request).client_id))

    async def _trades_of_order(self, request: web.Request) -> web.Response:
        acct = self._acct(request)
        order = self.exchange.get_order(acct.client_id, request.match_info["order_id"])
        return web.json_response(
            [trade_rest(t) for t in acct.trades if t.order.order_id == order.order_id]
        )

    async def _positions(self, request: web.Request) -> web.Response:
        return web.json_response(self.positions(self._acct(request).client_id))

    async def _exit_all(self, request: web.Request) -> web.Response:
        acct = self._acct(request)
        self.exchange.exit_all(acct.client_id)
        return web.json_response(
            {"status": "SUCCESS", "message": "All orders and positions exited"}
        )

    async def _fundlimit(self, request: web.Request) -> web.Response:
        return web.json_response(self.funds(self._acct(request).client_id))

    async def _killswitch_status(self, request: web.Request) -> web.Response:
        acct = self._acct(request)
        status = "ACTIVATE" if acct.kill_switch else "DEACTIVATE"
        return web.json_response({"dhanClientId": acct.client_id, "killSwitchStatus": status})

    async def _killswitch(self, request: web.Request) -> web.Response:
        acct = self._acct(request)
        action = request.query.get("killSwitchStatus", "")
        if action not in ("ACTIVATE", "DEACTIVATE"):
            raise input_error(
                f"Invalid value for killSwitchStatus: {action!r} (expected ACTIVATE or DEACTIVATE)"
            )
        self.exchange.set_kill_switch(acct.client_id, action == "ACTIVATE")
        word = "activated" if action == "ACTIVATE" else "deactivated"
        return web.json_response(
            {
                "dhanClientId": acct.client_id,
                "killSwitchStatus": f"Kill Switch has been successfully {word}",
            }
        )

    async def _profile(self, request: web.Request) -> web.Response:
        acct = self._acct(request)
        validity = self.exchange.token_validity(acct)
        return web.json_response(
            {
                "dhanClientId": acct.client_id,
                "tokenValidity": validity.strftime("%d/%m/%Y %H:%M"),
                "activeSegment": "Equity, Derivative, Currency, Commodity",
                "ddpi": "Active",
                "mtf": "Active",
                "dataPlan": "Active",
                "dataValidity": "2026-12-31 23:59:59.0",
            }
        )

    # ---- control handlers ------------------------------------------------------------------
    @staticmethod
    async def _ctl_json(request: web.Request) -> dict[str, Any]:
        raw = await request.text()
        if not raw:
            return {}
        try:
            body = json.loads(raw)
        except ValueError:
            raise input_error("Malformed JSON in the request body") from None
        if not isinstance(body, dict):
            raise input_error("Request body must be a JSON object")
        return body

    async def _ctl_prices(self, request: web.Request) -> web.Response:
        body = await self._ctl_json(request)
        items = body.get("prices", [body])
        if not isinstance(items, list):
            raise input_error("prices must be a list")
        for item in items:
            if not isinstance(item, dict):
                raise input_error("each price must be an object")
            segment = str(item.get("exchangeSegment", item.get("segment", "")))
            sec = str(item.get("securityId", ""))
            if "liquidity" in item:
                liq = item["liquidity"]
                self.set_liquidity(segment, sec, None if liq is None else int(liq))
            if item.get("price") is not None:
                self.set_price(segment, sec, float(item["price"]))
        return web.json_response({"ok": True})

    async def _ctl_add_account(self, request: web.Request) -> web.Response:
        body = await self._ctl_json(request)
        client_id, token = body.get("clientId"), body.get("token")
        if not isinstance(client_id, str) or not isinstance(token, str) or not token:
            raise input_error("clientId and token are required strings")
        self.add_account(client_id, token, float(body.get("funds", 1_000_000.0)))
        return web.json_response({"clientId": client_id})

    async def _ctl_orders(self, request: web.Request) -> web.Response:
        return web.json_response(self.orders(request.match_info["client_id"]))

    async def _ctl_place(self, request: web.Request) -> web.Response:
        body = await self._ctl_json(request)
        order_id = self.place_manual_order(request.match_info["client_id"], **body)
        return web.json_response({"orderId": order_id})

    async def _ctl_modify(self, request: web.Request) -> web.Response:
        body = await self._ctl_json(request)
        client_id, order_id = request.match_info["client_id"], request.match_info["order_id"]
        body.pop("orderId", None)
        self.modify_manual_order(client_id, order_id, **body)
        return web.json_response({"orderId": order_id})

    async def _ctl_cancel(self, request: web.Request) -> web.Response:
        client_id, order_id = request.match_info["client_id"], request.match_info["order_id"]
        self.cancel_manual_order(client_id, order_id)
        return web.json_response({"orderId": order_id, "orderStatus": "CANCELLED"})

    _FAULT_KINDS = (
        "drop_sockets", "pause_delivery", "resume_delivery", "fail_next", "delay_next",
        "reset_next", "duplicate_next_alerts", "reorder_next_alerts", "expire_token", "clear",
    )  # fmt: skip

    async def _ctl_faults(self, request: web.Request) -> web.Response:
        body = await self._ctl_json(request)
        kind = body.pop("kind", None)
        if kind not in self._FAULT_KINDS:
            raise input_error(f"Invalid value for kind: {kind!r}")
        args = {("client_id" if k == "clientId" else _snake(k)): v for k, v in body.items()}
        try:
            getattr(self.faults, kind)(**args)
        except TypeError as exc:
            raise input_error(f"Bad arguments for {kind}: {exc}") from None
        return web.json_response({"ok": True, "faults": self.faults.state()})

    async def _ctl_requests(self, request: web.Request) -> web.Response:
        since = _since(request)
        return web.json_response(
            {"items": self.requests[since:], "next": len(self.requests)}, dumps=_dumps
        )

    async def _ctl_alerts(self, request: web.Request) -> web.Response:
        since = _since(request)
        return web.json_response(
            {"items": self.alerts_sent[since:], "next": len(self.alerts_sent)}, dumps=_dumps
        )

    async def _ctl_expire(self, request: web.Request) -> web.Response:
        body = await self._ctl_json(request)
        self.expire_token(str(body.get("clientId", "")))
        return web.json_response({"ok": True})

    async def _ctl_renew(self, request: web.Request) -> web.Response:
        body = await self._ctl_json(request)
        self.renew_token(str(body.get("clientId", "")), str(body.get("token", "")))
        return web.json_response({"ok": True})

    async def _ctl_end_of_day(self, request: web.Request) -> web.Response:
        self.end_of_day()
        return web.json_response({"ok": True})

    async def _ctl_state(self, request: web.Request) -> web.Response:
        return web.json_response(self.state())


def _snake(key: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in key)


def _since(request: web.Request) -> int:
    try:
        return max(int(request.query.get("since", "0")), 0)
    except ValueError:
        raise input_error("since must be a whole number") from None


def _dumps(obj: Any) -> str:
    return json.dumps(obj, default=str)
