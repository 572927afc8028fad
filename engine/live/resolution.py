"""Resolution of unclear answers: a placement Dhan did not clearly answer, or one whose answer
a previous process never recorded, is looked up by its correlationId before anything is placed
again, so nothing is placed twice."""

from __future__ import annotations

from engine.clock import Clock
from engine.dhan.errors import BrokerError
from engine.domain import MirrorState, OrderSnapshot, Severity
from engine.live.accounts import Accounts, FollowerRuntime
from engine.live.book import ReplicationBook
from engine.live.follower_feed import FollowerFeed
from engine.live.notifier import Notifier
from engine.live.tasks import TaskSet
from engine.live.write_behind import WriteBehind
from engine.records import Intent, IntentKind, IntentOutcome
from engine.transitions import found_after_restart, found_at_broker

LOOKUP_TRIES = 3


class Unknown:
    """Dhan could not say whether the order exists: nothing may be placed meanwhile."""


UNKNOWN = Unknown()


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
    ) -> None:
        self._clock = clock
        self._accounts = accounts
        self._book = book
        self._follower_feed = follower_feed
        self._writes = writes
        self._notifier = notifier
        self._tasks = tasks

    async def lookup(self, f: FollowerRuntime, cid: str) -> OrderSnapshot | Unknown | None:
        """The order with this correlationId at Dhan; None if Dhan says there is none,
        UNKNOWN when Dhan could not answer."""
        for attempt in range(LOOKUP_TRIES):
            try:
                found = await f.broker.order_by_correlation(cid)
            except BrokerError:
                await self._clock.sleep(0.2 * (attempt + 1))
                continue
            if found is not None:
                self._follower_feed.on_snapshot(f, found)
            return found
        return UNKNOWN

    def retry_later(self, f: FollowerRuntime, leader_id: str, intent: Intent) -> None:
        self._tasks.spawn(self._retry(f, leader_id, intent), "resolve")

    async def _retry(self, f: FollowerRuntime, leader_id: str, intent: Intent) -> None:
        delay = 1.0
        while True:
            await self._clock.sleep(delay)
            found = await self.lookup(f, intent.correlation_id)
            mirror = self._book.mirror(f.name, leader_id)
            if mirror is None:
                return
            if found is None:
                self._book.forget(mirror)
                f.dispatcher.mark(leader_id)
                return
            if isinstance(found, OrderSnapshot):
                self._book.set_mirror(found_at_broker(mirror, found))
                self._writes.finish_intent(intent, IntentOutcome.ACKED, f"found {found.order_id}")
                f.dispatcher.mark(leader_id)
                return
            delay = min(delay * 2, 30.0)

    async def resolve_unfinished(self) -> None:
        """After a restart: every placement whose answer we never recorded is looked up by its
        correlationId before anything else happens."""
        store = self._writes.require_store()
        for intent in await store.unfinished_intents():
            f = self._accounts.followers.get(intent.follower)
            mirror = self._book.mirror(intent.follower, intent.leader_order_id)
            if f is None:
                continue
            if intent.kind is not IntentKind.PLACE:
                if mirror is not None:
                    await self._follower_feed.refresh_order(f, mirror)
                await store.complete_intent(
                    intent.id,
                    IntentOutcome.AMBIGUOUS,
                    "process stopped before the answer; order re-read",
                )
                continue
            found = await self.lookup(f, intent.correlation_id)
            if isinstance(found, OrderSnapshot):
                rec = found_after_restart(mirror, intent, found)
                self._book.set_mirror(rec)
                await store.complete_intent(
                    intent.id, IntentOutcome.ACKED, f"found after restart: {found.order_id}", rec
                )
                self._notifier.journal(
                    "recovery",
                    f"{f.name}: placement found after restart ({found.order_id}); not placed again",
                    f.name,
                    intent.leader_order_id,
                )
            elif found is None:
                await store.complete_intent(
                    intent.id,
                    IntentOutcome.REFUSED,
                    "not at Dhan after restart; will place again",
                )
                if mirror is not None and mirror.state is MirrorState.PLACING:
                    self._book.forget(mirror)
                self._notifier.journal(
                    "recovery",
                    f"{f.name}: placement never reached Dhan; deciding again",
                    f.name,
                    intent.leader_order_id,
                )
            else:
                self._notifier.alert(
                    "RESTART_UNRESOLVED",
                    Severity.ERROR,
                    f"{f.name}: could not confirm placement {intent.correlation_id} "
                    "after restart; holding it",
                    f.name,
                    intent.leader_order_id,
                )
                self.retry_later(f, intent.leader_order_id, intent)
