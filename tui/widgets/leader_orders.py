"""Leader orders, newest first, one keyed row per leader order id."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from datetime import datetime

from engine.domain import OrderSnapshot
from tui.format import LEADER_COLUMNS, leader_cells
from tui.widgets.keyed_table import KeyedTable


class LeaderOrdersTable(KeyedTable):
    """Rows keyed by leader order id; at most `cap` rows (the oldest go by key)."""

    def __init__(self, *, cap: int = 500, id: str | None = "leader-orders") -> None:
        super().__init__(LEADER_COLUMNS, id=id)
        self.cap = cap
        self._seq = 0
        self._known: OrderedDict[str, int] = OrderedDict()  # order id -> ordering, oldest first
        self._seen_at: dict[str, datetime] = {}

    def apply_snapshots(self, leaders: Mapping[str, tuple[OrderSnapshot, datetime]]) -> int:
        upserts: dict[str, tuple[OrderSnapshot, datetime, int]] = {}
        for order_id, (snapshot, seen_at) in leaders.items():
            order = self._known.get(order_id)
            if order is None:
                self._seq += 1
                order = self._seq
                self._known[order_id] = order
                self._seen_at[order_id] = seen_at
            upserts[order_id] = (snapshot, self._seen_at[order_id], order)
        removals: list[str] = []
        while len(self._known) > self.cap:
            old_id, _ = self._known.popitem(last=False)
            self._seen_at.pop(old_id, None)
            upserts.pop(old_id, None)
            if self.has_key(old_id):
                removals.append(old_id)
        return self.apply(
            ((oid, leader_cells(snap, at), order) for oid, (snap, at, order) in upserts.items()),
            removals,
        )
