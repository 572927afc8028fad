"""Dhan's orders last one trading day. An order is DAY or IOC: at the close of the session it
was placed for, the exchange ends whatever of it is still open, and the next day Dhan's order
book (and order stream) no longer mentions it. An engine that was stopped overnight still
holds such orders as open: the leader's as working, each copy as resting at Dhan. Left so, a
resting exit the leader places again the next morning would be sized to nothing ("already
working to close"), and the kill switch would try to cancel orders Dhan no longer knows.

Which orders ended with their day is a fact of the exchange's rules, not an inference from
Dhan's silence: a regular order belongs to the session in which it was placed, an after-market
order (placed after the close, or before the open) to the next one. So the rule is the
calendar's: the order's session is the one the market calendar gives for its creation time
(`MarketCalendar.session`: today's while the day's market is still to close, else the next
trading day's), and the order has ended once a later calendar day than that session's close
has begun. On the close's own day Dhan's book still shows the day's orders with their final
status, which the recovery reads; only from the next day on does the rule decide. Wherever the
calendar is unsure (no session known, no creation time), nothing is taken as ended. Pure; no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime

from engine.domain import MirrorState, OrderSnapshot, Segment
from engine.records import MirrorRecord

__all__ = ["ClosingDay", "EndedDay", "ended_with_their_day"]

# The day of the close that ends an order of this segment placed then, at the latest (None:
# no session known): `engine.market_hours.MarketCalendar.closing_day`.
ClosingDay = Callable[[Segment, datetime], date | None]


@dataclass(frozen=True, slots=True)
class EndedDay:
    """What the engine still holds as open although its trading day has ended, each with the
    day of the close that ended it."""

    leaders: tuple[tuple[OrderSnapshot, date], ...] = ()  # leader orders held as working
    copies: tuple[tuple[MirrorRecord, date], ...] = ()  # copies held as at Dhan (or on the way)


def _leader_day(closing_day: ClosingDay, snap: OrderSnapshot) -> date | None:
    placed_at = snap.created_at or snap.updated_at
    return None if placed_at is None else closing_day(snap.segment, placed_at)


def _copy_day(
    closing_day: ClosingDay, copy: MirrorRecord, leader: OrderSnapshot | None
) -> date | None:
    """A copy is placed in its leader's session; without the leader, its own last change (made
    in its session, or after its close for an after-market copy, which then gives the next)."""
    if leader is not None:
        return _leader_day(closing_day, leader)
    if copy.params is None or copy.updated_at is None:
        return None
    return closing_day(copy.params.segment, copy.updated_at)


def _held_open(copy: MirrorRecord) -> bool:
    """Held as at Dhan or on its way there: being placed, resting, or cancelled to be placed
    again (the next generation is placed only while the leader's order works)."""
    if copy.state is MirrorState.REPLACING:
        return True
    return copy.is_open_at_broker


def ended_with_their_day(
    leaders: Iterable[OrderSnapshot],
    copies: Iterable[MirrorRecord],
    closing_day: ClosingDay,
    today: date,
) -> EndedDay:
    """The leader orders and copies held as open whose session closed before ``today`` (IST)."""
    by_id = {snap.order_id: snap for snap in leaders}
    ended_leaders: list[tuple[OrderSnapshot, date]] = []
    for snap in by_id.values():
        if not snap.is_open:
            continue
        day = _leader_day(closing_day, snap)
        if day is not None and day < today:
            ended_leaders.append((snap, day))
    ended_copies: list[tuple[MirrorRecord, date]] = []
    for copy in copies:
        if not _held_open(copy):
            continue
        day = _copy_day(closing_day, copy, by_id.get(copy.leader_order_id))
        if day is not None and day < today:
            ended_copies.append((copy, day))
    return EndedDay(tuple(ended_leaders), tuple(ended_copies))
