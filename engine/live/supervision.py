"""Supervision: the kill switch (engine and per follower), the daily loss limit, the leader
going dark, Dhan's own kill switches, and what a refused token on a stream means."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from engine.clock import Clock
from engine.config import Settings
from engine.dhan.errors import BrokerError, ResultKind
from engine.dhan.order_stream import LOGIN_REFUSED
from engine.domain import ConnectionState, EngineState, Segment, Severity
from engine.events import ConnectionChanged, EngineStateChanged
from engine.live.accounts import LEADER, Accounts, FollowerRuntime
from engine.live.arming import Arming
from engine.live.book import ReplicationBook
from engine.live.notifier import Notifier
from engine.live.tasks import TaskSet
from engine.live.write_behind import STORE_FAILURES, WriteBehind
from engine.market_hours import MarketCalendar
from engine.replication.risk import check_loss_limit
from engine.secrets import redact

log = logging.getLogger(__name__)

DHAN_KILL_WAIT_S = 60


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

    # --- the engine's kill switch ----------------------------------------------------------

    async def kill(self, reason: str) -> None:
        if self._arming.state is EngineState.KILLED:
            return
        self._arming.state = EngineState.KILLED
        # Durable before anything else: a crash right after this line restarts KILLED.
        try:
            await self._writes.require_store().set_engine_state(EngineState.KILLED, reason)
        except STORE_FAILURES as exc:  # the kill still wins, in memory now
            log.exception("could not store the KILLED state")
            self._notifier.alert(
                "KILL_NOT_STORED",
                Severity.CRITICAL,
                f"Kill switch pulled but not stored ({redact(str(exc))}): a restart now would "
                "come back ARMED; open follower orders are being cancelled",
            )
        self._notifier.publish(EngineStateChanged(self._clock.now(), EngineState.KILLED, reason))
        self._notifier.alert("KILL_SWITCH", Severity.CRITICAL, f"Kill switch pulled: {reason}")
        for mirror in self._book.open_copies():
            f = self._accounts.followers.get(mirror.follower)
            if f is not None:
                f.dispatcher.mark(mirror.leader_order_id, urgent=True)
        if self._settings.activate_dhan_kill_switch:
            self._tasks.spawn(self._activate_dhan_kill_switches(), "dhan-kill-switch")

    async def resume(self) -> None:
        if self._arming.state is not EngineState.KILLED:
            return
        self._arming.state = EngineState.ARMED
        self._arming.cancel_when_killed = True
        self._leader_dark_since = None
        await self._writes.require_store().set_engine_state(EngineState.ARMED, "resumed")
        self._notifier.publish(EngineStateChanged(self._clock.now(), EngineState.ARMED, "resumed"))
        self._notifier.alert(
            "RESUMED", Severity.WARNING, "Engine resumed: copying new leader orders again"
        )

    def stop_follower(self, f: FollowerRuntime, reason: str) -> None:
        """Stop one follower: nothing new for it, its open copies cancelled first in line."""
        if f.killed_reason:
            return
        f.killed_reason = reason
        self._notifier.alert(
            "FOLLOWER_KILLED", Severity.CRITICAL, f"{f.name} stopped: {reason}", f.name
        )
        for mirror in self._book.open_copies(f.name):
            f.dispatcher.mark(mirror.leader_order_id, urgent=True)

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
                if self._clock.monotonic() - last_drift >= self._settings.drift_check_interval_s:
                    last_drift = self._clock.monotonic()
                    await self._check_drift()
            except Exception:  # unexpected: logged, and the supervision goes on
                log.exception("risk check failed")
            await self._clock.sleep(self._settings.risk_check_interval_s)

    async def _check_loss_limits(self) -> None:
        """Kill a follower (or the engine) whose day's P&L breached its loss limit."""
        for f in self._accounts.all():
            if f.rules.risk.daily_loss_limit is None or f.killed_reason:
                continue
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
            realized = sum(p.realized_pnl for p in positions)
            unrealized = sum(p.unrealized_pnl for p in positions)
            verdict = check_loss_limit(f.rules.risk, realized, unrealized)
            if verdict is None:
                continue
            reason = f"loss limit breached: {verdict.message}"
            if f.rules.risk.on_loss_breach == "kill_engine":
                await self.kill(f"{f.name} {reason}")
            else:
                self.stop_follower(f, reason)

    def _check_leader_dark(self) -> None:
        """The leader's socket dark too long while the market is open: we are copying blind."""
        limit = self._settings.leader_dark_kill_after_s
        stream = self._accounts.leader_stream
        if limit is None or stream is None or self._arming.state is not EngineState.ARMED:
            return
        if stream.state is ConnectionState.CONNECTED:
            self._leader_dark_since = None
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
            self._arming.cancel_when_killed = self._settings.leader_dark_cancel
            self._tasks.spawn(
                self.kill(
                    f"leader order stream dark for {now - self._leader_dark_since:.0f}s "
                    "while the market is open"
                ),
                "dark-kill",
            )

    # --- streams ---------------------------------------------------------------------------

    def on_connection(self, account: str, state: ConnectionState, detail: str) -> None:
        self._notifier.publish(ConnectionChanged(self._clock.now(), account, state, redact(detail)))
        if account == LEADER and detail == LOGIN_REFUSED and self._arming.armed:
            self._tasks.spawn(
                self.kill("leader token refused by Dhan (invalid or expired)"), "token-kill"
            )
        elif account != LEADER and detail == LOGIN_REFUSED and account in self._accounts.followers:
            self.stop_follower(
                self._accounts.followers[account],
                "Dhan refused the token on the order stream (invalid or expired)",
            )
        if state is ConnectionState.DISCONNECTED and account == LEADER:
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
