"""The garbage collector tuned for a long-lived terminal under an event flood.

With CPython's defaults, a full collection walks every tracked object; the terminal holds a
few hundred thousand (Textual's DOM and the tables' render caches), so each full pass stalled
the loop for 50-250 ms, about once a second under a flood and even at rest: a key pressed
then waited for it. Textual itself pauses the collector during smooth scrolling for the same
reason (`App.PAUSE_GC_ON_SCROLL`).

The policy: once the terminal is up, freeze what exists (modules, CSS, the main screen's
widgets: they live as long as the app, so no collection needs to walk them again), and let the
young generation grow larger before a pass, so short-lived render objects die young instead of
being promoted to the old generation (whose growth is what triggers a full pass). Cyclic
garbage is still collected; only less often. `restore()` undoes both (the app's unmount), so a
test process running many apps ends where it began.
"""

from __future__ import annotations

import gc

# Objects allocated (net) before a young pass; CPython's default is 700. A pass over 20,000
# young objects costs about a millisecond.
YOUNG_THRESHOLD = 20_000
MIDDLE_THRESHOLD = 20  # young passes per middle pass (default 10)
OLD_THRESHOLD = 10  # middle passes per full pass, when the old generation grew by a quarter


class CollectorPolicy:
    """Apply once the app is mounted; restore when it unmounts."""

    def __init__(self) -> None:
        self._saved: tuple[int, int, int] | None = None
        self._ended = False  # restored (or never applied) at unmount: never apply after

    @property
    def applied(self) -> bool:
        return self._saved is not None

    def apply(self) -> None:
        if self._saved is not None or self._ended:
            return
        self._saved = gc.get_threshold()
        gc.collect()  # free startup garbage now, so it is not frozen with the rest
        gc.freeze()
        gc.set_threshold(YOUNG_THRESHOLD, MIDDLE_THRESHOLD, OLD_THRESHOLD)

    def restore(self) -> None:
        self._ended = True
        if self._saved is None:
            return
        gc.set_threshold(*self._saved)
        gc.unfreeze()  # frozen objects rejoin the old generation: collectable again
        self._saved = None
