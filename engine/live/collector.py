"""The garbage collector kept off the copies' path.

A full collection walks every object the process tracks. Once started, the engine holds
hundreds of thousands that live for the whole session (the scrip master's instruments, the
settings, the restored book, the libraries), and each full pass over them stalled the event
loop: in a 200-follower `bench.followers` run, six full passes of 65-147 ms each, and a leader
order arriving meanwhile waited for them.

So what exists once startup is done, and again once an instrument master is loaded, is frozen
(``gc.freeze``): no later collection walks it again. Young objects are collected as before,
and cyclic garbage still goes; only what the engine keeps anyway is left out. ``thaw`` at the
engine's stop puts the frozen objects back, so a process that runs several engines (the
tests) ends where it began.
"""

from __future__ import annotations

import gc


def freeze_long_lived() -> None:
    """Collect now (garbage must not be frozen with the rest), then freeze what is left."""
    gc.collect()
    gc.freeze()


def thaw() -> None:
    gc.unfreeze()
