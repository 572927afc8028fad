"""A DataTable that is only ever changed by keyed diffs (the Dolphie way).

Rows are identified by a string key. `apply()` takes the desired cells for some keys and the
keys to remove, and touches only what changed: `update_cell` for changed cells, a gone key's
row reused for a new key (or `add_row`), `remove_row` for the rest, all inside one
`App.batch_update()` (see `apply`). Our keys map to the DataTable's row keys ("slots"): read
rows through `keys()`, `cursor_key()`, `row_index()`, `key_of_row()`. Columns have fixed
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
from textual.widgets.data_table import RowDoesNotExist, RowKey

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
        # The DataTable's row keys are slots ("r1", "r2"…), so a slot freed by a removed key
        # can be reused by a new one; these map our keys to slots and back.
        self._slot_of: dict[str, str] = {}
        self._key_of: dict[str, str] = {}
        self._slots = 0

    def on_mount(self) -> None:
        # No cell padding: each column is one wider than its text, a one-cell gap on the right.
        for key, label, width in self._column_spec:
            self.add_column(label, width=width + 1, key=key)

    # --- reading -----------------------------------------------------------------------------

    def keys(self) -> list[str]:
        """Row keys in display order (top first)."""
        return [self._key_of[str(row.key.value)] for row in self.ordered_rows]

    def has_key(self, key: str) -> bool:
        return key in self._cells

    def key_of_row(self, row_key: RowKey | None) -> str | None:
        """Our key for a DataTable row key (from a RowSelected/RowHighlighted event)."""
        if row_key is None or row_key.value is None:
            return None
        return self._key_of.get(row_key.value)

    def row_index(self, key: str) -> int:
        """Where a key's row is shown (0 = top)."""
        return self.get_row_index(self._slot_of[key])

    def cells_of(self, key: str) -> tuple[str, ...]:
        """The plain text of a row's cells (for tests and the bench)."""
        return tuple(text for text, _ in self._cells[key])

    def cell_text(self, key: str, column: str) -> str:
        return self._cells[key][self._column_keys.index(column)][0]

    def shown_cell(self, key: str, column: str) -> Text:
        """The cell as the DataTable holds it (text and style)."""
        return self.get_cell(self._slot_of[key], column)

    def cursor_key(self) -> str | None:
        if self.row_count == 0:
            return None
        try:
            slot = self.coordinate_to_cell_key(self.cursor_coordinate).row_key
        except RowDoesNotExist:
            return None
        return self.key_of_row(slot)

    # --- writing -----------------------------------------------------------------------------

    def apply(
        self,
        upserts: Iterable[tuple[str, tuple[Cell, ...], int]],
        removals: Iterable[str] = (),
    ) -> int:
        """Apply a keyed diff; returns how many cells/rows were touched.

        A removed key's row is a free slot; a new key takes a free slot (its cells rewritten
        with update_cell) before a new row is added. Free slots left over are removed with
        `remove_row` (O(rows) per call, ~1 ms at 500 rows), or, past a handful, the table
        is rebuilt in one pass. So a capped table that churns (new orders in, old out)
        never pays per-row removals.
        """
        keep_key = None if self.cursor_row <= 0 else self.cursor_key()
        row = self.cursor_row
        touched = 0
        reordered = False
        with self.app.batch_update():
            free: list[tuple[str, tuple[Cell, ...]]] = []  # a freed slot and what it shows
            for key in removals:
                if key in self._cells:
                    shown = self._cells.pop(key)
                    del self._order[key]
                    slot = self._slot_of.pop(key)
                    del self._key_of[slot]
                    free.append((slot, shown))
                    touched += 1
            for key, cells, order in upserts:
                old = self._cells.get(key)
                self._cells[key] = cells
                if old is None:
                    self._order[key] = order
                    if free:
                        slot, shown = free.pop()
                        self._fill_slot(slot, shown, key, cells)
                    else:
                        self._new_slot(key, cells, order)
                    reordered = True
                    touched += 1
                    continue
                moved = self._order[key] != order
                if old == cells and not moved:
                    continue
                if moved:
                    self._order[key] = order
                    reordered = True  # the row changes place: sort once at the end
                for index, (new_cell, old_cell) in enumerate(zip(cells, old, strict=True)):
                    if new_cell != old_cell or (moved and index == 0):
                        self._write_cell(key, index)
                        touched += 1
            if len(free) > _REMOVE_ONE_BY_ONE:
                self._rebuild()
                reordered = True
            else:
                for slot, _ in free:
                    self.remove_row(slot)
                if reordered:
                    self.sort(self._column_keys[0], key=_sort_order, reverse=True)
            if reordered or free:
                self._restore_cursor(keep_key, row)
        return touched

    def _new_slot(self, key: str, cells: tuple[Cell, ...], order: int) -> None:
        self._slots += 1
        slot = f"r{self._slots}"
        self._slot_of[key] = slot
        self._key_of[slot] = key
        self.add_row(*self._render_row(cells, order), key=slot)

    def _fill_slot(
        self, slot: str, shown: tuple[Cell, ...], key: str, cells: tuple[Cell, ...]
    ) -> None:
        """A new key in a freed slot: only the cells that differ from what the slot shows are
        written (a churning table's rows look alike: fewer `update_cell` calls per flush); the
        first always is, as it carries the row's ordering number."""
        self._slot_of[key] = slot
        self._key_of[slot] = key
        for index, (new_cell, old_cell) in enumerate(zip(cells, shown, strict=True)):
            if index == 0 or new_cell != old_cell:
                self._write_cell(key, index)

    def _write_cell(self, key: str, index: int) -> None:
        value = self._cell_text(self._cells[key][index], index, self._order[key])
        self.update_cell(self._slot_of[key], self._column_keys[index], value)

    def _rebuild(self) -> None:
        """Clear and add every remaining row, already in order (one pass, public API)."""
        self.clear()
        self._slot_of.clear()
        self._key_of.clear()
        for key in sorted(self._cells, key=self._order.__getitem__, reverse=True):
            self._new_slot(key, self._cells[key], self._order[key])

    def _restore_cursor(self, keep_key: str | None, row: int) -> None:
        """Back on the user's order; tailing stays on top; a vanished order keeps the place."""
        if keep_key is not None and keep_key in self._cells:
            index = self.row_index(keep_key)
        elif keep_key is None:
            index = 0
        else:
            index = min(row, max(self.row_count - 1, 0))
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
