"""No automatic collection between a leader alert and the sends of its copies, and never for
long: the pause is held, released, capped, and gives back only a collector it disabled."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator

import pytest

from engine.live.collector import CollectionPause


@pytest.fixture(autouse=True)
def collector_enabled() -> Iterator[None]:
    was = gc.isenabled()
    gc.enable()
    yield
    if was:
        gc.enable()
    else:
        gc.disable()


async def turns(n: int) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


async def test_held_the_collector_waits_then_resumes_two_turns_after_release() -> None:
    pause = CollectionPause()
    pause.hold()
    assert not gc.isenabled() and pause.paused
    pause.release()
    assert not gc.isenabled()  # the last request's bytes leave first
    await turns(3)
    assert gc.isenabled() and not pause.paused


async def test_it_resumes_only_when_the_last_holder_lets_go() -> None:
    pause = CollectionPause()
    pause.hold()
    pause.hold()
    pause.release()
    await turns(3)
    assert not gc.isenabled()
    pause.release()
    await turns(3)
    assert gc.isenabled()


async def test_a_copy_lets_go_at_its_send_or_when_it_ends() -> None:
    pause = CollectionPause()
    with pause.held() as sending:
        assert not gc.isenabled()
        sending()
        sending()  # once only: another copy's hold is not taken away
        await turns(3)
        assert gc.isenabled()
    with pause.held():  # ended without a send (refused, killed...): let go all the same
        assert not gc.isenabled()
    await turns(3)
    assert gc.isenabled()


async def test_the_leader_feed_holds_it_for_the_turns_followers_decide_in() -> None:
    pause = CollectionPause()
    pause.hold_for_turns(2)
    assert not gc.isenabled()
    await turns(1)
    assert not gc.isenabled()
    await turns(4)
    assert gc.isenabled()


async def test_never_paused_longer_than_its_bound() -> None:
    pause = CollectionPause(max_pause_s=0.02)
    pause.hold()  # a copy stuck before its send (a locked database...)
    await asyncio.sleep(0.05)
    assert gc.isenabled() and not pause.paused
    pause.release()
    await turns(3)
    assert gc.isenabled()


async def test_a_collector_disabled_by_someone_else_stays_disabled() -> None:
    gc.disable()
    pause = CollectionPause()
    pause.hold()
    pause.release()
    await turns(3)
    assert not gc.isenabled()


async def test_the_engine_stopping_ends_the_pause_at_once() -> None:
    pause = CollectionPause()
    pause.hold()
    pause.end()
    assert gc.isenabled() and not pause.paused
    pause.release()  # a copy finishing after the stop changes nothing
    await turns(3)
    assert gc.isenabled()
