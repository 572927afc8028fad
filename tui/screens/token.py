"""Replace an account's access token while the engine runs.

The token is typed (or pasted) into a masked input: it is never shown, echoed in a message, or
logged. The dialog answers only yes or no; the app takes the token from it with `take_token()`,
which also empties the input, and hands it to the engine wrapped in a SecretStr.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from pydantic import SecretStr
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Select, Static


class TokenScreen(ModalScreen[bool]):
    """Yes only with the Replace button and a non-empty token; Esc and No never replace."""

    AUTO_FOCUS = "#no"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "answer(False)", "No", id="token.no"),
    ]

    def __init__(
        self, accounts: Sequence[str], *, selected: str = "", id: str | None = "token-dialog"
    ) -> None:
        super().__init__(id=id)
        self.accounts = list(accounts)
        self.selected = selected if selected in self.accounts else ""
        self.chosen_account = ""
        self._token: SecretStr | None = None

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static("REPLACE AN ACCESS TOKEN", id="dialog-title")
            yield Static(
                "The account uses the new token from now on, if Dhan accepts it; otherwise it "
                "keeps the old one. The token is not shown, logged or stored.",
                id="dialog-message",
            )
            select: Select[str] = Select(
                [(name, name) for name in self.accounts],
                allow_blank=False,
                id="token-account",
            )
            if self.selected:
                select.value = self.selected
            yield select
            yield Input(password=True, placeholder="new access token", id="token-input")
            with Horizontal(id="dialog-buttons"):
                yield Button("Replace", id="yes", variant="error")
                yield Button("No", id="no", variant="primary")

    def take_token(self) -> SecretStr | None:
        """The token confirmed with Replace, once (None after No, or when already taken)."""
        token, self._token = self._token, None
        return token

    def _capture(self) -> None:
        """Move the typed token out of the input (emptied) into a SecretStr."""
        value = self.query_one("#token-account", Select).value
        self.chosen_account = value if isinstance(value, str) else ""
        field = self.query_one("#token-input", Input)
        self._token = SecretStr(field.value.strip())
        field.value = ""

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()  # Enter in the field does not replace: the Replace button does
        self.query_one("#yes", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "yes" and not self.query_one("#token-input", Input).value.strip():
            self.notify("Type or paste the new token first.", severity="warning")
            return
        if event.button.id == "yes":
            self._capture()
        else:
            self.query_one("#token-input", Input).value = ""
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.query_one("#token-input", Input).value = ""
        self.dismiss(False)
