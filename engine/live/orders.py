"""The broker side of the executor: place, modify, cancel and re-place one follower's copy.

Each request is written durably as an intent first, sent, and its answer recorded on the copy
through `engine.transitions`; then the order is marked again, so the next decision sees the
new state (and is usually NoAction).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from functools import partial

from engine.accounts.source_ip import refused_for_ip
from engine.clock import Clock
from engine.dhan.broker import Existence
from engine.dhan.errors import BrokerError, BrokerResult, ResultKind
from engine.dispatch.circuit import CircuitState
from engine.dispatch.send_line import SendLine
from engine.domain import OrderParams, OrderSnapshot, Severity
from engine.instruments import InstrumentBook
from engine.live.accounts import FollowerRuntime
from engine.live.answers import AnswerHandling
from engine.live.arming import Arming
from engine.live.book import ReplicationBook
from engine.live.collector import CollectionPause
from engine.live.follower_feed import FollowerFeed
from engine.live.notifier import Notifier
from engine.live.resolution import Resolver
from engine.live.sent_log import copy_sent, refused_by
from engine.live.stats import Stats
from engine.live.write_behind import STORE_FAILURES, WriteBehind
from engine.records import Intent, IntentKind, IntentOutcome, MirrorRecord, SliceState
from engine.replication.api_rules import adapt_for_dhan_api
from engine.replication.replicator import Cancel, Modify, Place, refusal_shrinks
from engine.secrets import redact
from engine.transitions import (
    acknowledged,
    cancelled,
    carries,
    killed_before_send,
    modification_refused,
    modified,
    placed,
    refused,
    regenerated,
    slices_modified,
    split_over_slices,
    view_was_behind,
    with_slices,
)

log = logging.getLogger(__name__)

REPLACE_READ_TRIES = 5
_RETRYABLE = (ResultKind.RATE_LIMITED, ResultKind.TRANSIENT, ResultKind.AMBIGUOUS)


def _refused_at_the_door(result: BrokerResult) -> bool:
    """Refused for the account's token or source IP: each freezes the follower, and neither
    is an answer about the order itself."""
    return result.kind is ResultKind.AUTH_FAILED or (
        result.kind is ResultKind.REFUSED and refused_for_ip(result.error_code, result.message)
    )


class OrderActions:
    def __init__(
        self,
        clock: Clock,
        book: ReplicationBook,
        arming: Arming,
        instruments: InstrumentBook,
        writes: WriteBehind,
        notifier: Notifier,
        answers: AnswerHandling,
        resolver: Resolver,
        follower_feed: FollowerFeed,
        stats: Stats,
        send_line: SendLine,
        gc_pause: CollectionPause,
    ) -> None:
        self._clock = clock
        self._book = book
        self._arming = arming
        self._instruments = instruments
        self._writes = writes
        self._notifier = notifier
        self._answers = answers
        self._resolver = resolver
        self._follower_feed = follower_feed
        self._stats = stats
        self._send_line = send_line
        self._gc_pause = gc_pause  # no collection from a copy's decision to its send

    def _armed_now(self, f: FollowerRuntime, kind: IntentKind) -> bool:
        # Checked with no await between it and the broker call: the kill switch always wins.
        return kind is IntentKind.CANCEL or self._arming.armed_for(f)

    # --- place -----------------------------------------------------------------------------

    async def place(self, f: FollowerRuntime, leader: OrderSnapshot, decision: Place) -> None:
        with self._gc_pause.held() as sending:
            await self._place(f, leader, decision, sending)

    async def _place(
        self,
        f: FollowerRuntime,
        leader: OrderSnapshot,
        decision: Place,
        sending: Callable[[], None],
    ) -> None:
        params, notes = adapt_for_dhan_api(
            decision.params,
            leader,
            tick=self._instruments.tick_size(leader.segment, leader.security_id),
        )
        mirror = placed(
            self._book.mirror(f.name, leader.order_id),
            f.name,
            leader,
            decision.params,
            params.correlation_id,
            decision.generation,
            self._book.seen_mono(leader.order_id),
            self._clock.now(),
        )
        intent = Intent(f.name, leader.order_id, IntentKind.PLACE, params.correlation_id, params)
        self._book.set_mirror(mirror)
        stored = await self._record_intent(f, intent, mirror)
        if stored is None:  # not durable, so not sent: decide again once the store takes it
            self._book.forget(mirror)
            return
        await self._send_line.turn()  # no await from here to the send
        for note in notes:
            self._notifier.journal("intent", f"{f.name}: {note}", f.name, leader.order_id)
        if not self._armed_now(f, IntentKind.PLACE):
            self._writes.finish_intent(stored, IntentOutcome.REFUSED, "engine killed before send")
            self._book.set_mirror(killed_before_send(mirror))
            return
        if self._arming.frozen_for(f):  # frozen meanwhile: decided again once it clears
            self._writes.finish_intent(stored, IntentOutcome.REFUSED, "held: frozen")
            self._book.forget(mirror)
            return
        already = self._follower_feed.seen_at_dhan(f.name, params.correlation_id)
        if already:  # not sent by us, yet at Dhan: another engine; never a second copy
            self._writes.finish_intent(stored, IntentOutcome.REFUSED, f"already at Dhan: {already}")
            self._follower_feed.foreign_copy(f, params.correlation_id, already)
            return
        if f.circuit.state is CircuitState.OPEN:  # opened by another request meanwhile
            self._writes.finish_intent(stored, IntentOutcome.REFUSED, "held: circuit open")
            self._book.forget(mirror)
            self._answers.hold_for_circuit(f, leader.order_id)
            return
        copy_sent(
            self._clock,
            self._notifier,
            f.name,
            leader.order_id,
            "PLACE",
            params,
            notes,
            leader.trading_symbol,
        )
        # Above the exchange's freeze quantity: one copy made of several orders (slices).
        slicing = self._instruments.needs_slicing
        sliced = slicing(params.segment, params.security_id, params.quantity)
        send = f.broker.place_sliced if sliced else f.broker.place
        sending()
        result = await self._answers.call(send(params))
        answered = self._clock.monotonic()
        await self._send_line.clear()  # the other copies' sends go first
        self._answers.note(f, result)
        await self._placed(f, leader, mirror, stored, result, decision.catch_up, answered)

    async def _placed(
        self,
        f: FollowerRuntime,
        leader: OrderSnapshot,
        mirror: MirrorRecord,
        intent: Intent,
        result: BrokerResult,
        catch_up: bool,
        answered: float,
    ) -> None:
        current = self._book.mirror(f.name, leader.order_id) or mirror
        if result.kind is ResultKind.AMBIGUOUS:
            # Settled only by what Dhan shows (facts §8b L1): the order book or the stream.
            lookup = await self._resolver.lookup(f, mirror.correlation_id, complete=True)
            found = lookup.snapshot if lookup.existence is Existence.FOUND else None
            current = self._book.mirror(f.name, leader.order_id) or current
            if found is None and current.follower_order_id:
                # The follower's stream showed it meanwhile: it exists.
                result = BrokerResult(
                    ResultKind.OK, order_id=current.follower_order_id, status=current.broker_status
                )
            elif found is None:
                self._writes.finish_intent(intent, IntentOutcome.AMBIGUOUS, result.message)
                self._notifier.alert(
                    "PLACE_AMBIGUOUS",
                    Severity.WARNING,
                    f"{f.name}: no clear answer placing for leader {leader.order_id} "
                    f"({result.message}); nothing is sent again until the follower's order "
                    "book settles it",
                    f.name,
                    leader.order_id,
                )
                self._resolver.settle_later(f, leader.order_id, intent, lookup)
                return
            else:
                result = BrokerResult(
                    ResultKind.OK,
                    order_id=found.order_id,
                    status=found.status,
                    order_ids=tuple(o.order_id for o in lookup.orders),
                )
        if result.kind is ResultKind.OK:
            self._acknowledged(f, leader, mirror, current, intent, result, catch_up, answered)
            return
        if result.kind is ResultKind.RATE_LIMITED or result.kind is ResultKind.TRANSIENT:
            self._writes.finish_intent(intent, IntentOutcome.REFUSED, result.message)
            self._book.forget(current)
            self._answers.backoff(f, result, leader.order_id)
            return
        if _refused_at_the_door(result):
            # The token or the source IP, which has frozen this follower: never in Dhan's
            # order book. Like the orders the leader places while the follower is frozen, it
            # is copied once the freeze clears, if the leader's order is still open.
            self._writes.finish_intent(intent, IntentOutcome.REFUSED, result.message)
            self._book.forget(current)
            self._notifier.journal(
                "broker",
                f"{f.name}: {refused_by(result)} the copy of leader order {leader.order_id} "
                f"({result.error_code}); it is placed once the follower's freeze clears",
                f.name,
                leader.order_id,
            )
            self._answers.backoff(f, result, leader.order_id)
            return
        # REFUSED, NOT_FOUND: definitive.
        self._stats.failed += 1
        failed = refused(
            current, f"{result.error_code} {result.message}".strip(), self._clock.now()
        )
        self._book.set_mirror(failed)
        self._writes.finish_intent(intent, IntentOutcome.REFUSED, failed.reason, failed)
        self._notifier.alert(
            "FOLLOWER_REFUSED",
            Severity.ERROR,
            f"{f.name}: {refused_by(result)} the copy of leader order {leader.order_id}: "
            f"{failed.reason}",
            f.name,
            leader.order_id,
        )

    def _acknowledged(
        self,
        f: FollowerRuntime,
        leader: OrderSnapshot,
        mirror: MirrorRecord,
        current: MirrorRecord,
        intent: Intent,
        result: BrokerResult,
        catch_up: bool,
        answered: float,
    ) -> None:
        # Up to Dhan's answer (not to this bookkeeping, which may wait for other sends).
        latency = (
            (answered - mirror.leader_seen_mono) * 1000.0
            if mirror.leader_seen_mono is not None
            else None
        )
        if latency is not None and not catch_up:
            self._stats.latencies.append(latency)
        self._stats.replicated += 1
        f.limiter.note_success()
        live = acknowledged(current, result.order_id, result.status, latency, self._clock.now())
        if len(result.order_ids) > 1:
            live = with_slices(live, result.order_ids)
        self._book.set_mirror(live)
        self._writes.finish_intent(
            intent, IntentOutcome.ACKED, f"order {live.follower_order_id}", live
        )
        self._notifier.journal(
            "broker",
            f"{f.name} placed order {live.follower_order_id} "
            f"({live.params.quantity if live.params else 0} qty)"
            + (f" in {latency:.1f} ms" if latency is not None else "")
            + (" [catch-up of a missed fill]" if catch_up else ""),
            f.name,
            leader.order_id,
        )
        f.dispatcher.mark(leader.order_id)

    # --- modify ----------------------------------------------------------------------------

    async def modify(self, f: FollowerRuntime, leader: OrderSnapshot, decision: Modify) -> None:
        with self._gc_pause.held() as sending:
            await self._modify(f, leader, decision, sending)

    async def _modify(
        self,
        f: FollowerRuntime,
        leader: OrderSnapshot,
        decision: Modify,
        sending: Callable[[], None],
    ) -> None:
        mirror = self._current(f, leader)
        params, notes = adapt_for_dhan_api(
            decision.params,
            leader,
            tick=self._instruments.tick_size(leader.segment, leader.security_id),
        )
        intent = Intent(
            f.name,
            leader.order_id,
            IntentKind.MODIFY,
            mirror.correlation_id,
            params,
            follower_order_id=decision.follower_order_id,
        )
        stored = await self._record_intent(f, intent, None)
        if stored is None:
            return
        await self._send_line.turn()  # no await from here to the send
        if not self._armed_now(f, IntentKind.MODIFY):
            self._writes.finish_intent(stored, IntentOutcome.REFUSED, "engine killed before send")
            f.dispatcher.mark(leader.order_id, urgent=True)
            return
        if f.circuit.state is CircuitState.OPEN:  # opened by another request meanwhile
            self._writes.finish_intent(stored, IntentOutcome.REFUSED, "held: circuit open")
            self._answers.hold_for_circuit(f, leader.order_id)
            return
        copy_sent(
            self._clock,
            self._notifier,
            f.name,
            leader.order_id,
            "MODIFY",
            params,
            notes,
            leader.trading_symbol,
        )
        self._follower_feed.modifying(f.name, leader.order_id, True)  # not a hand edit
        sending()
        try:
            result, quantities = await self._modify_all(
                f, mirror, decision.follower_order_id, params
            )
            # An unclear answer is settled by what Dhan shows: the order already carrying what
            # we sent means the modification went through (and is not a hand edit).
            if (
                result.kind is ResultKind.AMBIGUOUS
                and not mirror.slices
                and await self._carries(f, decision.follower_order_id, params)
            ):
                result = BrokerResult(ResultKind.OK, order_id=decision.follower_order_id)
        except _KilledBetweenSlices as killed:
            self._killed_between_slices(f, leader, stored, killed)
            return
        finally:
            self._follower_feed.modifying(f.name, leader.order_id, False)
        await self._send_line.clear()  # the other copies' sends go first
        self._answers.note(f, result)
        current = self._current(f, leader)
        if result.kind is ResultKind.OK:
            f.limiter.note_success()
            updated = modified(current, decision.params, self._clock.now())
            if quantities:
                updated = slices_modified(updated, quantities)
            self._book.set_mirror(updated)
            self._writes.finish_intent(
                stored, IntentOutcome.ACKED, ",".join(decision.changed), updated
            )
            self._notifier.journal(
                "broker",
                f"{f.name} modified {decision.follower_order_id}: "
                + ", ".join(f"{c}={getattr(params, c)}" for c in decision.changed)
                + (f" ({'; '.join(notes)})" if notes else ""),
                f.name,
                leader.order_id,
            )
            f.dispatcher.mark(leader.order_id)
            return
        self._finish_unanswered(stored, result)
        # Refused or unclear: often because the order filled or was cancelled meanwhile.
        await self._follower_feed.refresh_order(f, current)
        if result.kind in _RETRYABLE:
            self._answers.backoff(f, result, leader.order_id)
            return
        if _refused_at_the_door(result):
            # Not a refusal of the change: the freeze's clearing decides the copy again (its
            # resync), and the change is made then.
            self._notifier.journal(
                "broker",
                f"{f.name}: {refused_by(result)} to modify order {decision.follower_order_id} "
                f"({result.error_code}); the change is made once the follower's freeze clears",
                f.name,
                leader.order_id,
            )
            return
        self._notifier.journal(
            "broker",
            f"{f.name} modify refused: {result.error_code} {result.message}",
            f.name,
            leader.order_id,
        )
        after = self._current(f, leader)
        if view_was_behind(current, after):
            f.dispatcher.mark(leader.order_id)
            return
        refusal = modification_refused(current, after, result.message, decision.params)
        if refusal is not None:
            self._book.set_mirror(refusal)
            self._notifier.alert(
                "MODIFY_REFUSED",
                Severity.ERROR,
                f"{f.name}: {refused_by(result)} to modify order {decision.follower_order_id}: "
                f"{result.message}; "
                + (
                    "it is cancelled and the rest placed as a new order"
                    if refusal_shrinks(refusal, decision.params)
                    else "it rests as it was, and the leader's cancel, its next change and "
                    "the kill switch still reach it"
                ),
                f.name,
                leader.order_id,
            )
            # The leader may have moved on while the request was out (a cancel above all).
            f.dispatcher.mark(leader.order_id)

    def _killed_between_slices(
        self,
        f: FollowerRuntime,
        leader: OrderSnapshot,
        stored: Intent,
        killed: _KilledBetweenSlices,
    ) -> None:
        """The kill wins over the rest of a sliced copy's modification: said, and left so."""
        self._writes.finish_intent(stored, IntentOutcome.REFUSED, str(killed))
        self._notifier.alert(
            "MODIFY_INTERRUPTED",
            Severity.WARNING,
            f"{f.name}: {killed} for the copy of leader order {leader.order_id}; the "
            "others are left as they were",
            f.name,
            leader.order_id,
        )
        f.dispatcher.mark(leader.order_id, urgent=True)

    # --- cancel and re-place ---------------------------------------------------------------

    async def cancel(self, f: FollowerRuntime, leader: OrderSnapshot, decision: Cancel) -> None:
        mirror = self._current(f, leader)
        intent = Intent(
            f.name,
            leader.order_id,
            IntentKind.CANCEL,
            mirror.correlation_id,
            None,
            follower_order_id=decision.follower_order_id,
        )
        # A cancel cannot double an order, so it goes even when its intent could not be
        # stored: the kill switch must win over a full or locked database.
        stored = await self._record_intent(f, intent, None) or intent
        result = await self._cancel_all(f, mirror, decision.follower_order_id)
        current = self._current(f, leader)
        if result.kind is ResultKind.OK:
            f.limiter.note_success()
            done = cancelled(current, decision.reason, self._clock.now())
            self._book.set_mirror(done)
            self._writes.finish_intent(stored, IntentOutcome.ACKED, decision.reason, done)
            self._notifier.journal(
                "broker",
                f"{f.name} cancelled {decision.follower_order_id}: {decision.reason}",
                f.name,
                leader.order_id,
            )
            if decision.replace:
                await self._replace(f, leader, done)
            return
        self._finish_unanswered(stored, result)
        await self._follower_feed.refresh_order(f, current)
        if result.kind in _RETRYABLE:
            self._answers.backoff(f, result, leader.order_id, urgent=True)
            return
        if self._current(f, leader).is_open_at_broker:
            self._notifier.alert(
                "CANCEL_REFUSED",
                Severity.ERROR,
                f"{f.name}: {refused_by(result)} to cancel order {decision.follower_order_id}: "
                f"{result.message}",
                f.name,
                leader.order_id,
            )

    async def _replace(self, f: FollowerRuntime, leader: OrderSnapshot, done: MirrorRecord) -> None:
        """After cancelling a copy whose modification budget is used: the rest is placed as a
        new order (next generation, new correlationId), counting what the old one filled."""
        # What the cancelled order finally filled must be known before the rest is sized:
        # a fill just before the cancel, missed here, would be bought twice.
        final = await self._read_order(f, done.follower_order_id)
        for attempt in range(REPLACE_READ_TRIES - 1):
            if final is not None:
                break
            await self._clock.sleep(0.5 * (attempt + 1))
            final = await self._read_order(f, done.follower_order_id)
        if final is None:
            self._notifier.alert(
                "REPLACE_HELD",
                Severity.ERROR,
                f"{f.name}: could not read what order {done.follower_order_id} filled "
                "before its cancel, so the rest is not re-placed (it could be bought twice); "
                "check that follower and place the rest by hand if wanted",
                f.name,
                leader.order_id,
            )
            return
        self._book.set_mirror(regenerated(done, final.filled_qty))
        f.dispatcher.mark(leader.order_id)

    async def _cancel_all(
        self, f: FollowerRuntime, mirror: MirrorRecord, order_id: str
    ) -> BrokerResult:
        """Cancel the copy: its one order, or every open slice of a sliced copy. OK when each
        is cancelled (a slice that already ended counts as done); else the first failure."""
        ids = [s.order_id for s in mirror.slices if s.is_open] or [order_id]
        failure: BrokerResult | None = None
        for i, slice_id in enumerate(ids):
            result = await self._slice_request(
                f, i, len(ids), IntentKind.CANCEL, partial(f.broker.cancel, slice_id)
            )
            self._answers.note(f, result)
            ended = (
                result.kind is ResultKind.REFUSED
                and bool(mirror.slices)
                and result.status is not None
                and result.status.is_terminal
            )
            if result.kind is not ResultKind.OK and not ended and failure is None:
                failure = result
        return failure or BrokerResult(ResultKind.OK, order_id=order_id)

    async def _modify_all(
        self, f: FollowerRuntime, mirror: MirrorRecord, order_id: str, params: OrderParams
    ) -> tuple[BrokerResult, dict[str, int]]:
        """Modify the copy: its one order, or each open slice of a sliced copy (the new total
        spread over them). The first failure, else OK; and the slices' new quantities."""
        if not mirror.slices:
            return await self._answers.call(f.broker.modify(order_id, params)), {}
        freeze = self._instruments.freeze_qty(params.segment, params.security_id)
        slices = await self._slice_sizes(f, mirror.slices)
        quantities = split_over_slices(slices, params.quantity, freeze or params.quantity)
        if quantities is None:
            refusal = BrokerResult(
                ResultKind.REFUSED,
                order_id=order_id,
                message=f"cannot spread {params.quantity} over the copy's slices",
            )
            return refusal, {}
        failure: BrokerResult | None = None
        for i, (slice_id, quantity) in enumerate(quantities.items()):
            result = await self._slice_request(
                f,
                i,
                len(quantities),
                IntentKind.MODIFY,
                partial(f.broker.modify, slice_id, replace(params, quantity=quantity)),
            )
            if result.kind is not ResultKind.OK and failure is None:
                failure = result
        return failure or BrokerResult(ResultKind.OK, order_id=order_id), quantities

    async def _slice_request(
        self,
        f: FollowerRuntime,
        i: int,
        slices: int,
        kind: IntentKind,
        send: Callable[[], Awaitable[BrokerResult]],
    ) -> BrokerResult:
        """The request for the ``i``-th slice of a copy. Each slice is an order of its own at
        Dhan, so its modify or cancel is one request of Dhan's 10 a second (twelve slices on
        one slot met DH-904): the first goes under the executor's slot, each after it waits
        for a slot of its own, and then looks at the kill switch again (a cancel still goes)."""
        if i == 0:
            return await self._answers.call(send())
        slot = f.limiter.try_acquire() or await f.limiter.acquire()
        if not self._armed_now(f, kind):
            f.limiter.abandon(slot)  # killed while this slice waited for its turn
            raise _KilledBetweenSlices(i, slices)
        try:
            return await self._answers.call(send())
        finally:
            f.limiter.complete(slot)

    # --- helpers ---------------------------------------------------------------------------

    def _current(self, f: FollowerRuntime, leader: OrderSnapshot) -> MirrorRecord:
        mirror = self._book.mirror(f.name, leader.order_id)
        assert mirror is not None, "a modify or cancel is only decided for an existing copy"
        return mirror

    def _finish_unanswered(self, intent: Intent, result: BrokerResult) -> None:
        outcome = (
            IntentOutcome.AMBIGUOUS
            if result.kind is ResultKind.AMBIGUOUS
            else IntentOutcome.REFUSED
        )
        self._writes.finish_intent(intent, outcome, result.message)

    async def _slice_sizes(
        self, f: FollowerRuntime, slices: tuple[SliceState, ...]
    ) -> tuple[SliceState, ...]:
        """The slices, each open one's size read back from Dhan when not yet known (a slice
        first seen before the placement's answer was taken for the whole copy)."""
        sized = []
        for s in slices:
            if s.is_open and s.quantity <= 0:
                at_dhan = await self._read_order(f, s.order_id)
                if at_dhan is not None:
                    s = replace(s, quantity=at_dhan.quantity)
            sized.append(s)
        return tuple(sized)

    async def _carries(self, f: FollowerRuntime, order_id: str, params: OrderParams) -> bool:
        """Does the order at Dhan carry these quantity, price and trigger?"""
        at_dhan = await self._read_order(f, order_id)
        return at_dhan is not None and carries(at_dhan, params)

    async def _read_order(self, f: FollowerRuntime, order_id: str) -> OrderSnapshot | None:
        try:
            return await f.broker.order_by_id(order_id)
        except BrokerError:
            return None

    async def _record_intent(
        self, f: FollowerRuntime, intent: Intent, mirror: MirrorRecord | None
    ) -> Intent | None:
        """The intent, durable; None when the store refused it (locked past its busy timeout,
        disk full): then nothing may be placed or modified, an alert says so and the order is
        looked at again a second later."""
        try:
            stored = await self._writes.require_store().record_intent(intent, mirror)
        except STORE_FAILURES as exc:  # not sent, and we say so
            log.exception("could not record an intent")
            self._notifier.alert(
                "STORE_WRITE_FAILED",
                Severity.CRITICAL,
                f"{intent.follower}: could not record the {intent.kind.value.lower()} intent "
                f"for leader order {intent.leader_order_id} ({redact(str(exc))})"
                + ("; cancelling anyway" if intent.kind is IntentKind.CANCEL else "; not sent"),
                intent.follower,
                intent.leader_order_id,
            )
            if intent.kind is not IntentKind.CANCEL:
                self._answers.mark_later(f, intent.leader_order_id, 1.0, False)
            return None
        self._notifier.journal(
            "intent",
            f"{intent.follower} {intent.kind.value} "
            + (
                f"{intent.params.quantity} @ {intent.params.price:g}"
                if intent.params
                else intent.follower_order_id
            ),
            intent.follower,
            intent.leader_order_id,
        )
        return stored


class _KilledBetweenSlices(Exception):
    """The kill switch was thrown while a sliced copy's modification waited between slices."""

    def __init__(self, sent: int, slices: int) -> None:
        super().__init__(f"engine killed after {sent} of {slices} slices were modified")
