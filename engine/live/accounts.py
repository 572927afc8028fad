"""The accounts the engine trades through: the broker protocol, and each follower's runtime
(its broker, rate limiter, dispatcher, circuit breaker and stop reason), each account's token
keeper, and the guard that tells who cares when Dhan refuses an account's token or its IP."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol, TypeVar, runtime_checkable

from pydantic import SecretStr

from engine.accounts.source_ip import refused_for_ip
from engine.accounts.tokens import TokenKeeper
from engine.clock import Clock
from engine.config import FollowerSettings, Settings
from engine.dhan.broker import CorrelationLookup, DhanBroker, Funds, Position
from engine.dhan.errors import BrokerError, BrokerResult, ResultKind
from engine.dhan.order_stream import OrderStream
from engine.dhan.recorder import Recorder
from engine.dispatch.circuit import CircuitBreaker
from engine.dispatch.dispatcher import AccountDispatcher
from engine.dispatch.rate_limiter import RateLimiter
from engine.domain import OrderParams, OrderSnapshot
from engine.replication.replicator import FollowerRules
from engine.replication.risk import OrdersPerMinute
from engine.replication.rules import CapitalRatioSizing

LEADER = "leader"

_T = TypeVar("_T")


class Broker(Protocol):
    async def place(self, params: OrderParams) -> BrokerResult: ...
    async def modify(
        self, order_id: str, params: OrderParams, leg_name: str = ""
    ) -> BrokerResult: ...
    async def cancel(self, order_id: str) -> BrokerResult: ...
    async def order_book(self) -> list[OrderSnapshot]: ...
    async def order_by_id(self, order_id: str) -> OrderSnapshot | None: ...
    async def order_by_correlation(self, correlation_id: str) -> OrderSnapshot | None: ...
    async def find_by_correlation(
        self, correlation_id: str, *, complete: bool = False
    ) -> CorrelationLookup: ...
    async def place_sliced(self, params: OrderParams) -> BrokerResult: ...
    async def positions(self) -> list[Position]: ...
    async def fund_limits(self) -> Funds: ...
    async def kill_switch(self, activate: bool) -> BrokerResult: ...
    async def close(self) -> None: ...


BrokerFactory = Callable[[str, str, str, str, float], Broker]
"""(account name, client id, access token, REST URL, timeout) -> broker."""


def default_broker_factory(
    account: str, client_id: str, token: str, rest_url: str, timeout_s: float
) -> Broker:
    return DhanBroker(client_id, token, rest_url, timeout_s=timeout_s)


def source_ips(settings: Settings) -> dict[str, str]:
    """Each account's static IP (the address its calls leave from), by account name."""
    ips = {LEADER: settings.leader.source_ip} | {f.name: f.source_ip for f in settings.followers}
    return {name: ip for name, ip in ips.items() if ip}


def source_bound_factory(settings: Settings, recorder: Recorder | None = None) -> BrokerFactory:
    """The default factory, each account's broker bound to its ``source_ip`` (and, with
    ``copytrade run --record DIR``, writing every REST exchange to ``recorder``, redacted)."""
    ips = source_ips(settings)

    def factory(
        account: str, client_id: str, token: str, rest_url: str, timeout_s: float
    ) -> Broker:
        return DhanBroker(
            client_id,
            token,
            rest_url,
            timeout_s=timeout_s,
            account=account,
            source_ip=ips.get(account),
            recorder=recorder,
        )

    return factory


@runtime_checkable
class TokenHolder(Protocol):
    """A broker or stream whose token can change while it runs (a renewed or replaced one)."""

    def use_token(self, access_token: str) -> None: ...


@runtime_checkable
class TokenReporter(Protocol):
    @property
    def token_in_use(self) -> str: ...


OnTokenRefused = Callable[[str, str | None], Awaitable[bool]]
"""(account, the token the refused call was sent with; None when unknown) -> True when another
working token is in place now (minted, or it had already been replaced)."""
OnIpRefused = Callable[[str, BrokerResult], None]
"""(account, the answer refusing an order for its source address)."""


