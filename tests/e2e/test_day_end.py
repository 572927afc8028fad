"""The next morning: Dhan's orders last one trading day.

A trader stops the engine after the close and starts it the next morning with the same
database. Overnight the exchange expired whatever was still open, and Dhan's order books start
the day empty: yesterday's orders are not listed, nor found by id. The engine must not go on
holding them as open: a protective exit the leader places again in the morning would be sized
to nothing ("already working to close"), and the kill switch would try to cancel orders Dhan no
longer knows.

The simulator and the engine share one clock here, moved a day on between the sessions, and
each account gets a new token in the morning (a pasted token lasts a day).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import pytest

from engine.clock import IST, SystemClock
from engine.domain import MirrorState, OrderStatus
from engine.events import AlertRaised
from engine.simulator.server import DhanSimulator
from tests.e2e.conftest import ALPHA, BETA, LEADER, NIFTY_CE, RELIANCE, World, WorldFactory
from tests.sim_profile import sim_profile

QTY = 10
LOT = 65  # NIFTY_CE's lot


# Day one: a Wednesday morning, the market open (whatever the time the test runs at).
DAY_ONE = IST.localize(datetime(2026, 12, 2, 11, 0))


class ShiftedClock(SystemClock):
    """The system's time, running from 11:00 on day one, moved on by a day when the test
    says the night has passed."""

    def __init__(self) -> None:
        self.shift = DAY_ONE - super().now()

    def now(self) -> datetime:
        return super().now() + self.shift

    @property
    def days(self) -> int:
        return (self.now() - DAY_ONE).days


@pytest.fixture
def clock() -> ShiftedClock:
    return ShiftedClock()


@pytest.fixture
async def sim(clock: ShiftedClock) -> AsyncIterator[DhanSimulator]:
    """The e2e simulator, on the shifted clock (overrides conftest's)."""
    simulator = DhanSimulator(
        accounts={LEADER[0]: LEADER[1], ALPHA[0]: ALPHA[1], BETA[0]: BETA[1]},
        profile=sim_profile(),
        clock=clock,
    )
    await simulator.start(host="127.0.0.1", port=0)
    try:
        yield simulator
    finally:
        await simulator.stop()


def _next_morning(world: World, clock: ShiftedClock, expiry_alerts: bool = True) -> None:
    """The close, the night and the new day's empty books; every account's new token."""
    world.sim.new_day(expiry_alerts=expiry_alerts)
    clock.shift += timedelta(days=1)
    for client_id, name in ((LEADER[0], "leader"), (ALPHA[0], "alpha"), (BETA[0], "beta")):
        account = world.sim.exchange.account(client_id)
        account.token = f"tok-{name}-{clock.days}"
        account.token_issued = clock.now()
    world.extra["leader__access_token"] = f"tok-leader-{clock.days}"
    world.followers = [
        dict(f, access_token=f"tok-{f['name']}-{clock.days}") for f in world.followers
    ]


def _day_ended_alerts(world: World) -> list[str]:
    return [
        e.alert.message
        for e in world.events
        if isinstance(e, AlertRaised) and e.alert.code == "DAY_ENDED"
    ]


def _requests_for(world: World, client_id: str, order_ids: set[str]) -> list[str]:
    """Order requests (modify, cancel, reads by id) a follower made about these orders."""
    return [
        f"{r['method']} {r['path']}"
        for r in world.sim.requests
        if r["client_id"] == client_id
        and any(r["path"].rstrip("/").endswith(f"/orders/{i}") for i in order_ids)
    ]


async def _holding_with_a_resting_exit(world: World) -> tuple[str, set[str], set[str]]:
    """Day one: the leader buys 10 RELIANCE at market and rests a sell 10 above it; both
    copied (alpha x1, beta x2). The resting exit's id, alpha's and beta's copies of it."""
    price = world.sim.price(*RELIANCE)
    world.place(key=RELIANCE, qty=QTY, order_type="MARKET")
    await world.follower_order("alpha")
    await world.follower_order("beta")
    await world.settle()
    exit_id = world.place(key=RELIANCE, side="SELL", qty=QTY, price=round(price + 50))
    alpha = await world.follower_order("alpha", 2)
    beta = await world.follower_order("beta", 2)
    await world.settle()
    assert [o["orderStatus"] for o in alpha] == ["TRADED", "PENDING"]
    return exit_id, {str(alpha[1]["orderId"])}, {str(beta[1]["orderId"])}


async def test_the_next_morning_yesterdays_open_orders_are_expired_and_todays_copied_in_full(
    make_world: WorldFactory, clock: ShiftedClock
) -> None:
    world = await make_world(clock=clock)
    exit_id, alpha_old, beta_old = await _holding_with_a_resting_exit(world)
    await world.stop_engine()
    _next_morning(world, clock)

    await world.start_engine()
    await world.settle()
    leader = next(s for s in world.eng.leader_orders() if s.order_id == exit_id)
    assert leader.status is OrderStatus.EXPIRED and "trading day" in leader.reason
    for name in ("alpha", "beta"):
        copy = world.eng.mirror(name, exit_id)
        assert copy is not None and copy.state is MirrorState.DONE, copy
        assert copy.broker_status is OrderStatus.EXPIRED and not copy.is_open_at_broker
    assert len(_day_ended_alerts(world)) == 1
    assert "1 leader order(s) and 2 copy(ies)" in _day_ended_alerts(world)[0]

    # The leader rests his exit again: each follower's copy is its whole holding, not
    # nothing because yesterday's expired copy was still counted as working to close it.
    price = world.sim.price(*RELIANCE)
    new_exit = world.place(key=RELIANCE, side="SELL", qty=QTY, price=round(price + 50))
    alpha = await world.follower_order("alpha")
    beta = await world.follower_order("beta")
    await world.settle()
    assert [(o["transactionType"], o["quantity"]) for o in alpha] == [("SELL", QTY)]
    assert [(o["transactionType"], o["quantity"]) for o in beta] == [("SELL", 2 * QTY)]

    # The kill switch cancels today's copies, and asks nothing about yesterday's.
    await world.eng.kill("trader pressed K")
    await world.until(
        lambda: all(
            world.orders(who)[0]["orderStatus"] == "CANCELLED" for who in ("alpha", "beta")
        ),
        what="today's copies cancelled",
    )
    await world.settle()
    for name in ("alpha", "beta"):
        copy = world.eng.mirror(name, new_exit)
        assert copy is not None and copy.broker_status is OrderStatus.CANCELLED
    assert _requests_for(world, ALPHA[0], alpha_old) == []
    assert _requests_for(world, BETA[0], beta_old) == []
    assert not [a for a in world.eng.recent_alerts() if a.code == "CANCEL_REFUSED"]

    # Settled once: the next start has nothing to say about it.
    await world.stop_engine()
    await world.start_engine()
    await world.settle()
    assert len(_day_ended_alerts(world)) == 1


async def test_an_intraday_position_squared_off_overnight_starts_the_next_day_flat(
    make_world: WorldFactory, clock: ShiftedClock
) -> None:
    """alpha copied one lot per leader entry. Yesterday the leader bought 3 lots of an
    option, intraday, alpha 1; both were still held at the close, and Dhan squared both off.
    Overnight the trader set alpha to twice the leader's size. This morning the leader sells
    1 lot: a new short, which alpha copies at its new size, not a trim of a position neither
    account holds any more; and nothing tops yesterday's filled copy up to the new size."""
    alpha = {
        "name": "alpha",
        "client_id": ALPHA[0],
        "access_token": ALPHA[1],
        "sizing": {"kind": "fixed_lots", "lots": 1},
    }
    world = await make_world(followers=[alpha], clock=clock)
    world.place(key=NIFTY_CE, qty=3 * LOT, order_type="MARKET")
    (bought,) = await world.follower_order("alpha")
    assert bought["quantity"] == LOT
    await world.settle()
    await world.stop_engine()
    _next_morning(world, clock)
    assert world.sim.exchange.account(ALPHA[0]).positions == {}  # squared off by Dhan
    world.followers = [dict(world.followers[0], sizing={"kind": "multiplier", "multiplier": 2})]

    await world.start_engine()
    await world.settle()
    (said,) = _day_ended_alerts(world)
    assert f"alpha {NIFTY_CE[1]} INTRADAY: leader +{3 * LOT}, follower +{LOT}" in said
    world.place(key=NIFTY_CE, side="SELL", qty=LOT, order_type="MARKET")
    (sold,) = await world.follower_order("alpha")
    assert (sold["transactionType"], sold["quantity"]) == ("SELL", 2 * LOT)
    await world.settle()
    assert len(world.posts("alpha")) == 2  # yesterday's copy and today's: no top-up
    # Restarted later that day: nothing of it is squared off again, nor topped up.
    await world.stop_engine()
    await world.start_engine()
    await world.settle()
    assert len(_day_ended_alerts(world)) == 1
    assert len(world.posts("alpha")) == 2


async def test_what_the_leader_held_intraday_at_the_attach_point_ends_with_its_day(
    make_world: WorldFactory, clock: ShiftedClock
) -> None:
    """The leader already held a lot of an option, intraday, when alpha was attached: that
    holding is history, never copied. Dhan squared it off at the close. This morning the
    leader sells a lot: a new short, which alpha copies, not the leader's exit of a holding
    that was never copied."""
    alpha = {
        "name": "alpha",
        "client_id": ALPHA[0],
        "access_token": ALPHA[1],
        "sizing": {"kind": "fixed_lots", "lots": 1},
    }
    world = await make_world(followers=[alpha], clock=clock, start=False)
    world.place(key=NIFTY_CE, qty=LOT, order_type="MARKET")  # before the engine ever ran
    clock.shift += timedelta(seconds=5)  # Dhan stamps whole seconds: clearly before attaching
    await world.start_engine()  # alpha attached: the leader holds +1 lot, not copied
    await world.settle()
    assert world.orders("alpha") == []
    await world.stop_engine()
    _next_morning(world, clock)

    await world.start_engine()
    await world.settle()
    world.place(key=NIFTY_CE, side="SELL", qty=LOT, order_type="MARKET")
    (sold,) = await world.follower_order("alpha")
    assert (sold["transactionType"], sold["quantity"]) == ("SELL", LOT)


async def test_killed_yesterday_resumed_today_places_nothing_of_yesterday(
    make_world: WorldFactory, clock: ShiftedClock
) -> None:
    """K yesterday cancelled the copies of the leader's resting buy, which stayed open at
    Dhan until the close. Resumed this morning with "place again what has no copy", nothing
    of yesterday is placed: the leader's order has expired."""
    world = await make_world(clock=clock)
    leader_id = world.place(key=RELIANCE, qty=QTY, price=round(world.sim.price(*RELIANCE) - 50))
    await world.follower_order("alpha")
    await world.follower_order("beta")
    await world.settle()
    await world.eng.kill("trader pressed K")
    await world.until(
        lambda: world.orders("beta")[0]["orderStatus"] == "CANCELLED", what="copies cancelled"
    )
    await world.settle()
    await world.stop_engine()
    _next_morning(world, clock)

    await world.start_engine()
    await world.settle()
    report = await world.eng.resume(replace_open=True)
    assert report.uncopied == () and report.replaced == ()
    await world.settle()
    assert world.orders("alpha") == [] and world.orders("beta") == []
    assert len(world.posts("alpha")) == len(world.posts("beta")) == 1  # yesterday's only
    leader = next(s for s in world.eng.leader_orders() if s.order_id == leader_id)
    assert leader.status is OrderStatus.EXPIRED


async def test_a_day_that_ends_while_the_engine_runs_is_settled_by_the_next_reconcile(
    make_world: WorldFactory, clock: ShiftedClock
) -> None:
    """Whether Dhan's order stream sends the close's expiries is not documented: here it does
    not, and the engine runs through the night. The next reconcile (R here) settles the day."""
    world = await make_world(clock=clock)
    exit_id, alpha_old, beta_old = await _holding_with_a_resting_exit(world)
    _next_morning(world, clock, expiry_alerts=False)
    assert world.eng.mirror("alpha", exit_id).is_open_at_broker  # type: ignore[union-attr]

    await world.eng.resync()
    await world.settle()
    for name in ("alpha", "beta"):
        copy = world.eng.mirror(name, exit_id)
        assert copy is not None and copy.broker_status is OrderStatus.EXPIRED, copy
    assert len(_day_ended_alerts(world)) == 1
    await world.eng.kill("trader pressed K")
    await world.settle()
    assert _requests_for(world, ALPHA[0], alpha_old) == []
    assert _requests_for(world, BETA[0], beta_old) == []


async def test_when_the_stream_tells_of_the_expiries_there_is_nothing_left_to_settle(
    make_world: WorldFactory, clock: ShiftedClock
) -> None:
    world = await make_world(clock=clock)
    exit_id, _, _ = await _holding_with_a_resting_exit(world)
    _next_morning(world, clock, expiry_alerts=True)
    await world.until(
        lambda: (
            world.eng.mirror("beta", exit_id).broker_status  # type: ignore[union-attr]
            is OrderStatus.EXPIRED
        ),
        what="the expiry alerts taken",
    )
    await world.eng.resync()
    await world.settle()
    assert _day_ended_alerts(world) == []


async def test_a_placement_left_unanswered_overnight_is_not_looked_for_the_next_day(
    make_world: WorldFactory, clock: ShiftedClock
) -> None:
    """The process died while Dhan held alpha's placement: its intent was never answered. The
    next morning it is not looked up, held as in flight, or placed: its day is over."""
    world = await make_world(clock=clock)
    price = round(world.sim.price(*RELIANCE) - 50)
    world.sim.faults.delay_next(1, 5.0, match="POST /v2/orders", client_id=ALPHA[0])
    leader_id = world.place(key=RELIANCE, qty=QTY, price=price)
    await world.follower_order("beta")
    await world.until(
        lambda: any(r["client_id"] == ALPHA[0] for r in world.posts("alpha")),
        what="alpha's placement on its way",
    )
    await world.crash_engine()
    _next_morning(world, clock)

    await world.start_engine()
    await world.settle()
    copy = world.eng.mirror("alpha", leader_id)
    assert copy is not None and copy.state is MirrorState.DONE, copy
    assert world.orders("alpha") == []
    assert len(world.posts("alpha")) == 1  # not placed again
    assert not [a for a in world.eng.recent_alerts() if a.code == "PLACE_UNRESOLVED"]
    lookups = [r for r in world.sim.requests if "/orders/external/" in r["path"]]
    assert lookups == []


async def test_a_margin_position_sold_by_hand_yesterday_is_not_sold_again_today(
    make_world: WorldFactory, clock: ShiftedClock
) -> None:
    """A MARGIN position is carried overnight. alpha's copy bought a lot yesterday, and alpha
    sold it by hand the same day; Dhan lists nothing for alpha this morning, and today's book
    does not show yesterday's sale. The leader exits his carried lot: alpha must place
    nothing (selling would make it short), beta sells what it holds."""
    world = await make_world(clock=clock)
    world.place(key=NIFTY_CE, qty=LOT, order_type="MARKET", productType="MARGIN")
    await world.follower_order("alpha")
    await world.follower_order("beta")
    await world.settle()
    world.place(
        key=NIFTY_CE, side="SELL", qty=LOT, order_type="MARKET", by=ALPHA, productType="MARGIN"
    )
    await world.follower_order("alpha", 2)
    await world.settle()
    await world.stop_engine()
    _next_morning(world, clock)

    await world.start_engine()
    await world.settle()
    await world.eng.read_positions()  # as the cockpit's timer does after a start
    leader_exit = world.place(
        key=NIFTY_CE, side="SELL", qty=LOT, order_type="MARKET", productType="MARGIN"
    )
    await world.follower_order("beta")
    await world.settle()
    net = {
        who: sum(
            p.net_qty
            for p in world.sim.exchange.account(cid).positions.values()
            if p.inst.security_id == NIFTY_CE[1]
        )
        for who, cid in (("alpha", ALPHA[0]), ("beta", BETA[0]))
    }
    assert net == {"alpha": 0, "beta": 0}
    assert world.orders("alpha") == []  # nothing placed for it today
    copy = world.eng.mirror("alpha", leader_exit)
    assert copy is not None and "closed by the follower's own trades" in copy.reason, copy
