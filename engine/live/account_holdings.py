"""What a follower account holds in its carried (MARGIN) positions, ours and its own together.

In an intraday position the account's own trades of the day are all it holds beside our copies
(engine.live.positions counts them). A MARGIN position is carried overnight: what the account
held before today is not in today's order book, and part of it may be our copies of earlier
days, part its own. So the account's own sale of a carried position cannot be told from the
book alone, and the leader's exit, copied in full, would turn the account short.

Dhan's positions answer says what the account holds (``netQty``), but only when it is read
(every few seconds: the cockpit's timer, the drift check, a sync preview). With every fill the
account's order stream shows (our copies and its own orders alike), the net is known at every
moment in between:

    account net now = (net read - fills seen when it was read) + fills seen since

The bracket, the account's *offset*, moves only when something other than a fill moves the
position (an expiry). A read is believed only when it counts exactly the fills seen: its
quantities bought and sold today (``dayBuyQty``, ``daySellQty``; or those less the
``carryForward`` ones, should Dhan count what was carried in them: the row's own arithmetic,
``netQty`` against its quantities, says which) equal to what today's orders of the account
have filled. Dhan's positions may trail its order stream, or run ahead
of it (neither is documented); a read that does not count the same fills says nothing, and
the offset known before stays. Until one read agrees (the first after a start, normally) the
account's net is unknown: engine.live.positions then counts the own trades the stream showed,
as it does in an intraday position.

CNC and MTF are not covered: Dhan shows delivery bought before today as holdings, not as
positions, so the positions answer does not say what the account holds; and Dhan refuses a
delivery sale beyond what the account holds anyway.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

from engine.dhan.broker_answers import Position
from engine.domain import OrderSnapshot, Product, Side
from engine.replication.targets import PositionKey

__all__ = ["CARRIED_IN_POSITIONS", "AccountHoldings"]

CARRIED_IN_POSITIONS = frozenset({Product.MARGIN})


@dataclass(slots=True)
class _Order:
    day: date  # the day it was placed (its fills count in that day's bought and sold)
    filled: int


@dataclass(slots=True)
class _Carried:
    seen: int = 0  # signed net of the fills seen in the account since the engine started
    day: date | None = None  # the day `bought` and `sold` count
    bought: int = 0  # filled by that day's buy orders
    sold: int = 0
    offset: int | None = None  # the account's net less `seen`, from the last read believed
    awaiting: bool = False  # the last read did not count the fills seen


@dataclass(slots=True)
class _Read:
    net: int = 0
    day_buy: int | None = 0
    day_sell: int | None = 0
    carried_buy: int | None = 0
    carried_sell: int | None = 0


class AccountHoldings:
    def __init__(self) -> None:
        self._orders: dict[tuple[str, str], _Order] = {}  # (follower, order id)
        self._positions: dict[tuple[str, PositionKey], _Carried] = {}

    def order_seen(self, follower: str, snap: OrderSnapshot, today: date) -> bool:
        """An order of the account (a copy or its own) as Dhan shows it now: what it filled
        since last seen is counted. True when it filled more, in a carried product."""
        if snap.product not in CARRIED_IN_POSITIONS:
            return False
        order_key = (follower, snap.order_id)
        known = self._orders.get(order_key)
        if known is None:
            placed = snap.created_at.date() if snap.created_at is not None else today
            known = self._orders[order_key] = _Order(placed, 0)
        if snap.filled_qty <= known.filled:
            return False  # a repeat, or an update behind one already seen
        delta = snap.filled_qty - known.filled
        known.filled = snap.filled_qty
        held = self._positions.setdefault((follower, PositionKey.of(snap)), _Carried())
        buy = snap.side is Side.BUY
        held.seen += delta if buy else -delta
        if held.day is None or known.day > held.day:
            held.day, held.bought, held.sold = known.day, 0, 0
        if known.day == held.day:
            if buy:
                held.bought += delta
            else:
                held.sold += delta
        return True

    def positions_read(
        self,
        follower: str,
        positions: Iterable[Position],
        wanted: Iterable[PositionKey],
        today: date,
    ) -> list[PositionKey]:
        """Dhan's positions of the account, as just read (a position missing from them is
        flat, with nothing bought or sold today), for the carried positions in `wanted` (those
        our copies trade: the account's other positions are nobody's concern here, nor a
        reason to read again soon). The positions whose account net became known, or
        changed, by this read."""
        keys = {k for k in wanted if k.product in CARRIED_IN_POSITIONS}
        reads: dict[PositionKey, _Read] = {}
        for p in positions:
            key = PositionKey(p.segment, p.security_id, p.product)
            if key not in keys:
                continue
            r = reads.setdefault(key, _Read())
            r.net += p.net_qty
            r.day_buy = _plus(r.day_buy, p.day_buy_qty)
            r.day_sell = _plus(r.day_sell, p.day_sell_qty)
            r.carried_buy = _plus(r.carried_buy, p.carried_buy_qty)
            r.carried_sell = _plus(r.carried_sell, p.carried_sell_qty)
        changed: list[PositionKey] = []
        for key in keys:
            held = self._positions.setdefault((follower, key), _Carried())
            read = reads.get(key, _Read())
            held.awaiting = not _counts_what_was_seen(read, held, today)
            if held.awaiting:
                continue
            offset = read.net - held.seen
            if offset != held.offset:
                held.offset = offset
                changed.append(key)
        return changed

    def unconfirmed(self) -> bool:
        """The last read of some position did not count the fills seen (read again soon)."""
        return any(h.awaiting for h in self._positions.values())

    def account_net(self, follower: str, key: PositionKey) -> int | None:
        """What the account holds in the position now (signed); None while not known."""
        held = self._positions.get((follower, key))
        if held is None or held.offset is None:
            return None
        return held.offset + held.seen


def _plus(a: int | None, b: int | None) -> int | None:
    return None if a is None or b is None else a + b


def _counts_what_was_seen(read: _Read, held: _Carried, today: date) -> bool:
    """The read's quantities bought and sold today are exactly what today's orders of the
    account have filled, as seen: Dhan's positions and our view of the fills agree."""
    bought, sold = (held.bought, held.sold) if held.day == today else (0, 0)
    day_buy, day_sell = read.day_buy, read.day_sell
    if day_buy is None or day_sell is None:
        return False  # the answer does not say what it counts
    carried_buy, carried_sell = read.carried_buy or 0, read.carried_sell or 0
    if carried_buy != carried_sell and read.net == day_buy - day_sell:
        # The day's quantities count the carried ones too (the net is theirs alone): what
        # is left of them. Told by the row itself, never by which way happens to match: a
        # fill not yet seen as large as the carried quantity would match the other way.
        day_buy, day_sell = day_buy - carried_buy, day_sell - carried_sell
    elif read.net != carried_buy - carried_sell + day_buy - day_sell:
        return False  # a row that does not add up says nothing
    return (day_buy, day_sell) == (bought, sold)
