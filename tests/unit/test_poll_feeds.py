"""The order-book polls (follower and leader) feed each row that changed since their last read,
and only those: an unchanged row comes back from the decoder as the very snapshot fed last time."""

from __future__ import annotations

import dataclasses
from typing import Any, cast

from engine.dhan.broker import OrderBook
from engine.domain import OrderSnapshot
from engine.live.accounts import FollowerRuntime
from engine.live.follower_feed import FollowerFeed
from engine.live.follower_poll import read_book
from tests.store_helpers import snapshot


class Broker:
    def __init__(self) -> None:
        self.rows: list[OrderSnapshot] = []

    async def order_book(self) -> OrderBook:
        return OrderBook(list(self.rows), [])


class Follower:
    name = "alpha"

    def __init__(self) -> None:
        self.broker = Broker()


class Feed:
    def __init__(self) -> None:
        self.fed: list[OrderSnapshot] = []
        self.epoch = 0
        self.busy = False

    def modify_epoch(self, follower: str) -> int:
        return self.epoch

    def modifying_any(self, follower: str) -> bool:
        return self.busy

    def on_snapshot(self, f: Any, snap: OrderSnapshot) -> None:
        self.fed.append(snap)


async def test_only_rows_changed_since_the_last_read_are_fed() -> None:
    follower, feed = Follower(), Feed()
    fed_last: dict[str, OrderSnapshot] = {}
    first, second = snapshot("F1"), snapshot("F2")
    follower.broker.rows = [first, second]

    async def read() -> list[str]:
        feed.fed.clear()
        await read_book(cast(FollowerRuntime, follower), cast(FollowerFeed, feed), fed_last)
        return [s.order_id for s in feed.fed]

    assert await read() == ["F1", "F2"]
    assert await read() == []  # the same snapshots: nothing changed
    changed = dataclasses.replace(second, filled_qty=second.quantity)
    follower.broker.rows = [first, changed, snapshot("F3")]
    assert await read() == ["F2", "F3"]
    # An equal row decoded afresh (another object) is fed: only identity proves it was fed.
    follower.broker.rows = [dataclasses.replace(first), changed, fed_last["F3"]]
    assert await read() == ["F1"]


async def test_a_read_spanning_a_modification_feeds_nothing_and_forgets_nothing() -> None:
    follower, feed = Follower(), Feed()
    fed_last: dict[str, OrderSnapshot] = {}
    follower.broker.rows = [snapshot("F1")]
    feed.busy = True
    await read_book(cast(FollowerRuntime, follower), cast(FollowerFeed, feed), fed_last)
    assert feed.fed == [] and fed_last == {}
    feed.busy = False
    await read_book(cast(FollowerRuntime, follower), cast(FollowerFeed, feed), fed_last)
    assert [s.order_id for s in feed.fed] == ["F1"]


class LeaderFeedStub:
    def __init__(self) -> None:
        self.ingested: list[str] = []

    def ingest(self, snap: OrderSnapshot) -> bool:
        self.ingested.append(snap.order_id)
        return True


def test_the_leader_poll_ingests_only_open_orders_changed_since_its_last_read() -> None:
    from engine.live.leader_feed import LeaderFeed
    from engine.live.leader_poll import ingest_changed

    feed = LeaderFeedStub()
    leader = cast(LeaderFeed, feed)
    a, b, done = snapshot("L1"), snapshot("L2"), snapshot("L3")
    fed = ingest_changed(leader, [a, b, done], {"L1", "L2"}, {})
    assert feed.ingested == ["L1", "L2"]  # L3 is not open: the socket and reconcile have it
    feed.ingested.clear()
    fed = ingest_changed(leader, [a, b, done], {"L1", "L2"}, fed)
    assert feed.ingested == []
    moved = dataclasses.replace(b, filled_qty=b.quantity)
    ingest_changed(leader, [a, moved], {"L1", "L2"}, fed)
    assert feed.ingested == ["L2"]
