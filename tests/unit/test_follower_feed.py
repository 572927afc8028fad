"""A follower's order update moves the copy's record on and wakes its dispatcher only when it
tells something new: the same state told again (a repeated alert, or the status the placement's
answer already gave) decides the same, and is not written again."""

from __future__ import annotations

from datetime import timedelta
from typing import cast

from engine.clock import ManualClock
from engine.domain import EngineState, MirrorState, OrderStatus
from engine.live.accounts import Accounts, FollowerRuntime
from engine.live.arming import Arming
from engine.live.book import ReplicationBook
from engine.live.follower_feed import FollowerFeed
from engine.live.notifier import Notifier
from engine.live.stats import Stats
from engine.replication.correlation import correlation_id
from tests.store_helpers import T0, mirror, params, snapshot
from tests.unit.test_leader_feed import Follower, Quiet

CID = correlation_id("L1", "alpha", 0)


def test_an_update_that_tells_the_copy_nothing_new_wakes_no_one() -> None:
    clock = ManualClock(T0)
    book = ReplicationBook(clock, publish=lambda event: None, on_change=lambda: None)
    sent = mirror(
        "alpha",
        "L1",
        correlation_id=CID,
        state=MirrorState.LIVE,
        follower_order_id="F1",
        broker_status=OrderStatus.TRANSIT,  # as the placement's answer said
        params=params(correlation_id=CID),
    )
    book.set_mirror(sent)
    follower_feed = FollowerFeed(
        clock,
        cast(Accounts, None),
        book,
        Arming(state=EngineState.ARMED),
        cast(Notifier, Quiet()),
        Stats(),
    )
    alpha = Follower("alpha")
    f = cast(FollowerRuntime, alpha)

    def update(seconds: float, **changes: object) -> None:
        clock.advance(seconds)
        at = T0 + timedelta(seconds=seconds)
        alert = snapshot("F1", client_id="1000000002", correlation_id=CID, updated_at=at)
        follower_feed.on_snapshot(f, alert.with_changes(**changes))

    update(0.1, status=OrderStatus.TRANSIT)  # what the answer said already
    assert alpha.dispatcher.marked == []
    update(0.2)  # PENDING: a new state
    assert alpha.dispatcher.marked == ["L1"]
    record = book.mirror("alpha", "L1")
    assert record is not None and record.broker_status is OrderStatus.PENDING
    update(0.3)  # the same PENDING again
    assert alpha.dispatcher.marked == ["L1"]
    assert book.mirror("alpha", "L1") == record  # not even its time moved
    update(0.4, filled_qty=25, avg_price=101.4)  # a fill moves the copy on
    assert alpha.dispatcher.marked == ["L1", "L1"]
