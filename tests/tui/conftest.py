from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from textual.notifications import SeverityLevel
from textual.pilot import Pilot

import tui.app
from engine.api import EngineHandle
from tests.tui.fakes import FakeEngine, FixedClock
from tui.app import CopyTradeApp

SIZE = (120, 40)


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock()


class RecordingApp(CopyTradeApp):
    """The terminal, also keeping every notification's text (Textual keeps its list private)."""

    # Textual resolves a relative CSS_PATH against the subclass's own module: point it home.
    CSS_PATH = str(Path(tui.app.__file__).with_name("app.tcss"))

    def __init__(self, engine: EngineHandle, **options: Any) -> None:
        super().__init__(engine, **options)
        self.notices: list[str] = []

    def notify(
        self,
        message: str,
        *,
        title: str = "",
        severity: SeverityLevel = "information",
        timeout: float | None = None,
        markup: bool = True,
    ) -> None:
        self.notices.append(message)
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=markup)


@pytest.fixture
def app(engine: FakeEngine, clock: FixedClock) -> RecordingApp:
    return RecordingApp(engine, clock=clock)


async def settle(pilot: Pilot[None], app: CopyTradeApp) -> None:
    """Draw whatever the engine published, then let the screen catch up."""
    app.flush_events()
    await pilot.pause()


async def commands_done(app: CopyTradeApp) -> None:
    """Wait for command workers (kill, resync, timeline…), not the long-lived engine worker."""
    workers = [w for w in app.workers if w.group != "engine"]
    if workers:
        await app.workers.wait_for_complete(workers)
