"""The executor: one unit of a follower's work on one leader order.

decide -> (skip | circuit hold) -> rate limiter -> decide again -> risk -> broker action. The
dispatcher calls `work` whenever the order is marked; every action marks it again, so the
work runs until the decision is NoAction.
"""

from __future__ import annotations

from engine.clock import Clock
from engine.config import Settings
from engine.dispatch.circuit import CircuitState
from engine.domain import OrderSnapshot, Severity
from engine.events import LimiterChanged
from engine.instruments import InstrumentBook
from engine.live.accounts import FollowerRuntime
from engine.live.answers import AnswerHandling
from engine.live.arming import Arming
from engine.live.book import ReplicationBook
from engine.live.funds import FundsWatcher
from engine.live.hand_made import within_hand_rules
from engine.live.lagging import Lagging
from engine.live.notifier import Notifier
from engine.live.orders import OrderActions
from engine.live.positions import Positions
from engine.market_hours import MarketCalendar
from engine.records import MirrorRecord
from engine.replication.replicator import (
    Cancel,
    DecisionContext,
    Modify,
    NoAction,
    Place,
    Skip,
    SkipCode,
    decide,
    unless_refused_before,
)
from engine.replication.risk import RiskVerdict, check_pre_trade
from engine.replication.rules import RiskLimits
from engine.replication.targets import PositionLedger
from engine.transitions import is_repeat_skip, skipped

Decision = NoAction | Skip | Place | Modify | Cancel
_NO_LIMITS = RiskLimits()


