"""The follower feed: each follower's own order updates (socket, or read back from Dhan) move
its copy's record on (fills, status, rejection), and the dispatcher looks at it again.

It also watches for another engine on the same account: an order under our correlationId
scheme that this engine did not give out freezes that follower (CRITICAL), and every such id
seen is remembered so that this engine never places a copy under an id already at Dhan.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from engine.clock import Clock
from engine.dhan.errors import BrokerError
from engine.domain import FreezeCause, MirrorState, OrderSnapshot, OrderStatus, Severity
from engine.live.accounts import Accounts, FollowerRuntime
from engine.live.arming import Arming
from engine.live.book import ReplicationBook
from engine.live.hand_made import changed_by_hand
from engine.live.notifier import Notifier
from engine.live.stats import Stats
from engine.records import MirrorRecord
from engine.replication.correlation import is_engine_correlation_id
from engine.secrets import redact
from engine.transitions import follower_update, managed_by_hand


class FollowerFeed:
    def __init__(
        self,
        clock: Clock,
        accounts: Accounts,
        book: ReplicationBook,
        arming: Arming,
        notifier: Notifier,
        stats: Stats,
        on_own_order: Callable[[FollowerRuntime, OrderSnapshot], None] | None = None,
        on_account_order: Callable[[FollowerRuntime, OrderSnapshot], None] | None = None,
    ) -> None:
        # An order in the follower's account that is none of ours (by hand, Dhan's
        # square-off): the position ledgers count what it fills (engine.live.positions).
        self._on_own_order = on_own_order
        # Every order in the account, ours and its own: what the account holds in a carried
        # position is its positions as read plus every fill since (engine.live.positions).
        self._on_account_order = on_account_order
        self._clock = clock
        self._accounts = accounts
        self._book = book
        self._arming = arming
        self._notifier = notifier
        self._stats = stats
        # follower -> our-scheme correlationIds seen in its book or stream -> the order id
        self._seen_at_dhan: dict[str, dict[str, str]] = {}
        self._modifying: set[tuple[str, str]] = set()  # (follower, leader id): ours on its way
        self._confirming: dict[tuple[str, str], asyncio.Task[None]] = {}
        # follower -> count of our modifications begun or ended (a book read spanning one is stale)
        self._modify_epoch: dict[str, int] = {}

    def handler_for(self, name: str) -> Callable[[OrderSnapshot], Awaitable[None]]:
        async def handler(snap: OrderSnapshot) -> None:
            f = self._accounts.followers.get(name)
            if f is not None:
                self.on_snapshot(f, snap)

        return handler

    def seen_at_dhan(self, follower: str, correlation_id: str) -> str:
        """The order id already at Dhan under `correlation_id` in this follower ("" none)."""
        return self._seen_at_dhan.get(follower, {}).get(correlation_id, "")

    def on_snapshot(self, f: FollowerRuntime, snap: OrderSnapshot) -> None:
        if self._on_account_order is not None:
            self._on_account_order(f, snap)
        if is_engine_correlation_id(snap.correlation_id):
            seen = self._seen_at_dhan.setdefault(f.name, {})
            if snap.correlation_id not in seen:
                seen[snap.correlation_id] = snap.order_id
                if not self._book.owns_correlation(f.name, snap.correlation_id):
                    self.foreign_copy(f, snap.correlation_id, snap.order_id)
        elif self._on_own_order is not None and not self._book.is_copy_order(f.name, snap.order_id):
            # Not under our correlationIds and not an order id of ours: the account's own.
            # (A copy Dhan reported without its correlationId before our placement's answer
            # gave us its id would count here too; Dhan's stream carries the id, facts §2.)
            self._on_own_order(f, snap)
            return
        mirror = self._book.accept_follower_update(f.name, snap)
        if mirror is None:
            return
        if _second_order_under(mirror, snap):  # the same id twice at Dhan: not ours
            self.foreign_copy(f, snap.correlation_id, snap.order_id)
            return
        self._book.note_price(snap)
        leader = self._book.leader(mirror.leader_order_id)
        ours_on_its_way = (f.name, mirror.leader_order_id) in self._modifying
        if not ours_on_its_way and changed_by_hand(mirror, snap):
            self._confirm_by_hand(f, mirror.leader_order_id)
        updated = follower_update(mirror, snap, leader, self._clock.now())
        if _same_but_for_time(updated, mirror):
            # The state the record holds already (a repeated alert, or the status the
            # placement's answer told): the same state decides the same. Half of a copy's
            # alerts are these; each rewrote the record (its store row, its screen row) and
            # woke the dispatcher for nothing.
            return
        self._journal_update(f, mirror, updated, snap, leader)
        if mirror.state is MirrorState.FAILED and updated.state is not MirrorState.FAILED:
            self._notifier.alert(
                "REFUSED_COPY_AT_DHAN",
                Severity.WARNING,
                f"{f.name}: Dhan shows order {snap.order_id} ({snap.status.value}) for the copy "
                f"of leader order {mirror.leader_order_id} whose placement it had refused; "
                "the copy follows the leader from now on",
                f.name,
                mirror.leader_order_id,
            )
        self._book.set_mirror(updated)
        f.dispatcher.mark(mirror.leader_order_id)

    def modifying(self, follower: str, leader_order_id: str, on_its_way: bool) -> None:
        """A modification of ours is on its way: a difference at Dhan is not a hand edit."""
        key = (follower, leader_order_id)
        self._modify_epoch[follower] = self._modify_epoch.get(follower, 0) + 1
        if on_its_way:
            self._modifying.add(key)
        else:
            self._modifying.discard(key)

    def modify_epoch(self, follower: str) -> int:
        """Changes whenever a modification of ours begins or ends in this follower."""
        return self._modify_epoch.get(follower, 0)

    def modifying_any(self, follower: str) -> bool:
        return any(name == follower for name, _ in self._modifying)

    def _confirm_by_hand(self, f: FollowerRuntime, leader_order_id: str) -> None:
        """Read the order back before calling it a hand edit: an update from before our own
        modification can arrive after it."""
        key = (f.name, leader_order_id)
        if key in self._confirming:
            return
        task = asyncio.get_running_loop().create_task(self._confirm(f, leader_order_id))
        self._confirming[key] = task
        task.add_done_callback(lambda _: self._confirming.pop(key, None))

    async def _confirm(self, f: FollowerRuntime, leader_order_id: str) -> None:
        mirror = self._book.mirror(f.name, leader_order_id)
        if mirror is None or not mirror.follower_order_id:
            return
        try:
            at_dhan = await f.broker.order_by_id(mirror.follower_order_id)
        except BrokerError:
            return  # the next update or reconcile tells again
        current = self._book.mirror(f.name, leader_order_id)
        if at_dhan is None or current is None or (f.name, leader_order_id) in self._modifying:
            return
        change = changed_by_hand(current, at_dhan)
        if not change:
            return
        marked = managed_by_hand(current, at_dhan, self._clock.now())
        self._book.set_mirror(marked)
        if self._arming.remember_hand_made is not None:
            self._arming.remember_hand_made(marked)
        self._notifier.journal("hand", f"{f.name}: {marked.reason}", f.name, leader_order_id)
        self._notifier.alert(
            "COPY_CHANGED_BY_HAND",
            Severity.WARNING,
            f"{f.name}: order {at_dhan.order_id} (copy of leader {leader_order_id}) was changed "
            f"by hand at Dhan ({change}); the engine will not modify it again, the leader's "
            "cancel still cancels it (detach it to keep it)",
            f.name,
            leader_order_id,
        )

    def foreign_copy(self, f: FollowerRuntime, correlation_id: str, order_id: str) -> None:
        """A copy under one of our correlationIds that this engine did not send: another
        engine works this account. Freeze the follower (its resting copies stay)."""
        self._notifier.alert(
            "DUPLICATE_ENGINE",
            Severity.CRITICAL,
            f"{f.name}: order {order_id} under correlationId {correlation_id} was not sent by "
            "this engine: another engine is copying into this account. Stop the other one, "
            "then clear the freeze (copytrade resume)",
            f.name,
        )
        self._arming.freeze_now(
            f.name,
            FreezeCause.DUPLICATE_ENGINE,
            f"another engine is copying into {f.name} (order {order_id} not sent by this one)",
        )

    def _journal_update(
        self,
        f: FollowerRuntime,
        mirror: MirrorRecord,
        updated: MirrorRecord,
        snap: OrderSnapshot,
        leader: OrderSnapshot | None,
    ) -> None:
        slippage = updated.slippage
        if snap.filled_qty > mirror.filled_qty:
            self._notifier.journal(
                "fill",
                f"{f.name} filled {snap.filled_qty}/{snap.quantity} "
                f"avg {snap.avg_price:.2f}"
                + (f" slippage {slippage:+.2f}" if slippage is not None else ""),
                f.name,
                mirror.leader_order_id,
            )
            if slippage is not None and snap.status is OrderStatus.TRADED:
                self._stats.slippages.append(slippage)
        if snap.status is mirror.broker_status:
            return
        self._notifier.journal(
            "broker",
            f"{f.name} order {snap.order_id} {snap.status.value}"
            + (f": {snap.reason}" if snap.reason else ""),
            f.name,
            mirror.leader_order_id,
        )
        if snap.status is OrderStatus.REJECTED:
            self._stats.failed += 1
            self._notifier.alert(
                "FOLLOWER_REJECTED",
                Severity.ERROR,
                f"{f.name}: order for leader {mirror.leader_order_id} rejected by Dhan: "
                f"{snap.reason or 'no reason given'}",
                f.name,
                mirror.leader_order_id,
            )
        elif (
            snap.status is OrderStatus.CANCELLED
            and leader is not None
            and leader.is_open
            and self._arming.armed
        ):
            self._notifier.alert(
                "FOLLOWER_CANCELLED_OUTSIDE",
                Severity.WARNING,
                f"{f.name}: order {snap.order_id} was cancelled outside the engine while "
                f"the leader's is still open; not re-placed",
                f.name,
                mirror.leader_order_id,
            )

    async def refresh_order(self, f: FollowerRuntime, mirror: MirrorRecord) -> None:
        """Read one copy's order back from Dhan (after an unclear or refused request)."""
        if not mirror.follower_order_id:
            return
        try:
            snap = await f.broker.order_by_id(mirror.follower_order_id)
        except BrokerError:
            return  # the next update or reconcile brings it
        if snap is not None:
            self.on_snapshot(f, snap)

    async def refresh_books(self, discrepancies: list[str]) -> None:
        """Every follower's order book, read in parallel (recovery)."""

        async def one(f: FollowerRuntime) -> None:
            try:
                book = await f.broker.order_book()
            except BrokerError as exc:
                discrepancies.append(f"{f.name}: order book unreadable ({redact(str(exc))})")
                return
            for snap in book:
                self.on_snapshot(f, snap)

        await asyncio.gather(*(one(f) for f in self._accounts.all()))


def _second_order_under(mirror: MirrorRecord, snap: OrderSnapshot) -> bool:
    """An order under this copy's correlationId other than the one (or the slices) Dhan
    acknowledged to us: another engine sent the same copy. (Before the acknowledgement the
    orders under the id are not all known yet: a sliced copy's slices arrive first.)"""
    if mirror.state is not MirrorState.LIVE or not mirror.follower_order_id:
        return False
    if snap.order_id == mirror.follower_order_id:
        return False
    return snap.order_id not in {s.order_id for s in mirror.slices}


def _same_but_for_time(updated: MirrorRecord, mirror: MirrorRecord) -> bool:
    return updated.with_changes(updated_at=mirror.updated_at) == mirror
