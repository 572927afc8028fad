"""Leader orders, newest first, one keyed row per leader order id, with its copies in step."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from datetime import datetime

from engine.domain import OrderSnapshot
from engine.views import CopyStepView
from tui.format import LEADER_COLUMNS, leader_cells
from tui.widgets.keyed_table import KeyedTable


class LeaderOrdersTable(KeyedTable):
    """Rows keyed by leader order id; at most `cap` rows (the oldest go by key).

    `new_above` counts orders that arrived above the cursor while it was not on the newest
    row (the pane's title says so); it resets when the cursor is back on top.
    """

    def __init__(self, *, cap: int = 500, id: str | None = "leader-orders") -> None:
        super().__init__(LEADER_COLUMNS, id=id)
        self.cap = cap
        self.new_above = 0
        self._seq = 0
        self._known: OrderedDict[str, int] = OrderedDict()  # order id -> ordering, oldest first
        self._seen_at: dict[str, datetime] = {}
        self._snapshots: dict[str, OrderSnapshot] = {}
        self._steps: dict[str, CopyStepView] = {}

    def step_of(self, order_id: str) -> CopyStepView | None:
        return self._steps.get(order_id)

    def apply_snapshots(
        self,
        leaders: Mapping[str, tuple[OrderSnapshot, datetime]],
        steps: Mapping[str, CopyStepView] | None = None,
    ) -> int:
        upserts: dict[str, tuple[OrderSnapshot, datetime, int]] = {}
        fresh = 0
        for order_id, (snapshot, seen_at) in leaders.items():
            order = self._known.get(order_id)
            if order is None:
                self._seq += 1
                order = self._seq
                self._known[order_id] = order
                self._seen_at[order_id] = seen_at
                fresh += 1
            self._snapshots[order_id] = snapshot
            upserts[order_id] = (snapshot, self._seen_at[order_id], order)
        for order_id, step in (steps or {}).items():
            if order_id not in self._known:
                continue  # a step for an order this table does not show (yet, or any more)
            self._steps[order_id] = step
            if order_id not in upserts:
                upserts[order_id] = (
                    self._snapshots[order_id],
                    self._seen_at[order_id],
                    self._known[order_id],
                )
        removals: list[str] = []
        while len(self._known) > self.cap:
            old_id, _ = self._known.popitem(last=False)
            self._seen_at.pop(old_id, None)
            self._snapshots.pop(old_id, None)
            self._steps.pop(old_id, None)
            upserts.pop(old_id, None)
            if self.has_key(old_id):
                removals.append(old_id)
        if fresh and self.cursor_row > 0:
            self.new_above += fresh
        return self.apply(
            (
                (oid, leader_cells(snap, at, self._steps.get(oid)), order)
                for oid, (snap, at, order) in upserts.items()
            ),
            removals,
        )

    def on_data_table_row_highlighted(self, event: KeyedTable.RowHighlighted) -> None:
        if event.cursor_row == 0:
            self.new_above = 0
