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
position (an expiry). A read can straddle a fill: Dhan's positions may count a fill the stream
has not shown yet, or the other way round (which service is first is not documented). So an
offset counts only once two reads in a row agree on it; until then (the first reads after a
start) the account's net is unknown, and exits are capped by our copies' holding alone, as they
are in a product this does not cover.

CNC and MTF are not covered: Dhan shows delivery bought before today as holdings, not as
positions, so the positions answer does not say what the account holds; and Dhan refuses a
delivery sale beyond what the account holds anyway.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from engine.domain import OrderSnapshot, Product, Side
from engine.replication.targets import PositionKey

__all__ = ["CARRIED_IN_POSITIONS", "AccountHoldings"]

CARRIED_IN_POSITIONS = frozenset({Product.MARGIN})


@dataclass(slots=True)
class _Carried:
    seen: int = 0  # signed net of the fills seen in the account since the engine started
    candidate: int | None = None  # the net read less `seen`, at the last read
    offset: int | None = None  # the candidate two reads in a row agreed on


class AccountHoldings:
    def __init__(self) -> None:
        self._filled: dict[tuple[str, str], int] = {}  # (follower, order id) -> filled seen
        self._positions: dict[tuple[str, PositionKey], _Carried] = {}

    def order_seen(self, follower: str, snap: OrderSnapshot) -> bool:
        """An order of the account (a copy or its own) as Dhan shows it now: what it filled
        since last seen is counted. True when it filled more, in a carried product."""
        if snap.product not in CARRIED_IN_POSITIONS:
            return False
        order_key = (follower, snap.order_id)
        before = self._filled.get(order_key, 0)
        if snap.filled_qty <= before:
            return False  # a repeat, or an update behind one already seen
        self._filled[order_key] = snap.filled_qty
        delta = snap.filled_qty - before
        held = self._positions.setdefault((follower, PositionKey.of(snap)), _Carried())
        held.seen += delta if snap.side is Side.BUY else -delta
        return True

    def positions_read(
        self, follower: str, nets: Mapping[PositionKey, int], wanted: Iterable[PositionKey]
    ) -> list[PositionKey]:
        """Dhan's net positions of the account, as just read (`nets`; a position missing
        from them is flat), for its carried positions and those in `wanted`. The positions
        whose account net became known, or changed, by this read."""
        keys = {k for k in nets if k.product in CARRIED_IN_POSITIONS}
        keys.update(k for k in wanted if k.product in CARRIED_IN_POSITIONS)
        keys.update(k for f, k in self._positions if f == follower)
        changed: list[PositionKey] = []
        for key in keys:
            held = self._positions.setdefault((follower, key), _Carried())
            candidate = nets.get(key, 0) - held.seen
            if candidate == held.candidate and candidate != held.offset:
                held.offset = candidate
                changed.append(key)
            held.candidate = candidate
        return changed

    def unconfirmed(self) -> bool:
        """The last read of some position gave an offset no read before it agreed on."""
        return any(h.candidate != h.offset for h in self._positions.values())

    def account_net(self, follower: str, key: PositionKey) -> int | None:
        """What the account holds in the position now (signed); None while not known."""
        held = self._positions.get((follower, key))
        if held is None or held.offset is None:
            return None
        return held.offset + held.seen
