"""The guard around each account's broker: a DH-901 is reported with the token the call went
with (an older token's refusal is told apart) and, when the keeper has a new token, the call is
sent once more with it; an order refused for its IP is reported; everything else passes
through untouched."""

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
    """Answers what it is told; with ``dead`` set, Dhan refuses that token (DH-901)."""

    def __init__(self) -> None:
        self.token_in_use = OLD
        self.answer = BrokerResult(ResultKind.OK, order_id="1")
        self.read_error: BrokerResult | None = None
        self.dead: set[str] = set()
        self.sent: list[str] = []  # the token of each place sent
        self.closed = False
        self.extra = "kept"

    def use_token(self, access_token: str) -> None:
        self.token_in_use = access_token

    async def place(self, params: OrderParams) -> BrokerResult:
        self.sent.append(self.token_in_use)
        if self.token_in_use in self.dead:
            return REFUSED_TOKEN
        return self.answer

    async def place_sliced(self, params: OrderParams) -> BrokerResult:
        return self.answer

    async def modify(self, order_id: str, params: OrderParams, leg_name: str = "") -> BrokerResult:
        return self.answer

    async def cancel(self, order_id: str) -> BrokerResult:
        return self.answer

    async def kill_switch(self, activate: bool) -> BrokerResult:
        return self.answer

    async def order_book(self) -> list[OrderSnapshot]:
        if self.token_in_use in self.dead:
            raise BrokerError(REFUSED_TOKEN)
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


def guarded(
    *, can_mint: bool = True
) -> tuple[GuardedBroker, FakeBroker, list[tuple[str, str | None]], list[str]]:
    """A guard whose keeper mints NEW on a refusal of OLD (when it can), as the engine's."""
    inner = FakeBroker()
    tokens: list[tuple[str, str | None]] = []
    ips: list[str] = []

    async def on_token_refused(account: str, token: str | None) -> bool:
        tokens.append((account, token))
        if token != inner.token_in_use:
            return True  # already replaced: send again with the new one
        if not can_mint:
            return False
        inner.use_token(NEW)
        return True

    guard = GuardedBroker(
        "alpha",
        inner,
        on_token_refused,
        lambda account, result: ips.append(f"{account} {result.error_code}"),
    )
    return guard, inner, tokens, ips


async def test_a_refused_token_is_reminted_and_the_order_sent_once_more() -> None:
    guard, inner, tokens, ips = guarded()
    inner.dead = {OLD}
    assert (await guard.place(PARAMS)).order_id == "1"
    assert inner.sent == [OLD, NEW]  # refused at the door, then sent with the new token
    assert tokens == [("alpha", OLD)] and ips == []


async def test_with_no_new_token_the_refusal_is_the_answer_and_nothing_is_resent() -> None:
    guard, inner, tokens, _ = guarded(can_mint=False)
    inner.dead = {OLD}
    assert await guard.place(PARAMS) == REFUSED_TOKEN
    assert inner.sent == [OLD] and tokens == [("alpha", OLD)]


async def test_a_token_refused_again_after_the_new_one_is_not_resent_twice() -> None:
    guard, inner, tokens, _ = guarded()
    inner.dead = {OLD, NEW}  # e.g. DH-902: no token will do
    assert await guard.place(PARAMS) == REFUSED_TOKEN
    assert inner.sent == [OLD, NEW]
    assert tokens == [("alpha", OLD), ("alpha", NEW)]


async def test_a_read_refused_for_its_token_is_read_again_with_the_new_one() -> None:
    guard, inner, tokens, _ = guarded()
    inner.dead = {OLD}
    assert await guard.order_book() == []
    assert tokens == [("alpha", OLD)]
    stuck, inner, tokens, _ = guarded(can_mint=False)
    inner.dead = {OLD}
    with pytest.raises(BrokerError):
        await stuck.order_book()
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
