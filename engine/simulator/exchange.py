"""The paper exchange itself: accounts, orders, matching, funds, positions and limits.

Pure model, no I/O: time comes from an injected clock, and every change of an order is
reported synchronously to a listener (the server turns it into a socket alert). Deterministic
for a given seed and sequence of calls.

Matching rules (one last traded price per instrument, settable):
- MARKET fills at once at the LTP. API orders (source "P") get 2026 market price protection:
  stored and reported as LIMIT at LTP x (1 +/- mpp) rounded to the tick, then matched as a
  limit (so they fill at once at the LTP). API STOP_LOSS_MARKET orders are refused (DH-906)
  unless ``reject_api_slm=False``; with ``slm_accept_fill=True`` they are accepted as a LIMIT at
  the MPP price with the trigger dropped, and so fill at once (§8b L5). Manual orders (source
  "N") keep MARKET / SLM.
- Freeze quantity: the instrument's ``freeze_qty`` is Dhan's SM_FREEZE_QTY, and an order must
  stay below it (NSE's convention; Dhan's 2026 NIFTY row says 1756 with lot 65, i.e. 27 lots
  at most). POST /orders above that is refused (DH-905); /orders/slicing cuts it into orders of
  the largest lot multiple below the freeze quantity.
- LIMIT: a marketable limit (buy: LTP <= price; sell: LTP >= price) fills at the LTP when it
  enters the book (placement, modification, stop trigger); a resting limit crossed by a price
  move fills at its limit price.
- STOP_LOSS triggers when the LTP reaches the trigger (buy: LTP >= trigger; sell: LTP <=
  trigger) and then behaves as a LIMIT; STOP_LOSS_MARKET triggers and fills at the LTP.
- IOC cancels whatever is unfilled right after the order enters the book.
- Liquidity: per instrument, the most quantity (rounded down to lots) filled per match event
  (a placement, a modification, or one price update shared by all resting orders in time
  priority). Default unlimited.
- Funds: buys block remaining quantity x reference price x margin rate (CNC 100%, others 20%);
  long positions hold cost x rate; sells block nothing; realised P&L flows into the balance.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from engine.clock import IST, Clock, SystemClock

from .errors import SimError, UnknownOrder, input_error, order_error
from .instruments import InstrumentMaster, SimInstrument
from .limits import DEFAULT_ORDER_LIMITS, SlidingWindowLimiter
from .session import MarketSession

OPEN_STATUSES = frozenset({"TRANSIT", "PENDING", "PART_TRADED"})
FIRST_ORDER_ID = 52260000001
MAX_MODIFICATIONS = 25
MARGIN_RATES = {"CNC": 1.0}
DEFAULT_MARGIN_RATE = 0.2
SLM_API_MESSAGE = (
    "Market orders with stop loss are not allowed through API; use STOP_LOSS with a limit price"
)


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """A validated POST /orders body (field-level checks done by the wire decoder)."""

    side: str
    segment: str
    product: str
    order_type: str
    validity: str
    security_id: str
    quantity: int
    price: float = 0.0
    trigger_price: float = 0.0
    disclosed_qty: int = 0
    amo: bool = False
    amo_time: str = ""
    correlation_id: str = ""
    bo_profit: float | None = None
    bo_stop_loss: float | None = None


@dataclass(frozen=True, slots=True)
class ModifyRequest:
    order_type: str
    validity: str
    quantity: int
    price: float = 0.0
    trigger_price: float = 0.0
    disclosed_qty: int = 0
    leg_name: str = ""


@dataclass(slots=True)
class SimOrder:
    order_id: str
    client_id: str
    source: str  # "P" API, "N" manual
    inst: SimInstrument
    side: str
    product: str
    order_type: str
    requested_type: str  # what the client asked for (MARKET before MPP conversion)
    validity: str
    quantity: int
    price: float
    trigger_price: float
    disclosed_qty: int
    amo: bool
    amo_time: str
    correlation_id: str
    bo_profit: float | None
    bo_stop_loss: float | None
    create_time: datetime
    update_time: datetime
    status: str = "TRANSIT"
    exchange_order_id: str = ""
    exchange_time: datetime | None = None
    filled_qty: int = 0
    avg_price: float = 0.0
    last_fill_price: float = 0.0
    reason: str = ""
    oms_error_code: str = ""
    modifications: int = 0
    triggered: bool = False
    entered: bool = False  # has reached an open market's book (AMOs wait for the open)
    blocked: float = 0.0
    leg_name: str = ""
    remarks: str = ""
    replayed: bool = False  # re-enacted from a recording: never matched, filled as recorded
    # The first order id of the request that made it: several orders share it only as the
    # slices of one /orders/slicing call (which all carry its correlationId).
    placement: str = ""

    @property
    def remaining(self) -> int:
        return max(self.quantity - self.filled_qty, 0)

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES


@dataclass(frozen=True, slots=True)
class SimTrade:
    trade_id: str
    order: SimOrder  # the order as it is now (fields that never change are read from it)
    quantity: int
    price: float
    time: datetime


# Products Dhan never carries overnight: squared off before the close.
INTRADAY_ONLY_PRODUCTS = frozenset({"INTRADAY", "CO", "BO"})


@dataclass(slots=True)
class SimPosition:
    inst: SimInstrument
    product: str
    buy_qty: int = 0  # every day's, the carried ones included
    buy_value: float = 0.0
    sell_qty: int = 0
    sell_value: float = 0.0
    # Of those, what was carried in from earlier days (set as a new day begins).
    carried_buy_qty: int = 0
    carried_buy_value: float = 0.0
    carried_sell_qty: int = 0
    carried_sell_value: float = 0.0

    @property
    def net_qty(self) -> int:
        return self.buy_qty - self.sell_qty

    @property
    def buy_avg(self) -> float:
        return self.buy_value / self.buy_qty if self.buy_qty else 0.0

    @property
    def sell_avg(self) -> float:
        return self.sell_value / self.sell_qty if self.sell_qty else 0.0

    @property
    def realized(self) -> float:
        closed = min(self.buy_qty, self.sell_qty)
        return closed * (self.sell_avg - self.buy_avg)

    @property
    def cost_price(self) -> float:
        if self.net_qty > 0:
            return self.buy_avg
        if self.net_qty < 0:
            return self.sell_avg
        return 0.0

    def unrealized(self, ltp: float) -> float:
        return self.net_qty * (ltp - self.cost_price) if self.net_qty else 0.0


@dataclass(frozen=True, slots=True)
class ReplayFields:
    """One recorded socket state of an order, in REST words (see replay.py)."""

    source: str
    side: str
    product: str
    order_type: str
    validity: str
    quantity: int
    price: float
    trigger_price: float
    traded_qty: int
    traded_price: float
    status: str
    reason: str
    correlation_id: str
    amo: bool


@dataclass(slots=True)
class SimAccount:
    client_id: str
    token: str = field(repr=False)
    funds: float
    token_issued: datetime
    token_expired: bool = False
    # Tokens minted from PIN + TOTP or renewed: token -> when it stops working.
    minted: dict[str, datetime] = field(default_factory=dict, repr=False)
    # Whitelisted static IPs by flag ("PRIMARY", "SECONDARY"); empty: no IP check.
    ips: dict[str, str] = field(default_factory=dict)
    ips_set_at: dict[str, datetime] = field(default_factory=dict)
    kill_switch: bool = False
    orders: list[SimOrder] = field(default_factory=list)
    trades: list[SimTrade] = field(default_factory=list)
    positions: dict[tuple[str, str, str], SimPosition] = field(default_factory=dict)
    limiter: SlidingWindowLimiter = field(default_factory=SlidingWindowLimiter)


Listener = Callable[[SimOrder], None]


def round_to_tick(value: float, tick: float) -> float:
    return round(round(value / tick) * tick, 2)


def _on_tick(value: float, tick: float) -> bool:
    steps = value / tick
    return math.isclose(steps, round(steps), abs_tol=1e-6)


class Exchange:
    def __init__(
        self,
        clock: Clock | None = None,
        *,
        master: InstrumentMaster | None = None,
        session: MarketSession | None = None,
        seed: int = 0,
        mpp: float = 0.01,
        reject_api_slm: bool = True,
        slm_accept_fill: bool = False,
        modify_alert: bool = True,
        token_validity_s: int = 86400,
        max_modifications: int = MAX_MODIFICATIONS,
        order_limits: tuple[tuple[float, int], ...] = DEFAULT_ORDER_LIMITS,
        listener: Listener | None = None,
    ) -> None:
        self.clock: Clock = clock or SystemClock()
        self.master = master or InstrumentMaster()
        self.session = session or MarketSession()
        self.mpp = mpp
        self.reject_api_slm = reject_api_slm
        self.slm_accept_fill = slm_accept_fill
        self.modify_alert = modify_alert
        self.token_validity_s = token_validity_s
        self.max_modifications = max_modifications
        self.order_limits = order_limits
        self.listeners: list[Listener] = [listener] if listener else []
        self.accounts: dict[str, SimAccount] = {}
        self.ltp: dict[tuple[str, str], float] = {i.key: i.default_price for i in self.master.all()}
        self.liquidity: dict[tuple[str, str], int | None] = {}
        self._rng = random.Random(seed)
        self._next_order = FIRST_ORDER_ID
        self._next_exch = 1_100_000_000_000_000 + self._rng.randrange(1_000_000)
        self._next_trade = 10_000_000 + self._rng.randrange(1_000_000)

    # ---- time and accounts -------------------------------------------------------------
    def now(self) -> datetime:
        now = self.clock.now()
        return IST.localize(now) if now.tzinfo is None else now.astimezone(IST)

    def add_account(self, client_id: str, token: str, funds: float = 1_000_000.0) -> SimAccount:
        acct = SimAccount(
            client_id=client_id,
            token=token,
            funds=float(funds),
            token_issued=self.now(),
            limiter=SlidingWindowLimiter(self.order_limits),
        )
        self.accounts[client_id] = acct
        return acct

    def account(self, client_id: str) -> SimAccount:
        acct = self.accounts.get(client_id)
        if acct is None:
            raise SimError("DH-901", "Client ID or access token is invalid or expired")
        return acct

    def authenticate(self, client_id: str | None, token: str | None) -> SimAccount:
        acct = self.accounts.get(client_id or "")
        if acct is None and client_id is None and token:
            acct = next(
                (a for a in self.accounts.values() if a.token == token or token in a.minted),
                None,
            )
        if acct is None or not token or (acct.token != token and token not in acct.minted):
            raise SimError("DH-901", "Client ID or access token is invalid or expired")
        # expire_token() ends the pasted token (the flag) and every token minted before it
        # (their expiry moved to then); a token minted afterwards works.
        if acct.token_expired and token == acct.token:
            raise SimError("DH-901", "Access token has expired; generate a new token")
        expiry = acct.minted.get(token)
        if expiry is not None and self.now() >= expiry:
            raise SimError("DH-901", "Access token has expired; generate a new token")
        return acct

    def mint_token(self, acct: SimAccount, token: str) -> datetime:
        """Registers a freshly minted token; returns when it expires."""
        now = self.now()
        for old, expiry in list(acct.minted.items()):
            if expiry <= now:
                del acct.minted[old]  # forget dead tokens so the dict stays small
        expiry = now + timedelta(seconds=self.token_validity_s)
        acct.minted[token] = expiry
        return expiry

    def check_rate(self, acct: SimAccount) -> None:
        over = acct.limiter.try_acquire(self.clock.monotonic())
        if over is not None:
            raise SimError(
                "DH-904",
                f"Too many requests: order API limit of {over.limit} per "
                f"{_window_name(over.window_seconds)} exceeded",
            )

    # ---- prices -------------------------------------------------------------------------
    def instrument(self, segment: str, security_id: str) -> SimInstrument:
        inst = self.master.get(segment, security_id)
        if inst is None:
            raise input_error(f"Invalid securityId {security_id!r} for exchangeSegment {segment}")
        return inst

    def last_price(self, inst: SimInstrument) -> float:
        return self.ltp.get(inst.key, inst.default_price)

    def set_liquidity(self, segment: str, security_id: str, qty: int | None) -> None:
        inst = self.instrument(segment, security_id)
        self.liquidity[inst.key] = qty

    def set_price(self, segment: str, security_id: str, price: float) -> None:
        inst = self.instrument(segment, security_id)
        if not price > 0:
            raise input_error("price must be positive")
        self.ltp[inst.key] = float(price)
        if not self.session.is_open(inst.segment, self.now()):
            return
        budget = [self._liquidity_budget(inst)]
        resting = sorted(
            (o for a in self.accounts.values() for o in a.orders if o.inst.key == inst.key),
            key=lambda o: int(o.order_id),
        )
        for order in resting:
            if order.status not in ("PENDING", "PART_TRADED") or order.replayed:
                continue
            if not order.entered:  # an AMO reaching the open market enters the book now
                self._enter(order, budget)
                continue
            was_waiting = self._waiting_for_trigger(order)
            self._match(order, entry=False, budget=budget)
            if was_waiting and order.triggered and order.is_open and order.validity == "IOC":
                self._finish(order, "CANCELLED", "IOC order: unfilled quantity cancelled")

    def _liquidity_budget(self, inst: SimInstrument) -> int:
        liq = self.liquidity.get(inst.key)
        return 10**12 if liq is None else max(int(liq), 0)

    # ---- order entry ---------------------------------------------------------------------
    def _check_instrument(self, req: OrderRequest, inst: SimInstrument, slicing: bool) -> None:
        if not inst.tradable:
            raise input_error(f"securityId {inst.security_id} ({inst.symbol}) is not tradable")
        if req.quantity % inst.lot_size:
            raise input_error(
                f"quantity {req.quantity} must be a multiple of the lot size {inst.lot_size}"
            )
        if req.disclosed_qty and req.disclosed_qty % inst.lot_size:
            raise input_error(
                f"disclosedQuantity must be a multiple of the lot size {inst.lot_size}"
            )
        if inst.max_order_qty and req.quantity > inst.max_order_qty and not slicing:
            raise input_error(
                f"quantity {req.quantity} exceeds the freeze limit (freeze quantity "
                f"{inst.freeze_qty}, at most {inst.max_order_qty} per order); use /orders/slicing"
            )
        for name, value in (("price", req.price), ("triggerPrice", req.trigger_price)):
            if value and not _on_tick(value, inst.tick_size):
                raise input_error(f"{name} {value} is not a multiple of tick size {inst.tick_size}")
        if req.product in ("CNC", "MTF") and not inst.is_equity:
            raise input_error(f"productType {req.product} is not allowed for {inst.segment}")
        if req.product == "BO" and (req.bo_profit is None or req.bo_stop_loss is None):
            raise input_error("boProfitValue and boStopLossValue are required for BO orders")

    def place(self, client_id: str, req: OrderRequest, source: str = "P") -> SimOrder:
        return self._place(client_id, req, source, slicing=False)[0]

    def place_sliced(self, client_id: str, req: OrderRequest, source: str = "P") -> list[SimOrder]:
        return self._place(client_id, req, source, slicing=True)

    def _place(
        self, client_id: str, req: OrderRequest, source: str, slicing: bool
    ) -> list[SimOrder]:
        acct = self.account(client_id)
        inst = self.instrument(req.segment, req.security_id)
        self._check_instrument(req, inst, slicing)
        if acct.kill_switch:
            raise order_error("Kill switch is active for this account; trading is disabled")
        market_open = self.session.is_open(inst.segment, self.now())
        if not req.amo and not market_open:
            raise order_error(f"Market is closed for {inst.segment}; place an AMO order")
        order_type, price, trigger = self._api_conversion(
            source, req.order_type, req.price, req.trigger_price, inst, req.side
        )
        sizes = [req.quantity]
        if slicing and inst.max_order_qty and req.quantity > inst.max_order_qty:
            chunk = inst.max_order_qty
            full, rest = divmod(req.quantity, chunk)
            sizes = [chunk] * full + ([rest] if rest else [])
        placed: list[SimOrder] = []
        for qty in sizes:
            now = self.now()
            order = SimOrder(
                order_id=str(self._next_order),
                client_id=client_id,
                source=source,
                inst=inst,
                side=req.side,
                product=req.product,
                order_type=order_type,
                requested_type=req.order_type,
                validity=req.validity,
                quantity=qty,
                price=price,
                trigger_price=trigger,
                disclosed_qty=min(req.disclosed_qty, qty),
                amo=req.amo,
                amo_time=req.amo_time if req.amo else "",
                correlation_id=req.correlation_id,
                bo_profit=req.bo_profit,
                bo_stop_loss=req.bo_stop_loss,
                create_time=now,
                update_time=now,
                leg_name="ENTRY_LEG" if req.product in ("BO", "CO") else "",
                placement=placed[0].order_id if placed else str(self._next_order),
            )
            if order_type != req.order_type:
                order.remarks = self._conversion_remark(req.order_type)
            self._next_order += 1
            acct.orders.append(order)
            placed.append(order)
            self._emit(order)
            self._accept(acct, order, market_open)
        return placed

    def _api_conversion(
        self,
        source: str,
        order_type: str,
        price: float,
        trigger: float,
        inst: SimInstrument,
        side: str,
    ) -> tuple[str, float, float]:
        """Dhan's 2026 rules for API orders: MARKET becomes a protected LIMIT; SL-M is refused
        or (slm_accept_fill) becomes that same LIMIT with the trigger dropped."""
        if source != "P":
            return order_type, price, trigger
        if order_type == "STOP_LOSS_MARKET":
            if self.slm_accept_fill:
                return "LIMIT", self._mpp_price(inst, side), 0.0
            if self.reject_api_slm:
                raise order_error(SLM_API_MESSAGE)
        if order_type == "MARKET" and self.mpp > 0:
            return "LIMIT", self._mpp_price(inst, side), trigger
        return order_type, price, trigger

    def _conversion_remark(self, requested: str) -> str:
        word = "STOP_LOSS_MARKET" if requested == "STOP_LOSS_MARKET" else "MARKET"
        return f"{word} converted to LIMIT with market price protection {self.mpp:.2%}"

    def _mpp_price(self, inst: SimInstrument, side: str) -> float:
        ltp = self.last_price(inst)
        factor = 1 + self.mpp if side == "BUY" else 1 - self.mpp
        return max(round_to_tick(ltp * factor, inst.tick_size), inst.tick_size)

    def _accept(self, acct: SimAccount, order: SimOrder, market_open: bool) -> None:
        """RMS check, then the exchange accepts (PENDING) and the order enters the book."""
        if order.side == "BUY":
            required = self._required_margin(order, order.quantity)
            available = self.available(acct)
            if required > available + 1e-9:
                order.status = "REJECTED"
                order.oms_error_code = "RMS"
                order.reason = (
                    f"RMS: Insufficient funds. Required margin {required:.2f}, "
                    f"available {available:.2f}"
                )
                order.update_time = self.now()
                self._emit(order)
                return
            order.blocked = required
        now = self.now()
        order.status = "PENDING"
        order.exchange_order_id = str(self._next_exch)
        self._next_exch += 1
        order.exchange_time = now
        order.update_time = now
        order.reason = "CONFIRMED"
        self._emit(order)
        if market_open:
            self._enter(order)

    def _reference_price(self, order: SimOrder, order_type: str, price: float) -> float:
        if order_type in ("LIMIT", "STOP_LOSS"):
            return price
        if order_type == "STOP_LOSS_MARKET":
            return max(order.trigger_price, self.last_price(order.inst))
        return self.last_price(order.inst)

    def _required_margin(
        self, order: SimOrder, qty: int, order_type: str = "", price: float = -1.0
    ) -> float:
        ref = self._reference_price(
            order, order_type or order.order_type, order.price if price < 0 else price
        )
        return qty * ref * MARGIN_RATES.get(order.product, DEFAULT_MARGIN_RATE)

    def _enter(self, order: SimOrder, budget: list[int] | None = None) -> None:
        order.entered = True
        self._match(order, entry=True, budget=budget or [self._liquidity_budget(order.inst)])
        if order.is_open and order.validity == "IOC" and not self._waiting_for_trigger(order):
            self._finish(
                order, "CANCELLED", f"IOC order: unfilled quantity {order.remaining} cancelled"
            )

    def _waiting_for_trigger(self, order: SimOrder) -> bool:
        return order.order_type in ("STOP_LOSS", "STOP_LOSS_MARKET") and not order.triggered

    def _match(self, order: SimOrder, *, entry: bool, budget: list[int]) -> None:
        if order.amo and not self.session.is_open(order.inst.segment, self.now()):
            return
        ltp = self.last_price(order.inst)
        buy = order.side == "BUY"
        if self._waiting_for_trigger(order):
            hit = ltp >= order.trigger_price if buy else ltp <= order.trigger_price
            if not hit:
                return
            order.triggered = True
            entry = True
        if order.order_type in ("MARKET", "STOP_LOSS_MARKET"):
            fill_price = ltp
        else:
            marketable = ltp <= order.price if buy else ltp >= order.price
            if not marketable:
                return
            fill_price = ltp if entry else order.price
        lot = order.inst.lot_size
        qty = min(order.remaining, budget[0] // lot * lot)
        if qty <= 0:
            return
        budget[0] -= qty
        self._fill(order, qty, fill_price)

    def _fill(self, order: SimOrder, qty: int, price: float) -> None:
        self._record_fill(order, qty, price)
        self._emit(order)

    def _record_fill(self, order: SimOrder, qty: int, price: float) -> None:
        acct = self.accounts[order.client_id]
        now = self.now()
        total = order.avg_price * order.filled_qty + price * qty
        order.filled_qty += qty
        order.avg_price = round(total / order.filled_qty, 4)
        order.last_fill_price = price
        order.update_time = now
        order.status = "TRADED" if order.remaining == 0 else "PART_TRADED"
        order.reason = "TRADED" if order.remaining == 0 else "PARTIALLY TRADED"
        if order.side == "BUY":
            order.blocked = (
                self._required_margin(order, order.remaining) if order.remaining else 0.0
            )
        acct.trades.append(SimTrade(str(self._next_trade), order, qty, price, now))
        self._next_trade += 1
        key = (order.inst.segment, order.inst.security_id, order.product)
        pos = acct.positions.setdefault(key, SimPosition(order.inst, order.product))
        if order.side == "BUY":
            pos.buy_qty += qty
            pos.buy_value += qty * price
        else:
            pos.sell_qty += qty
            pos.sell_value += qty * price

    # ---- replay of a recorded session ---------------------------------------------------------
    def replay_place(self, client_id: str, inst: SimInstrument, fields: ReplayFields) -> SimOrder:
        """A recorded order enters the book as it was recorded: no RMS, no MPP, no matching."""
        acct = self.account(client_id)
        if self.master.get(inst.segment, inst.security_id) is None:
            self.master.add(inst)
            self.ltp.setdefault(inst.key, inst.default_price)
        now = self.now()
        order = SimOrder(
            order_id=str(self._next_order),
            client_id=client_id,
            source=fields.source,
            inst=inst,
            side=fields.side,
            product=fields.product,
            order_type=fields.order_type,
            requested_type=fields.order_type,
            validity=fields.validity,
            quantity=fields.quantity,
            price=fields.price,
            trigger_price=fields.trigger_price,
            disclosed_qty=0,
            amo=fields.amo,
            amo_time="",
            correlation_id=fields.correlation_id,
            bo_profit=None,
            bo_stop_loss=None,
            create_time=now,
            update_time=now,
            replayed=True,
        )
        self._next_order += 1
        acct.orders.append(order)
        self.replay_apply(order, fields)
        return order

    def replay_apply(self, order: SimOrder, fields: ReplayFields) -> None:
        """One recorded state of the order: new fills become trades, then one alert."""
        order.order_type, order.requested_type = fields.order_type, fields.order_type
        order.quantity = fields.quantity or order.quantity
        order.price, order.trigger_price = fields.price, fields.trigger_price
        order.validity = fields.validity
        new_fill = fields.traded_qty - order.filled_qty
        if new_fill > 0:
            self._record_fill(order, new_fill, fields.traded_price)
        status = fields.status
        if status == "PENDING" and 0 < order.filled_qty < order.quantity:
            status = "PART_TRADED"
        if status != "TRANSIT" and status != "REJECTED" and not order.exchange_order_id:
            order.exchange_order_id = str(self._next_exch)
            self._next_exch += 1
            order.exchange_time = self.now()
        order.status = status
        order.reason = fields.reason
        order.update_time = self.now()
        if not order.is_open:
            order.blocked = 0.0
        self._emit(order)

    def _finish(self, order: SimOrder, status: str, reason: str) -> None:
        order.status = status
        order.reason = reason
        order.blocked = 0.0
        order.update_time = self.now()
        self._emit(order)

    # ---- modify / cancel --------------------------------------------------------------------
    def get_order(self, client_id: str, order_id: str) -> SimOrder:
        acct = self.account(client_id)
        for order in acct.orders:
            if order.order_id == str(order_id).strip():
                return order
        raise UnknownOrder(str(order_id))

    def by_correlation(self, client_id: str, correlation_id: str) -> SimOrder | None:
        """The latest order carrying ``correlation_id`` (several do after slicing)."""
        acct = self.account(client_id)
        for order in reversed(acct.orders):
            if correlation_id and order.correlation_id == correlation_id:
                return order
        return None

    def modify(
        self, client_id: str, order_id: str, req: ModifyRequest, source: str = "P"
    ) -> SimOrder:
        order = self.get_order(client_id, order_id)
        acct = self.accounts[client_id]
        if not order.is_open:
            raise order_error(f"Order {order.order_id} is {order.status} and cannot be modified")
        # Dhan's 25-modification cap is an API rule; edits typed on Dhan's web are not counted
        # against it here (a manual trader may nudge an order more often).
        if source == "P" and order.modifications >= self.max_modifications:
            raise order_error(
                f"Order {order.order_id} has reached the limit of {self.max_modifications} "
                "modifications"
            )
        inst = order.inst
        if req.quantity % inst.lot_size:
            raise input_error(
                f"quantity {req.quantity} must be a multiple of the lot size {inst.lot_size}"
            )
        if req.quantity <= order.filled_qty:
            raise input_error(
                f"quantity {req.quantity} must exceed the filled quantity {order.filled_qty} "
                "(quantity is the total order quantity)"
            )
        if inst.max_order_qty and req.quantity > inst.max_order_qty:
            raise input_error(
                f"quantity {req.quantity} exceeds the freeze limit (at most "
                f"{inst.max_order_qty} per order)"
            )
        if req.disclosed_qty and req.disclosed_qty % inst.lot_size:
            raise input_error(
                f"disclosedQuantity must be a multiple of the lot size {inst.lot_size}"
            )
        for name, value in (("price", req.price), ("triggerPrice", req.trigger_price)):
            if value and not _on_tick(value, inst.tick_size):
                raise input_error(f"{name} {value} is not a multiple of tick size {inst.tick_size}")
        order_type, price, trigger = self._api_conversion(
            source, req.order_type, req.price, req.trigger_price, inst, order.side
        )
        if order_type in ("MARKET", "STOP_LOSS_MARKET"):
            price = 0.0
        new_block = 0.0
        if order.side == "BUY":
            new_block = self._required_margin(
                order, req.quantity - order.filled_qty, order_type, price
            )
            available = self.available(acct) + order.blocked
            if new_block > available + 1e-9:
                raise order_error(
                    f"RMS: Insufficient funds for modification. Required margin {new_block:.2f}, "
                    f"available {available:.2f}"
                )
        stop_types = ("STOP_LOSS", "STOP_LOSS_MARKET")
        if order_type in stop_types and (
            order.order_type not in stop_types or trigger != order.trigger_price
        ):
            order.triggered = False
        order.order_type = order_type
        order.requested_type = req.order_type
        order.price = price
        order.trigger_price = trigger if order_type in ("STOP_LOSS", "STOP_LOSS_MARKET") else 0.0
        order.quantity = req.quantity
        order.disclosed_qty = req.disclosed_qty
        order.validity = req.validity
        order.blocked = new_block
        order.modifications += 1
        order.update_time = self.now()
        if order_type != req.order_type:
            order.remarks = self._conversion_remark(req.order_type)
        if order.status == "PART_TRADED" and order.remaining == 0:
            order.status = "TRADED"
        if self.modify_alert or order.status == "TRADED":
            self._emit(order)
        if order.status in ("PENDING", "PART_TRADED") and self.session.is_open(
            inst.segment, self.now()
        ):
            self._enter(order)
        return order

    def cancel(self, client_id: str, order_id: str) -> SimOrder:
        order = self.get_order(client_id, order_id)
        if not order.is_open:
            raise order_error(f"Order {order.order_id} is {order.status} and cannot be cancelled")
        self._finish(order, "CANCELLED", "CANCELLED")
        return order

    def end_of_day(self) -> None:
        """Expires every open order, as the exchange does at the close."""
        for acct in self.accounts.values():
            for order in acct.orders:
                if order.is_open:
                    self._finish(order, "EXPIRED", "Order expired at end of day")

    def new_day(self, expiry_alerts: bool = True) -> None:
        """The next trading day: what was open expires at the close, with its alerts or
        silently (whether Dhan's order stream sends them is not documented), and intraday
        positions still held are squared off at the last price, as Dhan's RMS does before the
        close (no order or alert is modelled for it). Then every account's order and trade
        books start empty, as Dhan's do each morning: the orders of an earlier day are neither
        listed nor found by id or correlationId. A position left flat is gone from the
        positions (its profit or loss is in the funds); one carried overnight (CNC, MARGIN,
        MTF) stays as it was (a simplification: Dhan lists delivery buys as holdings)."""
        if expiry_alerts:
            self.end_of_day()
        for acct in self.accounts.values():
            for order in acct.orders:
                if order.is_open:  # no alert: the expiry Dhan's stream may never send
                    order.status, order.reason, order.blocked = "EXPIRED", "Order expired", 0.0
            for key, pos in list(acct.positions.items()):
                net = pos.net_qty
                if net and pos.product in INTRADAY_ONLY_PRODUCTS:
                    value = abs(net) * self.last_price(pos.inst)
                    if net > 0:
                        pos.sell_qty, pos.sell_value = pos.sell_qty + net, pos.sell_value + value
                    else:
                        pos.buy_qty, pos.buy_value = pos.buy_qty - net, pos.buy_value + value
                if pos.net_qty == 0:
                    acct.funds += pos.realized
                    del acct.positions[key]
                else:  # carried: what it holds was bought and sold on earlier days
                    pos.carried_buy_qty, pos.carried_buy_value = pos.buy_qty, pos.buy_value
                    pos.carried_sell_qty, pos.carried_sell_value = pos.sell_qty, pos.sell_value
            acct.orders.clear()
            acct.trades.clear()

    def positions_as_of(self, client_id: str, at: datetime) -> list[SimPosition]:
        """The account's positions as they stood at `at` (this day's trades after it taken
        back out): what a positions service trailing the order stream would answer."""
        acct = self.account(client_id)
        then = {key: replace(pos) for key, pos in acct.positions.items()}
        for trade in acct.trades:
            if trade.time <= at:
                continue
            order = trade.order
            pos = then.get((order.inst.segment, order.inst.security_id, order.product))
            if pos is None:
                continue
            if order.side == "BUY":
                pos.buy_qty -= trade.quantity
                pos.buy_value -= trade.quantity * trade.price
            else:
                pos.sell_qty -= trade.quantity
                pos.sell_value -= trade.quantity * trade.price
        return [p for p in then.values() if p.buy_qty or p.sell_qty]

    def exit_all(self, client_id: str) -> None:
        """DELETE /positions: cancel open orders and square off open positions at the LTP."""
        acct = self.account(client_id)
        for order in list(acct.orders):
            if order.is_open:
                self._finish(order, "CANCELLED", "Cancelled by exit all")
        for pos in list(acct.positions.values()):
            if pos.net_qty:
                req = OrderRequest(
                    side="SELL" if pos.net_qty > 0 else "BUY",
                    segment=pos.inst.segment,
                    product=pos.product,
                    order_type="MARKET",
                    validity="DAY",
                    security_id=pos.inst.security_id,
                    quantity=abs(pos.net_qty),
                )
                self._place(client_id, req, "N", slicing=True)

    # ---- kill switch, funds ---------------------------------------------------------------
    def set_kill_switch(self, client_id: str, activate: bool) -> None:
        acct = self.account(client_id)
        if activate:
            if any(o.is_open for o in acct.orders):
                raise order_error(
                    "Kill switch cannot be activated while orders are pending; cancel them first"
                )
            if any(p.net_qty for p in acct.positions.values()):
                raise order_error(
                    "Kill switch cannot be activated while positions are open; close them first"
                )
        acct.kill_switch = activate

    def blocked(self, acct: SimAccount) -> float:
        orders = sum(o.blocked for o in acct.orders if o.is_open)
        positions = sum(
            p.net_qty * p.buy_avg * MARGIN_RATES.get(p.product, DEFAULT_MARGIN_RATE)
            for p in acct.positions.values()
            if p.net_qty > 0
        )
        return orders + positions

    def realized(self, acct: SimAccount) -> float:
        return sum(p.realized for p in acct.positions.values())

    def available(self, acct: SimAccount) -> float:
        return acct.funds + self.realized(acct) - self.blocked(acct)

    def token_validity(self, acct: SimAccount, token: str | None = None) -> datetime:
        """When ``token`` stops working. The account's own (``--account``) token is a day's
        token from its issue time: the profile's ``token_validity_s`` is for minted tokens, and
        the pasted one keeps working whatever it is (a profile saying it expired would not)."""
        minted = acct.minted.get(token or "")
        if minted is not None:
            return minted
        return acct.token_issued + timedelta(days=1)

    # ---- listeners -------------------------------------------------------------------------
    def _emit(self, order: SimOrder) -> None:
        for listener in list(self.listeners):
            listener(order)


def _window_name(seconds: float) -> str:
    names = {1.0: "second", 60.0: "minute", 3600.0: "hour", 86400.0: "day"}
    return names.get(seconds, f"{seconds:g} seconds")
