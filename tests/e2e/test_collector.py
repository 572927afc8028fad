"""What the engine builds at startup is kept out of the garbage collector's full passes while it
runs (a full pass over it stalled the loop for up to 150 ms), and given back when it stops."""

from __future__ import annotations

import gc

import pytest

from tests.e2e.conftest import WorldFactory

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]


async def test_startup_objects_are_frozen_while_the_engine_runs(make_world: WorldFactory) -> None:
    world = await make_world()
    # Startup's objects (settings, libraries, the restored book, the instruments as loaded):
    # far more than the few objects a test makes by itself.
    assert gc.get_freeze_count() > 10_000
    await world.stop_engine()
    assert gc.get_freeze_count() == 0  # a process running several engines ends as it began
    assert gc.isenabled()  # no pause outlives the engine
