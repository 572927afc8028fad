"""The guarantees: no lost order, no duplicate, the kill switch wins, whatever the network does."""

from __future__ import annotations

import asyncio
import sqlite3
from collections import Counter

import pytest

from engine.dhan.errors import BrokerError, BrokerResult, ResultKind
from engine.domain import EngineState, MirrorState
from engine.engine import default_broker_factory
from tests.e2e.conftest import ALPHA, LEADER, NIFTY_CE, World, WorldFactory

pytestmark = pytest.mark.e2e


def assert_no_duplicates(world: World, who: str) -> None:
    posts = [r["json"].get("correlationId") for r in world.posts(who) if r["status"] == 200]
    dupes = {cid: n for cid, n in Counter(posts).items() if n > 1}
    assert not dupes, f"{who} placed twice: {dupes}"
    cids = [o["correlationId"] for o in world.orders(who)]
    assert len(cids) == len(set(cids)), f"{who} has duplicate orders"


def open_orders(world: World, who: str) -> list[dict[str, object]]:
    return [
        o for o in world.orders(who) if o["orderStatus"] in ("PENDING", "PART_TRADED", "TRANSIT")
    ]


async def test_socket_down_while_leader_places_modifies_cancels_then_converges(
    world: World,
) -> None:
    kept = world.place(price=200.0)
    doomed = world.place(price=199.0)
    await world.follower_order("alpha", 2)
    await world.settle()
    world.sim.faults.drop_sockets(LEADER[0])
    world.sim.faults.pause_delivery(LEADER[0])  # whatever happens now is never delivered
    missed = world.place(price=198.0, qty=130)
    world.modify(kept, price=201.5)
    world.cancel(doomed)
    filled_while_away = world.place(price=world.sim.price(*NIFTY_CE) + 1)  # fills at once
    await asyncio.sleep(0.3)
    world.sim.faults.resume_delivery(LEADER[0])
    world.sim.faults.drop_sockets(LEADER[0])  # reconnect -> recovery from the order book
    await world.until(lambda: len(world.orders("alpha")) == 4, what="missed orders placed")
    await world.until(
        lambda: {o["price"] for o in open_orders(world, "alpha")} == {201.5, 198.0},
        what="alpha converged",
    )
    await world.settle()
    by_cid = {o["correlationId"]: o for o in world.orders("alpha")}
    assert len(by_cid) == 4
    statuses = Counter(o["orderStatus"] for o in world.orders("alpha"))
    assert statuses["CANCELLED"] == 1 and statuses["TRADED"] == 1
    assert world.eng.mirror("alpha", missed) is not None
    assert world.eng.mirror("alpha", filled_while_away) is not None
    assert any(
        r.report.trigger == "reconnect" and r.report.discrepancies and r.report.actions_taken
        for r in world.recoveries()
    )
    assert_no_duplicates(world, "alpha")
    assert_no_duplicates(world, "beta")


async def test_same_alert_twice_and_out_of_order_changes_nothing(world: World) -> None:
    world.sim.faults.duplicate_next_alerts(6)
    first = world.place(price=200.0)
    await world.follower_order("alpha")
    world.sim.faults.reorder_next_alerts(4)
    world.modify(first, price=201.0)
    world.modify(first, price=202.0)
    await world.until(lambda: world.orders("alpha")[0]["price"] == 202.0, what="latest price")
    await asyncio.sleep(0.4)  # let any stale alert arrive
    await world.settle()
    assert world.orders("alpha")[0]["price"] == 202.0
    assert_no_duplicates(world, "alpha")
    assert len(world.orders("alpha")) == 1


async def test_replaying_every_alert_through_recovery_changes_nothing(world: World) -> None:
    for price in (200.0, 199.5, 199.0):
        world.place(price=price)
    await world.follower_order("alpha", 3)
    await world.settle()
    before = len(world.sim.requests)
    for _ in range(3):
        report = await world.eng.resync()
        assert report.actions_taken == 0
        # Nothing needed work, so nothing was queued for the followers either.
        assert all(v.queue_depth == 0 for v in world.eng.limiter_views())
    assert world.eng.stats().last_leader_event_at is not None
    await world.settle()
    mutating = [r for r in world.sim.requests[before:] if r["method"] != "GET"]
    assert mutating == []


