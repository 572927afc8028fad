"""DhanSimulator: Dhan's REST v2 and order-update WebSocket on loopback, plus a control API.

One aiohttp application serves:
- ``/v2/...``: Dhan's REST API (auth by ``access-token`` + ``client-id`` headers).
- ``/``: the order-update WebSocket (login with ``{"LoginReq": {"MsgCode": 42, ...}}``).
- ``/sim/...``: control endpoints for other processes (no auth; loopback clients only),
  ``/sim/profile`` among them (GET the answers, POST ``{"name": ..., key: value}``).
- ``/app/generateAccessToken`` (Dhan's auth host, same port): tokens from PIN + TOTP.
- ``/api-data/api-scrip-master.csv`` and ``...-detailed.csv`` (Dhan's images host paths): the
  instrument master in Dhan's CSV forms.

Answers follow a ``SimProfile`` (profile.py; live Dhan by default, §8b of
shared/dhan-api-facts.md). Where Dhan is unsettled the profile chooses: DELETE /orders/{id}
answers 200 ``{"orderId", "orderStatus": "CANCELLED"}`` or an empty 202 (the dhanhq SDK then
reports "Expecting value..." as against Dhan); GET /orders/{id} and /orders/external/{cid}
answer a one-element list or one object (the latest order with that correlation id); an
unknown order id answers 400 DH-905 (live) or 404 DH-907; an unknown correlation id one of
those or an empty 200 / empty list.
- POST /orders answers ``{"orderId", "orderStatus": "TRANSIT"}`` even when the order is
  rejected by RMS right after (the rejection arrives on the socket and in the order book);
  POST /orders/slicing answers an array of those.
- Order-API rate limits count POST/PUT/DELETE under /v2/orders only, before validation; an
  account with whitelisted IPs has those requests from any other source address refused
  (HTTP 403, the profile's invalid_ip_code) before they are counted.
- A bad login on the socket closes it with 4001 (bad or expired token) or 1008 (malformed);
  a successful login gets no acknowledgement, the socket just stays open.

Tokens, PINs and TOTP codes are never logged or recorded: ``requests`` holds no headers (the
auth host's query is masked), and aiohttp's access log is disabled. Each recorded request
carries its ``source`` address (on loopback every 127.0.0.x is local, so tests give each
account its own).
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
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import WSMsgType, web

from engine.clock import IST, Clock

from . import auth
from .errors import GENERIC_INPUT_MESSAGE, SimError, UnknownOrder, input_error
from .exchange import Exchange, SimAccount, SimOrder
from .faults import REORDER_FLUSH_SECONDS, Faults, RequestFault
from .instruments import InstrumentMaster
from .limits import DEFAULT_ORDER_LIMITS
from .profile import ProfileError, SimProfile, load_profile, profile_from_mapping
from .replay import Replayer, ReplayEvent
from .scrip_master import compact_csv, detailed_csv
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


@dataclass
class Replay:
    """A replay under way: ``await replay.task`` waits for its last frame."""

    events: list[ReplayEvent]
    replayer: Replayer
    task: asyncio.Task[None]

    def cancel(self) -> None:
        self.task.cancel()


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
        profile: str | SimProfile | None = None,
        mpp: float | None = None,
        reject_api_slm: bool = True,
        order_limits: tuple[tuple[float, int], ...] = DEFAULT_ORDER_LIMITS,
        max_modifications: int = 25,
        master: InstrumentMaster | None = None,
    ) -> None:
        self.profile = load_profile(profile)
        self.exchange = Exchange(
            clock,
            master=master,
            session=MarketSession(real_hours),
            seed=seed,
            reject_api_slm=reject_api_slm,
            max_modifications=max_modifications,
            order_limits=order_limits,
            listener=self._on_order_change,
        )
        self._mpp_override = mpp
        self.set_profile(self.profile)
        self.totp: dict[str, auth.TotpLogin] = {}
        self._socket_logins: dict[str, asyncio.Event] = {}
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
    def scrip_master_url(self) -> str:
        """Where Dhan's compact scrip master lives on this server (the detailed one beside it:
        ``api-scrip-master-detailed.csv``)."""
        return f"http://{self._host}:{self._port}/api-data/api-scrip-master.csv"

    @property
    def scrip_master_detailed_url(self) -> str:
        """Dhan's detailed scrip master (lot, tick, freeze quantity) on this server."""
        return f"http://{self._host}:{self._port}/api-data/api-scrip-master-detailed.csv"

    @property
    def control_url(self) -> str:
        return f"http://{self._host}:{self._port}/sim"

    # ---- control API (call from the event loop's thread) -------------------------------------
    def set_profile(self, profile: str | SimProfile) -> None:
        """Switches the dialect (takes effect for the next request and alert)."""
        self.profile = load_profile(profile)
        ex = self.exchange
        ex.mpp = (
            self._mpp_override
            if self._mpp_override is not None
            else self.profile.mpp_band_pct / 100.0
        )
        ex.slm_accept_fill = self.profile.api_slm == "accept_fill"
        ex.modify_alert = self.profile.modify_alert
        ex.token_validity_s = self.profile.token_validity_s

    def enable_totp(self, client_id: str, pin: str, secret: str) -> None:
        """Lets the account mint tokens from PIN + TOTP at /app/generateAccessToken. An account
        not added yet is created with a token nobody knows (it logs in by TOTP only)."""
        if client_id not in self.exchange.accounts:
            self.add_account(client_id, auth.unguessable_token())
        self.totp[client_id] = auth.TotpLogin(pin=pin, secret=auth.check_secret(secret))

    def set_ip_whitelist(self, client_id: str, ips: list[str]) -> None:
        """The account's whitelisted static IPs (first PRIMARY, second SECONDARY)."""
        acct = self.exchange.account(client_id)
        acct.ips = dict(zip(("PRIMARY", "SECONDARY"), ips, strict=False))
        acct.ips_set_at = {flag: self.exchange.now() for flag in acct.ips}

    def start_replay(
        self,
        events: list[ReplayEvent],
        client_id: str,
        speed: float = 1.0,
        wait_for_socket: bool = True,
    ) -> Replay:
        """Re-enacts a recorded leader session in ``client_id`` (replay.py), from the moment
        that account's first order socket logs in (so the engine sees it from the start)."""
        self.exchange.account(client_id)
        replayer = Replayer(self.exchange, client_id)

        async def run() -> None:
            if wait_for_socket:
                await self._login_event(client_id).wait()
            await replayer.run(events, speed)

        task = asyncio.get_running_loop().create_task(run())
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)
        return Replay(events, replayer, task)

    def _login_event(self, client_id: str) -> asyncio.Event:
        return self._socket_logins.setdefault(client_id, asyncio.Event())

    def add_account(self, client_id: str, token: str, funds: float = 1_000_000.0) -> None:
        self.exchange.add_account(str(client_id), token, funds)

    def renew_token(self, client_id: str, token: str) -> None:
        acct = self.exchange.account(client_id)
        acct.token = token
        acct.token_expired = False
        acct.token_issued = self.exchange.now()

    def expire_token(self, client_id: str) -> None:
        self._expire_token(client_id)

    def send_ghost_alert(self, client_id: str, like_order_id: str) -> str:
        """Fault: an order alert on ``client_id``'s socket for an order its REST book does
        not hold (a ghost), shaped as ``like_order_id``'s alert under a new order number.
        Returns the ghost's order number."""
        order = self.exchange.get_order(client_id, like_order_id)
        message = order_alert(order, self.exchange.last_price(order.inst), self.profile)
        ghost = str(int(order.order_id) + 900_000_000) if order.order_id.isdigit() else "GHOST"
        data = message["Data"]
        for key, value in list(data.items()):
            if str(value) == order.order_id:
                data[key] = ghost if isinstance(value, str) else int(ghost)
        status = data["Status"] if "Status" in data else data["status"]
        self._deliver(_Alert(client_id, ghost, status, json.dumps(message), message))
        return ghost

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

    def new_day(self, expiry_alerts: bool = True) -> None:
        """The next trading day's empty order books (`Exchange.new_day`); the clock is the
        caller's to move."""
        self.exchange.new_day(expiry_alerts)

    def orders(self, client_id: str) -> list[dict[str, Any]]:
        return [order_rest(o, self.profile) for o in self.exchange.account(client_id).orders]

    def placements(self, client_id: str) -> dict[str, str]:
        """Each order id -> the request that made it (the slices of one slicing call share
        one); not part of Dhan's API, for checkers that must tell slices from duplicates."""
        return {
            o.order_id: o.placement or o.order_id for o in self.exchange.account(client_id).orders
        }

    def trades(self, client_id: str) -> list[dict[str, Any]]:
        return [trade_rest(t, self.profile) for t in self.exchange.account(client_id).trades]

    def positions(self, client_id: str) -> list[dict[str, Any]]:
        lag = self.profile.positions_lag_s
        held = (
            self.exchange.positions_as_of(client_id, self.exchange.now() - timedelta(seconds=lag))
            if lag
            else list(self.exchange.account(client_id).positions.values())
        )
        return [
            position_rest(client_id, p, self.exchange.last_price(p.inst), self.profile)
            for p in held
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
            "scripMasterUrl": self.scrip_master_url,
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
                    # Where each logged-in order socket comes from (a static IP per account).
                    "socketSources": sorted(
                        {str(c.request.remote) for c in self._conns if c.client_id == a.client_id}
                    ),
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
            "profile": self.profile.model_dump(),
            "requests": len(self.requests),
            "alertsSent": len(self.alerts_sent),
        }

    # ---- alerts -------------------------------------------------------------------------------
    def _on_order_change(self, order: SimOrder) -> None:
        message = order_alert(order, self.exchange.last_price(order.inst), self.profile)
        data = message["Data"]
        alert = _Alert(
            client_id=order.client_id,
            order_no=order.order_id,
            status=data["Status"] if "Status" in data else data["status"],
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
        now = self.exchange.now()
        for token in list(acct.minted):  # tokens minted before now end now; later ones work
            acct.minted[token] = min(acct.minted[token], now)
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
        self._login_event(acct.client_id).set()
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
        r.add_get("/v2/RenewToken", self._renew_token)
        r.add_get("/v2/ip/getIP", self._get_ip)
        r.add_post("/v2/ip/setIP", self._set_ip)
        r.add_put("/v2/ip/modifyIP", self._modify_ip)
        r.add_get("/v2/instrument/{segment}", self._segment_instruments)
        r.add_post("/app/generateAccessToken", self._generate_token)
        r.add_get("/api-data/api-scrip-master.csv", self._scrip_master)
        r.add_get("/api-data/api-scrip-master-detailed.csv", self._scrip_master_detailed)
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
        r.add_post("/sim/new-day", self._ctl_new_day)
        r.add_get("/sim/state", self._ctl_state)
        r.add_get("/sim/profile", self._ctl_profile)
        r.add_post("/sim/profile", self._ctl_set_profile)

    def _scrub(self, text: str) -> str:
        for acct in self.exchange.accounts.values():
            for token in (acct.token, *acct.minted):
                if token and token in text:
                    text = text.replace(token, "***")
        return text

    def _error(self, err: SimError) -> web.Response:
        body = err.body()
        if err.code == "DH-904" and not self.profile.classic_details:
            body["errorType"] = "Input_Exception"  # §8b L11: recorded on a throttled call
        return web.json_response(body, status=err.http_status)

    def _framework_error(self, status: int, reason: str, path: str) -> web.Response:
        """§8b L10: what live Dhan's web framework answers for a path it has no route for."""
        stamp = datetime.now(IST).astimezone(UTC).isoformat(timespec="milliseconds")
        body = {"timestamp": stamp, "status": status, "error": reason, "path": path}
        return web.json_response(body, status=status)

    def _translate(self, err: SimError) -> SimError:
        """The profile's answer for a lookup of an unknown order id."""
        if isinstance(err, UnknownOrder) and self.profile.unknown_order_id == "dh905_400":
            return SimError("DH-905", GENERIC_INPUT_MESSAGE, 400)
        return err

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        try:
            if path.startswith("/sim"):
                return await self._control(request, handler)
            if path.startswith("/v2"):
                return await self._rest(request, handler)
            if path.startswith("/app/"):
                return await self._auth_request(request, handler)
            return await handler(request)
        except SimError as err:
            return self._error(err)
        except web.HTTPException as exc:
            if exc.status in (404, 405) and not self.profile.classic_details:
                return self._framework_error(exc.status, exc.reason, path)
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
            "source": request.remote,
            "method": request.method,
            "path": request.path,
            "query": dict(request.query),
            "json": body if not isinstance(body, str) else None,
            "raw": body if isinstance(body, str) else None,
            "status": None,
            "error_code": None,
        }
        self.requests.append(record)
        fault = self.faults.take_request_fault(request.method, request.path, client_id)
        if fault is not None and not fault.after_accept:
            if fault.kind == "reset":
                record["status"] = "reset"
                self._abort(request)
                raise SimError("DH-909", "connection reset")
            if fault.kind == "fail":
                return self._fault_error(fault, record)
            if fault.kind == "delay":
                await self._hold(fault.seconds)
                transport = request.transport
                if transport is None or transport.is_closing():
                    record["status"] = "client-gone"  # the client gave up: never executed
                    raise SimError("DH-909", "client went away during the delay")
        try:
            response = await self._authorised(request, handler, client_id)
        except SimError as raised:
            err = self._translate(raised)
            response = self._error(err)
            record["error_code"] = err.code
        record["status"] = response.status
        if fault is not None and fault.after_accept:
            if fault.kind == "delay":
                await self._hold(fault.seconds)
            elif fault.kind == "reset":
                record["status"] = "reset"
                self._abort(request)
            elif fault.kind == "fail":
                return self._fault_error(fault, record)
        return response

    def _fault_error(self, fault: RequestFault, record: dict[str, Any]) -> web.Response:
        message = "Internal server error" if fault.code == "DH-908" else "Request rejected"
        err = SimError(fault.code, message, fault.status)
        record["status"], record["error_code"] = err.http_status, err.code
        return self._error(err)

    async def _authorised(
        self, request: web.Request, handler: Handler, client_id: str | None
    ) -> web.StreamResponse:
        token = request.headers.get("access-token")
        acct = self.exchange.authenticate(client_id, token)
        request[ACCOUNT] = acct
        if request.method in ("POST", "PUT", "DELETE") and request.path.startswith("/v2/orders"):
            self._check_source_ip(acct, request.remote)
            self.exchange.check_rate(acct)
        return await handler(request)

    def _check_source_ip(self, acct: SimAccount, remote: str | None) -> None:
        allowed = set(acct.ips.values())
        if allowed and (remote or "") not in allowed:
            # Never echo the whitelist itself: the refusal names only the caller's address.
            raise SimError(
                self.profile.invalid_ip_code,
                f"Invalid IP: requests from {remote} are not whitelisted for this account",
                403,
            )

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
        tolerant = not self.profile.classic_details
        req = decode_modify(self._body(request), order_id, acct.client_id, tolerant=tolerant)
        order = self.exchange.modify(acct.client_id, order_id, req, source="P")
        return web.json_response({"orderId": order.order_id, "orderStatus": order.status})

    async def _cancel(self, request: web.Request) -> web.Response:
        acct = self._acct(request)
        order = self.exchange.cancel(acct.client_id, request.match_info["order_id"])
        if self.profile.cancel_response == "empty_202":
            return web.Response(status=202)
        return web.json_response({"orderId": order.order_id, "orderStatus": "CANCELLED"})

    async def _order_book(self, request: web.Request) -> web.Response:
        return web.json_response(self.orders(self._acct(request).client_id))

    async def _order_by_id(self, request: web.Request) -> web.Response:
        acct = self._acct(request)
        order = self.exchange.get_order(acct.client_id, request.match_info["order_id"])
        return self._one_order(order)

    def _one_order(self, order: SimOrder) -> web.Response:
        body = order_rest(order, self.profile)
        if self.profile.order_by_id_shape == "list":
            return web.json_response([body])
        return web.json_response(body)

    async def _order_by_correlation(self, request: web.Request) -> web.Response:
        acct = self._acct(request)
        cid = request.match_info["cid"]
        order = self.exchange.by_correlation(acct.client_id, cid)
        if order is not None:
            return self._one_order(order)
        answer = self.profile.unknown_correlation_id
        if answer == "empty_200":
            return web.Response(status=200)
        if answer == "empty_list_200":
            return web.json_response([])
        if answer == "dh905_400":
            raise SimError("DH-905", GENERIC_INPUT_MESSAGE, 400)
        raise SimError("DH-907", f"No order found for correlationId {cid!r}")

    async def _trade_book(self, request: web.Request) -> web.Response:
        return web.json_response(self.trades(self._acct(request).client_id))

    async def _trades_of_order(self, request: web.Request) -> web.Response:
        acct = self._acct(request)
        order = self.exchange.get_order(acct.client_id, request.match_info["order_id"])
        return web.json_response(
            [trade_rest(t, self.profile) for t in acct.trades if t.order.order_id == order.order_id]
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
        validity = self.exchange.token_validity(acct, request.headers.get("access-token"))
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

    # ---- tokens, static IPs, instruments -------------------------------------------------------
    async def _auth_request(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Dhan's auth host: logged with the source address, never with the PIN or TOTP."""
        record: dict[str, Any] = {
            "seq": len(self.requests),
            "monotonic": time.monotonic(),
            "wall": datetime.now(IST).isoformat(),
            "sim_time": self.exchange.now().strftime("%Y-%m-%d %H:%M:%S"),
            "client_id": request.query.get("dhanClientId"),
            "source": request.remote,
            "method": request.method,
            "path": request.path,
            "query": {k: ("***" if k != "dhanClientId" else v) for k, v in request.query.items()},
            "json": None,
            "raw": None,
            "status": None,
            "error_code": None,
        }
        self.requests.append(record)
        try:
            response = await handler(request)
        except SimError as err:
            response = self._error(err)
            record["error_code"] = err.code
        record["status"] = response.status
        return response

    async def _generate_token(self, request: web.Request) -> web.Response:
        client_id = request.query.get("dhanClientId", "")
        pin, code = request.query.get("pin", ""), request.query.get("totp", "")
        login = self.totp.get(client_id)
        if login is None or not login.verify(pin, code, self.exchange.now()):
            raise SimError("DH-901", "Invalid client id, PIN or TOTP")
        return web.json_response(self._mint(self.exchange.account(client_id)))

    def _mint(self, acct: SimAccount) -> dict[str, Any]:
        now = self.exchange.now()
        expires = now + timedelta(seconds=self.exchange.token_validity_s)
        token = auth.jwt_like_token(acct.client_id, now, expires)
        expires = self.exchange.mint_token(acct, token)
        return auth.token_response(acct, token, expires)

    async def _renew_token(self, request: web.Request) -> web.Response:
        return web.json_response(self._mint(self._acct(request)))

    async def _get_ip(self, request: web.Request) -> web.Response:
        return web.json_response(auth.ip_view(self._acct(request)))

    async def _set_ip(self, request: web.Request) -> web.Response:
        acct = self._acct(request)
        body = self._body(request)
        return web.json_response(auth.apply_ip(acct, body, self.exchange.now(), modify=False))

    async def _modify_ip(self, request: web.Request) -> web.Response:
        acct = self._acct(request)
        body = self._body(request)
        return web.json_response(auth.apply_ip(acct, body, self.exchange.now(), modify=True))

    async def _scrip_master(self, request: web.Request) -> web.Response:
        return web.Response(text=compact_csv(self.exchange.master.all()), content_type="text/csv")

    async def _scrip_master_detailed(self, request: web.Request) -> web.Response:
        text = detailed_csv(self.exchange.master.all())
        return web.Response(text=text, content_type="text/csv")

    async def _segment_instruments(self, request: web.Request) -> web.Response:
        segment = request.match_info["segment"]
        text = detailed_csv(self.exchange.master.all(), segment)
        return web.Response(text=text, content_type="text/csv")

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

    async def _ctl_new_day(self, request: web.Request) -> web.Response:
        body = await self._ctl_json(request)
        alerts = body.get("expiryAlerts", True)
        if not isinstance(alerts, bool):
            raise input_error("expiryAlerts must be true or false")
        self.new_day(expiry_alerts=alerts)
        return web.json_response({"ok": True})

    async def _ctl_state(self, request: web.Request) -> web.Response:
        return web.json_response(self.state())

    async def _ctl_profile(self, request: web.Request) -> web.Response:
        return web.json_response(self.profile.model_dump())

    async def _ctl_set_profile(self, request: web.Request) -> web.Response:
        """``{"name": "pascal-upper"}`` selects a built-in profile; any other keys set answers
        on top of it (or of the current profile when no name is given)."""
        body = await self._ctl_json(request)
        name = body.pop("name", None)
        try:
            base = load_profile(str(name)) if name is not None else self.profile
            merged = profile_from_mapping({**base.model_dump(), **body}, "profile")
        except ProfileError as exc:
            raise input_error(str(exc)) from None
        self.set_profile(merged)
        return web.json_response(self.profile.model_dump())


def _snake(key: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in key)


def _since(request: web.Request) -> int:
    try:
        return max(int(request.query.get("since", "0")), 0)
    except ValueError:
        raise input_error("since must be a whole number") from None


def _dumps(obj: Any) -> str:
    return json.dumps(obj, default=str)
