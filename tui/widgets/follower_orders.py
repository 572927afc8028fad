"""Follower copies of leader orders: all of them newest first, or those of one leader order."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping
from itertools import islice

from engine.views import CopyStepView, FollowerOrderView
from tui.coalesce import FollowerKey
from tui.format import FOLLOWER_COLUMNS, follower_cells
from tui.widgets.keyed_table import KeyedTable

_SEP = "\x1f"


def row_key(key: FollowerKey) -> str:
    return f"{key[0]}{_SEP}{key[1]}"


class FollowerOrdersTable(KeyedTable):
    """Keeps the latest view per (follower, leader order); shows a keyed window of them.

    `leader_filter` None shows the newest `cap` copies of any leader order; a leader order id
    shows only that order's copies. Changing the filter is a diff too (rows leave and arrive by
    key), never a clear-and-rebuild.
    """

    def __init__(
        self, *, cap: int = 500, model_cap: int = 5000, id: str | None = "follower-orders"
    ) -> None:
        super().__init__(FOLLOWER_COLUMNS, id=id)
        self.cap = cap
        self.model_cap = max(model_cap, cap)
        self.leader_filter: str | None = None
        self._seq = 0
        self._views: OrderedDict[str, tuple[int, FollowerOrderView]] = OrderedDict()
        self._by_leader: dict[str, set[str]] = {}
        self._behind: dict[str, float] = {}  # lagging copies: row key -> seconds behind
        self.new_above = 0

    def leader_of(self, key: str) -> str | None:
        entry = self._views.get(key)
        return entry[1].leader_order_id if entry else None

    def view_of(self, key: str) -> FollowerOrderView | None:
        entry = self._views.get(key)
        return entry[1] if entry else None

    def apply_views(self, views: Mapping[FollowerKey, FollowerOrderView]) -> int:
        changed: set[str] = set()
        for fkey, view in views.items():
            key = row_key(fkey)
            entry = self._views.get(key)
            if entry is None:
                self._seq += 1
                self._views[key] = (self._seq, view)
                self._by_leader.setdefault(view.leader_order_id, set()).add(key)
                if self.cursor_row > 0:
                    self.new_above += 1
            else:
                self._views[key] = (entry[0], view)
            changed.add(key)
        while len(self._views) > self.model_cap:
            old_key, (_, old_view) = self._views.popitem(last=False)
            keys = self._by_leader.get(old_view.leader_order_id)
            if keys is not None:
                keys.discard(old_key)
                if not keys:
                    del self._by_leader[old_view.leader_order_id]
            changed.discard(old_key)
            self._behind.pop(old_key, None)
        return self._sync(changed)

    def behind_of(self, key: str) -> float | None:
        return self._behind.get(key)

    def apply_steps(self, steps: Mapping[str, CopyStepView]) -> int:
        """Highlight the copies that lag their filled leader order, with their timer."""
        changed: set[str] = set()
        for leader_id, step in steps.items():
            lagging = {row_key((c.follower, leader_id)): c.behind_s for c in step.lagging}
            for key in self._by_leader.get(leader_id, set()):
                behind = lagging.get(key)
                if behind != self._behind.get(key):
                    changed.add(key)
                    if behind is None:
                        self._behind.pop(key, None)
                    else:
                        self._behind[key] = behind
        return self._sync(changed) if changed else 0

    def set_filter(self, leader_order_id: str | None) -> int:
        if leader_order_id == self.leader_filter:
            return 0
        self.leader_filter = leader_order_id
        return self._sync(set())

    def _desired(self) -> Iterable[str]:
        if self.leader_filter is None:
            return islice(reversed(self._views), self.cap)
        return self._by_leader.get(self.leader_filter, set())

    def _sync(self, changed: set[str]) -> int:
        desired = set(self._desired())
        shown = set(self._cells)
        removals = shown - desired
        upserts = [
            (key, follower_cells(self._views[key][1], self._behind.get(key)), self._views[key][0])
            for key in desired
            if key not in shown or key in changed
        ]
        upserts.sort(key=lambda item: item[2])
        return self.apply(upserts, removals)

    def on_data_table_row_highlighted(self, event: KeyedTable.RowHighlighted) -> None:
        if event.cursor_row == 0:
            self.new_above = 0