async def test_restart_in_the_middle_of_a_burst_loses_and_duplicates_nothing(
    world: World,
) -> None:
    ids = [world.place(price=180.0 - i * 0.5) for i in range(25)]
    await world.until(lambda: len(world.orders("alpha")) >= 6, what="burst under way")
    await world.crash_engine()
    more = [world.place(price=150.0 - i * 0.5) for i in range(5)]
    await world.start_engine()
    await world.until(lambda: len(world.orders("alpha")) == 30, timeout=20, what="all 30 on alpha")
    await world.until(lambda: len(world.orders("beta")) == 30, timeout=20, what="all 30 on beta")
    await world.settle()
    assert_no_duplicates(world, "alpha")
    assert_no_duplicates(world, "beta")
    for leader_id in ids + more:
        assert world.eng.mirror("alpha", leader_id) is not None


async def test_rate_limit_burst_is_paced_with_no_dh904(world: World) -> None:
    for i in range(13):
        world.place(price=180.0 - i * 0.5)
    await world.until(lambda: len(world.orders("alpha")) == 13, timeout=10, what="13 copies")
    await world.settle()
    posts = sorted(r["monotonic"] for r in world.posts("alpha"))
    assert all(r["status"] == 200 for r in world.posts("alpha"))
    assert not [r for r in world.sim.requests if r.get("error_code") == "DH-904"]
    # Any one-second window holds at most 10 of alpha's order requests.
    for i in range(len(posts)):
        assert sum(1 for t in posts if posts[i] <= t < posts[i] + 1.0) <= 10


async def test_kill_switch_during_a_burst_cancels_everything_and_sends_nothing_new(
    world: World,
) -> None:
    for i in range(20):
        world.place(price=180.0 - i * 0.5)
    await world.until(lambda: len(world.orders("alpha")) >= 5, what="burst under way")
    await world.eng.kill("test")
    # A placement already on the wire when the kill landed may still arrive; count from
    # when those have landed (the chaos suite checks the engine's own call log instead).
    await asyncio.sleep(0.3)
    killed_at = len(world.sim.requests)
    later = world.place(price=170.0)
    await world.until(
        lambda: not open_orders(world, "alpha") and not open_orders(world, "beta"),
        timeout=15,
        what="all follower orders cancelled",
    )
    await world.settle()
    after = world.sim.requests[killed_at:]
    assert not [r for r in after if r["method"] in ("POST", "PUT") and r["client_id"] != LEADER[0]]
    mirror = world.eng.mirror("alpha", later)
    assert mirror is not None and mirror.state is MirrorState.SKIPPED
    # KILLED survives a restart, and only an explicit resume lifts it.
    await world.stop_engine()
    engine = await world.start_engine()
    assert engine.state is EngineState.KILLED
    world.place(price=171.0)
    await asyncio.sleep(0.3)
    await world.settle()
    assert not open_orders(world, "alpha")
    await engine.resume()
    fresh = world.place(price=172.0)
    await world.until(lambda: any(o["price"] == 172.0 for o in world.orders("alpha")))
    assert world.eng.mirror("alpha", fresh) is not None


async def test_timeout_after_the_exchange_accepted_is_looked_up_not_placed_again(
    make_world: WorldFactory,
) -> None:
    world = await make_world(dhan__timeout_s="1")
    world.sim.faults.delay_next(1, 3.0, after_accept=True, match="POST /v2/orders")
    leader_id = world.place(price=200.0)
    await world.until(
        lambda: (
            (m := world.eng.mirror("alpha", leader_id)) is not None and m.state is MirrorState.LIVE
        ),
        timeout=15,
        what="alpha resolved",
    )
    await world.settle()
    await asyncio.sleep(2.5)  # the delayed answer arrives; nothing may follow it
    await world.settle()
    assert len(world.orders("alpha")) == 1
    assert_no_duplicates(world, "alpha")


async def test_timeout_before_the_exchange_saw_it_is_placed_again_once(
    make_world: WorldFactory,
) -> None:
    world = await make_world(dhan__timeout_s="1")
    world.sim.faults.reset_next(1, match="POST /v2/orders")
    leader_id = world.place(price=200.0)
    await world.until(
        lambda: (
            (m := world.eng.mirror("alpha", leader_id)) is not None and m.state is MirrorState.LIVE
        ),
        timeout=15,
        what="alpha placed",
    )
    await world.settle()
    assert len(world.orders("alpha")) == 1
    assert_no_duplicates(world, "alpha")


