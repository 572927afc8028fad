"""The day's end: leader orders and copies the engine still holds as open although their
trading day has ended (engine.replication.day_end) are taken as expired, as Dhan took them at
the close, and nothing is sent for them.

It runs at start, before anything is decided (the copies before the accounts open, the
leader's orders once the position ledgers are loaded, so that each ledger takes its leader's
end), and before every recovery: a day that ends while the engine runs is settled by the
first reconcile of the next day when Dhan's expiry alerts did not come (whether it sends them
is not documented). One alert names what was settled; fills made while the engine was not
watching are not known here, and the drift check (R) shows what they did to positions.
"""

from __future__ import annotations

from datetime import date

from engine.clock import Clock
from engine.domain import OrderStatus, Severity
from engine.live.book import MirrorKey, ReplicationBook
from engine.live.leader_feed import LeaderFeed
from engine.live.notifier import Notifier
from engine.live.positions import Positions
from engine.market_hours import MarketCalendar
from engine.records import IntentOutcome
from engine.replication.day_end import EndedDay, ended_with_their_day
from engine.store import Store
from engine.transitions import ended_with_the_day

__all__ = ["DayEnd"]


def _ended_reason(day: date) -> str:
    return f"its trading day ({day:%d %b}) ended: expired at Dhan's close"


class DayEnd:
    def __init__(
        self,
        clock: Clock,
        calendar: MarketCalendar,
        book: ReplicationBook,
        leader_feed: LeaderFeed,
        positions: Positions,
        notifier: Notifier,
    ) -> None:
        self._clock = clock
        self._calendar = calendar
        self._book = book
        self._leader_feed = leader_feed
        self._positions = positions
        self._notifier = notifier
        self._settled_copies: set[MirrorKey] = set()  # this process's, for their intents
        # Settled since the last alert (at start: the copies, then the leader's orders).
        self._unreported_leaders = 0
        self._unreported_copies = 0
        self._unreported_days: set[date] = set()
        self._unreported_positions: list[str] = []

    def _ended(self) -> EndedDay:
        return ended_with_their_day(
            self._book.leader_orders(),
            self._book.mirrors(),
            self._calendar.closing_day,
            self._clock.now().date(),
        )

    def settle_copies(self) -> None:
        """Every copy held as open whose day has ended: expired, its fills as last known."""
        self._settle_copies(self._ended())

    def _settle_copies(self, ended: EndedDay) -> None:
        now = self._clock.now()
        for copy, day in ended.copies:
            reason = _ended_reason(day)
            self._book.set_mirror(ended_with_the_day(copy, reason, now))
            self._settled_copies.add((copy.follower, copy.leader_order_id))
            self._notifier.journal(
                "day-end",
                f"{copy.follower}: copy {copy.follower_order_id or copy.correlation_id} "
                f"taken as expired: {reason}",
                copy.follower,
                copy.leader_order_id,
            )
            self._unreported_copies += 1
            self._unreported_days.add(day)

    def settle(self) -> None:
        """The copies first (so that no decision the leader's end wakes sees one as open),
        then the leader's orders, through the leader feed like any snapshot: the book, the
        position ledgers and the panes take their end. Then the intraday positions Dhan
        squared off with their day start again from flat, and one alert says all of it."""
        ended = self._ended()
        self._settle_copies(ended)
        for snap, day in ended.leaders:
            expired = snap.with_changes(status=OrderStatus.EXPIRED, reason=_ended_reason(day))
            self._leader_feed.ingest(expired)
            self._unreported_leaders += 1
            self._unreported_days.add(day)
        self._unreported_positions += self._positions.square_off_ended()
        self._report()

    async def finish_intents(self, store: Store) -> None:
        """At start, before unfinished intents are resolved: those of copies settled here are
        finished (an unclear placement of a day that has ended is neither looked up nor held:
        whatever it did, nothing of it is open at Dhan now)."""
        if not self._settled_copies:
            return
        for intent in await store.unfinished_intents():
            if (intent.follower, intent.leader_order_id) in self._settled_copies:
                await store.complete_intent(
                    intent.id, IntentOutcome.EXPIRED, "its trading day ended before its answer"
                )

    def _report(self) -> None:
        leaders, copies = self._unreported_leaders, self._unreported_copies
        positions = self._unreported_positions
        if not leaders and not copies and not positions:
            return
        when = ", ".join(f"{d:%d %b}" for d in sorted(self._unreported_days))
        self._unreported_leaders = self._unreported_copies = 0
        self._unreported_days = set()
        self._unreported_positions = []
        parts: list[str] = []
        if leaders or copies:
            parts.append(
                f"{leaders} leader order(s) and {copies} copy(ies) of {when} were still open "
                "when the engine last saw them; Dhan's orders last one trading day, so they "
                "are taken as expired and nothing is sent for them"
            )
        if positions:
            parts.append(
                "Intraday positions Dhan squared off at their close start again from flat: "
                + "; ".join(positions)
            )
        self._notifier.alert(
            "DAY_ENDED",
            Severity.WARNING,
            ". ".join(parts)
            + ". Fills made while the engine was not watching are not known here: R shows "
            "each follower's position drift",
        )
