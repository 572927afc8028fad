"""How the terminal holds up under an event flood: `python -m bench.tui_flood`.

Runs the app headless (`run_test`) with the fake engine, publishes events at increasing
target rates for a few seconds each while pressing a key every ~200 ms (alternately `?` to
open the help screen and Esc to close it), and measures the time from the key event entering
the app to its effect being on screen. Prints, per rate: events/s published and absorbed
(drawn by a flush), flushes, median / p95 key latency, and the full garbage collections (each
a pause of the whole loop) with the longest. Finally it publishes 100,000
events and reports the process RSS. No asserts: this is a measurement.

Options: --seconds N (per rate, default 3), --rates 0,1000,5000,20000,50000 (0: idle baseline).

The stream is deliberately harsh: every 17 events are a *new* leader order (plus 3 follower
copies), so the tables churn rows; real sessions are bounded by Dhan's 10 orders/s per account.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import psutil
from textual import events

from engine.domain import MirrorState, OrderStatus, Severity
from engine.events import EngineEvent
from tests.tui.fakes import (
    FakeEngine,
    FixedClock,
    alert_raised,
    follower_changed,
    leader_seen,
    limiter_changed,
    stats_updated,
)
from tui.app import CopyTradeApp
from tui.screens.help import HelpScreen

FOLLOWERS = ("follower-a", "follower-b", "follower-c")


def event_stream() -> Iterator[EngineEvent]:
    """A replication-shaped stream: every leader order is seen, copied, filled, counted."""
    n = 0
    while True:
        n += 1
        order = f"11251123{n:08d}"
        yield leader_seen(order, status=OrderStatus.PENDING)
        for i, follower in enumerate(FOLLOWERS):
            yield follower_changed(follower, order, state=MirrorState.PLACING, latency=None)
            yield limiter_changed(follower, ((n + i) % 10, n % 250, n % 1000, n % 7000))
        for follower in FOLLOWERS:
            yield follower_changed(follower, order, broker_status="PENDING")
        yield leader_seen(order, status=OrderStatus.TRADED, filled=10)
        for follower in FOLLOWERS:
            yield follower_changed(
                follower,
                order,
                state=MirrorState.DONE,
                broker_status="TRADED",
                filled=5,
                avg=2450.55,
                slippage=0.05,
            )
        yield stats_updated(replicated=n * 3, latency_p50_ms=180.0, latency_p99_ms=640.0)
        if n % 25 == 0:
            yield alert_raised(
                "Dhan rate limit hit (DH-904); backing off.",
                severity=Severity.WARNING,
                code="DH904",
                follower=FOLLOWERS[n % 3],
            )


@dataclass
class PhaseResult:
    target: int
    seconds: float
    published: int
    absorbed: int
    flushes: int
    key_ms: list[float] = field(default_factory=list)
    gc_pauses_ms: list[float] = field(default_factory=list)  # full (oldest-generation) passes

    def row(self) -> str:
        label = "idle" if self.target == 0 else f"{self.target:,}"
        keys = sorted(self.key_ms)
        p50 = statistics.median(keys) if keys else float("nan")
        p95 = keys[min(len(keys) - 1, round(0.95 * (len(keys) - 1)))] if keys else float("nan")
        return (
            f"{label:>10} {self.published / self.seconds:>14,.0f} "
            f"{self.absorbed / self.seconds:>13,.0f} {self.flushes / self.seconds:>10.1f} "
            f"{len(keys):>6} {p50:>10.1f} {p95:>10.1f} {max(keys, default=float('nan')):>10.1f}"
            f" {len(self.gc_pauses_ms):>8} {max(self.gc_pauses_ms, default=0.0):>9.1f}"
        )


HEADER = (
    f"{'target/s':>10} {'published/s':>14} {'absorbed/s':>13} {'flushes/s':>10} "
    f"{'keys':>6} {'key p50 ms':>10} {'key p95 ms':>10} {'key max ms':>10}"
    f" {'full GCs':>8} {'GC max ms':>9}"
)


class FullCollections:
    """Times each full garbage collection (a pause of the whole loop, keys included)."""

    def __init__(self) -> None:
        self.pauses_ms: list[float] = []
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if info.get("generation") != 2:
            return
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.pauses_ms.append((time.perf_counter() - self._started) * 1000)


def send_key(app: CopyTradeApp, key: str, char: str | None) -> None:
    """Post a key to the app as the terminal driver does, without the pilot's wait-for-idle."""
    app.post_message(events.Key(key, char))


