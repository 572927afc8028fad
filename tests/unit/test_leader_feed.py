"""The leader feed wakes a follower only for a leader state that can change its decision, and
takes a socket TRANSIT a loop turn late, so that the alert right behind it can supersede it."""

from __future__ import annotations

import asyncio
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
    """The notifier's and the task set's faces; keeps only the journal's leader lines (one
    per snapshot taken)."""

    def __init__(self) -> None:
        self.taken: list[str] = []

    def journal(self, kind: str, text: str, follower: str | None, leader_id: str | None) -> None:
        if kind == "leader":
            self.taken.append(f"{leader_id} {text.split()[0]}")

    def publish(self, event: object) -> None:
        pass

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        coro.close()  # the confirming read is not what these tests are about


def feed(accounts: Followers, quiet: Quiet | None = None) -> tuple[LeaderFeed, ReplicationBook]:
    clock = ManualClock(T0)
    book = ReplicationBook(clock, publish=lambda event: None, on_change=lambda: None)
    quiet = quiet or Quiet()
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


TRANSIT = OrderStatus.TRANSIT


async def test_a_transit_superseded_by_the_alert_right_behind_it_is_never_taken() -> None:
    accounts, taken = Followers("alpha", "beta"), Quiet()
    leader_feed, book = feed(accounts, taken)
    alert = snapshot()
    await leader_feed.on_snapshot(alert.with_changes(status=TRANSIT))
    await leader_feed.on_snapshot(alert)  # already in the socket's buffer: the same turn
    assert taken.taken == ["L1 PENDING"]
    assert book.leader("L1") == alert
    assert marks(accounts) == [["L1"], ["L1"]]
    await asyncio.sleep(0)  # the turn the TRANSIT was left for: nothing more is taken
    assert taken.taken == ["L1 PENDING"]
    assert book.leader("L1") == alert


async def test_a_transit_alone_is_taken_a_loop_turn_later() -> None:
    accounts, taken = Followers("alpha"), Quiet()
    leader_feed, book = feed(accounts, taken)
    transit = snapshot(status=TRANSIT)
    await leader_feed.on_snapshot(transit)
    assert book.leader("L1") is None
    await asyncio.sleep(0)
    assert taken.taken == ["L1 TRANSIT"]
    assert book.leader("L1") == transit
    assert marks(accounts) == [[]]  # in transit: nothing to decide yet
    await leader_feed.on_snapshot(snapshot())  # Dhan accepted it, a while later
    assert taken.taken == ["L1 TRANSIT", "L1 PENDING"]
    assert marks(accounts) == [["L1"]]


async def test_snapshots_of_other_orders_are_taken_in_the_order_they_came() -> None:
    accounts, taken = Followers("alpha"), Quiet()
    leader_feed, _ = feed(accounts, taken)
    await leader_feed.on_snapshot(snapshot("L1", status=TRANSIT))
    await leader_feed.on_snapshot(snapshot("L2", status=TRANSIT))  # supersedes nothing of L1
    await leader_feed.on_snapshot(snapshot("L3"))
    assert taken.taken == ["L1 TRANSIT", "L2 TRANSIT", "L3 PENDING"]
    await asyncio.sleep(0)
    assert taken.taken == ["L1 TRANSIT", "L2 TRANSIT", "L3 PENDING"]  # none taken twice


async def test_a_transit_is_kept_when_what_follows_it_is_behind_it() -> None:
    """An older alert of the same order (a replay, or the state before a modification in
    transit) does not make the TRANSIT pointless: both are taken, in the order they came,
    and the book settles which is current as it always does."""
    accounts, taken = Followers("alpha"), Quiet()
    leader_feed, book = feed(accounts, taken)
    transit = snapshot(status=TRANSIT, price=102.0, updated_at=T0 + timedelta(seconds=2))
    await leader_feed.on_snapshot(transit)
    await leader_feed.on_snapshot(snapshot())  # updated at T0: behind the TRANSIT
    assert taken.taken == ["L1 TRANSIT", "L1 stale"]  # the older one is refused, and said
    assert book.leader("L1") == transit


async def test_of_two_transits_of_one_order_only_the_later_is_taken() -> None:
    accounts, taken = Followers("alpha"), Quiet()
    leader_feed, book = feed(accounts, taken)
    await leader_feed.on_snapshot(snapshot(status=TRANSIT))
    later = snapshot(status=TRANSIT, price=101.0, updated_at=T0 + timedelta(seconds=1))
    await leader_feed.on_snapshot(later)
    await asyncio.sleep(0)
    assert taken.taken == ["L1 TRANSIT"]
    assert book.leader("L1") == later
