"""The replication book's index of copies open at Dhan agrees with its copy records after any
sequence of puts, forgets and restores."""

from __future__ import annotations

import random

from engine.clock import ManualClock
from engine.domain import MirrorState, OrderStatus
from engine.live.book import ReplicationBook
from engine.records import MirrorRecord
from tests.store_helpers import mirror

FOLLOWERS = ("alpha", "beta", "gamma")
STATES = (
    (MirrorState.PLACING, None),
    (MirrorState.LIVE, OrderStatus.PENDING),
    (MirrorState.LIVE, OrderStatus.PART_TRADED),
    (MirrorState.LIVE, OrderStatus.TRADED),  # ended at Dhan: not open
    (MirrorState.DONE, OrderStatus.TRADED),
    (MirrorState.SKIPPED, None),
    (MirrorState.REPLACING, OrderStatus.CANCELLED),
)


def brute_force(book: ReplicationBook, follower: str | None) -> set[tuple[str, str]]:
    return {
        (m.follower, m.leader_order_id)
        for m in book.mirrors()
        if m.is_open_at_broker and (follower is None or m.follower == follower)
    }


def keys(records: list[MirrorRecord]) -> set[tuple[str, str]]:
    return {(m.follower, m.leader_order_id) for m in records}


def test_open_copies_follow_every_change_of_a_copy() -> None:
    book = ReplicationBook(ManualClock(), lambda e: None, lambda: None)
    rng = random.Random(7)
    for step in range(2000):
        follower = rng.choice(FOLLOWERS)
        leader = f"L{rng.randrange(40)}"
        state, status = rng.choice(STATES)
        rec = mirror(follower, leader, state=state, broker_status=status, generation=step % 2)
        action = rng.random()
        if action < 0.7:
            book.set_mirror(rec)
        elif action < 0.85:
            book.forget(rec)  # generation 0: removed; later: kept as REPLACING
        else:
            book.restore_mirror(rec)
        for who in (None, *FOLLOWERS):
            expected = brute_force(book, who)
            assert keys(book.open_copies(who)) == expected
            assert len(book.open_copies(who)) == len(expected)  # no duplicates
        for who in FOLLOWERS:
            assert book.count_open(who) == len(brute_force(book, who))
    # the index holds the current records, not older versions of them
    for m in book.open_copies():
        assert book.mirror(m.follower, m.leader_order_id) is m
