"""One account's dispatcher: dirty keys, at most one worker per key, urgent keys first."""

from __future__ import annotations

import asyncio
from collections import Counter

from engine.dispatch.dispatcher import AccountDispatcher


class Work:
    """A work function that records its calls and can be held open per key."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.running: Counter[str] = Counter()
        self.most_at_once = 0
        self.gates: dict[str, asyncio.Event] = {}
        self.fail: set[str] = set()

    async def __call__(self, key: str) -> None:
        self.calls.append(key)
        self.running[key] += 1
        assert self.running[key] == 1, f"{key} worked on by two workers at once"
        self.most_at_once = max(self.most_at_once, sum(self.running.values()))
        try:
            gate = self.gates.get(key)
            if gate is not None:
                await gate.wait()
            else:
                await asyncio.sleep(0)
            if key in self.fail:
                raise RuntimeError(f"bug deciding {key}")
        finally:
            self.running[key] -= 1
            if not self.running[key]:
                del self.running[key]


async def run_until_idle(dispatcher: AccountDispatcher) -> None:
    await asyncio.wait_for(dispatcher.wait_idle(), 2)


async def test_marks_of_one_key_collapse_into_one_decision() -> None:
    work = Work()
    d = AccountDispatcher("f1", work, concurrency=4)
    for _ in range(5):
        d.mark("L1")
    d.start()
    await run_until_idle(d)
    await d.stop()
    assert work.calls == ["L1"]


async def test_a_key_marked_while_worked_on_is_worked_on_again_after() -> None:
    work = Work()
    work.gates["L1"] = asyncio.Event()
    d = AccountDispatcher("f1", work, concurrency=4)
    d.start()
    d.mark("L1")
    await asyncio.sleep(0.01)
    d.mark("L1")  # claimed: no second worker may take it now
    await asyncio.sleep(0.01)
    assert work.calls == ["L1"]
    work.gates["L1"].set()
    await run_until_idle(d)
    await d.stop()
    assert work.calls == ["L1", "L1"]


async def test_urgent_keys_are_taken_first() -> None:
    work = Work()
    d = AccountDispatcher("f1", work, concurrency=1)
    for key in ("L1", "L2", "L3"):
        d.mark(key)
    d.mark("L3", urgent=True)
    d.start()
    await run_until_idle(d)
    await d.stop()
    assert work.calls == ["L3", "L1", "L2"]


async def test_different_keys_run_side_by_side_up_to_the_concurrency() -> None:
    work = Work()
    gate = asyncio.Event()
    for i in range(6):
        work.gates[f"L{i}"] = gate
    d = AccountDispatcher("f1", work, concurrency=4)
    d.start()
    await asyncio.sleep(0)  # the workers wait for keys
    for i in range(6):
        d.mark(f"L{i}")
    await asyncio.sleep(0.01)
    assert sum(work.running.values()) == 4
    assert d.busy == 4
    assert d.queue_depth == 2
    gate.set()
    await run_until_idle(d)
    await d.stop()
    assert sorted(work.calls) == [f"L{i}" for i in range(6)]
    assert work.most_at_once == 4


async def test_a_failing_decision_does_not_stop_the_account() -> None:
    work = Work()
    work.fail.add("L1")
    d = AccountDispatcher("f1", work, concurrency=2)
    d.start()
    d.mark("L1")
    d.mark("L2")
    await run_until_idle(d)
    d.mark("L1")  # retried on its next mark
    await run_until_idle(d)
    await d.stop()
    assert work.calls.count("L1") == 2
    assert "L2" in work.calls


async def test_idle_workers_stay_asleep_until_marked() -> None:
    work = Work()
    d = AccountDispatcher("f1", work, concurrency=4)
    d.start()
    for _ in range(20):
        await asyncio.sleep(0)
    assert work.calls == []
    d.mark("L1")
    await run_until_idle(d)
    d.mark("L2")
    await run_until_idle(d)
    await d.stop()
    assert work.calls == ["L1", "L2"]


async def test_stop_ends_workers_waiting_and_working() -> None:
    work = Work()
    work.gates["L1"] = asyncio.Event()  # never set
    d = AccountDispatcher("f1", work, concurrency=2)
    d.start()
    d.mark("L1")
    await asyncio.sleep(0.01)
    await asyncio.wait_for(d.stop(), 1)
