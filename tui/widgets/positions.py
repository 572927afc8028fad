"""Positions per instrument: the leader's net, then each follower's net against its target,
the difference (closing by working orders, or not), average price and P&L; totals per account
at the bottom. Re-read by the engine on a timer; applied as a keyed diff like the order tables.
"""

from __future__ import annotations

from engine.views import PositionsView
from tui.format import (
    POSITION_COLUMNS,
    Cell,
    position_follower_cells,
    position_leader_cells,
    position_total_cells,
)
from tui.widgets.keyed_table import KeyedTable


def position_rows(view: PositionsView) -> list[tuple[str, tuple[Cell, ...]]]:
    """Rows top first: each instrument's leader row then its followers; totals last."""
    rows: list[tuple[str, tuple[Cell, ...]]] = []
    for position in view.positions:
        rows.append((f"{position.key}|leader", position_leader_cells(position)))
        for follower in position.followers:
            rows.append((f"{position.key}|{follower.follower}", position_follower_cells(follower)))
    for total in view.totals:
        rows.append((f"total|{total.account}", position_total_cells(total)))
    return rows


class PositionsTable(KeyedTable):
    def __init__(self, *, id: str | None = "positions") -> None:
        super().__init__(POSITION_COLUMNS, id=id)
        self.view = PositionsView(read_at=None)

    def apply_positions(self, view: PositionsView) -> int:
        self.view = view
        rows = position_rows(view)
        wanted = {key for key, _ in rows}
        removals = [key for key in self.keys() if key not in wanted]
        count = len(rows)
        # ordering numbers: the table shows the highest first
        upserts = [(key, cells, count - index) for index, (key, cells) in enumerate(rows)]
        return self.apply(upserts, removals)

    def instruments(self) -> int:
        return len(self.view.positions)
