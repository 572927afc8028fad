"""Rate-limit buckets, one small card per account, updated only when its numbers change."""

from __future__ import annotations

from collections.abc import Mapping

from rich.text import Text
from textual.containers import VerticalScroll
from textual.widgets import Static

from engine.views import LimiterView
from tui.format import limiter_signature, one_line, window_segment


def limiter_text(view: LimiterView) -> Text:
    text = Text(no_wrap=True, overflow="ellipsis")
    text.append(f"{one_line(view.account, 40)[:12]:<12}", style="bold")
    text.append(f" q{view.queue_depth:>3}", style="yellow" if view.queue_depth else "dim")
    text.append(f" thr{view.throttled:>4}", style="yellow" if view.throttled else "dim")
    text.append(f" 904:{view.dh904}", style="bold red" if view.dh904 else "dim")
    windows = list(view.windows)
    for start in range(0, len(windows), 2):
        text.append("\n")
        for offset, window in enumerate(windows[start : start + 2]):
            segment, style = window_segment(window)
            if offset:
                text.append(" ")
            text.append(segment, style=style)
    return text


class LimiterCard(Static):
    DEFAULT_CSS = """
    LimiterCard { height: auto; margin-bottom: 1; text-wrap: nowrap; text-overflow: ellipsis; }
    """

    def __init__(self, view: LimiterView) -> None:
        super().__init__(limiter_text(view))
        self.view = view
        self.signature = limiter_signature(view)

    def show(self, view: LimiterView) -> bool:
        signature = limiter_signature(view)
        self.view = view
        if signature == self.signature:
            return False
        self.signature = signature
        self.update(limiter_text(view))
        return True

    def plain(self) -> str:
        return limiter_text(self.view).plain


class LimiterPane(VerticalScroll):
    """Keyed by account: a new account mounts a card, a known one updates its card in place."""

    DEFAULT_CSS = """
    LimiterPane { height: 1fr; }
    """

    def __init__(self, *, id: str | None = "limiter") -> None:
        super().__init__(id=id)
        self.cards: dict[str, LimiterCard] = {}

    def apply_views(self, views: Mapping[str, LimiterView]) -> int:
        touched = 0
        for account, view in views.items():
            card = self.cards.get(account)
            if card is None:
                card = LimiterCard(view)
                self.cards[account] = card
                if account == "leader" and self.children:
                    self.mount(card, before=0)
                else:
                    self.mount(card)
                touched += 1
            elif card.show(view):
                touched += 1
        return touched
