"""Resolution of unclear answers: a placement Dhan did not clearly answer, or one whose answer
a previous process never recorded, is settled by what Dhan shows positively before anything is
placed again, so nothing is placed twice and nothing is lost.

Existence is settled only positively (facts §8b L1: an error code alone means nothing):
- FOUND: the follower's order book (or the correlation lookup) carries our correlationId, or the
  follower's order stream showed an order with it (the copy's record then has its order id).
- ABSENT: two reads of the whole order book, spaced by more than the send's own timeout, carry
  no order with it (an order still in flight may not be in the book at the first read).
- UNKNOWN: neither; nothing is sent meanwhile. Past six send timeouts (60 s with the default
  10 s) an alert (PLACE_UNRESOLVED) says so, and the copy keeps waiting, read again at most
  every 10 s: never a blind re-send.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.clock import Clock
from engine.dhan.broker import CorrelationLookup, Existence
from engine.dhan.errors import BrokerError
from engine.domain import MirrorState, OrderSnapshot, Severity
from engine.live.accounts import Accounts, FollowerRuntime
from engine.live.book import ReplicationBook
from engine.live.follower_feed import FollowerFeed
from engine.live.notifier import Notifier
from engine.live.tasks import TaskSet
from engine.live.write_behind import WriteBehind
from engine.records import Intent, IntentKind, IntentOutcome, MirrorRecord
from engine.transitions import (
    acknowledged,
    awaiting_answer,
    carries,
    found_after_restart,
    found_at_broker,
    modified_before_restart,
    with_slices,
)

# An unclear placement still unsettled after this many send timeouts (at least 5 s): alert once.
UNRESOLVED_ALERT_TIMEOUTS = 6
MAX_RECHECK_S = 10.0


@dataclass(slots=True)
class _Settling:
    """Where one unclear placement's resolution stands."""

    started: float
    absent_since: float | None = None  # monotonic time of the first of two ABSENT reads
    alerted: bool = False


