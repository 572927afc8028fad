"""The engine on a thread and event loop of its own, behind the same ``EngineHandle``.

Why: on the loop it shares with the terminal, the engine waits for every repaint in progress,
and one repaint of a busy screen takes tens of milliseconds of Python (Textual's compositor
rendering the tables' new rows). On a loop of its own, the engine waits at most for the
interpreter's switch interval while the screen draws: its thread wakes on a socket, and the
drawing thread gives the interpreter lock up within ``sys.getswitchinterval()``, which is
``SWITCH_INTERVAL_S`` while the engine runs so (Python's default, 5 ms, let a copy wait up to
that long for each slice of a repaint).

Measured with ``bench.followers --front terminal --exclusive`` (three runs each way,
alternated), the slowest of 15 copies at 10 followers: 147-239 ms with the engine on the
screen's loop, 36-57 ms on its own; at 50 followers 216-287 ms and 133-158 ms. The median last
copy: 13.7-30.4 ms and 15.4-17.8 ms at 10, 73-150 ms and 67-75 ms at 50.

Every call the terminal makes runs on the engine's loop: the async commands as coroutines
there (``asyncio.run_coroutine_threadsafe``), the read models (views) as calls there whose
result the terminal waits for, so nothing reads the engine's state while it changes it. The
engine's events reach the terminal's listener on the engine's thread (the cockpit's listener
only appends them to a thread-safe buffer). Before ``run`` and after it ends, calls go
straight to the engine (no loop of its own then).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import sys
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from pydantic import SecretStr

from engine.api import EngineHandle
from engine.control.protocol import ResumeReport, UncopiedOrder
from engine.domain import EngineState
from engine.events import EngineEvent
from engine.views import (
    AccountView,
    CopyStepView,
    FollowerOrderView,
    KillPreview,
    LimiterView,
    PositionsView,
    RecoveryReport,
    SyncPreview,
    SyncReport,
    TimelineEntry,
)

__all__ = ["EngineOnItsOwnThread"]

log = logging.getLogger(__name__)

_T = TypeVar("_T")

# How long the terminal waits for a read model from the engine's loop (a turn of its loop:
# milliseconds; longer only if the loop is stuck, which the read then says).
VIEW_TIMEOUT_S = 5.0
# How long stopping waits for the engine's thread to end once the engine has stopped.
JOIN_TIMEOUT_S = 30.0
# How often the interpreter lets another thread run, while the engine runs on its own: the
# longest a woken engine waits for the screen's thread (a process-wide setting, put back after).
SWITCH_INTERVAL_S = 0.001


class EngineOnItsOwnThread:
    """An ``EngineHandle`` running ``engine`` on its own thread and loop once ``run`` is
    awaited; ``run`` returns (or raises) when the engine does."""

    def __init__(self, engine: EngineHandle, *, name: str = "copytrade-engine") -> None:
        self._engine = engine
        self._name = name
        self._loop: asyncio.AbstractEventLoop | None = None  # the engine's, while it runs
        self._thread: threading.Thread | None = None
        self._started = threading.Event()  # its loop is set (or it never came to run)

    @property
    def state(self) -> EngineState:
        return self._engine.state  # one attribute read: atomic under the interpreter lock

    def subscribe(self, listener: Callable[[EngineEvent], None]) -> Callable[[], None]:
        # The listener is called on the engine's thread from now on.
        return self._engine.subscribe(listener)

    async def run(self) -> None:
        if self._thread is not None:
            raise RuntimeError("the engine is already running")
        caller = asyncio.get_running_loop()
        finished: asyncio.Future[None] = caller.create_future()
        started = self._started
        started.clear()

        def report(error: BaseException | None) -> None:
            if finished.done():
                return
            if error is None:
                finished.set_result(None)
            else:
                finished.set_exception(error)

        async def engine_main() -> None:
            self._loop = asyncio.get_running_loop()
            started.set()
            try:
                await self._engine.run()
            finally:
                self._loop = None

        def thread_main() -> None:
            error: BaseException | None = None
            try:
                asyncio.run(engine_main())
            except BaseException as exc:  # handed to the awaiting side, raised there
                error = exc
            finally:
                started.set()
                with contextlib.suppress(RuntimeError):  # the terminal's loop has closed
                    caller.call_soon_threadsafe(report, error)

        switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        # A daemon: a terminal that dies without stopping it must not hang at exit waiting for
        # it (every copy's intent is on disk before it is sent: its end is a kill -9's).
        self._thread = threading.Thread(target=thread_main, name=self._name, daemon=True)
        self._thread.start()
        try:
            await asyncio.shield(finished)
        except asyncio.CancelledError:
            # The terminal is closing without having stopped the engine: stop it now, and
            # let its thread end before this worker does.
            try:
                await self._stop_and_join()
            except Exception:
                log.exception("the engine could not be stopped")
            raise
        finally:
            thread = self._thread
            if thread is not None and (finished.done() or not thread.is_alive()):
                self._join()
            sys.setswitchinterval(switch_interval)

    async def stop(self) -> None:
        await self._stop_and_join()

    async def kill(self, reason: str) -> None:
        await self._call(lambda: self._engine.kill(reason))

    async def resume(self, replace_open: bool = False) -> ResumeReport | None:
        return await self._call(lambda: self._engine.resume(replace_open))

    async def resync(self) -> RecoveryReport:
        return await self._call(self._engine.resync)

    def kill_preview(self) -> KillPreview:
        return self._read(self._engine.kill_preview)

    def in_flight(self) -> int:
        return self._read(self._engine.in_flight)

    async def timeline(self, leader_order_id: str) -> list[TimelineEntry]:
        return await self._call(lambda: self._engine.timeline(leader_order_id))

    def follower_views(self) -> list[FollowerOrderView]:
        return self._read(self._engine.follower_views)

    def limiter_views(self) -> list[LimiterView]:
        return self._read(self._engine.limiter_views)

    def market_label(self) -> str:
        return self._read(self._engine.market_label)

    def account_views(self) -> list[AccountView]:
        return self._read(self._engine.account_views)

    def positions_view(self) -> PositionsView:
        return self._read(self._engine.positions_view)

    def copy_steps(self) -> list[CopyStepView]:
        return self._read(self._engine.copy_steps)

    async def uncopied_orders(self) -> list[UncopiedOrder]:
        return await self._call(self._engine.uncopied_orders)

    async def sync_preview(self) -> SyncPreview:
        return await self._call(self._engine.sync_preview)

    async def sync_positions(self, preview: SyncPreview) -> SyncReport:
        return await self._call(lambda: self._engine.sync_positions(preview))

    async def clear_freeze(self, account: str) -> str:
        return await self._call(lambda: self._engine.clear_freeze(account))

    async def replace_token(self, account: str, token: SecretStr) -> str:
        return await self._call(lambda: self._engine.replace_token(account, token))

    async def on_engine_loop(self, make: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
        """The coroutine ``make()`` builds, awaited on the engine's loop (here when it is not
        running): for a caller that needs more of the engine than the handle offers."""
        return await self._call(make)

    # --- crossing to the engine's loop --------------------------------------------------------

    async def _call(self, make: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
        """The coroutine ``make()`` builds, run to its end on the engine's loop."""
        if self._thread is not None and not self._started.is_set():
            # Starting: the call must reach its loop, not race its start from this thread.
            await asyncio.to_thread(self._started.wait, JOIN_TIMEOUT_S)
        loop = self._loop
        if loop is None or loop.is_closed():
            return await make()
        try:
            future = asyncio.run_coroutine_threadsafe(_made(make), loop)
        except RuntimeError:  # the loop closed just now: the engine has stopped
            return await make()
        return await asyncio.wrap_future(future)

    def _read(self, fn: Callable[[], _T]) -> _T:
        """``fn()`` on the engine's loop, waited for here (a read model: no await in it)."""
        loop = self._loop
        if loop is None or loop.is_closed() or threading.current_thread() is self._thread:
            return fn()
        result: concurrent.futures.Future[_T] = concurrent.futures.Future()

        def read() -> None:
            try:
                result.set_result(fn())
            except BaseException as exc:  # raised on the reading side
                result.set_exception(exc)

        try:
            loop.call_soon_threadsafe(read)
        except RuntimeError:  # the loop closed just now
            return fn()
        return result.result(timeout=VIEW_TIMEOUT_S)

    async def _stop_and_join(self) -> None:
        await self._call(self._engine.stop)
        thread = self._thread
        if thread is not None and thread.is_alive():
            await asyncio.to_thread(thread.join, JOIN_TIMEOUT_S)

    def _join(self) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(JOIN_TIMEOUT_S)


async def _made(make: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
    return await make()
