"""The leader feed: every leader snapshot (socket, order book, confirmation read) goes
through here into the book, and every follower's dispatcher is told to look at the order."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from engine.clock import Clock
from engine.dhan.errors import BrokerError
from engine.domain import OrderSnapshot, OrderStatus
from engine.events import LeaderOrderSeen
from engine.instruments import InstrumentBook
from engine.live.accounts import Accounts
from engine.live.book import ReplicationBook
from engine.live.collector import CollectionPause
from engine.live.notifier import Notifier
from engine.live.stats import Stats
from engine.live.tasks import TaskSet
from engine.replication.correlation import is_engine_correlation_id
from engine.replication.replicator import awaits_exchange, wakes_followers
from engine.transitions import leader_update

CONFIRM_DELAY_S = 0.15


class LeaderFeed:
    def __init__(
        self,
        leader_client_id: str,
        clock: Clock,
        accounts: Accounts,
        book: ReplicationBook,
        instruments: InstrumentBook,
        notifier: Notifier,
        stats: Stats,
        tasks: TaskSet,
        on_leader: Callable[[OrderSnapshot], None] | None = None,
        gc_pause: CollectionPause | None = None,
    ) -> None:
        self._client_id = leader_client_id
        self._on_leader = on_leader  # the position ledgers take each snapshot in order seen
        self._clock = clock
        self._accounts = accounts
        self._book = book
        self._instruments = instruments
        self._notifier = notifier
        self._stats = stats
        self._tasks = tasks
        self._confirming: set[str] = set()
        self._gc_pause = gc_pause  # no collection while the woken followers decide
        self._held: OrderSnapshot | None = None  # a socket TRANSIT, taken a loop turn later

    async def on_snapshot(self, snap: OrderSnapshot) -> None:
        """A snapshot from the leader's order socket.

        One still in transit wakes no follower, so it is taken a loop turn later: Dhan sends
        the alert that settles it (PENDING, REJECTED) right behind it, and when that one is
        already in the socket's buffer it supersedes the TRANSIT, which is then never taken.
        At N followers taking a TRANSIT costs N position-ledger entries: the PENDING that
        every copy waits for no longer waits behind them.
        """
        held, self._held = self._held, None
        if held is not None and not supersedes(snap, held):
            self.ingest(held)  # not made pointless by this one: each in the order it came
        if snap.status is OrderStatus.TRANSIT:
            self._held = snap
            asyncio.get_running_loop().call_soon(self._take_held, snap)
            return
        self.ingest(snap)

    def _take_held(self, snap: OrderSnapshot) -> None:
        if self._held is snap:  # not superseded meanwhile
            self._held = None
            self.ingest(snap)

    def ingest(self, snap: OrderSnapshot) -> bool:
        """Take a leader snapshot from any source; True when it changed what we know."""
        if snap.client_id and snap.client_id != self._client_id:
            return False
        if is_engine_correlation_id(snap.correlation_id):
            return False  # an order this engine placed (the leader is also a follower somewhere)
        self._stats.last_leader_event_at = self._clock.now()
        known = self._book.leader(snap.order_id)
        update = leader_update(known, snap)
        if update.stale:
            self._notifier.journal(
                "leader",
                f"stale snapshot ignored ({snap.status.value}, filled {snap.filled_qty})",
                None,
                snap.order_id,
            )
            return False
        if update.snapshot is None:
            return False
        snap = update.snapshot
        if update.tie or (snap.amo and snap.amo_time is None):
            # (Or an AMO whose socket alert lacks its time: the order book has it.)
            # Two different states with the same progress (edits within one second of
            # Dhan's timestamps): arrival order may be wrong, so ask Dhan which is current.
            self._confirm(snap.order_id)
        self._instruments.learn_lot_size(snap.segment, snap.security_id, snap.lot_size)
        self._book.note_price(snap)
        self._book.put_leader(snap)
        if self._on_leader is not None:
            self._on_leader(snap)
        self._notifier.journal("leader", describe_snapshot(snap), None, snap.order_id)
        self._notifier.publish(LeaderOrderSeen(self._clock.now(), snap, is_new=known is None))
        if not wakes_followers(known, snap):
            return True
        woken = False
        for f in self._accounts.all():
            mirror = self._book.mirror(f.name, snap.order_id)
            if awaits_exchange(snap, mirror):
                # Looked at once Dhan accepts it: at N followers, N needless decisions here
                # would delay the alert that is copied.
                continue
            urgent = bool(mirror and mirror.is_open_at_broker and snap.status.is_terminal)
            f.dispatcher.mark(snap.order_id, urgent=urgent)
            woken = True
        if woken and self._gc_pause is not None:
            self._gc_pause.hold_for_turns()
        return True

    def _confirm(self, order_id: str) -> None:
        if order_id in self._confirming:
            return
        self._confirming.add(order_id)

        async def confirm() -> None:
            try:
                await self._clock.sleep(CONFIRM_DELAY_S)  # let alerts already in flight land
                snap = await self._accounts.leader().order_by_id(order_id)
            except BrokerError:
                return  # unreadable now (a refused token...): the next reconcile settles it
            finally:
                self._confirming.discard(order_id)
            if snap is not None:
                self.ingest(snap)

        self._tasks.spawn(confirm(), f"confirm-{order_id}")


def supersedes(later: OrderSnapshot, held: OrderSnapshot) -> bool:
    """Whether ``later``, arriving right behind ``held``, makes it pointless: the same order,
    no less progressed, so that taken first ``held`` would at once give way to it."""
    return later.order_id == held.order_id and later.progress_key() >= held.progress_key()


def describe_snapshot(s: OrderSnapshot) -> str:
    price = f" @ {s.price:g}" if s.price else ""
    trig = f" trg {s.trigger_price:g}" if s.trigger_price else ""
    return (
        f"{s.status.value} {s.side.value} {s.filled_qty}/{s.quantity} "
        f"{s.trading_symbol or s.security_id}"
        f" {s.order_type.value}{price}{trig} {s.product.value} {s.validity.value}"
        + (" AMO" if s.amo else "")
        + f" [{s.source.value}]"
    )
