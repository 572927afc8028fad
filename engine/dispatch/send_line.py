"""The send line: copies whose intents are durable go out a few per loop turn, before any
bookkeeping of the answers.

A leader order fanned out to N followers commits its N intents together, and the N workers
then wake in one loop turn. Sent in that one turn, no request would leave before the last was
built: aiohttp (on Python 3.11) writes a request's bytes from a task of its own, run a turn
later. Let go a few per turn (``SENDS_PER_TURN``), each batch of requests is on the wire
while the next is being built, and Dhan works on the first copies while the engine still
builds the last. Even the first waits for the others to join the line (sent in its own
worker's step, ahead of them, it was followed by a pause of ~1 ms, the others' own steps to
the line, in which the receiving side went idle), but it then goes out alone
(``FIRST_SENDS``): its bytes leave a turn later, not after three more requests are built,
and Dhan works on it while the next batch is built.

Meanwhile the first answers and follower order alerts come back; handling them costs more
than a send, and none of it makes a copy reach Dhan sooner. So it waits (``clear``) until no
send is waiting for its turn: a fan-out's sends go first. A turn needs nothing but the loop,
so one fan-out's line always empties (200 copies: ~50 ms); under a sustained burst that keeps
it full, bookkeeping waits at most ``max_hold_s``, and from then on goes beside the sends
until the line has emptied once, so fills and answers are never left unread for long (nor
read one frame per bound).

Cancels never queue here: they go at once (cancels first, the kill switch always wins).
"""

from __future__ import annotations

import asyncio
from collections import deque

__all__ = ["FIRST_SENDS", "MAX_HOLD_S", "SENDS_PER_TURN", "SendLine"]

MAX_HOLD_S = 0.2  # the longest bookkeeping waits for a line kept full (a sustained burst)
# Sends let go per loop turn: each turn also costs its poll of the sockets and the answers
# that arrived; a few per turn spread that over them (200 followers: last copy ~6% sooner
# than one per turn, medians of three runs each), and their bytes still leave a turn later.
SENDS_PER_TURN = 4
# Sends let go in the first turn after the line was empty. 10 followers, copier on a CPU of
# its own, paired runs (3): the first copy reached the simulator 0.9-1.5 ms sooner, the last
# 0.5-1.8 ms sooner (medians); beside the simulator's CPU the last moved either way within
# the noise; 200 followers: no change.
FIRST_SENDS = 1


class SendLine:
    def __init__(
        self,
        *,
        max_hold_s: float = MAX_HOLD_S,
        per_turn: int = SENDS_PER_TURN,
        first: int = FIRST_SENDS,
    ) -> None:
        self._waiting: deque[asyncio.Future[None]] = deque()
        self._clear_waiters: deque[tuple[float, asyncio.Future[None]]] = deque()
        self._pumping = False
        self._granted_any = False  # since the line was last empty
        self._shared = False  # the bound was reached: bookkeeping no longer waits, until empty
        self._max_hold_s = max_hold_s
        self._per_turn = max(1, per_turn)
        self._first = max(1, first)

    @property
    def waiting(self) -> int:
        """Sends waiting for their turn."""
        return len(self._waiting)

    async def turn(self) -> None:
        """Until this send may go: ``per_turn`` per loop turn, in the order asked."""
        loop = asyncio.get_running_loop()
        ticket = loop.create_future()
        self._waiting.append(ticket)
        if not self._pumping:
            self._pumping = True
            loop.call_soon(self._grant)
        await ticket

    async def clear(self) -> None:
        """Until no send waits for its turn (at once when none does), or ``max_hold_s``."""
        if not self._pumping or self._shared:
            return
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        self._clear_waiters.append((loop.time() + self._max_hold_s, waiter))
        await waiter

    def _grant(self) -> None:
        loop = asyncio.get_running_loop()
        granted = 0
        limit = self._per_turn if self._granted_any else self._first
        while self._waiting and granted < limit:
            ticket = self._waiting.popleft()
            if not ticket.done():  # a cancelled sender gives its turn to the next one
                ticket.set_result(None)
                granted += 1
        if granted:
            self._granted_any = True
            # Called again next turn, after the senders just woken have sent; a last empty
            # turn lets the last requests' bytes leave before bookkeeping resumes.
            loop.call_soon(self._grant)
            self._release_waiters(loop.time())
            return
        self._pumping = False
        self._granted_any = False
        self._shared = False
        self._release_waiters(None)

    def _release_waiters(self, now: float | None) -> None:
        """Every waiter (``now`` None: the line is empty), else those held past their bound
        (they waited in order, so the first not yet due ends the scan)."""
        while self._clear_waiters:
            due, waiter = self._clear_waiters[0]
            if now is not None and due > now:
                return
            if now is not None:
                self._shared = True
            self._clear_waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
