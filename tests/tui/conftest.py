from __future__ import annotations

import pytest
from textual.pilot import Pilot

from tests.tui.fakes import FakeEngine, FixedClock
from tui.app import CopyTradeApp

SIZE = (120, 40)


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock()


@pytest.fixture
def app(engine: FakeEngine, clock: FixedClock) -> CopyTradeApp:
    return CopyTradeApp(engine, clock=clock)


async def settle(pilot: Pilot[None], app: CopyTradeApp) -> None:
    """Draw whatever the engine published, then let the screen catch up."""
    app.flush_events()
    await pilot.pause()


async def commands_done(app: CopyTradeApp) -> None:
    """Wait for command workers (kill, resync, timeline…), not the long-lived engine worker."""
    workers = [w for w in app.workers if w.group != "engine"]
    if workers:
        await app.workers.wait_for_complete(workers)
