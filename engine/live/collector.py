"""The garbage collector kept off the copies' path.

A full collection walks every object the process tracks. Once started, the engine holds
hundreds of thousands that live for the whole session (the scrip master's instruments, the
settings, the restored book, the libraries), and each full pass over them stalled the event
loop: in a 200-follower `bench.followers` run, six full passes of 65-147 ms each, and a leader
order arriving meanwhile waited for them.

So what exists once startup is done, and again once an instrument master is loaded, is frozen
(``gc.freeze``): no later collection walks it again. Young objects are collected as before,
and cyclic garbage still goes; only what the engine keeps anyway is left out.

Young and middle passes stay small (CPython's thresholds) but are kept out of the fan-out
itself: with them, a 200-follower fan-out ran 18-20 passes (7-12 ms of its ~100 ms) between the
leader's alert and its last send. ``CollectionPause`` holds them off from the alert to the
sends; they catch up right after. (Larger young passes, as the terminal sets, cost 3-14 ms
each here, too long to land just before an alert.)

``thaw`` at the engine's stop puts the frozen objects back, so a process that runs several
engines (the tests) ends where it began.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager


def freeze_long_lived() -> None:
    """Collect now (garbage must not be frozen with the rest), then freeze what is left."""
    gc.collect()
    gc.freeze()


def thaw() -> None:
    gc.unfreeze()


MAX_PAUSE_S = 0.5  # never longer without collections, whatever holds the pause


class CollectionPause:
    """No automatic collection between a leader alert and the sends of its copies.

    A young pass over the objects of a fan-out in flight (most of them still referenced by
    its tasks) costs milliseconds: landing between the alert and the last send, it delays
    every copy not yet sent. So the leader feed holds the pause for the turns in which the
    followers decide, and each copy from its decision to its send; once nothing holds it, and
    two loop turns later (the last request's bytes leave first), collections resume and catch
    up at once. It is never held longer than ``max_pause_s``.

    Only a collector this engine disabled is enabled again (another user of ``gc.disable``,
    or a test, keeps its own).
    """

    def __init__(self, max_pause_s: float = MAX_PAUSE_S) -> None:
        self._max_pause_s = max_pause_s
        self._holds = 0
        self._disabled = False  # by us
        self._cap: asyncio.TimerHandle | None = None

    @property
    def paused(self) -> bool:
        return self._disabled

    def hold(self) -> None:
        if self._holds == 0 and gc.isenabled():
            gc.disable()
            self._disabled = True
            self._cap = asyncio.get_running_loop().call_later(self._max_pause_s, self._resume)
        self._holds += 1

    def release(self) -> None:
        self._holds = max(self._holds - 1, 0)
        if self._holds == 0 and self._disabled:
            loop = asyncio.get_running_loop()
            loop.call_soon(loop.call_soon, self._resume_if_free)

    @contextmanager
    def held(self) -> Iterator[Callable[[], None]]:
        """Held for the block, or until the callable it gives is called (a copy's send)."""
        self.hold()
        released = False

        def release_once() -> None:
            nonlocal released
            if not released:
                released = True
                self.release()

        try:
            yield release_once
        finally:
            release_once()

    def hold_for_turns(self, turns: int = 2) -> None:
        """Held for the next ``turns`` loop turns (the ones in which woken workers decide)."""
        self.hold()
        loop = asyncio.get_running_loop()

        def countdown(left: int) -> None:
            if left <= 1:
                self.release()
            else:
                loop.call_soon(countdown, left - 1)

        loop.call_soon(countdown, turns)

    def end(self) -> None:
        """The engine stops: collections resume now, whatever still holds the pause."""
        self._holds = 0
        self._resume()

    def _resume_if_free(self) -> None:
        if self._holds == 0:
            self._resume()

    def _resume(self) -> None:
        if self._cap is not None:
            self._cap.cancel()
            self._cap = None
        if self._disabled:
            self._disabled = False
            gc.enable()