class GuardedBroker:
    """An account's broker, watched.

    A call Dhan refuses for its token (DH-901; DH-902 and 807-810 alike) is told to
    ``on_token_refused`` with the token it went with; when that gives a new working token (the
    keeper minted one), the call is sent once more with it: refused at the door, it did
    nothing at Dhan, so sending it again cannot double an order, and the copy is not lost to a
    token that ran out. An order refused for its source address (DH-911, or DH-905/906 saying
    IP) is told to ``on_ip_refused``. Everything else is forwarded untouched."""

    def __init__(
        self,
        account: str,
        inner: Broker,
        on_token_refused: OnTokenRefused,
        on_ip_refused: OnIpRefused,
    ) -> None:
        self.account = account
        self.inner = inner
        self._on_token_refused = on_token_refused
        self._on_ip_refused = on_ip_refused
        # Asked once: a runtime protocol check on every order call would cost microseconds.
        self._reporter = inner if isinstance(inner, TokenReporter) else None

    def __repr__(self) -> str:
        return f"GuardedBroker({self.account!r}, {self.inner!r})"

    def __getattr__(self, name: str) -> object:  # what a test or bench broker adds
        return getattr(self.inner, name)

    def use_token(self, access_token: str) -> None:
        if isinstance(self.inner, TokenHolder):
            self.inner.use_token(access_token)

    def _token(self) -> str | None:
        """The token a call starts with (None: this broker does not say)."""
        return None if self._reporter is None else self._reporter.token_in_use

    async def _send(
        self, send: Callable[[], Awaitable[BrokerResult]], *, order: bool
    ) -> BrokerResult:
        token = self._token()
        result = await send()
        if result.kind is ResultKind.AUTH_FAILED:
            if not await self._on_token_refused(self.account, token):
                return result
            token = self._token()
            result = await send()  # once, with the new token
            if result.kind is ResultKind.AUTH_FAILED:
                await self._on_token_refused(self.account, token)
                return result
        if (
            order
            and result.kind is ResultKind.REFUSED
            and refused_for_ip(result.error_code, result.message)
        ):
            self._on_ip_refused(self.account, result)
        return result

    async def _read(self, read: Callable[[], Awaitable[_T]]) -> _T:
        token = self._token()
        try:
            return await read()
        except BrokerError as exc:
            if exc.result.kind is not ResultKind.AUTH_FAILED:
                raise
            if not await self._on_token_refused(self.account, token):
                raise
        token = self._token()
        try:
            return await read()  # once, with the new token
        except BrokerError as exc:
            if exc.result.kind is ResultKind.AUTH_FAILED:
                await self._on_token_refused(self.account, token)
            raise

    async def place(self, params: OrderParams) -> BrokerResult:
        return await self._send(lambda: self.inner.place(params), order=True)

    async def place_sliced(self, params: OrderParams) -> BrokerResult:
        return await self._send(lambda: self.inner.place_sliced(params), order=True)

    async def modify(self, order_id: str, params: OrderParams, leg_name: str = "") -> BrokerResult:
        return await self._send(lambda: self.inner.modify(order_id, params, leg_name), order=True)

    async def cancel(self, order_id: str) -> BrokerResult:
        return await self._send(lambda: self.inner.cancel(order_id), order=True)

    async def kill_switch(self, activate: bool) -> BrokerResult:
        return await self._send(lambda: self.inner.kill_switch(activate), order=False)

    async def order_book(self) -> list[OrderSnapshot]:
        return await self._read(self.inner.order_book)

    async def order_by_id(self, order_id: str) -> OrderSnapshot | None:
        return await self._read(lambda: self.inner.order_by_id(order_id))

    async def order_by_correlation(self, correlation_id: str) -> OrderSnapshot | None:
        return await self._read(lambda: self.inner.order_by_correlation(correlation_id))

    async def find_by_correlation(
        self, correlation_id: str, *, complete: bool = False
    ) -> CorrelationLookup:
        return await self.inner.find_by_correlation(correlation_id, complete=complete)

    async def positions(self) -> list[Position]:
        return await self._read(self.inner.positions)

    async def fund_limits(self) -> Funds:
        return await self._read(self.inner.fund_limits)

    async def close(self) -> None:
        await self.inner.close()


