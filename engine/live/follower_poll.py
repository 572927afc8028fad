"""Each follower's order book read back every few seconds while it has copies open at Dhan.

A change made by hand to a copy in Dhan's app (quantity, price) reaches the engine on the
follower's socket only if Dhan sends an alert for a modification, which is not settled (facts
§9 q2; the simulator's ``no-modify-alert`` profile sends none). Without this the hand edit would
be seen only at the next full reconcile (every 30 s), and meanwhile the engine would modify a
copy the trader had taken over. Reading the book (a read, not an order API) of the followers
with open copies brings such a change within ``interval_s``; every row goes through the same
path as the socket's updates, so an unchanged order does nothing.

The reads are spread over the interval, and never more than ``max_per_s`` a second across all
followers: a book read costs the engine ~1.5 ms of CPU (the request, the answer, its rows), so
two hundred followers read every 2 s (100 reads a second) took 0.6-1.1 ms of CPU per copy in
``bench.followers`` (two runs with and without the polls) and kept Dhan answering 100 requests
a second; at the default cap of 10 a second, 0.2-0.35 ms (two runs beside the uncapped). Each
book is then read every ``interval_s`` up to 20 followers, and every N / 10 seconds beyond
(the full reconcile still reads every book)."""

from __future__ import annotations

import asyncio
import logging

from engine.clock import Clock
from engine.dhan.errors import BrokerError
from engine.domain import OrderSnapshot
from engine.live.accounts import Accounts, FollowerRuntime
from engine.live.book import ReplicationBook
from engine.live.follower_feed import FollowerFeed

log = logging.getLogger(__name__)


async def poll_open_follower_copies(
    clock: Clock,
    accounts: Accounts,
    book: ReplicationBook,
    follower_feed: FollowerFeed,
    interval_s: float,
    max_per_s: float,
) -> None:
    fed: dict[str, dict[str, OrderSnapshot]] = {}  # per follower: what its last read fed
    while True:
        with_open = {m.follower for m in book.open_copies() if m.follower_order_id}
        wanted = [f for f in accounts.all() if f.name in with_open]
        if not wanted:
            await clock.sleep(interval_s)
            continue
        # Spread over the interval, each book read once: two hundred books read and decoded
        # at one instant would hold the event loop for tens of milliseconds, and a leader
        # order arriving then would wait for all of them before its copies are sent.
        step = max(interval_s / len(wanted), 1.0 / max_per_s)
        reads: list[asyncio.Task[None]] = []
        try:
            for f in wanted:
                await clock.sleep(step)
                reads.append(
                    asyncio.create_task(read_book(f, follower_feed, fed.setdefault(f.name, {})))
                )
            await asyncio.gather(*reads)
        finally:
            for read in reads:  # stopped mid-round: no read outlives the loop
                read.cancel()


async def read_book(
    f: FollowerRuntime, follower_feed: FollowerFeed, fed: dict[str, OrderSnapshot]
) -> None:
    """Feed the follower's book to its feed; ``fed``: what the previous read fed, by order."""
    epoch = follower_feed.modify_epoch(f.name)
    try:
        rows = await f.broker.order_book()
    except BrokerError as exc:  # the socket and the periodic reconcile still run
        log.debug("%s: order book poll failed: %s", f.name, exc.result.message)
        return
    # A read that spans a modification of ours may show the order as it was before it, which
    # would move the copy's record back: skip it, the next round reads again.
    if follower_feed.modify_epoch(f.name) != epoch or follower_feed.modifying_any(f.name):
        return
    seen: dict[str, OrderSnapshot] = {}
    for snap in rows:
        seen[snap.order_id] = snap
        # The decoder gives an unchanged row its very snapshot of the last read, fed then:
        # a day's orders are not all fed again every few seconds (~30 us each).
        if fed.get(snap.order_id) is not snap:
            follower_feed.on_snapshot(f, snap)
    fed.clear()
    fed.update(seen)
