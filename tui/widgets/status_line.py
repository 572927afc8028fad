"""The status line: engine state, leader socket, market session, clock and today's figures.

Its time source is injected (`clock`), so a snapshot test can freeze "now".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from rich.text import Text
from textual.widgets import Static

from engine.clock import to_ist
from engine.domain import ConnectionState, EngineState
from engine.views import EngineStats
from tui.format import age, one_line, stats_cells

_STATE_STYLE: dict[EngineState, str] = {
    EngineState.ARMED: "bold black on green",
    EngineState.KILLED: "bold red reverse",
    EngineState.FROZEN: "bold black on dark_orange",  # automatic safety: copies kept
    EngineState.STARTING: "bold black on yellow",
    EngineState.STOPPED: "bold white on red",
}

_CONNECTION_STYLE: dict[ConnectionState, str] = {
    ConnectionState.CONNECTED: "green",
    ConnectionState.CONNECTING: "yellow",
    ConnectionState.DISCONNECTED: "bold red",
    ConnectionState.STALLED: "bold red",
}


@dataclass
class StatusFacts:
    """What the status line shows; the app fills it from events, the line only renders it."""

    engine_state: EngineState = EngineState.STARTING
    engine_note: str = ""  # e.g. why it stopped
    engine_stopped: bool = False  # the engine worker ended (error or otherwise)
    connections: dict[str, ConnectionState] = field(default_factory=dict)
    last_leader_event_at: datetime | None = None
    market: str = ""
    stats: EngineStats = field(default_factory=EngineStats)
    busy: str = ""  # e.g. "recovering…", "killing…"
    demo: bool = False


def status_text(facts: StatusFacts, now: datetime) -> Text:
    text = Text(no_wrap=True, overflow="ellipsis")
    if facts.demo:
        text.append(" DEMO ", style="bold black on magenta")
        text.append(" ")
    if facts.engine_stopped:
        text.append(" ENGINE STOPPED ", style="bold white on red")
        if facts.engine_note:
            text.append(f" {facts.engine_note}", style="red")
    else:
        text.append(
            f" {facts.engine_state.value} ", style=_STATE_STYLE.get(facts.engine_state, "bold")
        )
        if facts.engine_note:
            text.append(f" {facts.engine_note}", style="bold red")
    if facts.busy:
        text.append(f"  {facts.busy}", style="bold yellow")
    text.append(" │ ", style="dim")

    leader = facts.connections.get("leader")
    if leader is None:
        text.append("leader —", style="dim")
    else:
        text.append("leader ")
        text.append(leader.value, style=_CONNECTION_STYLE.get(leader, ""))
    if facts.last_leader_event_at is not None:
        seconds = (now - facts.last_leader_event_at).total_seconds()
        text.append(f" · last event {age(seconds)} ago", style="" if seconds < 300 else "yellow")
    else:
        text.append(" · no leader event yet", style="dim")
    down = sorted(
        (account, state)
        for account, state in facts.connections.items()
        if account != "leader" and state is not ConnectionState.CONNECTED
    )
    for account, state in down[:3]:
        text.append(f" · {one_line(account, 20)} ")
        text.append(state.value, style=_CONNECTION_STYLE.get(state, ""))
    if len(down) > 3:
        text.append(f" +{len(down) - 3} more not connected", style="bold red")
    text.append(" │ ", style="dim")
    text.append(f"{to_ist(now).strftime('%H:%M:%S')} IST", style="bold")
    text.append(" · ")
    text.append(one_line(facts.market, 60) or "market: unknown")

    text.append("\n ")
    for piece, style in stats_cells(facts.stats):
        text.append(piece, style=style)
    return text


class StatusLine(Static):
    DEFAULT_CSS = """
    StatusLine { height: 2; padding: 0 0; text-wrap: nowrap; text-overflow: ellipsis; }
    """

    def __init__(self, clock: Callable[[], datetime], *, id: str | None = "status") -> None:
        super().__init__(id=id)
        self.clock = clock
        self.facts = StatusFacts()
        self._last: str = ""

    def refresh_status(self) -> None:
        text = status_text(self.facts, self.clock())
        markup = text.markup
        if markup != self._last:
            self._last = markup
            # Two lines, always (its CSS height): a repaint suffices, not a re-layout of the
            # whole screen on every flush.
            self.update(text, layout=False)

    @property
    def plain(self) -> str:
        return status_text(self.facts, self.clock()).plain
