"""Supervision: the trader's kill switch, the automatic freezes (a refused token, the leader
going dark, the daily loss limit, an open circuit, a duplicate engine) and their clearing, and
Dhan's own kill switches.

KILLED is the trader's alone: every open copy is cancelled. A freeze opens nothing new and keeps
every resting copy (stop-losses first) following the leader's cancels and exits. A freeze whose
cause is gone (a token that works, the feed back, the circuit closed) clears itself after a
resync; the loss-limit, duplicate-engine and IP freezes only the trader clears.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import date

from engine.clock import Clock
from engine.config import Settings
from engine.dhan.errors import BrokerError, ResultKind
from engine.dhan.order_stream import LOGIN_REFUSED
from engine.dispatch.circuit import CircuitState
from engine.domain import ConnectionState, EngineState, FreezeCause, Segment, Severity
from engine.events import ConnectionChanged, EngineStateChanged, FreezeChanged
from engine.live.accounts import LEADER, Accounts, FollowerRuntime
from engine.live.arming import ENGINE_SCOPE, Arming
from engine.live.book import ReplicationBook
from engine.live.notifier import Notifier
from engine.live.tasks import TaskSet
from engine.live.write_behind import STORE_FAILURES, WriteBehind
from engine.market_hours import MarketCalendar
from engine.records import MirrorRecord
from engine.replication.risk import check_loss_limit
from engine.secrets import redact
from engine.transitions import detached, hand_flags_restored
from engine.views import RecoveryReport

log = logging.getLogger(__name__)

DHAN_KILL_WAIT_S = 60
# The kill's cancels wait this long at most for KILLED to be stored. A database another process
# holds keeps a write for its whole busy timeout (5 s), more behind a write already waiting: the
# cancels must not wait that long. The store goes on trying meanwhile.
KILL_STORE_WAIT_S = 1.0
KILL_STORE_RETRY_S = 2.0
TOKEN_PROBE_EVERY_S = 3.0  # a read to see if a refused token works again, at most this often

Resync = Callable[[str], Awaitable[RecoveryReport]]

_CLEARED_BY_THE_TRADER = "only when you clear it (copytrade unfreeze or resume)"
_CLEARS_WHEN = {
    FreezeCause.TOKEN_REFUSED: "once the token works again",
    FreezeCause.LEADER_DARK: "once the leader's order feed is back",
    FreezeCause.CIRCUIT_OPEN: "once Dhan answers again",
    FreezeCause.LOSS_LIMIT: "only when you clear it (copytrade unfreeze or resume); the loss "
    "limit is then not checked again today",
}


def freeze_scope_label(account: str) -> str:
    return "Engine" if account == ENGINE_SCOPE else account


class Supervisor:
    def __init__(
        self,
        settings: Settings,
        clock: Clock,
        accounts: Accounts,
        book: ReplicationBook,
        arming: Arming,
        calendar: MarketCalendar,
        writes: WriteBehind,
        notifier: Notifier,
        tasks: TaskSet,
        check_drift: Callable[[], Awaitable[list[str]]],
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._accounts = accounts
        self._book = book
        self._arming = arming
        self._calendar = calendar
        self._writes = writes
        self._notifier = notifier
        self._tasks = tasks
        self._check_drift = check_drift
        self._leader_dark_since: float | None = None
        self._leader_seen_connected = 0  # consecutive checks the leader's feed was up
        self._resync: Resync | None = None
        self._storing: set[asyncio.Task[None]] = set()  # freezes being written
        self._kills = 0  # the trader's kills so far: a kill's store stops trying once resumed
        self._kill_unstored_told = False
        self._last_probe: dict[str, float] = {}  # account -> monotonic time of its last probe
        # The trader cleared a loss-limit freeze: that limit is not checked again that day
        # (else the same loss would freeze it again at the next check).
        self._loss_cleared_on: dict[str, date] = {}
        self._requeue: Callable[[str], None] | None = None
        arming.announce = self._announce_soon
        arming.remember_hand_made = self._remember_hand_made

    def wire_recovery(self, resync: Resync, requeue: Callable[[str], None]) -> None:
        """The resync run before a freeze clears, and the re-queue of every leader order for
        an account ("" = all) once it has (the recovery is built after the supervisor)."""
        self._resync = resync
        self._requeue = requeue

    # --- the trader's kill switch ----------------------------------------------------------

    async def kill(self, reason: str) -> None:
        if self._arming.state is EngineState.KILLED:
            return
        self._arming.state = EngineState.KILLED
        self._arming.cancel_when_killed = True
        self._kills += 1
        kill = self._kills
        self._kill_unstored_told = False
        # Durable before anything else when the database answers: a crash right after this
        # restarts KILLED. When it does not answer at once, the cancels go first.
        first_try = asyncio.Event()
        self._tasks.spawn(self._store_kill(reason, kill, first_try), "store-kill")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(first_try.wait(), KILL_STORE_WAIT_S)
        if self._kills != kill or self._arming.state is not EngineState.KILLED:
            log.warning("resumed before the kill took effect: nothing cancelled")
            return  # (else the screen would say KILLED while the engine copies again)
        if not first_try.is_set():
            self._tell_kill_not_stored(
                f"the database has not taken it within {KILL_STORE_WAIT_S:g} s, still trying"
            )
        self._notifier.publish(EngineStateChanged(self._clock.now(), EngineState.KILLED, reason))
        self._notifier.alert("KILL_SWITCH", Severity.CRITICAL, f"Kill switch pulled: {reason}")
        for mirror in self._book.open_copies():
            f = self._accounts.followers.get(mirror.follower)
            if f is not None:
                f.dispatcher.mark(mirror.leader_order_id, urgent=True)
        if self._settings.activate_dhan_kill_switch:
            self._tasks.spawn(self._activate_dhan_kill_switches(), "dhan-kill-switch")

    async def _store_kill(self, reason: str, kill: int, first_try: asyncio.Event) -> None:
        """KILLED into the store, tried again while this kill stands and the database refuses
        it (locked, full); the trader is told once that it is not stored, and when it is."""
        started = self._clock.monotonic()
        while self._arming.state is EngineState.KILLED and self._kills == kill:
            try:
                await self._writes.require_store().set_engine_state(EngineState.KILLED, reason)
            except STORE_FAILURES as exc:  # the kill still wins, in memory now
                if not self._kill_unstored_told:  # (one line, not one every retry)
                    log.exception("could not store the KILLED state")
                self._tell_kill_not_stored(f"{redact(str(exc))}; trying again")
                first_try.set()
                await asyncio.sleep(KILL_STORE_RETRY_S)
                continue
            if self._kill_unstored_told:
                self._notifier.alert(
                    "KILL_STORED",
                    Severity.INFO,
                    "Kill switch stored after "
                    f"{self._clock.monotonic() - started:.0f} s: a restart comes back KILLED",
                )
            first_try.set()
            return

    def _tell_kill_not_stored(self, why: str) -> None:
        if self._kill_unstored_told:  # once a kill
            return
        self._kill_unstored_told = True
        self._notifier.alert(
            "KILL_NOT_STORED",
            Severity.CRITICAL,
            f"Kill switch pulled but not stored ({why}): a restart now would come back ARMED; "
            "open follower orders are being cancelled",
        )

    async def resume(self) -> bool:
        """Back to ARMED after the trader's kill; False when the engine was not killed."""
        if self._arming.state is not EngineState.KILLED:
            return False
        self._arming.state = EngineState.ARMED
        self._arming.cancel_when_killed = True
        self._leader_dark_since = None
        await self._writes.require_store().set_engine_state(EngineState.ARMED, "resumed")
        shown = self._arming.shown_state
        frozen = self._arming.frozen_reason(ENGINE_SCOPE)
        self._notifier.publish(EngineStateChanged(self._clock.now(), shown, frozen or "resumed"))
        self._notifier.alert(
            "RESUMED",
            Severity.WARNING,
            "Engine resumed: copying new leader orders again"
            + (f" once the freeze clears ({frozen})" if frozen else ""),
        )
        return True

    # --- freezes -----------------------------------------------------------------------------

    async def freeze(
        self, account: str, cause: FreezeCause, reason: str, *, alert: bool = True
    ) -> None:
        """Freeze the engine (account "") or one follower: nothing new is opened, every copy
        at Dhan stays. Durable: a restart comes back frozen."""
        reason = redact(reason)
        if self._arming.add(account, cause, reason):
            await self._announce(account, cause, reason, alert=alert)

    def freeze_soon(self, account: str, cause: FreezeCause, reason: str) -> None:
        """Freeze now (in memory: the next decision sees it), stored and told in a task."""
        self._arming.freeze_now(account, cause, redact(reason))

    def _announce_soon(self, account: str, cause: FreezeCause, reason: str) -> None:
        """Told at once; stored in a task of its own (not the engine's task set, which a
        shutdown cancels: the store finishes every write already begun before it closes)."""
        self._tell_freeze(account, cause, reason, alert=True)
        task = asyncio.get_running_loop().create_task(self._store_freeze(account, cause, reason))
        self._storing.add(task)
        task.add_done_callback(self._storing.discard)

    async def _announce(
        self, account: str, cause: FreezeCause, reason: str, *, alert: bool = True
    ) -> None:
        await self._store_freeze(account, cause, reason)
        self._tell_freeze(account, cause, reason, alert=alert)

    async def _store_freeze(self, account: str, cause: FreezeCause, reason: str) -> None:
        try:
            await self._writes.require_store().set_freeze(account, cause.value, reason)
        except STORE_FAILURES as exc:
            log.exception("could not store a freeze")
            self._notifier.alert(
                "FREEZE_NOT_STORED",
                Severity.CRITICAL,
                f"{freeze_scope_label(account)} frozen but not stored ({redact(str(exc))}): "
                "a restart now would not come back frozen",
                account or None,
            )

    def _tell_freeze(self, account: str, cause: FreezeCause, reason: str, *, alert: bool) -> None:
        self._publish_freeze(account, reason)
        log.warning("%s frozen (%s): %s", freeze_scope_label(account), cause.value, reason)
        if not alert:
            return
        self._notifier.alert(
            "ENGINE_FROZEN" if account == ENGINE_SCOPE else "FOLLOWER_FROZEN",
            Severity.CRITICAL,
            f"{freeze_scope_label(account)} frozen: {reason}. Nothing new is copied"
            f"{'' if account == ENGINE_SCOPE else ' to ' + account}; every copy already "
            "at Dhan stays and keeps following the leader's cancels and exits. "
            f"Clears {_CLEARS_WHEN.get(cause, _CLEARED_BY_THE_TRADER)}",
            account or None,
        )

    # --- copies managed by hand ---------------------------------------------------------------

    async def detach(self, follower: str, leader_order_id: str) -> str:
        """The trader takes a copy over: the engine no longer touches it, not even to follow
        the leader's cancel. One line saying what happened."""
        mirror = self._book.mirror(follower, leader_order_id)
        if mirror is None:
            return f"{follower} has no copy of leader order {leader_order_id}"
        if mirror.detached:
            return f"{follower}'s copy of {leader_order_id} is already detached"
        rec = detached(mirror, self._clock.now())
        self._book.set_mirror(rec)
        await self._store_hand_made(rec)
        line = (
            f"{follower}'s copy of leader order {leader_order_id} "
            f"({mirror.follower_order_id or 'not at Dhan'}) detached: the engine leaves it alone"
        )
        self._notifier.alert("COPY_DETACHED", Severity.INFO, line, follower, leader_order_id)
        return line

    def _remember_hand_made(self, rec: MirrorRecord) -> None:
        self._tasks.spawn(self._store_hand_made(rec), "hand-made")

    async def _store_hand_made(self, rec: MirrorRecord) -> None:
        try:
            await self._writes.require_store().set_hand_managed(
                rec.follower, rec.leader_order_id, detached=rec.detached, reason=rec.reason
            )
        except STORE_FAILURES:
            log.exception("could not store a copy managed by hand")

    async def restore(self) -> None:
        """The freezes a previous run left (a restart comes back frozen), shown and alerted;
        the copies managed by hand stay so."""
        store = self._writes.require_store()
        for follower, leader_id, is_detached, reason in await store.hand_managed():
            mirror = self._book.mirror(follower, leader_id)
            if mirror is not None:
                self._book.restore_mirror(hand_flags_restored(mirror, is_detached, reason))
        for account, cause, reason in await store.freezes():
            try:
                self._arming.add(account, FreezeCause(cause), reason)
            except ValueError:  # a cause from a newer program: kept frozen all the same
                self._arming.add(account, FreezeCause.DUPLICATE_ENGINE, reason)
        for account in list(self._arming.freezes):
            self._publish_freeze(account, self._arming.frozen_reason(account))
            self._notifier.alert(
                "STILL_FROZEN",
                Severity.CRITICAL,
                f"{freeze_scope_label(account)} restarted frozen: "
                f"{self._arming.frozen_reason(account)}",
                account or None,
            )

    def stop_follower(self, f: FollowerRuntime, reason: str) -> None:
        """A follower's token refused on an order request: that follower is frozen (its
        resting copies, stop-losses first, stay at Dhan)."""
        self.freeze_soon(f.name, FreezeCause.TOKEN_REFUSED, reason)

    async def clear_freeze(self, account: str | None, *, only_trader_cleared: bool = False) -> str:
        """The trader clears the freezes of `account` ("" the engine's, None every one),
        after a resync; one line saying what happened ("" when nothing was frozen).
        `only_trader_cleared` leaves the freezes whose cause is still measurable (a refused
        token, a dark feed, an open circuit): they clear themselves once it is gone."""
        lifted = [
            (scope, cause)
            for scope, causes in self._arming.freezes.items()
            if account is None or scope == account
            for cause in causes
            if not (only_trader_cleared and cause.clears_itself)
        ]
        if not lifted:
            return ""
        report = await self._run_resync("unfreeze")
        if not report.read_ok:
            return (
                "not cleared: the resync could not read the leader's order book; "
                "try again in a moment"
            )
        for scope, cause in lifted:
            if cause is FreezeCause.LOSS_LIMIT:
                # Before the lift, which awaits its write: a loss check running meanwhile
                # would otherwise find the follower unfrozen, the same loss, and freeze it
                # again under the trader's hands.
                self._loss_cleared_on[scope] = self._clock.now().date()
            await self._lift(scope, cause)
        cleared = ", ".join(f"{freeze_scope_label(s)} {c.value}" for s, c in lifted)
        line = f"freeze cleared after a resync ({cleared})"
        still = "; ".join(
            f"{freeze_scope_label(a)}: {'; '.join(r.values())}"
            for a, r in self._arming.freezes.items()
        )
        line += f"; still frozen: {still}" if still else ": copying new leader orders again"
        self._notifier.alert("FREEZE_CLEARED", Severity.WARNING, f"By the trader: {line}")
        for scope in {s for s, _ in lifted}:
            self._requeue_for(scope)
        return line

    async def _clear_gone_causes(self) -> None:
        """Every freeze whose cause is gone clears itself, after a resync, with a report."""
        gone: list[tuple[str, FreezeCause]] = []
        for scope, causes in list(self._arming.freezes.items()):
            for cause in list(causes):
                if cause.clears_itself and await self._cause_gone(scope, cause):
                    gone.append((scope, cause))
        if not gone:
            return
        report = await self._run_resync("freeze cleared")
        if not report.read_ok:
            return  # cleared only after a resync that happened: tried again next round
        for scope, cause in gone:
            await self._lift(scope, cause)
            still = self._arming.frozen_reason(scope)
            self._notifier.alert(
                "FREEZE_CLEARED",
                Severity.WARNING,
                f"{freeze_scope_label(scope)}: {cause.value.lower().replace('_', ' ')} is over; "
                f"resync done ({report.leader_orders_checked} leader orders checked, "
                f"{report.actions_taken} actions, {len(report.discrepancies)} discrepancies)"
                + (f"; still frozen: {still}" if still else "; copying again"),
                scope or None,
            )
            self._requeue_for(scope)

    async def _cause_gone(self, scope: str, cause: FreezeCause) -> bool:
        if cause is FreezeCause.LEADER_DARK:
            return self._leader_seen_connected >= 2
        if cause is FreezeCause.CIRCUIT_OPEN:
            f = self._accounts.followers.get(scope)
            return f is None or f.circuit.state is not CircuitState.OPEN
        if cause is FreezeCause.TOKEN_REFUSED:
            # A read answered is the proof the token works (the socket says CONNECTED before
            # Dhan has judged the login, so it proves nothing).
            follower = self._accounts.followers.get(scope)
            broker = (
                self._accounts.leader_broker
                if scope == ENGINE_SCOPE
                else (follower.broker if follower is not None else None)
            )
            if broker is None:
                return True
            now = self._clock.monotonic()
            if now - self._last_probe.get(scope, -1e9) < TOKEN_PROBE_EVERY_S:
                return False
            self._last_probe[scope] = now
            try:
                await broker.order_book()
            except BrokerError:
                return False
            return True
        return False

    async def _run_resync(self, trigger: str) -> RecoveryReport:
        if self._resync is None:
            return RecoveryReport(trigger, 0, 0, (), 0.0)
        return await self._resync(trigger)

    async def _lift(self, scope: str, cause: FreezeCause) -> None:
        if not self._arming.remove(scope, cause):
            return
        try:
            await self._writes.require_store().clear_freeze(scope, cause.value)
        except STORE_FAILURES:
            log.exception("could not store a cleared freeze")
        log.info("%s: freeze %s cleared", freeze_scope_label(scope), cause.value)
        self._publish_freeze(scope, f"{cause.value} cleared")

    def _publish_freeze(self, scope: str, reason: str) -> None:
        now = self._clock.now()
        causes = tuple(c.value for c in self._arming.causes(scope))
        self._notifier.publish(FreezeChanged(now, scope, causes, reason))
        if scope == ENGINE_SCOPE and self._arming.state is EngineState.ARMED:
            shown = self._arming.shown_state
            why = self._arming.frozen_reason(ENGINE_SCOPE) or reason
            self._notifier.publish(EngineStateChanged(now, shown, why))

    def _requeue_for(self, scope: str) -> None:
        if self._requeue is not None:
            self._requeue(scope)

    async def _activate_dhan_kill_switches(self) -> None:
        for _ in range(DHAN_KILL_WAIT_S):
            if self._arming.state is not EngineState.KILLED:
                return
            if not self._book.open_copies():
                break
            await self._clock.sleep(1.0)
        for f in self._accounts.all():
            result = await f.broker.kill_switch(True)
            ok = result.kind is ResultKind.OK
            self._notifier.alert(
                "DHAN_KILL_SWITCH",
                Severity.WARNING if ok else Severity.ERROR,
                f"{f.name}: Dhan kill switch "
                + ("activated" if ok else f"not activated: {result.message}"),
                f.name,
            )

    # --- the risk loop ---------------------------------------------------------------------

    async def run(self) -> None:
        last_drift = self._clock.monotonic()
        while True:
            try:
                await self._check_loss_limits()
                self._check_leader_dark()
                await self._check_circuits()
                await self._clear_gone_causes()
                if self._clock.monotonic() - last_drift >= self._settings.drift_check_interval_s:
                    last_drift = self._clock.monotonic()
                    await self._check_drift()
            except Exception:  # unexpected: logged, and the supervision goes on
                log.exception("risk check failed")
            await self._clock.sleep(self._settings.risk_check_interval_s)

    async def _check_loss_limits(self) -> None:
        """Freeze a follower (or the engine) whose day's P&L breached its loss limit."""
        for f in self._accounts.all():
            if f.rules.risk.daily_loss_limit is None:
                continue
            whole_engine = f.rules.risk.on_loss_breach == "kill_engine"
            scope = ENGINE_SCOPE if whole_engine else f.name
            if self._arming.has(scope, FreezeCause.LOSS_LIMIT):
                continue
            if self._loss_cleared_on.get(scope) == self._clock.now().date():
                continue  # the trader cleared it today: his call
            try:
                positions = await f.broker.positions()
            except BrokerError as exc:
                self._notifier.alert(
                    "POSITIONS_UNAVAILABLE",
                    Severity.WARNING,
                    f"{f.name}: positions unavailable for the loss limit: {redact(str(exc))}",
                    f.name,
                )
                continue
            if self._loss_cleared_on.get(scope) == self._clock.now().date():
                continue  # cleared by the trader while the positions were read
            realized = sum(p.realized_pnl for p in positions)
            unrealized = sum(p.unrealized_pnl for p in positions)
            verdict = check_loss_limit(f.rules.risk, realized, unrealized)
            if verdict is None:
                continue
            reason = f"{f.name} loss limit breached: {verdict.message}"
            await self.freeze(scope, FreezeCause.LOSS_LIMIT, reason)

    def _check_leader_dark(self) -> None:
        """The leader's socket dark too long while the market is open: we are copying blind,
        so nothing new is opened (the resting copies stay) until it is back."""
        stream = self._accounts.leader_stream
        if stream is None:
            return
        if stream.state is ConnectionState.CONNECTED:
            self._leader_dark_since = None
            self._leader_seen_connected += 1
            return
        self._leader_seen_connected = 0
        limit = self._settings.leader_dark_kill_after_s
        if limit is None or self._arming.has(ENGINE_SCOPE, FreezeCause.LEADER_DARK):
            return
        now = self._clock.monotonic()
        if self._leader_dark_since is None:
            self._leader_dark_since = now
            return
        market_open = (
            not self._settings.enforce_market_hours
            or self._calendar.can_send(Segment.NSE_FNO, self._clock.now(), False)[0]
        )
        if market_open and now - self._leader_dark_since >= limit:
            self.freeze_soon(
                ENGINE_SCOPE,
                FreezeCause.LEADER_DARK,
                f"leader order feed dark for {now - self._leader_dark_since:.0f}s "
                "while the market is open",
            )

    async def _check_circuits(self) -> None:
        """A follower whose circuit is open is frozen until it half-opens (the circuit's own
        alert has said why, so no second alert)."""
        for f in self._accounts.all():
            if f.circuit.state is CircuitState.OPEN and not self._arming.has(
                f.name, FreezeCause.CIRCUIT_OPEN
            ):
                await self.freeze(
                    f.name,
                    FreezeCause.CIRCUIT_OPEN,
                    f"{f.circuit.failures} broker failures in a row (circuit open)",
                    alert=False,
                )

    # --- streams ---------------------------------------------------------------------------

    def on_connection(self, account: str, state: ConnectionState, detail: str) -> None:
        self._notifier.publish(ConnectionChanged(self._clock.now(), account, state, redact(detail)))
        # An account with a token keeper is the keeper's to judge: it mints or takes a new
        # token when it can, and freezes the account only when it cannot.
        if detail == LOGIN_REFUSED and account not in self._accounts.keepers:
            if account == LEADER:
                self.freeze_soon(
                    ENGINE_SCOPE,
                    FreezeCause.TOKEN_REFUSED,
                    "Dhan refused the leader's token on the order feed (invalid or expired)",
                )
            elif account in self._accounts.followers:
                self.freeze_soon(
                    account,
                    FreezeCause.TOKEN_REFUSED,
                    f"Dhan refused {account}'s token on its order feed (invalid or expired)",
                )
        if state is ConnectionState.DISCONNECTED and account == LEADER and detail != "stopped":
            self._notifier.alert(
                "LEADER_DISCONNECTED",
                Severity.WARNING,
                f"Leader order stream disconnected: {redact(detail)}; "
                "missed orders will be recovered on reconnect",
            )
        elif state is ConnectionState.STALLED:
            self._notifier.alert(
                "STREAM_STALLED",
                Severity.WARNING,
                f"{account} order stream silent past the watchdog; reconnecting",
            )