async def test_server_errors_are_retried_without_duplicates(world: World) -> None:
    world.sim.faults.fail_next(3, status=500, match="POST /v2/orders")
    leader_id = world.place(price=200.0)
    await world.until(
        lambda: (
            (m := world.eng.mirror("alpha", leader_id)) is not None
            and m.state is MirrorState.LIVE
            and (b := world.eng.mirror("beta", leader_id)) is not None
            and b.state is MirrorState.LIVE
        ),
        timeout=15,
        what="both placed",
    )
    await world.settle()
    assert len(world.orders("alpha")) == 1 and len(world.orders("beta")) == 1


async def test_capital_ratio_sizing_uses_fresh_fund_limits(make_world: WorldFactory) -> None:
    world = await make_world(
        followers=[
            {
                "name": "alpha",
                "client_id": ALPHA[0],
                "access_token": "tok-alpha-e2e",
                "sizing": {"kind": "capital_ratio", "refresh_s": 5},
            },
        ]
    )
    world.sim.add_account(LEADER[0], LEADER[1], funds=2_000_000.0)
    world.sim.add_account(ALPHA[0], "tok-alpha-e2e", funds=500_000.0)
    world.eng.forget_capital("alpha")
    world.place(price=200.0, qty=260)  # leader 4 lots; alpha has a quarter of the capital
    order = (await world.follower_order("alpha"))[0]
    assert order["quantity"] == 65


async def test_a_restart_shows_what_the_store_remembers(world: World) -> None:
    leader_id = world.place(price=200.0)
    await world.follower_order("alpha")
    await world.settle()
    await world.stop_engine()
    world.events.clear()
    await world.start_engine()
    from engine.events import FollowerOrderChanged, LeaderOrderSeen

    assert any(
        isinstance(e, LeaderOrderSeen) and e.snapshot.order_id == leader_id for e in world.events
    )
    assert any(
        isinstance(e, FollowerOrderChanged) and e.view.leader_order_id == leader_id
        for e in world.events
    )


async def test_no_re_place_when_the_cancelled_order_cannot_be_read(
    make_world: WorldFactory,
) -> None:
    """After a cancel-to-re-place, the rest is sized from what the old order filled; if
    Dhan cannot say, nothing is re-placed (a missed fill would be bought twice)."""

    class Blind:
        def __init__(self, inner: object) -> None:
            self._inner = inner

        def __getattr__(self, name: str) -> object:
            return getattr(self._inner, name)

        async def order_by_id(self, order_id: str) -> object:
            raise BrokerError(BrokerResult(ResultKind.TRANSIENT, message="order book unreachable"))

    def factory(account: str, cid: str, tok: str, url: str, timeout: float):  # type: ignore[no-untyped-def]
        inner = default_broker_factory(account, cid, tok, url, timeout)
        return Blind(inner) if account == "alpha" else inner

    world = await make_world(
        followers=[{"name": "alpha", "client_id": ALPHA[0], "access_token": "tok-alpha-e2e"}],
        broker_factory=factory,
        max_modifications="1",
    )
    leader_id = world.place(price=200.0)
    await world.follower_order("alpha")
    await world.settle()
    world.modify(leader_id, price=201.0)  # the one modification allowed
    await world.until(lambda: world.orders("alpha")[0]["price"] == 201.0, what="modified")
    await world.settle()
    world.modify(leader_id, price=202.0)  # budget used: cancel, then re-place the rest
    await world.until(
        lambda: any(
            getattr(e, "alert", None) is not None and e.alert.code == "REPLACE_HELD"  # type: ignore[attr-defined]
            for e in world.events
        ),
        timeout=15,
        what="re-place held",
    )
    await world.settle()
    assert world.orders("alpha")[0]["orderStatus"] == "CANCELLED"
    assert len(world.orders("alpha")) == 1  # nothing re-placed blind


def _price_at_dhan(world: World, who: str, order_id: str) -> float:
    return float(next(o["price"] for o in world.orders(who) if o["orderId"] == order_id))


async def _modify_held_by_dhan(world: World, seconds: float, after_accept: bool) -> tuple[str, str]:
    """A leader order copied to alpha, then moved to 199.0: Dhan holds each copy's modify
    `seconds` (after applying it, or before). The leader order's id and alpha's copy's."""
    leader_id = world.place(price=200.0)
    copy = str((await world.follower_order("alpha"))[0]["orderId"])
    await world.settle()
    world.sim.faults.delay_next(2, seconds, after_accept=after_accept, match="PUT /v2/orders")
    world.modify(leader_id, price=199.0)
    return leader_id, copy


