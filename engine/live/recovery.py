"""Recovery: read the leader's and followers' order books (at start, on every reconnect,
periodically and on demand) and put every order that needs work in front of the executor."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace

from engine.clock import Clock
from engine.dhan.errors import BrokerError
from engine.domain import OrderSnapshot, OrderStatus, Severity
from engine.events import RecoveryCompleted
from engine.live.accounts import Accounts
from engine.live.book import ReplicationBook
from engine.live.executor import Executor
from engine.live.follower_feed import FollowerFeed
from engine.live.leader_feed import LeaderFeed
from engine.live.notifier import Notifier
from engine.replication.correlation import is_engine_correlation_id
from engine.replication.replicator import Cancel, NoAction
from engine.secrets import redact
from engine.views import RecoveryReport

log = logging.getLogger(__name__)


class Recovery:
    def __init__(
        self,
        clock: Clock,
        accounts: Accounts,
        book: ReplicationBook,
        leader_feed: LeaderFeed,
        follower_feed: FollowerFeed,
        executor: Executor,
        notifier: Notifier,
        check_drift: Callable[[], Awaitable[list[str]]],
        settle_day_end: Callable[[], None],
    ) -> None:
        self._clock = clock
        self._accounts = accounts
        self._book = book
        self._leader_feed = leader_feed
        self._follower_feed = follower_feed
        self._executor = executor
        self._notifier = notifier
        self._check_drift = check_drift
        self._settle_day_end = settle_day_end  # engine.live.day_end
        self._lock = asyncio.Lock()
        self._first_connect = True

    async def on_leader_connected(self) -> None:
        trigger = "startup" if self._first_connect else "reconnect"
        self._first_connect = False
        await self.recover(trigger)

    async def run_periodic(self, interval_s: float) -> None:
        while True:
            await self._clock.sleep(interval_s)
            try:
                await self.recover("periodic")
            except Exception:  # unexpected: logged, and the next reconcile still runs
                log.exception("periodic reconcile failed")

    def _flag_ghosts(
        self, book: list[OrderSnapshot], read_started: float, discrepancies: list[str]
    ) -> None:
        """A leader order seen on the stream before this read yet absent from the leader's
        book is a ghost (Dhan's book knows every order of the day): flagged, and taken as
        cancelled so that its copies are cancelled (fills already made are kept)."""
        in_book = {snap.order_id for snap in book}
        for known in self._book.leader_orders():
            seen = self._book.seen_mono(known.order_id)
            if (
                known.order_id in in_book
                or not known.is_open
                or seen is None
                or seen >= read_started
            ):
                continue
            ghost = replace(
                known,
                status=OrderStatus.CANCELLED,
                reason="ghost: on the order stream but not in the leader's order book",
            )
            self._book.put_leader(ghost)
            discrepancies.append(f"leader order {known.order_id} is a ghost (not in the book)")
            self._notifier.alert(
                "GHOST_LEADER_ORDER",
                Severity.CRITICAL,
                f"Leader order {known.order_id} ({known.side.value} {known.quantity} "
                f"{known.trading_symbol or known.security_id}) came on the order stream but "
                "is not in the leader's order book: treated as cancelled, its copies are "
                "being cancelled",
                None,
                known.order_id,
            )

    def requeue(self, account: str) -> None:
        """Put every leader order that needs work for `account` ("" = every follower) in
        front of the executor (a freeze just cleared: what waited is copied now)."""
        for f in self._accounts.all():
            if account and f.name != account:
                continue
            for leader in self._book.leader_orders():
                decision = self._executor.decide(f, leader)
                if not isinstance(decision, NoAction):
                    f.dispatcher.mark(leader.order_id, urgent=isinstance(decision, Cancel))

    async def recover(self, trigger: str) -> RecoveryReport:
        """Missed-order recovery: read the books and run every order through the replicator."""
        async with self._lock:
            # What the engine holds as open from a day that has ended: Dhan's book no longer
            # shows it, so the reads below could never settle it.
            self._settle_day_end()
            started = time.monotonic()
            discrepancies: list[str] = []
            read_started = self._clock.monotonic()
            try:
                book = await self._accounts.leader().order_book()
            except BrokerError as exc:
                msg = (
                    f"Recovery ({trigger}) could not read the leader's order book: "
                    f"{redact(str(exc))}"
                )
                self._notifier.alert("RECOVERY_FAILED", Severity.ERROR, msg)
                report = RecoveryReport(
                    trigger, 0, 0, (msg,), time.monotonic() - started, read_ok=False
                )
                self._notifier.publish(RecoveryCompleted(self._clock.now(), report))
                return report
            # Follower books first, so the decisions below see the followers as they are now.
            await self._follower_feed.refresh_books(discrepancies)
            self._flag_ghosts(book, read_started, discrepancies)
            for snap in book:
                known = self._book.leader(snap.order_id)
                if known is None and not is_engine_correlation_id(snap.correlation_id):
                    discrepancies.append(
                        f"leader order {snap.order_id} was missed ({snap.status.value})"
                    )
                elif known is not None and known.progress_key() < snap.progress_key():
                    discrepancies.append(
                        f"leader order {snap.order_id} changed while away: "
                        f"{known.status.value} -> {snap.status.value}"
                    )
                self._leader_feed.ingest(snap)
            # Counted with no await since the ingest: no worker has acted on them yet. Only
            # orders that need work are queued (a day's book times every follower would
            # otherwise flood the dispatchers on every periodic reconcile).
            actions = 0
            for f in self._accounts.all():
                for leader in self._book.leader_orders():
                    decision = self._executor.decide(f, leader)
                    if not isinstance(decision, NoAction):
                        actions += 1
                        f.dispatcher.mark(leader.order_id, urgent=isinstance(decision, Cancel))
            if trigger == "manual":
                discrepancies.extend(await self._check_drift())
            report = RecoveryReport(
                trigger, len(book), actions, tuple(discrepancies), time.monotonic() - started
            )
            if discrepancies or trigger in ("manual", "reconnect"):
                self._notifier.alert(
                    "RECOVERY",
                    Severity.INFO if not discrepancies else Severity.WARNING,
                    f"Recovery ({trigger}): {len(book)} leader orders checked, "
                    f"{actions} actions, {len(discrepancies)} discrepancies",
                )
            self._notifier.publish(RecoveryCompleted(self._clock.now(), report))
            return report
