"""The order-book polls (follower and leader) feed each row that changed since their last read,
and only those: an unchanged row comes back from the decoder as the very snapshot fed last time."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
from typing import Any, cast

from engine.clock import ManualClock
from engine.dhan.broker import OrderBook
from engine.domain import OrderSnapshot
from engine.live.accounts import Accounts, FollowerRuntime
from engine.live.book import ReplicationBook
from engine.live.follower_feed import FollowerFeed
from engine.live.follower_poll import poll_open_follower_copies, read_book
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


class TimedBroker:
    """Notes the clock's time of every read of its follower's book."""

    def __init__(self, name: str, clock: ManualClock, reads: Reads) -> None:
        self._name = name
        self._clock = clock
        self._reads = reads

    async def order_book(self) -> OrderBook:
        self._reads.note(self._name, self._clock.monotonic())
        return OrderBook([], [])


class Reads:
    """Every book read (follower, time); `enough` is set after `wanted` of them."""

    def __init__(self, wanted: int) -> None:
        self.times: list[tuple[str, float]] = []
        self._wanted = wanted
        self.enough = asyncio.Event()

    def note(self, name: str, at: float) -> None:
        self.times.append((name, at))
        if len(self.times) >= self._wanted:
            self.enough.set()

    def of(self, name: str) -> list[float]:
        return [at for who, at in self.times if who == name]


@dataclasses.dataclass
class PolledFollower:
    name: str
    broker: TimedBroker


@dataclasses.dataclass
class OpenCopy:
    follower: str
    follower_order_id: str = "F1"


class PolledAccounts:
    def __init__(self, followers: list[PolledFollower]) -> None:
        self._followers = followers

    def all(self) -> list[PolledFollower]:
        return self._followers


class PolledBook:
    def __init__(self, names: list[str]) -> None:
        self._copies = [OpenCopy(name) for name in names]

    def open_copies(self) -> list[OpenCopy]:
        return self._copies


async def polled(count: int, rounds: int) -> Reads:
    """The book reads of `count` followers with open copies (every 2 s each, at most 10
    reads a second) over `rounds` rounds, on a clock that sleeping moves."""
    clock = ManualClock()
    reads = Reads(count * rounds)
    names = [f"f{i}" for i in range(count)]
    followers = [PolledFollower(name, TimedBroker(name, clock, reads)) for name in names]
    poll = asyncio.create_task(
        poll_open_follower_copies(
            clock,
            cast(Accounts, PolledAccounts(followers)),
            cast(ReplicationBook, PolledBook(names)),
            cast(FollowerFeed, Feed()),
            interval_s=2.0,
            max_per_s=10.0,
        )
    )
    try:
        await asyncio.wait_for(reads.enough.wait(), 10)
    finally:
        poll.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await poll
    return reads


def intervals(times: list[float]) -> set[float]:
    return {round(b - a, 6) for a, b in itertools.pairwise(times)}


async def test_the_follower_polls_are_spread_over_the_interval_and_capped_in_all() -> None:
    # Five followers: each book every 2 s, the five reads spread over it.
    few = await polled(5, 3)
    assert all(intervals(few.of(f"f{i}")) == {2.0} for i in range(5))
    # Two hundred: never more than 10 reads a second (a round of 200 reads takes 20 s), so
    # each book is read every 20 s, not every 2.
    many = await polled(200, 2)
    assert all(intervals(many.of(f"f{i}")) == {20.0} for i in range(200))
