"""The multi-window limiter: exact window counts, in-flight slots, backoff, bursts.

Time is a ManualClock everywhere: `acquire` sleeps by advancing it, so nothing waits.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.clock import ManualClock
from engine.dispatch.rate_limiter import DHAN_ORDER_WINDOWS, RateLimiter, Slot, effective_limit

SECOND_ONLY = (("second", 1.0, 10),)


def make(
    windows: Sequence[tuple[str, float, int]] = SECOND_ONLY, headroom: float = 0.0
) -> tuple[ManualClock, RateLimiter]:
    clock = ManualClock()
    return clock, RateLimiter("f1", clock, windows=windows, headroom=headroom, rng=random.Random(7))


def take(limiter: RateLimiter, n: int) -> list[Slot]:
    slots = []
    for _ in range(n):
        s = limiter.try_acquire()
        assert s is not None
        slots.append(s)
    return slots


def test_defaults_are_dhans_order_limits() -> None:
    assert DHAN_ORDER_WINDOWS == (
        ("second", 1.0, 10),
        ("minute", 60.0, 250),
        ("hour", 3600.0, 1000),
        ("day", 86400.0, 7000),
    )
    clock = ManualClock()
    view = RateLimiter("f1", clock).view()
    assert [(w.name, w.limit, w.used) for w in view.windows] == [
        ("second", 10, 0),
        ("minute", 250, 0),
        ("hour", 1000, 0),
        ("day", 7000, 0),
    ]


def test_exactly_ten_then_the_eleventh_waits_for_first_completion_plus_one_second() -> None:
    clock, lim = make()
    slots = take(lim, 10)
    assert lim.try_acquire() is None
    # all ten in flight: only a completion can free room
    assert math.isinf(lim.wait_time())
    clock.advance(0.3)
    lim.complete(slots[0])  # completed at +0.3
    clock.advance(0.2)
    for s in slots[1:]:
        lim.complete(s)  # completed at +0.5
    assert lim.wait_time() == pytest.approx(0.8)  # until 0.3 + 1.0
    clock.advance(0.79)
    assert lim.try_acquire() is None
    clock.advance(0.01)
    assert lim.try_acquire() is not None
    assert lim.try_acquire() is None
    assert lim.wait_time() == pytest.approx(0.2)


def test_in_flight_slots_block_indefinitely() -> None:
    clock, lim = make()
    take(lim, 10)
    clock.advance(3600)
    assert lim.try_acquire() is None
    assert math.isinf(lim.wait_time())
    assert lim.in_flight == 10


def test_completing_twice_or_a_foreign_slot_is_ignored() -> None:
    clock, lim = make()
    (s,) = take(lim, 1)
    lim.complete(s)
    lim.complete(s)
    other = RateLimiter("f2", clock).try_acquire()
    assert other is not None
    lim.complete(other)
    assert lim.view().windows[0].used == 1


def test_abandon_frees_at_once() -> None:
    _clock, lim = make()
    slots = take(lim, 10)
    lim.abandon(slots[0])
    assert lim.try_acquire() is not None


def test_headroom() -> None:
    assert effective_limit(10, 0.0) == 10
    assert effective_limit(10, 0.1) == 9
    assert effective_limit(250, 0.1) == 225
    assert effective_limit(10, 0.15) == 8  # floor
    assert effective_limit(1, 0.5) == 1  # at least 1
    _clock, lim = make(headroom=0.1)
    take(lim, 9)
    assert lim.try_acquire() is None
    assert lim.view().windows[0].limit == 9


def test_bad_configuration() -> None:
    clock = ManualClock()
    with pytest.raises(ValueError):
        RateLimiter("f", clock, headroom=1.0)
    with pytest.raises(ValueError):
        RateLimiter("f", clock, windows=())
    with pytest.raises(ValueError):
        RateLimiter("f", clock, windows=(("x", 0.0, 1),))


def test_minute_window() -> None:
    clock, lim = make(windows=(("second", 1.0, 10), ("minute", 60.0, 25)))
    t0 = clock.monotonic()
    times = []
    for _ in range(26):
        while (s := lim.try_acquire()) is None:
            clock.advance(lim.wait_time())
        times.append(clock.monotonic() - t0)
        lim.complete(s)
    assert times[:10] == [0.0] * 10
    assert times[10] == pytest.approx(1.0)
    assert times[24] == pytest.approx(2.0)
    assert times[25] == pytest.approx(60.0)  # the minute window, not the second one


async def test_full_dhan_windows_day_boundaries() -> None:
    """7001 instant requests against the real limits: each window bites at its own moment."""
    clock, lim = make(windows=DHAN_ORDER_WINDOWS)
    t0 = clock.monotonic()
    times: list[float] = []
    for _ in range(7001):
        s = await lim.acquire()
        times.append(clock.monotonic() - t0)
        lim.complete(s)
    assert times[10] == pytest.approx(1.0)
    assert times[250] == pytest.approx(60.0)
    assert times[1000] == pytest.approx(3600.0)
    assert times[7000] == pytest.approx(86400.0)
    view = lim.view()
    # at +1 day the ten sent at 0 s have left the day window; the 7001st is in it
    assert view.windows[3].used == 7000 - 10 + 1
    assert view.throttled > 0


async def test_burst_of_100_takes_the_theoretical_minimum() -> None:
    clock, lim = make(windows=DHAN_ORDER_WINDOWS)
    t0 = clock.monotonic()
    for _ in range(100):
        slot = await lim.acquire()
        lim.complete(slot)
    elapsed = clock.monotonic() - t0
    # 10 per second: the 100th goes out at 9.0 s; allow 5% over the minimum.
    assert 9.0 - 1e-6 <= elapsed <= 9.0 * 1.05
    assert elapsed == pytest.approx(9.0)
    assert lim.throttled == 9


async def test_burst_with_response_time() -> None:
    """With 50 ms responses, each second's batch starts 1 s after the previous batch's first
    completion: the response time is paid once per batch, never per request."""
    clock, lim = make()
    t0 = clock.monotonic()
    sent = []
    for _ in range(30):
        slot = await lim.acquire()
        sent.append(clock.monotonic() - t0)
        clock.advance(0.05)  # the response takes 50 ms
        lim.complete(slot)
    assert sent[9] == pytest.approx(0.45)
    assert sent[10] == pytest.approx(1.05)  # request 1 completed at 0.05, + 1 s
    assert sent[20] == pytest.approx(2.10)
    assert sent[29] == pytest.approx(2.55)


async def test_acquire_waits_for_a_completion_when_in_flight_blocks() -> None:
    clock, lim = make()
    slots = take(lim, 10)
    task = asyncio.create_task(lim.acquire())
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert not task.done()
    assert lim.throttled == 1
    t_done = clock.monotonic()
    lim.complete(slots[0])
    slot = await asyncio.wait_for(task, timeout=5)
    assert slot.acquired_at == pytest.approx(t_done + 1.0)
    assert lim.throttled == 1  # one wait counted once


async def test_acquire_wakes_on_abandon_before_its_sleep_ends() -> None:
    clock, lim = make(windows=(("second", 1.0, 2),))
    a, b = take(lim, 2)
    lim.complete(a)
    # b still in flight; a occupies the window until +1 s: finite wait
    t0 = clock.monotonic()
    task = asyncio.create_task(lim.acquire())
    lim.abandon(b)
    slot = await asyncio.wait_for(task, timeout=5)
    assert slot.acquired_at - t0 <= 1.0 + 1e-9


def test_dh904_backoff_is_exponential_capped_and_jittered() -> None:
    _clock, lim = make()
    seen = [lim.note_rate_limited() for _ in range(10)]
    bases = [0.5, 1, 2, 4, 8, 16, 30, 30, 30, 30]
    for got, base in zip(seen, bases, strict=True):
        assert base * 0.8 - 1e-9 <= got <= min(base * 1.2, 30.0) + 1e-9
    assert lim.dh904 == 10
    lim.note_success()
    assert lim.note_rate_limited() <= 0.6


def test_dh904_blocks_acquisition_until_backoff_passes() -> None:
    clock, lim = make()
    backoff = lim.note_rate_limited()
    assert lim.try_acquire() is None
    assert lim.wait_time() == pytest.approx(backoff)
    assert lim.blocked_for() == pytest.approx(backoff)
    clock.advance(backoff)
    assert lim.try_acquire() is not None
    assert lim.blocked_for() == 0.0


def test_dh904_retry_after_is_honoured() -> None:
    _clock, lim = make()
    assert lim.note_rate_limited(retry_after=3.0) == 3.0
    assert lim.wait_time() == pytest.approx(3.0)
    assert lim.view().dh904 == 1


def test_view_counts_in_flight_and_recent() -> None:
    clock, lim = make(windows=DHAN_ORDER_WINDOWS)
    slots = take(lim, 4)
    lim.complete(slots[0])
    v = lim.view(queue_depth=7)
    assert v.account == "f1"
    assert v.queue_depth == 7
    assert [w.used for w in v.windows] == [4, 4, 4, 4]
    clock.advance(1.0)
    lim.complete(slots[1])
    v = lim.view()
    assert [w.used for w in v.windows] == [3, 4, 4, 4]
    assert v.windows[0].remaining == 7


def test_thousands_of_slots_stay_cheap() -> None:
    clock, lim = make(windows=(("day", 86400.0, 7000),))
    for _ in range(7000):
        s = lim.try_acquire()
        assert s is not None
        lim.complete(s)
        clock.advance(0.01)
    assert lim.try_acquire() is None
    assert lim.wait_time() == pytest.approx(86400.0 - 70.0, abs=0.02)


def _max_in_window(times: list[float], span: float) -> int:
    times = sorted(times)
    best = 0
    j = 0
    for i, t in enumerate(times):
        while t - times[j] >= span - 1e-9:
            j += 1
        best = max(best, i - j + 1)
    return best


@settings(max_examples=150, deadline=None)
@given(
    delays=st.lists(st.floats(min_value=0.0, max_value=2.5), min_size=1, max_size=80),
    receipt_fracs=st.lists(st.floats(min_value=0.0, max_value=1.0), min_size=80, max_size=80),
    concurrency=st.integers(min_value=1, max_value=25),
)
def test_no_window_at_dhan_ever_exceeds_the_limit(
    delays: list[float], receipt_fracs: list[float], concurrency: int
) -> None:
    """Whenever Dhan receives each request (between send and response), no 1 s span holds
    more than 10 and no 5 s span more than 25."""
    windows = (("second", 1.0, 10), ("five", 5.0, 25))
    clock, lim = make(windows=windows)
    pending = list(delays)
    flying: list[tuple[float, Slot, float]] = []  # (completion time, slot, receipt time)
    completions: list[float] = []
    receipts: list[float] = []
    steps = 0
    while pending or flying:
        steps += 1
        assert steps < 10_000
        while pending and len(flying) < concurrency:
            slot = lim.try_acquire()
            if slot is None:
                break
            d = pending.pop(0)
            now = clock.monotonic()
            frac = receipt_fracs[len(receipts) % len(receipt_fracs)]
            r = now + d * frac
            receipts.append(r)
            flying.append((now + d, slot, r))
        now = clock.monotonic()
        candidates = [c for c, _, _ in flying]
        if pending and len(flying) < concurrency:
            w = lim.wait_time()
            if not math.isinf(w):
                candidates.append(now + w)
        assert candidates, "deadlock: nothing in flight and no finite wait"
        nxt = min(candidates)
        clock.advance(max(nxt - now, 0.0))
        for item in sorted(flying, key=lambda x: x[0]):
            if item[0] <= clock.monotonic() + 1e-12:
                lim.complete(item[1])
                completions.append(clock.monotonic())
                flying.remove(item)
    assert len(receipts) == len(delays)
    for times in (receipts, completions):
        assert _max_in_window(times, 1.0) <= 10
        assert _max_in_window(times, 5.0) <= 25
