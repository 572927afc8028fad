"""The follower poll feeds each row that changed since its last read, and only those: an
unchanged row comes back from the decoder as the very snapshot it fed last time."""

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
