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
calendar is unsure (no session known, no creation time), nothing is taken as ended.

Positions in an intraday-only product (INTRADAY, CO, BO) end with their day too: Dhan squares
off, before the close, whatever is still held in one, the leader's and every follower's alike,
so the next day both start flat (`squared_off_with_their_day`). Pure; no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime

from engine.domain import MirrorState, OrderSnapshot, Product, Segment
from engine.records import MirrorRecord

__all__ = [
    "INTRADAY_ONLY",
    "ClosingDay",
    "EndedDay",
    "ended_before",
    "ended_with_their_day",
    "held_open",
    "leader_ended",
    "squared_off_with_their_day",
]

# Products Dhan never carries overnight.
INTRADAY_ONLY = frozenset({Product.INTRADAY, Product.CO, Product.BO})

# The day of the close that ends an order of this segment placed then, at the latest (None:
# no session known): `engine.market_hours.MarketCalendar.closing_day`.
ClosingDay = Callable[[Segment, datetime], date | None]


@dataclass(frozen=True, slots=True)
class EndedDay:
    """What the engine still holds as open although its trading day has ended, each with the
    day of the close that ended it."""

    leaders: tuple[tuple[OrderSnapshot, date], ...] = ()  # leader orders held as working
    copies: tuple[tuple[MirrorRecord, date], ...] = ()  # copies held as at Dhan (or on the way)


def ended_before(
    closing_day: ClosingDay, segment: Segment, placed_at: datetime | None, today: date
) -> date | None:
    """The day of the close that ended an order placed at ``placed_at``, if it is before
    ``today``; None while it may still work (or when nothing is known). An order placed
    today ends today at the earliest: told without the calendar, for the orders of the day
    (this runs as each leader order arrives, once per follower)."""
    if placed_at is None or placed_at.date() >= today:
        return None
    day = closing_day(segment, placed_at)
    return day if day is not None and day < today else None


def leader_ended(closing_day: ClosingDay, snap: OrderSnapshot, today: date) -> date | None:
    """`ended_before` for a leader order (placed when Dhan received it)."""
    return ended_before(closing_day, snap.segment, snap.created_at or snap.updated_at, today)


def _copy_ended(
    closing_day: ClosingDay, copy: MirrorRecord, leader: OrderSnapshot | None, today: date
) -> date | None:
    """A copy is placed in its leader's session; without the leader, its own last change (made
    in its session, or after its close for an after-market copy, which then gives the next)."""
    if leader is not None:
        return leader_ended(closing_day, leader, today)
    if copy.params is None:
        return None
    return ended_before(closing_day, copy.params.segment, copy.updated_at, today)


def held_open(copy: MirrorRecord) -> bool:
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
        day = leader_ended(closing_day, snap, today)
        if day is not None:
            ended_leaders.append((snap, day))
    ended_copies: list[tuple[MirrorRecord, date]] = []
    for copy in copies:
        if not held_open(copy):
            continue
        day = _copy_ended(closing_day, copy, by_id.get(copy.leader_order_id), today)
        if day is not None:
            ended_copies.append((copy, day))
    return EndedDay(tuple(ended_leaders), tuple(ended_copies))


def squared_off_with_their_day(product: Product, parts: Iterable[tuple[bool, date | None]]) -> bool:
    """Whether a position in ``product`` was squared off with its day, so that neither the
    leader nor the follower holds any of it now. ``parts``: for everything the position was
    made of (each leader order with its copy, what the leader held at the attach point, each
    position sync), whether it still works at Dhan (an open order) and the day of the close
    that ended it (None: not ended, or unknown; either keeps the position as it is)."""
    if product not in INTRADAY_ONLY:
        return False
    seen = False
    for working, ended in parts:
        if working or ended is None:
            return False
        seen = True
    return seen
