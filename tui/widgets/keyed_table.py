"""A DataTable that is only ever changed by keyed diffs (the Dolphie way).

Rows are identified by a string key. `apply()` takes the desired cells for some keys and the
keys to remove, and touches only what changed: `update_cell` for changed cells, `add_row` for
new keys, `remove_row` for gone keys, all inside one `App.batch_update()`; a diff removing many
rows at once rebuilds the table instead (public API only, one pass). Columns have fixed
widths so a long value never re-lays out the table. Rows are kept newest first by an ordering
number the caller gives; a row keeps its place when it is updated.

Cursor: while the cursor is on the top row the table "tails" (it stays on the newest row);
once the user moves it down, it stays on the same order as new rows arrive above it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from rich.text import Text
from textual.widgets import DataTable
from textual.widgets.data_table import RowDoesNotExist

from tui.format import Cell

# Up to this many removals in one diff go one by one; more rebuild the table (see _rebuild).
_REMOVE_ONE_BY_ONE = 16


class _OrderedText(Text):
    """The first cell of a row, carrying the row's ordering number for `DataTable.sort`."""

    order: int = 0


def _sort_order(cell: Any) -> int:
    return cell.order if isinstance(cell, _OrderedText) else 0


class KeyedTable(DataTable[Text]):
    def __init__(
        self,
        columns: Sequence[tuple[str, str, int]],
        *,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(
            id=id,
            classes=classes,
            cursor_type="row",
            zebra_stripes=False,
            cursor_foreground_priority="renderable",
            cell_padding=0,
        )
        self._column_spec = tuple(columns)
        self._column_keys = tuple(key for key, _, _ in columns)
        self._widths = tuple(width for _, _, width in columns)
        self._cells: dict[str, tuple[Cell, ...]] = {}
        self._order: dict[str, int] = {}

    def on_mount(self) -> None:
        # No cell padding: each column is one wider than its text, a one-cell gap on the right.
        for key, label, width in self._column_spec:
            self.add_column(label, width=width + 1, key=key)

    # --- reading -----------------------------------------------------------------------------

    def keys(self) -> list[str]:
        """Row keys in display order (top first)."""
        return [str(row.key.value) for row in self.ordered_rows]

    def has_key(self, key: str) -> bool:
        return key in self._cells

    def cells_of(self, key: str) -> tuple[str, ...]:
        """The plain text of a row's cells (for tests and the bench)."""
        return tuple(text for text, _ in self._cells[key])

    def cell_text(self, key: str, column: str) -> str:
        return self._cells[key][self._column_keys.index(column)][0]

    def cursor_key(self) -> str | None:
        if self.row_count == 0:
            return None
        try:
            return str(self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value)
        except RowDoesNotExist:
            return None

    # --- writing -----------------------------------------------------------------------------

    def apply(
        self,
        upserts: Iterable[tuple[str, tuple[Cell, ...], int]],
        removals: Iterable[str] = (),
    ) -> int:
        """Apply a keyed diff; returns how many cells/rows were touched."""
        keep_key = None if self.cursor_row <= 0 else self.cursor_key()
        doomed = [key for key in removals if key in self._cells]
        with self.app.batch_update():
            if len(doomed) > _REMOVE_ONE_BY_ONE:
                row = self.cursor_row
                touched = self._rebuild(doomed, upserts)
                if keep_key is None or keep_key not in self._cells:
                    # Where the cursor was (clamped), as if the rows had been removed in place.
                    self.move_cursor(row=min(row, max(self.row_count - 1, 0)), scroll=False)
                else:
                    self._restore_cursor(keep_key)
                return touched
            touched, reordered = self._patch(doomed, upserts)
            if reordered:
                self._restore_cursor(keep_key)
        return touched

    def _patch(
        self, doomed: list[str], upserts: Iterable[tuple[str, tuple[Cell, ...], int]]
    ) -> tuple[int, bool]:
        """Touch only what changed: remove_row, add_row, update_cell; sort once if needed.

        Returns the cells/rows touched and whether rows were added or moved.
        """
        touched = len(doomed)
        for key in doomed:
            del self._cells[key]
            self._order.pop(key, None)
            self.remove_row(key)
        added = False
        for key, cells, order in upserts:
            old = self._cells.get(key)
            if old is None:
                self._cells[key] = cells
                self._order[key] = order
                self.add_row(*self._render_row(cells, order), key=key)
                added = True
                touched += 1
                continue
            moved = self._order[key] != order
            if old == cells and not moved:
                continue
            self._cells[key] = cells
            if moved:
                self._order[key] = order
                added = True  # the row changes place: sort once at the end
            for index, (new_cell, old_cell) in enumerate(zip(cells, old, strict=True)):
                if new_cell != old_cell or (moved and index == 0):
                    value = self._cell_text(new_cell, index, self._order[key])
                    self.update_cell(key, self._column_keys[index], value)
                    touched += 1
        if added:
            self.sort(self._column_keys[0], key=_sort_order, reverse=True)
        return touched, added

    def _rebuild(
        self, doomed: list[str], upserts: Iterable[tuple[str, tuple[Cell, ...], int]]
    ) -> int:
        """Many removals at once: clear and add the rows that stay, already in order.

        `DataTable.remove_row` re-indexes every row per call (O(rows) each, ~1.5 ms at 500
        rows), so a few hundred removals in one flush would stall the loop; a rebuild is one
        O(rows) pass through the public API.
        """
        touched = len(doomed)
        for key in doomed:
            del self._cells[key]
            self._order.pop(key, None)
        for key, cells, order in upserts:
            if self._cells.get(key) != cells or self._order.get(key) != order:
                touched += 1
            self._cells[key] = cells
            self._order[key] = order
        self.clear()
        for key in sorted(self._cells, key=self._order.__getitem__, reverse=True):
            self.add_row(*self._render_row(self._cells[key], self._order[key]), key=key)
        return touched

    def _restore_cursor(self, keep_key: str | None) -> None:
        if keep_key is None or keep_key not in self._cells:
            if self.cursor_row != 0 and self.row_count:
                self.move_cursor(row=0, scroll=False)
            return
        index = self.get_row_index(keep_key)
        if index != self.cursor_row:
            self.move_cursor(row=index, scroll=False)

    def _render_row(self, cells: tuple[Cell, ...], order: int) -> list[Text]:
        return [self._cell_text(cell, i, order) for i, cell in enumerate(cells)]

    def _cell_text(self, cell: Cell, index: int, order: int) -> Text:
        text, style = cell
        width = self._widths[index]
        if len(text) > width:  # keep the one-cell gap to the next column
            text = text[: width - 1] + "…"
        if index == 0:
            first = _OrderedText(text, style=style, no_wrap=True, overflow="ellipsis")
            first.order = order
            return first
        return Text(text, style=style, no_wrap=True, overflow="ellipsis")
