"""One dispatcher per follower account: a set of dirty keys, drained by a few workers.

The queue holds *keys* (leader order ids), not actions: the action is decided when a worker
takes the key, from the latest state. A burst of leader edits therefore collapses into one
decision, and an edit a newer snapshot already replaced is never sent. Urgent keys (cancels,
the kill switch) are taken first. A key is never worked on by two workers at once, and each
account has its own workers and limiter, so a slow or failing follower never delays another.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import deque
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

WorkFn = Callable[[str], Awaitable[None]]


class AccountDispatcher:
    def __init__(self, account: str, work: WorkFn, *, concurrency: int = 4) -> None:
        self.account = account
        self._work = work
        self._concurrency = max(1, concurrency)
        self._dirty: dict[str, tuple[int, int]] = {}  # key -> (priority, sequence)
        self._claimed: set[str] = set()
        self._seq = itertools.count()
        # One waiting future per idle worker: a mark wakes one of them, not all (at many
        # followers, every leader alert would otherwise wake every worker of every account).
        self._sleepers: deque[asyncio.Future[None]] = deque()
        self._idle = asyncio.Event()
        self._idle.set()
        self._workers: list[asyncio.Task[None]] = []
        self._busy = 0

    # --- producer side ---------------------------------------------------------------

    def mark(self, key: str, *, urgent: bool = False) -> None:
        priority = 0 if urgent else 1
        current = self._dirty.get(key)
        if current is None or priority < current[0]:
            seq = current[1] if current else next(self._seq)
            self._dirty[key] = (priority, seq)
        self._idle.clear()
        if key not in self._claimed:  # a claimed key is taken again by its own worker
            self._wake_one()

    @property
    def queue_depth(self) -> int:
        return len(self._dirty)

    @property
    def busy(self) -> int:
        return self._busy

    async def wait_idle(self) -> None:
        """Until nothing is queued or being worked on (tests and orderly shutdown)."""
        await self._idle.wait()

    # --- consumer side ---------------------------------------------------------------

    def start(self) -> None:
        if not self._workers:
            self._workers = [
                asyncio.create_task(self._worker(), name=f"dispatch-{self.account}-{i}")
                for i in range(self._concurrency)
            ]

    async def stop(self) -> None:
        for task in self._workers:
            task.cancel()
        for task in self._workers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._workers = []

    def _wake_one(self) -> None:
        while self._sleepers:
            sleeper = self._sleepers.popleft()
            if not sleeper.done():
                sleeper.set_result(None)
                return

    def _take(self) -> str | None:
        best: tuple[int, int] | None = None
        best_key: str | None = None
        for key, rank in self._dirty.items():
            if key in self._claimed:
                continue
            if best is None or rank < best:
                best, best_key = rank, key
        if best_key is not None:
            del self._dirty[best_key]
            self._claimed.add(best_key)
        return best_key

    async def _worker(self) -> None:
        while True:
            key = self._take()
            if key is None:
                if not self._dirty and not self._claimed:
                    self._idle.set()
                sleeper = asyncio.get_running_loop().create_future()
                self._sleepers.append(sleeper)
                await sleeper
                continue
            if self._dirty:  # more to take than this worker: another one takes it
                self._wake_one()
            self._busy += 1
            try:
                await self._work(key)
            except asyncio.CancelledError:
                raise
            except Exception:
                # A bug in one decision must not stop the account's replication; the key is
                # retried on its next mark (the periodic reconcile marks every open order).
                log.exception("dispatch of %s for %s failed", key, self.account)
            finally:
                self._busy -= 1
                self._claimed.discard(key)
                # This worker takes the next key itself (the key may have been marked again
                # while claimed); when none is left, the account may be idle.
                if not self._dirty and not self._claimed:
                    self._idle.set()
