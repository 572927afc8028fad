"""Every account at a glance: its state (and why), token time left and how it renews, source
address, and its rate windows in words, with a sparkline of its rate use over the last minutes.

Keyed by account: a new account mounts a card, a known one is redrawn only when what it shows
changed. Rate-limiter updates (many per second under load) fold into the card's windows.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.widgets import Sparkline, Static

from engine.views import AccountState, AccountView, LimiterView
from tui.format import (
    ACCOUNT_STATE_STYLE,
    account_from_limiter,
    plain_words,
    token_words,
    window_words,
)

HISTORY = 300  # samples of rate use kept per account (one a second: five minutes)


def account_text(view: AccountView) -> Text:
    text = Text(no_wrap=True, overflow="ellipsis")
    text.append(f"{plain_words(view.account, 40)[:14]} ", style="bold")
    text.append(f" {view.state.value} ", style=ACCOUNT_STATE_STYLE.get(view.state, "bold"))
    if view.why and view.state is not AccountState.ARMED:
        text.append(f" {plain_words(view.why, 120)}", style="bold")
    text.append("\n")
    if not view.is_leader:
        copies = "copy" if view.open_copies == 1 else "copies"
        text.append(f"{view.open_copies} open {copies} · ")
        if view.hand_managed:
            text.append(f"{view.hand_managed} by hand · ", style="bold yellow")
    text.append(f"from {view.source_ip or 'default IP'}", style="dim")
    words, style = token_words(view)
    text.append("\n")
    text.append(plain_words(words, 120), style=style)
    for window in view.windows:
        line, wstyle = window_words(window)
        text.append("\n")
        text.append(line, style=wstyle)
    if not view.is_leader:
        text.append("\n")
        text.append(f"queue {view.queue_depth}", style="yellow" if view.queue_depth else "dim")
        text.append(" · ", style="dim")
        text.append(f"waited {view.throttled}", style="yellow" if view.throttled else "dim")
        text.append(" · ", style="dim")
        text.append(
            f"Dhan refusals {view.dhan_rate_refusals}",
            style="bold red" if view.dhan_rate_refusals else "dim",
        )
    return text


def rate_use(view: AccountView) -> float:
    """The busiest window's share used, 0..1 (what the sparkline draws)."""
    shares = [w.used / w.limit for w in view.windows if w.limit > 0]
    return max(shares, default=0.0)


class AccountCard(Vertical):
    DEFAULT_CSS = """
    AccountCard { height: auto; margin-bottom: 1; }
    AccountCard > Static { height: auto; text-wrap: nowrap; text-overflow: ellipsis; }
    AccountCard > Sparkline { height: 1; }
    """

    def __init__(self, view: AccountView) -> None:
        super().__init__()
        self.view = view
        self.signature = view.signature()
        self.history: deque[float] = deque(maxlen=HISTORY)
        # Built here and held, not queried: a card can be updated after it is mounted but
        # before its children are, when a query finds nothing.
        text = account_text(view)
        self._lines = len(text.plain.splitlines())
        self.words = Static(text, classes="account-text")
        self.rate_spark = Sparkline([], summary_function=max, classes="rate-use")
        self.rate_spark.display = False  # until the first sample
        self.rate_spark.tooltip = "rate use, last five minutes"

    def compose(self) -> ComposeResult:
        yield self.words
        yield self.rate_spark

    def show(self, view: AccountView) -> bool:
        self.view = view
        signature = view.signature()
        if signature == self.signature:
            return False
        self.signature = signature
        text = account_text(view)
        # Its height is its line count (no wrapping): a re-layout only when that changes;
        # the limiter's counts change on every flush under load, the line count rarely.
        lines = len(text.plain.splitlines())
        self.words.update(text, layout=lines != self._lines)
        self._lines = lines
        return True

    def sample(self) -> None:
        """One point of rate use (the app calls this once a second)."""
        self.history.append(rate_use(self.view))
        if self.view.windows:
            self.rate_spark.display = True
            self.rate_spark.data = list(self.history)

    def plain(self) -> str:
        return account_text(self.view).plain


class AccountsPane(VerticalScroll):
    DEFAULT_CSS = """
    AccountsPane { height: 1fr; }
    """

    def __init__(self, *, id: str | None = "accounts") -> None:
        super().__init__(id=id)
        self.cards: dict[str, AccountCard] = {}

    def _card(self, view: AccountView) -> tuple[AccountCard, bool]:
        card = self.cards.get(view.account)
        if card is not None:
            return card, False
        card = AccountCard(view)
        self.cards[view.account] = card
        if view.is_leader and self.children:
            self.mount(card, before=0)
        else:
            self.mount(card)
        return card, True

    def apply_accounts(self, views: Mapping[str, AccountView]) -> int:
        touched = 0
        for view in views.values():
            card, new = self._card(view)
            if new or card.show(view):
                touched += 1
        return touched

    def apply_limiters(self, views: Mapping[str, LimiterView]) -> int:
        touched = 0
        for account, limiter in views.items():
            known = self.cards.get(account)
            merged = account_from_limiter(limiter, known.view if known else None)
            card, new = self._card(merged)
            if new or card.show(merged):
                touched += 1
        return touched

    def sample(self) -> None:
        for card in self.cards.values():
            card.sample()

    def lines(self) -> list[str]:
        return [card.plain() for card in self.cards.values()]