def token_of(secret: SecretStr | None) -> str:
    """The pasted access token; "" when the account mints its own (pin + TOTP), which the
    token keeper supplies (engine.accounts)."""
    return secret.get_secret_value() if secret is not None else ""


@dataclass
class FollowerRuntime:
    settings: FollowerSettings
    rules: FollowerRules
    broker: Broker
    limiter: RateLimiter
    dispatcher: AccountDispatcher
    circuit: CircuitBreaker
    orders_per_minute: OrdersPerMinute = field(default_factory=OrdersPerMinute)
    stream: OrderStream | None = None
    killed_reason: str = ""  # this follower alone is stopped (loss limit, token, ...)

    @property
    def name(self) -> str:
        return self.settings.name

    @property
    def refresh_s(self) -> float:
        """How old its capital (for capital-ratio sizing) may get."""
        # isinstance, not getattr: a pydantic model's missing attribute costs an exception
        # inside pydantic on every decision of every follower.
        sizing = self.rules.sizing
        return sizing.refresh_s if isinstance(sizing, CapitalRatioSizing) else 60.0


@dataclass
class Accounts:
    """The leader's broker and stream and the followers; filled in when the engine starts."""

    leader_broker: Broker | None = None
    leader_stream: OrderStream | None = None
    followers: dict[str, FollowerRuntime] = field(default_factory=dict)
    # Each account's token keeper by name (LEADER too); empty until the engine starts them.
    keepers: dict[str, TokenKeeper] = field(default_factory=dict)

    def token_for(self, account: str, pasted: SecretStr | None) -> str:
        """The token the account's calls and socket start with: its keeper's, else pasted."""
        keeper = self.keepers.get(account)
        if keeper is not None and keeper.has_token:
            return keeper.token()
        return token_of(pasted)

    def leader(self) -> Broker:
        assert self.leader_broker is not None, "engine not started"
        return self.leader_broker

    def all(self) -> list[FollowerRuntime]:
        return list(self.followers.values())


def build_follower(
    fs: FollowerSettings,
    settings: Settings,
    clock: Clock,
    broker_factory: BrokerFactory,
    work: Callable[[FollowerRuntime, str], Awaitable[None]],
    token: str | None = None,
    guard: Callable[[str, Broker], Broker] | None = None,
) -> FollowerRuntime:
    lim = settings.limiter
    limiter = RateLimiter(
        fs.name,
        clock,
        windows=(
            ("second", 1.0, lim.per_second),
            ("minute", 60.0, lim.per_minute),
            ("hour", 3600.0, lim.per_hour),
            ("day", 86400.0, lim.per_day),
        ),
        headroom=lim.headroom,
    )
    rules = FollowerRules(fs.name, fs.sizing, fs.bounds, fs.filters, fs.risk)
    broker = broker_factory(
        fs.name,
        fs.client_id,
        token_of(fs.access_token) if token is None else token,
        settings.dhan.rest_url,
        settings.dhan.timeout_s,
    )
    if guard is not None:
        broker = guard(fs.name, broker)
    circuit = CircuitBreaker(
        clock, threshold=settings.circuit_threshold, cooldown_s=settings.circuit_cooldown_s
    )
    runtime: FollowerRuntime

    async def run_work(key: str) -> None:
        await work(runtime, key)

    runtime = FollowerRuntime(
        fs, rules, broker, limiter, AccountDispatcher(fs.name, run_work, concurrency=4), circuit
    )
    return runtime
