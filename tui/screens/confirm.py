"""A yes/no confirmation that defaults to No: Enter or Escape right away never confirms.

It sits over the dimmed main screen; `details` is the exact preview (the orders a sync would
place, the orders a resume would re-place), shown in a scrollable box.
"""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Static


class ConfirmScreen(ModalScreen[bool]):
    """Dismisses with True only on an explicit Yes (the button or the `y` key)."""

    AUTO_FOCUS = "#no"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "answer(False)", "No", id="confirm.no"),
        Binding("n", "answer(False)", "No", show=False),
        Binding("y", "answer(True)", "Yes", id="confirm.yes"),
        Binding("left", "app.focus_previous", "Previous", show=False),
        Binding("right", "app.focus_next", "Next", show=False),
    ]

    def __init__(
        self,
        title: str,
        message: str,
        *,
        yes_label: str = "Yes",
        no_label: str = "No",
        danger: bool = True,
        details: str = "",
        id: str | None = None,
    ) -> None:
        classes = [name for name, on in (("danger", danger), ("with-details", details)) if on]
        super().__init__(id=id, classes=" ".join(classes) or None)
        self.title_text = title
        self.message = message
        self.yes_label = yes_label
        self.no_label = no_label
        self.details = details

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static(self.title_text, id="dialog-title")
            yield Static(self.message, id="dialog-message", markup=False)
            if self.details:
                with VerticalScroll(id="dialog-details"):
                    yield Static(self.details, id="dialog-details-text", markup=False)
            with Horizontal(id="dialog-buttons"):
                yield Button(self.yes_label, id="yes", variant="error")
                yield Button(self.no_label, id="no", variant="primary")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)
