"""The leader's open orders read back every few seconds while any is open.

Whether a modification on Dhan brings an order alert of its own is not settled (facts §9 q2;
the simulator's ``no-modify-alert`` profile answers without one): a leader modification would
then reach the copies only at the next full reconcile. Reading the leader's order book (a read,
not an order API) while it has open orders brings such a change within ``interval_s``; what
the book shows goes through the same path as the socket's alerts, so an unchanged order does
nothing."""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Mapping

from engine.clock import Clock
from engine.dhan.errors import BrokerError
from engine.domain import OrderSnapshot
from engine.live.accounts import Accounts
from engine.live.book import ReplicationBook
from engine.live.leader_feed import LeaderFeed

log = logging.getLogger(__name__)


async def poll_open_leader_orders(
    clock: Clock,
    accounts: Accounts,
    book: ReplicationBook,
    leader_feed: LeaderFeed,
    interval_s: float,
) -> None:
    fed: dict[str, OrderSnapshot] = {}  # what the last read ingested, by order
    while True:
        await clock.sleep(interval_s)
        open_ids = {o.order_id for o in book.leader_orders() if o.is_open}
        if not open_ids:
            continue
        try:
            rows = await accounts.leader().order_book()
        except BrokerError as exc:  # the socket and the periodic reconcile still run
            log.debug("leader order book poll failed: %s", exc.result.message)
            continue
        fed = ingest_changed(leader_feed, rows, open_ids, fed)


def ingest_changed(
    leader_feed: LeaderFeed,
    rows: Iterable[OrderSnapshot],
    open_ids: Collection[str],
    fed: Mapping[str, OrderSnapshot],
) -> dict[str, OrderSnapshot]:
    """Ingest the open orders' rows that changed since the last read (``fed``); what this read
    ingested or found unchanged, by order, for the next one."""
    seen: dict[str, OrderSnapshot] = {}
    for snap in rows:
        if snap.order_id not in open_ids:
            continue
        seen[snap.order_id] = snap
        # An unchanged row is the very snapshot the decoder gave last time, ingested then
        # (the same snapshot twice changes nothing): not ingested again every few seconds.
        if fed.get(snap.order_id) is not snap:
            leader_feed.ingest(snap)
    return seen
