"""The guard around each account's broker: a DH-901 is reported with the token the call went
with (an older token's refusal is told apart), an order refused for its IP is reported, and
everything else passes through untouched."""

from __future__ import annotations

import pytest

from engine.accounts.source_ip import refused_for_ip
from engine.dhan.broker import CorrelationLookup, Existence, Funds, Position
from engine.dhan.errors import BrokerError, BrokerResult, ResultKind
from engine.domain import OrderParams, OrderSnapshot, OrderType, Product, Segment, Side, Validity
from engine.live.accounts import GuardedBroker

OLD, NEW = "tok-old-" + "x" * 8, "tok-new-" + "y" * 8
REFUSED_TOKEN = BrokerResult(ResultKind.AUTH_FAILED, error_code="DH-901", message="expired")
BAD_IP = BrokerResult(
    ResultKind.REFUSED, error_code="DH-905", message="Invalid IP: 10.0.0.9 not whitelisted"
)


class FakeBroker:
    """Answers what it is told; its token changes as the engine's keeper would change it."""

    def __init__(self) -> None:
        self.token_in_use = OLD
        self.answer = BrokerResult(ResultKind.OK, order_id="1")
        self.read_error: BrokerResult | None = None
        self.closed = False
        self.extra = "kept"

    def use_token(self, access_token: str) -> None:
        self.token_in_use = access_token

    async def place(self, params: OrderParams) -> BrokerResult:
        result = self.answer
        self.token_in_use = NEW  # renewed while the call was in flight
        return result

    async def place_sliced(self, params: OrderParams) -> BrokerResult:
        return self.answer

    async def modify(self, order_id: str, params: OrderParams, leg_name: str = "") -> BrokerResult:
        return self.answer

    async def cancel(self, order_id: str) -> BrokerResult:
        return self.answer

    async def kill_switch(self, activate: bool) -> BrokerResult:
        return self.answer

    async def order_book(self) -> list[OrderSnapshot]:
        if self.read_error is not None:
            raise BrokerError(self.read_error)
        return []

    async def order_by_id(self, order_id: str) -> OrderSnapshot | None:
        return None

    async def order_by_correlation(self, correlation_id: str) -> OrderSnapshot | None:
        return None

    async def find_by_correlation(
        self, correlation_id: str, *, complete: bool = False
    ) -> CorrelationLookup:
        return CorrelationLookup(Existence.ABSENT_FROM_BOOK)

    async def positions(self) -> list[Position]:
        return []

    async def fund_limits(self) -> Funds:
        return Funds(1.0, 1.0, 0.0)

    async def close(self) -> None:
        self.closed = True


PARAMS = OrderParams(
    segment=Segment.NSE_FNO,
    security_id="48211",
    side=Side.BUY,
    order_type=OrderType.LIMIT,
    product=Product.INTRADAY,
    validity=Validity.DAY,
    quantity=65,
    price=100.0,
)


def guarded() -> tuple[GuardedBroker, FakeBroker, list[tuple[str, str | None]], list[str]]:
    inner = FakeBroker()
    tokens: list[tuple[str, str | None]] = []
    ips: list[str] = []
    guard = GuardedBroker(
        "alpha",
        inner,
        lambda account, token: tokens.append((account, token)),
        lambda account, result: ips.append(f"{account} {result.error_code}"),
    )
    return guard, inner, tokens, ips


async def test_a_refused_token_is_reported_with_the_token_the_call_went_with() -> None:
    guard, inner, tokens, ips = guarded()
    inner.answer = REFUSED_TOKEN
    assert await guard.place(PARAMS) == REFUSED_TOKEN
    assert tokens == [("alpha", OLD)]  # not NEW, which took its place meanwhile
    assert ips == []


async def test_a_read_refused_for_its_token_is_reported_and_still_raises() -> None:
    guard, inner, tokens, _ = guarded()
    inner.read_error = REFUSED_TOKEN
    with pytest.raises(BrokerError):
        await guard.order_book()
    assert tokens == [("alpha", OLD)]


async def test_an_order_refused_for_its_ip_is_reported_a_read_is_not() -> None:
    guard, inner, tokens, ips = guarded()
    inner.answer = BAD_IP
    await guard.place(PARAMS)
    await guard.modify("1", PARAMS)
    await guard.cancel("1")
    assert ips == ["alpha DH-905"] * 3 and tokens == []
    inner.read_error = BAD_IP
    with pytest.raises(BrokerError):
        await guard.order_book()
    assert len(ips) == 3


async def test_everything_else_passes_through() -> None:
    guard, inner, tokens, ips = guarded()
    assert (await guard.place(PARAMS)).order_id == "1"
    assert await guard.order_book() == []
    assert (await guard.fund_limits()).available == 1.0
    assert (await guard.find_by_correlation("c")).existence is Existence.ABSENT_FROM_BOOK
    guard.use_token("tok-replaced")
    assert inner.token_in_use == "tok-replaced"
    assert guard.extra == "kept"  # a test broker's own attributes stay reachable
    await guard.close()
    assert inner.closed and tokens == [] and ips == []


@pytest.mark.parametrize(
    ("code", "message", "expected"),
    [
        ("DH-911", "", True),
        ("dh-911", "anything", True),
        ("DH-905", "Invalid IP", True),
        ("DH-906", "Request from an IP that is not whitelisted", True),
        ("DH-906", "Order price is outside the band", False),
        ("DH-905", "Missing required fields, bad values for parameters etc.", False),
        ("DH-901", "Invalid IP", False),
        ("DH-905", "ZIPPED up", False),  # the word, not the letters
    ],
)
def test_refused_for_ip(code: str, message: str, expected: bool) -> None:
    assert refused_for_ip(code, message) is expected
