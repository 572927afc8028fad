"""The leader feed wakes a follower only for a leader state that can change its decision."""

from __future__ import annotations

from collections.abc import Coroutine
from datetime import timedelta
from typing import Any, cast

from engine.clock import ManualClock
from engine.domain import OrderSnapshot, OrderStatus, SnapshotSource
from engine.instruments import InstrumentBook
from engine.live.accounts import Accounts
from engine.live.book import ReplicationBook
from engine.live.leader_feed import LeaderFeed
from engine.live.notifier import Notifier
from engine.live.stats import Stats
from engine.live.tasks import TaskSet
from tests.store_helpers import T0, snapshot


class Dispatcher:
    def __init__(self) -> None:
        self.marked: list[str] = []

    def mark(self, key: str, *, urgent: bool = False) -> None:
        self.marked.append(key)


class Follower:
    def __init__(self, name: str) -> None:
        self.name = name
        self.dispatcher = Dispatcher()


class Followers:
    def __init__(self, *names: str) -> None:
        self.followers = [Follower(n) for n in names]

    def all(self) -> list[Follower]:
        return self.followers


class Quiet:
    """The notifier's and the task set's faces, recording nothing."""

    def journal(self, *args: object) -> None:
        pass

    def publish(self, event: object) -> None:
        pass

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        coro.close()  # the confirming read is not what these tests are about


def feed(accounts: Followers) -> tuple[LeaderFeed, ReplicationBook]:
    clock = ManualClock(T0)
    book = ReplicationBook(clock, publish=lambda event: None, on_change=lambda: None)
    quiet = Quiet()
    leader_feed = LeaderFeed(
        "1000000001",
        clock,
        cast(Accounts, accounts),
        book,
        InstrumentBook(),
        cast(Notifier, quiet),
        Stats(),
        cast(TaskSet, quiet),
    )
    return leader_feed, book


def marks(accounts: Followers) -> list[list[str]]:
    return [f.dispatcher.marked for f in accounts.followers]


def test_only_a_state_a_decision_reads_wakes_the_followers() -> None:
    accounts = Followers("alpha", "beta")
    leader_feed, book = feed(accounts)
    alert = snapshot(reason="CONFIRMED", ref_ltp=101.0)
    assert leader_feed.ingest(alert.with_changes(status=OrderStatus.TRANSIT))
    assert marks(accounts) == [[], []]  # in transit: nothing to decide yet
    assert leader_feed.ingest(alert)
    assert marks(accounts) == [["L1"], ["L1"]]

    # The REST read that settles the tie: Dhan's text, the market price and the source
    # differ. What we know is updated; no one is woken to decide NoAction.
    read = alert.with_changes(source=SnapshotSource.ORDER_BOOK, reason="", ref_ltp=101.4)
    assert leader_feed.ingest(read)
    assert book.leader("L1") == read
    assert marks(accounts) == [["L1"], ["L1"]]

    # A modification is a state the copies must follow: everyone is woken again.
    edited: OrderSnapshot = read.with_changes(price=101.0, updated_at=T0 + timedelta(seconds=1))
    assert leader_feed.ingest(edited)
    assert marks(accounts) == [["L1", "L1"], ["L1", "L1"]]