class Executor:
    def __init__(
        self,
        settings: Settings,
        clock: Clock,
        book: ReplicationBook,
        arming: Arming,
        instruments: InstrumentBook,
        calendar: MarketCalendar,
        funds: FundsWatcher,
        notifier: Notifier,
        answers: AnswerHandling,
        orders: OrderActions,
        positions: Positions | None = None,
        lagging: Lagging | None = None,
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._book = book
        self._arming = arming
        self._instruments = instruments
        self._calendar = calendar
        self._funds = funds
        self._notifier = notifier
        self._answers = answers
        self._orders = orders
        self._positions = positions  # position-true sizing (None: each order sized alone)
        self._lagging = lagging  # what happens to a copy its filled leader left behind

    def context(
        self,
        f: FollowerRuntime,
        leader: OrderSnapshot,
        ledger: PositionLedger | None = None,
        draining: bool = False,
    ) -> DecisionContext:
        lot = self._instruments.lot_size(leader.segment, leader.security_id) or leader.lot_size
        market_open, reason = True, ""
        if self._settings.enforce_market_hours:
            market_open, reason = self._calendar.can_send(
                leader.segment, self._clock.now(), leader.amo
            )
        frozen = self._arming.frozen_for(f)  # automatic safety: nothing new, copies kept
        return DecisionContext(
            armed=self._arming.armed_for(f),
            cancel_when_killed=self._arming.cancel_when_killed,
            max_modifications=self._settings.max_modifications,
            lot_size=lot,
            is_option=self._instruments.is_option(leader.segment, leader.security_id),
            capital_ratio=self._funds.ratio(f),
            market_open=market_open,
            market_reason=reason,
            frozen=bool(frozen),
            frozen_reason=frozen,
            ledger=ledger,
            draining=draining,
        )

    def decide(self, f: FollowerRuntime, leader: OrderSnapshot) -> Decision:
        # A copy changed by hand at Dhan is never modified again (engine.live.hand_made).
        mirror = self._book.mirror(f.name, leader.order_id)
        decision = unless_refused_before(self._decide(f, leader, mirror), mirror)
        return within_hand_rules(mirror, decision)

    def _decide(
        self, f: FollowerRuntime, leader: OrderSnapshot, mirror: MirrorRecord | None
    ) -> Decision:
        if self._positions is None:
            ctx = self.context(f, leader)
        else:
            sync_rules = self._positions.sync_rules(f, leader)
            if sync_rules is not None:  # an order of a position sync: its step, 1:1
                return decide(leader, mirror, sync_rules, self.context(f, leader))
            ledger = self._positions.ledger_for(f, leader)
            if ledger is None and (mirror is None or not mirror.is_open_at_broker):
                why = self._positions.untracked_reason(f.name, leader.order_id)
                if why:
                    # History, beyond the catch-up bound, or an intraday position squared off
                    # with its day: nothing is placed for it, not even a filled copy's top-up
                    # (sized alone, by today's settings). A copy still open is followed.
                    return NoAction(why)
            ctx = self.context(f, leader, ledger, draining=not f.settings.enabled)
        if self._lagging is None:
            return decide(leader, mirror, f.rules, ctx)
        forced = self._lagging.decision(f, mirror) if ctx.armed else None
        if forced is not None:
            return forced
        return self._lagging.keep_chased(f, mirror, decide(leader, mirror, f.rules, ctx))

    async def work(self, f: FollowerRuntime, leader_id: str) -> None:
        leader = self._book.leader(leader_id)
        if leader is None:
            return
        if self._funds.is_stale(f):
            await self._funds.refresh([f])  # never size on stale capital
        decision = self.decide(f, leader)
        if isinstance(decision, NoAction):
            return
        if isinstance(decision, Skip):
            self._record_skip(f, leader, decision)
            return
        if not isinstance(decision, Cancel) and f.circuit.state is CircuitState.OPEN:
            self._answers.hold_for_circuit(f, leader_id)
            return
        slot = f.limiter.try_acquire()
        waited = slot is None
        if slot is None:
            slot = await f.limiter.acquire()
        trial = False  # this call holds the breaker's one half-open trial
        try:
            if waited:
                # Decide again: the state may have moved while we waited for a token. (A slot
                # granted at once means no await since the decision: it still stands.)
                leader = self._book.leader(leader_id) or leader
                decision = self.decide(f, leader)
            if isinstance(decision, (Place, Modify)):
                trial = f.circuit.state is CircuitState.HALF_OPEN
                if not f.circuit.allow():  # checked again: it may have opened while we waited
                    trial = False
                    self._answers.hold_for_circuit(f, leader_id)
                    return
                verdict = self._risk_verdict(f, leader, decision)
                if verdict is not None:
                    self._block_for_risk(f, leader, decision, verdict)
                    return
            if isinstance(decision, Place):
                await self._orders.place(f, leader, decision)
            elif isinstance(decision, Modify):
                await self._orders.modify(f, leader, decision)
            elif isinstance(decision, Cancel):
                await self._orders.cancel(f, leader, decision)
            elif isinstance(decision, Skip):
                self._record_skip(f, leader, decision)
        finally:
            if trial:
                # Answered (success or failure already recorded) or never sent: either way the
                # trial is over; left in flight, it would hold every later request forever.
                f.circuit.release_trial()
            f.limiter.complete(slot)
            self._notifier.publish(
                LimiterChanged(self._clock.now(), f.limiter.view(f.dispatcher.queue_depth))
            )

    def _risk_verdict(
        self, f: FollowerRuntime, leader: OrderSnapshot, decision: Place | Modify
    ) -> RiskVerdict | None:
        limits = f.rules.risk
        if limits == _NO_LIMITS:
            return None  # the common case: nothing to check, nothing to count
        open_orders = self._book.count_open(f.name) if limits.max_open_orders is not None else 0
        return check_pre_trade(
            limits,
            decision.params,
            lot_size=self._instruments.lot_size(leader.segment, leader.security_id) or 1,
            last_price=self._book.last_price(leader.segment, leader.security_id),
            open_orders=open_orders,
            orders_last_minute=f.orders_per_minute.count(self._clock.monotonic()),
            is_new_order=isinstance(decision, Place),
        )

    def _block_for_risk(
        self,
        f: FollowerRuntime,
        leader: OrderSnapshot,
        decision: Place | Modify,
        verdict: RiskVerdict,
    ) -> None:
        if isinstance(decision, Place):
            self._record_skip(f, leader, Skip(SkipCode.RISK, f"risk limit {verdict.message}"))
            return
        self._notifier.journal(
            "risk", f"{f.name} modify blocked: {verdict.message}", f.name, leader.order_id
        )
        self._notifier.alert(
            "RISK_BLOCKED",
            Severity.ERROR,
            f"{f.name}: modification of the copy of {leader.order_id} blocked by risk "
            f"limit {verdict.message}",
            f.name,
            leader.order_id,
        )

    def _record_skip(self, f: FollowerRuntime, leader: OrderSnapshot, skip: Skip) -> None:
        if is_repeat_skip(self._book.mirror(f.name, leader.order_id), skip.reason):
            return  # reconsidered and still skipped for the same reason: said already
        rec = skipped(f.name, leader, skip.reason, skip.code.value, self._clock.now())
        self._book.set_mirror(rec)
        self._notifier.journal("skip", f"{f.name} skipped: {skip.reason}", f.name, leader.order_id)
        self._notifier.alert(
            skip.code.value,
            Severity.WARNING,
            f"{f.name}: leader order {leader.order_id} not copied: {skip.reason}",
            f.name,
            leader.order_id,
        )
