"""The accounts the engine trades through: the broker protocol, and each follower's runtime
(its broker, rate limiter, dispatcher, circuit breaker and stop reason)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from pydantic import SecretStr

from engine.clock import Clock
from engine.config import FollowerSettings, Settings
from engine.dhan.broker import CorrelationLookup, DhanBroker, Funds, Position
from engine.dhan.errors import BrokerResult
from engine.dhan.order_stream import OrderStream
from engine.dispatch.circuit import CircuitBreaker
from engine.dispatch.dispatcher import AccountDispatcher
from engine.dispatch.rate_limiter import RateLimiter
from engine.domain import OrderParams, OrderSnapshot
from engine.replication.replicator import FollowerRules
from engine.replication.risk import OrdersPerMinute

LEADER = "leader"


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
        return float(getattr(self.rules.sizing, "refresh_s", 60.0))


@dataclass
class Accounts:
    """The leader's broker and stream and the followers; filled in when the engine starts."""

    leader_broker: Broker | None = None
    leader_stream: OrderStream | None = None
    followers: dict[str, FollowerRuntime] = field(default_factory=dict)

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
        token_of(fs.access_token),
        settings.dhan.rest_url,
        settings.dhan.timeout_s,
    )
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
