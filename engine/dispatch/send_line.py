"""The send line: copies whose intents are durable go out one loop turn apart, before any
bookkeeping of the answers.

A leader order fanned out to N followers commits its N intents together, and the N workers
then wake in one loop turn. Sent in that one turn, no request would leave before the last was
built: aiohttp (on Python 3.11) writes a request's bytes from a task of its own, run a turn
later. Given one turn each, every request is on the wire while the next is being built, and
Dhan works on the first copies while the engine still builds the last. Even the first waits
for the others to join the line: sent alone ahead of them, it was followed by a pause of
~1 ms (the others' own steps to the line) in which the receiving side went idle.

Meanwhile the first answers and follower order alerts come back; handling them costs more
than a send, and none of it makes a copy reach Dhan sooner. So it waits (``clear``) until no
send is waiting for its turn: a fan-out's sends go first. The wait is bounded by the line,
which only ever shortens: a turn needs nothing but the loop.

Cancels never queue here: they go at once (cancels first, the kill switch always wins).
"""

from __future__ import annotations

import asyncio
from collections import deque

__all__ = ["SendLine"]


class SendLine:
    def __init__(self) -> None:
        self._waiting: deque[asyncio.Future[None]] = deque()
        self._clear_waiters: list[asyncio.Future[None]] = []
        self._pumping = False

    @property
    def waiting(self) -> int:
        """Sends waiting for their turn."""
        return len(self._waiting)

    async def turn(self) -> None:
        """Until this send may go: one per loop turn, in the order asked."""
        loop = asyncio.get_running_loop()
        ticket = loop.create_future()
        self._waiting.append(ticket)
        if not self._pumping:
            self._pumping = True
            loop.call_soon(self._grant)
        await ticket

    async def clear(self) -> None:
        """Until no send waits for its turn (at once when none does)."""
        if not self._pumping:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._clear_waiters.append(waiter)
        await waiter

    def _grant(self) -> None:
        while self._waiting:
            ticket = self._waiting.popleft()
            if not ticket.done():  # a cancelled sender gives its turn to the next one
                ticket.set_result(None)
                # Called again next turn, after the sender we just woke has sent; a last
                # empty turn lets the last request's bytes leave before bookkeeping resumes.
                asyncio.get_running_loop().call_soon(self._grant)
                return
        self._pumping = False
        waiters, self._clear_waiters = self._clear_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
