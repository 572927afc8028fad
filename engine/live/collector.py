"""The garbage collector kept off the copies' path.

A full collection walks every object the process tracks. Once started, the engine holds
hundreds of thousands that live for the whole session (the scrip master's instruments, the
settings, the restored book, the libraries), and each full pass over them stalled the event
loop: in a 200-follower `bench.followers` run, six full passes of 65-147 ms each, and a leader
order arriving meanwhile waited for them.

So what exists once startup is done, and again once an instrument master is loaded, is frozen
(``gc.freeze``): no later collection walks it again. Young objects are collected as before,
and cyclic garbage still goes; only what the engine keeps anyway is left out.

The young generation is also let grow larger before a pass (as the terminal does,
``tui.collector``): with CPython's 700, a 200-follower fan-out ran 18-20 young and middle passes
(7-12 ms of its ~100 ms); most of what a fan-out allocates dies young anyway.

``thaw`` at the engine's stop puts the frozen objects back and the thresholds as they were, so
a process that runs several engines (the tests) ends where it began.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 20_000  # objects allocated (net) before a young pass; CPython's is 700
MIDDLE_THRESHOLD = 20  # young passes per middle pass (CPython's is 10)
OLD_THRESHOLD = 10  # middle passes per full pass, when the old generation grew by a quarter

_saved_thresholds: list[tuple[int, int, int]] = []


def keep_off_the_path() -> None:
    """At the engine's start, its streams not yet open: larger young passes, and what startup
    built frozen."""
    _saved_thresholds.append(gc.get_threshold())
    young, middle, old = gc.get_threshold()
    # Never smaller than what is set already (the terminal may have set the same or more).
    gc.set_threshold(
        max(young, YOUNG_THRESHOLD), max(middle, MIDDLE_THRESHOLD), max(old, OLD_THRESHOLD)
    )
    freeze_long_lived()


def freeze_long_lived() -> None:
    """Collect now (garbage must not be frozen with the rest), then freeze what is left."""
    gc.collect()
    gc.freeze()


def thaw() -> None:
    gc.unfreeze()
    if _saved_thresholds:
        gc.set_threshold(*_saved_thresholds.pop())