async def press_and_wait(app: CopyTradeApp, opening: bool) -> float:
    start = time.perf_counter()
    if opening:
        send_key(app, "question_mark", "?")
    else:
        send_key(app, "escape", "\x1b")
    while True:
        screen = app.screen
        done = isinstance(screen, HelpScreen) if opening else not isinstance(screen, HelpScreen)
        if done and screen.is_mounted:
            # On screen: the screen's next refresh after the change has been painted.
            painted = asyncio.Event()
            screen.call_after_refresh(painted.set)
            try:
                await asyncio.wait_for(painted.wait(), timeout=10)
            except TimeoutError:
                return float("inf")
            return (time.perf_counter() - start) * 1000
        if time.perf_counter() - start > 10:
            return float("inf")
        await asyncio.sleep(0.001)


async def run_phase(
    app: CopyTradeApp,
    engine: FakeEngine,
    stream: Iterator[EngineEvent],
    rate: int,
    seconds: float,
    collections: FullCollections | None = None,
) -> PhaseResult:
    applied0, flushes0 = app.events_applied, app.flushes
    pauses0 = len(collections.pauses_ms) if collections else 0
    published = 0
    stop = asyncio.Event()

    async def publisher() -> None:
        nonlocal published
        start = time.perf_counter()
        while not stop.is_set():
            due = int(rate * (time.perf_counter() - start)) - published
            chunk = 0
            for _ in range(max(due, 0)):
                engine.publish(next(stream))
                published += 1
                chunk += 1
                if chunk >= 500:
                    chunk = 0
                    await asyncio.sleep(0)
            await asyncio.sleep(0.002)

    result = PhaseResult(rate, seconds, 0, 0, 0)
    task = asyncio.create_task(publisher())
    start = time.perf_counter()
    opening = True
    while time.perf_counter() - start < seconds:
        await asyncio.sleep(0.2)
        result.key_ms.append(await press_and_wait(app, opening))
        opening = not opening
    stop.set()
    await task
    elapsed = time.perf_counter() - start
    if isinstance(app.screen, HelpScreen):
        await press_and_wait(app, False)
    app.flush_events()
    result.seconds = elapsed
    result.published = published
    result.absorbed = app.events_applied - applied0
    result.flushes = app.flushes - flushes0
    if collections:
        result.gc_pauses_ms = collections.pauses_ms[pauses0:]
    return result


async def main(rates: list[int], seconds: float) -> None:
    engine = FakeEngine()
    app = CopyTradeApp(engine, clock=FixedClock())
    stream = event_stream()
    process = psutil.Process()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        rss_start = process.memory_info().rss
        print(f"terminal flood bench: {seconds:.0f} s per rate, a key every ~200 ms\n")
        print(HEADER)
        print("-" * len(HEADER))
        collections = FullCollections()
        gc.callbacks.append(collections)
        for rate in rates:
            result = await run_phase(app, engine, stream, rate, seconds, collections)
            print(result.row(), flush=True)
        gc.callbacks.remove(collections)

        # memory after 100,000 more events, published as fast as possible (twice: it must
        # not grow with the number of events, only with the bounded tables)
        print()
        rss_after: list[int] = []
        for _ in range(2):
            start = time.perf_counter()
            for i in range(100_000):
                engine.publish(next(stream))
                if i % 1000 == 0:
                    await asyncio.sleep(0)
            app.flush_events()
            await pilot.pause()
            fast = 100_000 / (time.perf_counter() - start)
            gc.collect()
            rss_after.append(process.memory_info().rss)
            print(
                f"100,000 events as fast as possible: {fast:,.0f} events/s published and drawn, "
                f"RSS {rss_after[-1] / 2**20:,.1f} MiB"
            )
        rss = rss_after[0]
        print(
            f"total events received {app.coalescer.received:,}, applied {app.events_applied:,}, "
            f"flushes {app.flushes:,}, early folds {app.coalescer.folded_early:,}"
        )
        print(
            f"rows: leader {app.leader_table.row_count}, follower {app.follower_table.row_count}, "
            f"alerts {len(app.alerts_pane.items)}"
        )
        print(
            f"RSS after 100,000 events: {rss / 2**20:,.1f} MiB "
            f"(app at start {rss_start / 2**20:,.1f} MiB; after another 100,000: "
            f"{rss_after[1] / 2**20:,.1f} MiB)"
        )
        print(
            f"time in flushes: {app.flush_seconds:,.1f} s over {app.flushes} flushes "
            f"({app.flush_seconds / max(app.flushes, 1) * 1000:,.1f} ms each on average)"
        )


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rates", default="0,1000,5000,20000,50000")
    args = parser.parse_args()
    asyncio.run(main([int(r) for r in args.rates.split(",")], args.seconds))


if __name__ == "__main__":
    cli()