async def test_a_modification_applied_before_a_crash_is_ours_not_a_hand_edit(
    world: World,
) -> None:
    """The engine sent a modify, Dhan applied it, and the process died before the answer:
    after the restart the copy carries what was sent, it is the engine's modification (not a
    hand edit, after which the engine would never modify the copy again), and the copy goes
    on following the leader."""
    leader_id, copy = await _modify_held_by_dhan(world, 3.0, after_accept=True)
    await world.until(
        lambda: _price_at_dhan(world, "alpha", copy) == 199.0, what="the modify applied"
    )
    await world.crash_engine()  # its answer never came back
    await world.start_engine()
    await world.settle()
    mirror = world.eng.mirror("alpha", leader_id)
    assert mirror is not None and mirror.params is not None
    assert not mirror.by_hand and mirror.params.price == 199.0
    assert not [a for a in world.eng.recent_alerts() if a.code == "COPY_CHANGED_BY_HAND"]
    world.modify(leader_id, price=198.0)
    await world.until(lambda: _price_at_dhan(world, "alpha", copy) == 198.0, what="the next modify")


async def test_a_modification_never_applied_before_a_crash_is_sent_again(
    world: World,
) -> None:
    """The process died while Dhan still held the modify unapplied (it never applies it: the
    sender is gone): after the restart the copy is at the old price, which is no hand edit,
    and the engine modifies it to the leader's price."""
    leader_id, copy = await _modify_held_by_dhan(world, 1.0, after_accept=False)
    await world.until(
        lambda: any(r["method"] == "PUT" for r in world.sim.requests), what="the modify sent"
    )
    await world.crash_engine()
    await asyncio.sleep(1.2)  # the held requests end with their senders gone: never applied
    assert _price_at_dhan(world, "alpha", copy) == 200.0
    await world.start_engine()
    await world.until(lambda: _price_at_dhan(world, "alpha", copy) == 199.0, what="modified again")
    await world.settle()
    mirror = world.eng.mirror("alpha", leader_id)
    assert mirror is not None and not mirror.by_hand
    assert not [a for a in world.eng.recent_alerts() if a.code == "COPY_CHANGED_BY_HAND"]


async def test_a_modification_left_unclear_while_running_is_not_counted_again_at_restart(
    make_world: WorldFactory,
) -> None:
    """A modify that timed out while the engine ran (left AMBIGUOUS) and was then sent again
    and answered: the order at Dhan carries what both asked for, and a restart must not take
    the old one as a second modification of the copy (Dhan allows 25)."""
    world = await make_world(dhan__timeout_s="1")
    leader_id = world.place(price=200.0)
    copy = str((await world.follower_order("alpha"))[0]["orderId"])
    await world.settle()
    world.sim.faults.delay_next(2, 2.0, after_accept=False, match="PUT /v2/orders")
    world.modify(leader_id, price=199.0)
    await world.until(
        lambda: _price_at_dhan(world, "alpha", copy) == 199.0, timeout=15, what="modified"
    )
    await world.settle()
    before = world.eng.mirror("alpha", leader_id)
    assert before is not None
    await world.stop_engine()
    await world.start_engine()
    await world.settle()
    after = world.eng.mirror("alpha", leader_id)
    assert after is not None and not after.by_hand
    assert after.modifications == before.modifications


async def test_a_copy_an_earlier_version_left_held_in_flight_follows_the_leader_again(
    world: World,
) -> None:
    """A version before this one settled a placement at a restart (the follower's stream had
    shown its order) but left the copy held as in flight, so nothing touched it again, not
    even the leader's cancel. Such a database, opened now: the copy is taken as placed, and
    the leader's cancel cancels it."""
    leader_id = world.place(price=200.0)
    copy = str((await world.follower_order("alpha"))[0]["orderId"])
    await world.settle()
    await world.stop_engine()
    with sqlite3.connect(world.db) as db:  # what that version left: its intent settled
        db.execute(
            "UPDATE mirrors SET state = 'PLACING' WHERE follower = 'alpha' AND leader_order_id = ?",
            (leader_id,),
        )
        unsettled = db.execute(
            "SELECT COUNT(*) FROM intents WHERE leader_order_id = ? AND outcome = 'PENDING'",
            (leader_id,),
        ).fetchone()[0]
    assert unsettled == 0
    await world.start_engine()
    await world.settle()
    mirror = world.eng.mirror("alpha", leader_id)
    assert mirror is not None and mirror.state is MirrorState.LIVE
    assert mirror.follower_order_id == copy
    world.cancel(leader_id)
    await world.until(lambda: not open_orders(world, "alpha"), what="the copy cancelled")
    assert len(world.orders("alpha")) == 1  # cancelled, not placed again