class Resolver:
    def __init__(
        self,
        clock: Clock,
        accounts: Accounts,
        book: ReplicationBook,
        follower_feed: FollowerFeed,
        writes: WriteBehind,
        notifier: Notifier,
        tasks: TaskSet,
        *,
        send_timeout_s: float = 10.0,
    ) -> None:
        self._clock = clock
        self._accounts = accounts
        self._book = book
        self._follower_feed = follower_feed
        self._writes = writes
        self._notifier = notifier
        self._tasks = tasks
        # Two ABSENT reads must be further apart than a request can stay on the wire.
        self._absent_spacing_s = send_timeout_s + 0.5
        self._unresolved_alert_s = max(send_timeout_s * UNRESOLVED_ALERT_TIMEOUTS, 5.0)

    async def lookup(
        self, f: FollowerRuntime, cid: str, *, complete: bool = True
    ) -> CorrelationLookup:
        """One positive look at Dhan (correlation lookup, then the order book); the orders found
        also move the copy's record on (fills, status). ``complete``: every order carrying the
        id (a sliced copy's slices), which always reads the book."""
        try:
            found = await f.broker.find_by_correlation(cid, complete=complete)
        except BrokerError as exc:  # find_by_correlation answers UNKNOWN itself; belt and braces
            return CorrelationLookup(Existence.UNKNOWN, reason=exc.result.message)
        for snapshot in found.orders:
            self._follower_feed.on_snapshot(f, snapshot)
        return found

    def settle_later(
        self, f: FollowerRuntime, leader_id: str, intent: Intent, first: CorrelationLookup
    ) -> None:
        """Keep reading the follower's book until the placement is settled (see module doc)."""
        now = self._clock.monotonic()
        state = _Settling(now, now if first.existence is Existence.ABSENT_FROM_BOOK else None)
        self._tasks.spawn(self._settle(f, leader_id, intent, state), "resolve")

    async def _settle(
        self, f: FollowerRuntime, leader_id: str, intent: Intent, state: _Settling
    ) -> None:
        delay = self._absent_spacing_s if state.absent_since is not None else 0.5
        while True:
            await self._clock.sleep(delay)
            mirror = self._waiting_copy(f, leader_id, intent)
            if mirror is None:
                return  # settled meanwhile (a restart, a reconcile) or no longer ours
            if mirror.follower_order_id:
                self._found_on_stream(f, leader_id, intent, mirror)
                return
            found = await self.lookup(f, intent.correlation_id)
            mirror = self._waiting_copy(f, leader_id, intent)
            if mirror is None:
                return
            now = self._clock.monotonic()
            if found.existence is Existence.FOUND and found.snapshot is not None:
                self._found(f, leader_id, intent, mirror, found.snapshot, found.orders)
                return
            if mirror.follower_order_id:
                self._found_on_stream(f, leader_id, intent, mirror)
                return
            if found.existence is Existence.ABSENT_FROM_BOOK:
                if state.absent_since is None:
                    state.absent_since = now
                elif now - state.absent_since >= self._absent_spacing_s:
                    self._absent(f, leader_id, intent, mirror)
                    return
                delay = self._absent_spacing_s - (now - state.absent_since) + 0.05
                continue
            if not state.alerted and now - state.started >= self._unresolved_alert_s:
                state.alerted = True
                self._notifier.alert(
                    "PLACE_UNRESOLVED",
                    Severity.ERROR,
                    f"{f.name}: cannot tell whether the copy of leader {leader_id} "
                    f"({intent.correlation_id}) exists at Dhan after "
                    f"{now - state.started:.0f}s ({found.reason}); nothing is sent again "
                    "until Dhan shows it; check the follower's order book",
                    f.name,
                    leader_id,
                )
            delay = min(max(delay, 0.5) * 2, MAX_RECHECK_S)

    def _waiting_copy(
        self, f: FollowerRuntime, leader_id: str, intent: Intent
    ) -> MirrorRecord | None:
        mirror = self._book.mirror(f.name, leader_id)
        if mirror is None or mirror.correlation_id != intent.correlation_id:
            return None
        if mirror.state is not MirrorState.PLACING:
            return None
        return mirror

    def _found(
        self,
        f: FollowerRuntime,
        leader_id: str,
        intent: Intent,
        mirror: MirrorRecord,
        found: OrderSnapshot,
        orders: tuple[OrderSnapshot, ...] = (),
    ) -> None:
        settled = found_at_broker(mirror, found)
        ids = tuple(s.order_id for s in orders)
        if len(ids) > 1:  # a sliced copy: each slice is tracked
            settled = with_slices(settled, ids)
        self._book.set_mirror(settled)
        self._writes.finish_intent(intent, IntentOutcome.ACKED, f"found {found.order_id}", settled)
        self._notifier.journal(
            "recovery",
            f"{f.name}: unclear placement found at Dhan ({found.order_id}); not placed again",
            f.name,
            leader_id,
        )
        f.dispatcher.mark(leader_id)

    def _found_on_stream(
        self, f: FollowerRuntime, leader_id: str, intent: Intent, mirror: MirrorRecord
    ) -> None:
        settled = self._placed_as_shown(mirror)
        self._writes.finish_intent(
            intent, IntentOutcome.ACKED, f"seen on the stream: {mirror.follower_order_id}", settled
        )
        f.dispatcher.mark(leader_id)

    def _placed_as_shown(self, mirror: MirrorRecord) -> MirrorRecord:
        """A copy held as in flight whose order Dhan has shown (its order id came on the
        stream): placed, as its answer would have made it. Held as in flight, it would never
        be decided again: not on the leader's cancel, nor on his exit."""
        if mirror.state is not MirrorState.PLACING:
            return mirror
        settled = acknowledged(
            mirror, mirror.follower_order_id, mirror.broker_status, None, self._clock.now()
        )
        self._book.set_mirror(settled)
        return settled

    def _absent(
        self, f: FollowerRuntime, leader_id: str, intent: Intent, mirror: MirrorRecord
    ) -> None:
        self._writes.finish_intent(
            intent, IntentOutcome.REFUSED, "not in the follower's order book (read twice)"
        )
        self._book.forget(mirror)
        self._notifier.alert(
            "PLACE_RETRY",
            Severity.WARNING,
            f"{f.name}: the unclear placement for leader {leader_id} is not in the follower's "
            "order book (read twice, past the send's timeout); placing again",
            f.name,
            leader_id,
        )
        f.dispatcher.mark(leader_id)

    async def _applied_before_restart(
        self, f: FollowerRuntime, intent: Intent, mirror: MirrorRecord
    ) -> bool:
        """A modification the previous process sent and never heard back from, which the
        order at Dhan shows applied (it carries what was sent): the copy's record takes it as
        the answer would have, so that the difference is not taken for a hand edit (after
        which the engine would never modify the copy again). False: not shown applied (or a
        sliced copy, whose slices are not compared); the order is then read as it is. Only
        a PENDING intent (the process stopped while it was sent): one settled AMBIGUOUS while
        the engine ran was decided again since, and a later modification may carry the same
        params, which would then count twice against the order's 25."""
        if (
            intent.kind is not IntentKind.MODIFY
            or intent.outcome is not IntentOutcome.PENDING
            or intent.params is None
            or mirror.slices
            or not mirror.follower_order_id
            or intent.follower_order_id != mirror.follower_order_id
        ):
            return False
        try:
            at_dhan = await f.broker.order_by_id(mirror.follower_order_id)
        except BrokerError:
            return False
        if at_dhan is None or not carries(at_dhan, intent.params):
            return False
        applied = modified_before_restart(mirror, intent.params, self._clock.now())
        self._book.set_mirror(applied)
        await self._writes.require_store().complete_intent(
            intent.id,
            IntentOutcome.ACKED,
            "applied before the restart: the order at Dhan carries it",
            applied,
        )
        self._follower_feed.on_snapshot(f, at_dhan)  # its fills and status, as they are now
        self._notifier.journal(
            "recovery",
            f"{f.name}: the modification sent before the restart was applied "
            f"({intent.params.quantity} @ {intent.params.price:g})",
            f.name,
            intent.leader_order_id,
        )
        return True

    async def resolve_unfinished(self) -> None:
        """After a restart: every placement whose answer we never recorded is looked up by its
        correlationId before anything else happens; one not settled at once is held (PLACING)
        and settled in the background, like an unclear answer."""
        store = self._writes.require_store()
        unfinished = await store.unfinished_intents()
        for intent in unfinished:
            f = self._accounts.followers.get(intent.follower)
            mirror = self._book.mirror(intent.follower, intent.leader_order_id)
            if f is None:
                continue
            if intent.kind is not IntentKind.PLACE:
                if mirror is not None:
                    if await self._applied_before_restart(f, intent, mirror):
                        continue
                    await self._follower_feed.refresh_order(f, mirror)
                await store.complete_intent(
                    intent.id,
                    IntentOutcome.AMBIGUOUS,
                    "process stopped before the answer; order re-read",
                )
                continue
            if (
                mirror is not None
                and mirror.correlation_id == intent.correlation_id
                and mirror.follower_order_id
            ):
                # The stream (or a read) already showed the order: it exists.
                settled = self._placed_as_shown(mirror)
                await store.complete_intent(
                    intent.id,
                    IntentOutcome.ACKED,
                    f"already known: {mirror.follower_order_id}",
                    settled,
                )
                continue
            if mirror is not None and mirror.correlation_id != intent.correlation_id:
                # A later generation replaced this one: its own intent settles it.
                await store.complete_intent(
                    intent.id, IntentOutcome.AMBIGUOUS, "superseded by a later generation"
                )
                continue
            found = await self.lookup(f, intent.correlation_id)
            mirror = self._book.mirror(intent.follower, intent.leader_order_id)
            if found.existence is Existence.FOUND and found.snapshot is not None:
                rec = found_after_restart(mirror, intent, found.snapshot)
                if len(found.orders) > 1:  # a sliced copy: each slice is tracked
                    rec = with_slices(rec, tuple(s.order_id for s in found.orders))
                self._book.set_mirror(rec)
                await store.complete_intent(
                    intent.id,
                    IntentOutcome.ACKED,
                    f"found after restart: {found.snapshot.order_id}",
                    rec,
                )
                self._notifier.journal(
                    "recovery",
                    f"{f.name}: placement found after restart ({found.snapshot.order_id}); "
                    "not placed again",
                    f.name,
                    intent.leader_order_id,
                )
                continue
            if mirror is None or mirror.state is not MirrorState.PLACING:
                # Held as in flight, so the replicator sends nothing until it is settled.
                mirror = awaiting_answer(mirror, intent)
                self._book.set_mirror(mirror)
            self._notifier.journal(
                "recovery",
                f"{f.name}: placement {intent.correlation_id} not settled after restart "
                f"({found.reason}); reading the order book again before deciding",
                f.name,
                intent.leader_order_id,
            )
            self.settle_later(f, intent.leader_order_id, intent, found)
        self._release_shown_in_flight(unfinished)

    def _release_shown_in_flight(self, unfinished: list[Intent]) -> None:
        """Copies an earlier run left held as in flight although their placement was settled
        and Dhan had shown their order (a version before this one did so at a restart): taken
        as placed, so that they follow the leader again (the start's recovery decides them
        with the books read afresh). At a start no placement is in flight but those whose
        intent is still open (settled just above, or being settled)."""
        settling = {
            (i.follower, i.correlation_id) for i in unfinished if i.kind is IntentKind.PLACE
        }
        for mirror in self._book.mirrors():
            if (
                mirror.state is not MirrorState.PLACING
                or not mirror.follower_order_id
                or (mirror.follower, mirror.correlation_id) in settling
            ):
                continue
            f = self._accounts.followers.get(mirror.follower)
            if f is None:
                continue
            self._placed_as_shown(mirror)
            self._notifier.journal(
                "recovery",
                f"{f.name}: the copy {mirror.follower_order_id} was held as in flight by an "
                "earlier run although Dhan had shown it; taken as placed",
                f.name,
                mirror.leader_order_id,
            )
