"""The send line: the first send alone, then a few per loop turn, in order; bookkeeping waits
until the line is empty."""

from __future__ import annotations

import asyncio

import pytest

from engine.dispatch.send_line import FIRST_SENDS, SENDS_PER_TURN, SendLine


class TurnCounter:
    """Counts event-loop turns: a callback that re-schedules itself once per turn."""

    def __init__(self) -> None:
        self.turn = 0
        self._handle: asyncio.Handle | None = None

    def start(self) -> None:
        self._handle = asyncio.get_running_loop().call_soon(self._tick)

    def _tick(self) -> None:
        self.turn += 1
        self._handle = asyncio.get_running_loop().call_soon(self._tick)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()


async def test_even_the_first_send_waits_one_loop_turn() -> None:
    """The copies woken together by their commit all join the line first, then go out one a
    turn, without a pause after the first."""
    line = SendLine()
    counter = TurnCounter()
    counter.start()
    before = counter.turn
    await line.turn()
    assert counter.turn > before  # not within the turn that asked
    counter.stop()


def expected_batches(n: int, first: int, per_turn: int) -> list[list[int]]:
    """The senders 0..n-1 let go per loop turn: `first`, then `per_turn` at a time."""
    batches = [list(range(min(first, n)))]
    batches += [list(range(i, min(i + per_turn, n))) for i in range(first, n, per_turn)]
    return batches


async def batches_of(line: SendLine, n: int) -> list[list[int]]:
    """n senders join the line together; which of them went in each loop turn, in order."""
    counter = TurnCounter()
    counter.start()
    went: list[tuple[int, int]] = []

    async def sender(i: int) -> None:
        await line.turn()
        went.append((i, counter.turn))

    await asyncio.gather(*(sender(i) for i in range(n)))
    counter.stop()
    assert [i for i, _ in went] == list(range(n))
    return [[i for i, t in went if t == turn] for turn in sorted({t for _, t in went})]


@pytest.mark.parametrize(("first", "per_turn"), [(1, 1), (FIRST_SENDS, SENDS_PER_TURN), (4, 4)])
async def test_sends_go_in_the_order_asked_the_first_alone_then_a_few_per_turn(
    first: int, per_turn: int
) -> None:
    line = SendLine(first=first, per_turn=per_turn)
    assert await batches_of(line, 10) == expected_batches(10, first, per_turn)
    assert line.waiting == 0


async def test_by_default_the_first_copy_of_a_fan_out_goes_alone() -> None:
    """Dhan works on the first copy while the next few are built: its bytes do not wait for
    theirs."""
    assert FIRST_SENDS == 1 < SENDS_PER_TURN
    assert (await batches_of(SendLine(), 6))[:2] == [[0], [1, 2, 3, 4]]


async def test_the_next_fan_out_starts_alone_again_once_the_line_has_emptied() -> None:
    line = SendLine()
    first = await batches_of(line, 6)
    await asyncio.wait_for(line.clear(), 0.1)  # the line has emptied
    assert await batches_of(line, 6) == first == expected_batches(6, FIRST_SENDS, SENDS_PER_TURN)


async def test_clear_returns_at_once_when_no_send_waits() -> None:
    line = SendLine()
    await asyncio.wait_for(line.clear(), 0.1)


async def test_bookkeeping_waits_for_every_waiting_send() -> None:
    line = SendLine()
    order: list[str] = []

    async def sender(i: int) -> None:
        await line.turn()
        order.append(f"send {i}")

    async def bookkeeping() -> None:
        await asyncio.sleep(0)  # asks while the line is busy
        await line.clear()
        order.append("bookkeeping")

    await asyncio.gather(bookkeeping(), *(sender(i) for i in range(4)))
    assert order == ["send 0", "send 1", "send 2", "send 3", "bookkeeping"]


async def test_the_last_send_gets_a_turn_before_bookkeeping_resumes() -> None:
    """What the last sender schedules when it sends (aiohttp's body write) runs before the
    bookkeeping that waited for the line."""
    line = SendLine()
    order: list[str] = []

    async def sender(i: int) -> None:
        await line.turn()
        asyncio.get_running_loop().call_soon(order.append, f"bytes {i}")

    async def bookkeeping() -> None:
        await asyncio.sleep(0)
        await line.clear()
        order.append("bookkeeping")

    await asyncio.gather(bookkeeping(), *(sender(i) for i in range(3)))
    assert order.index("bytes 2") < order.index("bookkeeping")


async def test_a_cancelled_sender_gives_its_turn_to_the_next() -> None:
    line = SendLine(per_turn=1)
    went: list[int] = []

    async def sender(i: int) -> None:
        await line.turn()
        went.append(i)

    first = asyncio.create_task(sender(0))
    second = asyncio.create_task(sender(1))
    third = asyncio.create_task(sender(2))
    await asyncio.sleep(0)  # all three joined the line
    assert went == [] and line.waiting == 3
    second.cancel()
    await asyncio.gather(first, third)
    with pytest.raises(asyncio.CancelledError):
        await second
    assert went == [0, 2]
    await asyncio.wait_for(line.clear(), 0.1)


async def test_bookkeeping_waits_no_longer_than_its_bound_for_a_line_kept_full() -> None:
    """A sustained burst keeps the line full: fills and answers are still read, beside it."""
    line = SendLine(max_hold_s=0.02, per_turn=1)
    stop = asyncio.Event()
    sent = 0

    async def sender() -> None:
        nonlocal sent
        while not stop.is_set():  # always one more send in the line
            await line.turn()
            sent += 1

    senders = [asyncio.create_task(sender()) for _ in range(3)]
    await asyncio.sleep(0.01)
    assert line.waiting > 0
    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.wait_for(line.clear(), 1)
    waited = loop.time() - started
    assert 0.015 <= waited < 0.5
    assert line.waiting > 0  # released by its bound, not by an empty line
    # From then on bookkeeping goes beside the sends (not one frame per bound)...
    await asyncio.wait_for(line.clear(), 0.005)
    stop.set()
    await asyncio.gather(*senders)
    assert sent > 0
    # ...until the line has emptied once: the next fan-out's sends go first again.
    await asyncio.sleep(0.01)
    assert line.waiting == 0
    waiter = asyncio.ensure_future(line.turn())
    bookkeeping = asyncio.ensure_future(line.clear())
    await asyncio.sleep(0)
    assert not bookkeeping.done()
    await asyncio.wait_for(asyncio.gather(waiter, bookkeeping), 1)
