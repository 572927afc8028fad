"""The replication engine: wires the leader stream, the replicator, the dispatchers, the
brokers and the store, owns the engine state (ARMED / KILLED) and publishes typed events.

Flow: leader snapshot (stream or order book) -> `_ingest_leader` -> every follower's
dispatcher marks the order dirty -> a worker calls `_work` -> `decide` -> intent written
durably -> broker call -> result recorded -> the key is marked again, so the next decision
sees the new state (and is usually NoAction). Everything runs on one asyncio loop; broker
calls run in each account's own threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import statistics
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from engine.alerts import AlertCenter
from engine.clock import Clock, SystemClock
from engine.config import FollowerSettings, Settings
from engine.dhan.broker import DhanBroker, Funds, Position
from engine.dhan.correlation import is_engine_correlation_id
from engine.dhan.errors import BrokerResult, ResultKind
from engine.dhan.order_stream import LOGIN_REFUSED, OrderStream
from engine.dispatch.circuit import CircuitBreaker, CircuitState
from engine.dispatch.dispatcher import AccountDispatcher
from engine.dispatch.rate_limiter import RateLimiter
from engine.domain import (
    ConnectionState,
    EngineState,
    MirrorState,
    OrderParams,
    OrderSnapshot,
    OrderStatus,
    Segment,
    Severity,
    Side,
    SnapshotSource,
)
from engine.events import (
    AlertRaised,
    ConnectionChanged,
    EngineEvent,
    EngineStateChanged,
    EventBus,
    FollowerOrderChanged,
    LeaderOrderSeen,
    LimiterChanged,
    RecoveryCompleted,
    StatsUpdated,
)
from engine.instruments import InstrumentBook
from engine.market_hours import MarketCalendar
from engine.records import Intent, IntentKind, IntentOutcome, MirrorRecord
from engine.replication.api_rules import adapt_for_dhan_api
from engine.replication.replicator import (
    Cancel,
    DecisionContext,
    FollowerRules,
    Modify,
    NoAction,
    Place,
    Skip,
    SkipCode,
    decide,
)
from engine.replication.risk import (
    OrdersPerMinute,
    RiskVerdict,
    check_loss_limit,
    check_pre_trade,
)
from engine.replication.rules import RiskLimits
from engine.replication.sizing import CapitalRatioCache, size_order
from engine.secrets import redact
from engine.store import Store, WriteBatch
from engine.views import (
    EngineStats,
    FollowerOrderView,
    KillPreview,
    LimiterView,
    RecoveryReport,
    TimelineEntry,
)

log = logging.getLogger(__name__)

LEADER = "leader"
FLUSH_DELAY_S = 0.02
STORE_RETRY_S = 1.0
_NO_LIMITS = RiskLimits()
CONFIRM_DELAY_S = 0.15
REPLACE_READ_TRIES = 5


class Broker(Protocol):
    async def place(self, params: OrderParams) -> BrokerResult: ...
    async def modify(
        self, order_id: str, params: OrderParams, leg_name: str = ""
    ) -> BrokerResult: ...
    async def cancel(self, order_id: str) -> BrokerResult: ...
    async def order_book(self) -> list[OrderSnapshot]: ...
    async def order_by_id(self, order_id: str) -> OrderSnapshot | None: ...
    async def order_by_correlation(self, correlation_id: str) -> OrderSnapshot | None: ...
    async def positions(self) -> list[Position]: ...
    async def fund_limits(self) -> Funds: ...
    async def kill_switch(self, activate: bool) -> BrokerResult: ...
    async def close(self) -> None: ...


BrokerFactory = Callable[[str, str, str, str, float], Broker]
"""(account name, client id, access token, REST URL, timeout) -> broker."""


def default_broker_factory(
    account: str, client_id: str, token: str, rest_url: str, timeout_s: float
) -> Broker:
    return DhanBroker(client_id, token, rest_url, timeout_s=timeout_s)


@dataclass
class FollowerRuntime:
    settings: FollowerSettings
    rules: FollowerRules
    broker: Broker
    limiter: RateLimiter
    dispatcher: AccountDispatcher
    circuit: CircuitBreaker
    orders_per_minute: OrdersPerMinute = field(default_factory=OrdersPerMinute)
    stream: OrderStream | None = None
    follower_keys: dict[str, tuple[int, int, float]] = field(default_factory=dict)
    killed_reason: str = ""  # this follower alone is stopped (loss limit, token, ...)

    @property
    def name(self) -> str:
        return self.settings.name


class Engine:
    """Implements `engine.api.EngineHandle`."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock | None = None,
        broker_factory: BrokerFactory = default_broker_factory,
        instruments: InstrumentBook | None = None,
        follower_streams: bool = True,
    ) -> None:
        self.settings = settings
        self.clock: Clock = clock or SystemClock()
        self._broker_factory = broker_factory
        self._bus = EventBus()
        self._alerts = AlertCenter(self.clock, redact=redact)
        self._calendar = MarketCalendar(override_path=settings.holiday_override_file)
        if instruments is None and settings.instruments_file is not None:
            instruments = InstrumentBook.from_scrip_master(settings.instruments_file)
        self._instruments = instruments or InstrumentBook()
        self._use_follower_streams = follower_streams
        self._state = EngineState.STARTING
        self._store: Store | None = None
        self._leader_broker: Broker | None = None
        self._leader_stream: OrderStream | None = None
        self._followers: dict[str, FollowerRuntime] = {}
        self._leader: dict[str, OrderSnapshot] = {}
        self._leader_seen_mono: dict[str, float] = {}
        self._mirrors: dict[tuple[str, str], MirrorRecord] = {}
        self._by_cid: dict[str, tuple[str, str]] = {}
        self._capital = CapitalRatioCache()
        self._latencies: deque[float] = deque(maxlen=5000)
        self._slippages: deque[float] = deque(maxlen=5000)
        self._replicated = 0
        self._failed = 0
        self._calls_in_flight = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._stop = asyncio.Event()
        self._started = asyncio.Event()
        self._recovery_lock = asyncio.Lock()
        self._confirming: set[str] = set()
        self._kill_cancels = True
        self._leader_dark_since: float | None = None
        self._last_price: dict[tuple[Segment, str], float] = {}
        self._first_connect = True
        self._last_leader_event_at: datetime | None = None
        self._dirty_leaders: set[str] = set()
        self._dirty_mirrors: set[tuple[str, str]] = set()
        self._batch = WriteBatch()
        self._flush_wanted = asyncio.Event()

    # --- EngineHandle -------------------------------------------------------------------

    @property
    def state(self) -> EngineState:
        return self._state

    def subscribe(self, listener: Callable[[EngineEvent], None]) -> Callable[[], None]:
        return self._bus.subscribe(listener)

    def configure_endpoints(self, rest_url: str, ws_url: str) -> None:
        """Point the engine at another Dhan (the demo's in-process simulator) before run()."""
        dhan = self.settings.dhan.model_copy(update={"rest_url": rest_url, "order_ws_url": ws_url})
        self.settings = self.settings.model_copy(update={"dhan": dhan})

    async def run(self) -> None:
        try:
            await self._start()
            await self._stop.wait()
        finally:
            await self._shutdown()

    async def wait_started(self) -> None:
        await self._started.wait()

    async def stop(self) -> None:
        self._stop.set()

    async def kill(self, reason: str) -> None:
        if self._state is EngineState.KILLED:
            return
        self._state = EngineState.KILLED
        # Durable before anything else: a crash right after this line restarts KILLED.
        try:
            await self._require_store().set_engine_state(EngineState.KILLED, reason)
        except Exception as exc:  # the kill still wins: in memory now, cancels below
            log.exception("could not store the KILLED state")
            self._alert(
                "KILL_NOT_STORED",
                Severity.CRITICAL,
                f"Kill switch pulled but not stored ({redact(str(exc))}): a restart now would "
                "come back ARMED; open follower orders are being cancelled",
            )
        self._publish(EngineStateChanged(self.clock.now(), EngineState.KILLED, reason))
        self._alert("KILL_SWITCH", Severity.CRITICAL, f"Kill switch pulled: {reason}")
        for (follower, leader_id), mirror in self._mirrors.items():
            if mirror.is_open_at_broker and follower in self._followers:
                self._followers[follower].dispatcher.mark(leader_id, urgent=True)
        if self.settings.activate_dhan_kill_switch:
            self._spawn(self._activate_dhan_kill_switches(), "dhan-kill-switch")

    async def resume(self) -> None:
        if self._state is not EngineState.KILLED:
            return
        self._state = EngineState.ARMED
        self._kill_cancels = True
        self._leader_dark_since = None
        await self._require_store().set_engine_state(EngineState.ARMED, "resumed")
        self._publish(EngineStateChanged(self.clock.now(), EngineState.ARMED, "resumed"))
        self._alert("RESUMED", Severity.WARNING, "Engine resumed: copying new leader orders again")

    async def resync(self) -> RecoveryReport:
        return await self.recover("manual")

    def kill_preview(self) -> KillPreview:
        open_mirrors = [m for m in self._mirrors.values() if m.is_open_at_broker]
        return KillPreview(
            open_follower_orders=len(open_mirrors),
            accounts=len({m.follower for m in open_mirrors}),
            queued_actions=sum(f.dispatcher.queue_depth for f in self._followers.values()),
        )

    def in_flight(self) -> int:
        queued = sum(f.dispatcher.queue_depth for f in self._followers.values())
        placing = sum(1 for m in self._mirrors.values() if m.state is MirrorState.PLACING)
        return self._calls_in_flight + queued + placing

    async def timeline(self, leader_order_id: str) -> list[TimelineEntry]:
        if self._store is None:
            return []
        await self._flush()  # include what is still buffered
        return await self._store.timeline(leader_order_id)

    def follower_views(self) -> list[FollowerOrderView]:
        return [m.to_view() for m in self._mirrors.values()]

    def limiter_views(self) -> list[LimiterView]:
        return [f.limiter.view(f.dispatcher.queue_depth) for f in self._followers.values()]

    def market_label(self) -> str:
        now = self.clock.now()
        if not self.settings.enforce_market_hours:
            return "market hours not enforced (paper)"
        return self._calendar.session(Segment.NSE_FNO, now).label

    def stats(self) -> EngineStats:
        lat = sorted(self._latencies)
        p50 = statistics.median(lat) if lat else None
        p99 = lat[min(len(lat) - 1, round(0.99 * (len(lat) - 1)))] if lat else None
        return EngineStats(
            replicated=self._replicated,
            failed=self._failed,
            latency_p50_ms=p50,
            latency_p99_ms=p99,
            mean_slippage=statistics.fmean(self._slippages) if self._slippages else None,
            disconnects=self._leader_stream.reconnects if self._leader_stream else 0,
            last_leader_event_at=self._last_leader_event_at,
        )

    # --- test and bench helpers ----------------------------------------------------------

    def leader_orders(self) -> list[OrderSnapshot]:
        return list(self._leader.values())

    def mirror(self, follower: str, leader_order_id: str) -> MirrorRecord | None:
        return self._mirrors.get((follower, leader_order_id))

    async def settle(self, timeout: float = 10.0) -> None:
        """Wait until every dispatcher is idle and every write is stored."""

        async def _all_idle() -> None:
            while True:
                for f in self._followers.values():
                    await f.dispatcher.wait_idle()
                await self._flush()
                if all(
                    f.dispatcher.queue_depth == 0 and f.dispatcher.busy == 0
                    for f in self._followers.values()
                ):
                    return

        await asyncio.wait_for(_all_idle(), timeout)

    # --- start and stop ------------------------------------------------------------------

    async def _start(self) -> None:
        s = self.settings
        self._store = await Store.open(s.db_path, clock=self.clock)
        persisted = await self._store.get_engine_state()
        self._state = (
            persisted[0] if persisted and persisted[0] is EngineState.KILLED else EngineState.ARMED
        )
        if persisted is None or persisted[0] is not self._state:
            await self._store.set_engine_state(self._state, "started")
        for snap in await self._store.leader_orders():
            self._leader[snap.order_id] = snap
            self._instruments.learn_lot_size(snap.segment, snap.security_id, snap.lot_size)
        for rec in await self._store.mirrors():
            rec = rec.with_changes(leader_seen_mono=None)  # a monotonic time of a past process
            self._mirrors[(rec.follower, rec.leader_order_id)] = rec
            self._by_cid[rec.correlation_id] = (rec.follower, rec.leader_order_id)
        self._leader_broker = self._broker_factory(
            LEADER,
            s.leader.client_id,
            s.leader.access_token.get_secret_value(),
            s.dhan.rest_url,
            s.dhan.timeout_s,
        )
        for fs in s.followers:
            if fs.enabled:
                self._followers[fs.name] = self._build_follower(fs)
        # What the previous process sent still counts against Dhan's hourly/daily budgets.
        now = self.clock.now()
        sent = await self._store.intent_times(now - timedelta(days=1))
        for name, times in sent.items():
            if name in self._followers:
                ages = [(now - t).total_seconds() for t in times]
                self._followers[name].limiter.preload(ages)
        self._publish(EngineStateChanged(self.clock.now(), self._state, "started"))
        # A restart mid-session: show what the store remembers before anything new arrives.
        now = self.clock.now()
        for snap in sorted(self._leader.values(), key=lambda s: s.created_at or now):
            self._publish(LeaderOrderSeen(now, snap, is_new=False))
        for rec in self._mirrors.values():
            self._publish(FollowerOrderChanged(now, rec.to_view()))
        if self._state is EngineState.KILLED:
            self._alert(
                "STILL_KILLED",
                Severity.CRITICAL,
                "Engine restarted KILLED: nothing is copied until you resume",
            )
        await self._resolve_unfinished_intents()
        for f in self._followers.values():
            f.dispatcher.start()
            if self._use_follower_streams:
                f.stream = self._build_stream(
                    f.name,
                    f.settings.client_id,
                    f.settings.access_token.get_secret_value(),
                    self._on_follower_snapshot_for(f.name),
                    None,
                )
                self._spawn(f.stream.run(), f"stream-{f.name}")
        self._leader_stream = self._build_stream(
            LEADER,
            s.leader.client_id,
            s.leader.access_token.get_secret_value(),
            self._on_leader_snapshot,
            self._on_leader_connected,
        )
        self._spawn(self._leader_stream.run(), "stream-leader")
        self._spawn(self._periodic_reconcile(), "reconcile")
        self._spawn(self._refresh_funds_loop(), "funds")
        self._spawn(self._publish_stats_loop(), "stats")
        self._spawn(self._flusher(), "store-flusher")
        self._spawn(self._risk_loop(), "risk")
        self._started.set()

    def _build_follower(self, fs: FollowerSettings) -> FollowerRuntime:
        lim = self.settings.limiter
        limiter = RateLimiter(
            fs.name,
            self.clock,
            windows=(
                ("second", 1.0, lim.per_second),
                ("minute", 60.0, lim.per_minute),
                ("hour", 3600.0, lim.per_hour),
                ("day", 86400.0, lim.per_day),
            ),
            headroom=lim.headroom,
        )
        rules = FollowerRules(fs.name, fs.sizing, fs.bounds, fs.filters, fs.risk)
        broker = self._broker_factory(
            fs.name,
            fs.client_id,
            fs.access_token.get_secret_value(),
            self.settings.dhan.rest_url,
            self.settings.dhan.timeout_s,
        )
        circuit = CircuitBreaker(
            self.clock,
            threshold=self.settings.circuit_threshold,
            cooldown_s=self.settings.circuit_cooldown_s,
        )
        runtime: FollowerRuntime

        async def work(key: str) -> None:
            await self._work(runtime, key)

        runtime = FollowerRuntime(
            fs, rules, broker, limiter, AccountDispatcher(fs.name, work, concurrency=4), circuit
        )
        return runtime

    def _build_stream(
        self,
        account: str,
        client_id: str,
        token: str,
        on_snapshot: Callable[[OrderSnapshot], Awaitable[None]],
        on_connected: Callable[[], Awaitable[None]] | None,
    ) -> OrderStream:
        return OrderStream(
            account=account,
            client_id=client_id,
            access_token=token,
            url=self.settings.dhan.order_ws_url,
            on_snapshot=on_snapshot,
            on_state=lambda state, detail: self._on_connection(account, state, detail),
            on_connected=on_connected,
            on_malformed=lambda raw, err: self._on_malformed(account, raw, err),
            clock=self.clock,
            idle_timeout_s=self.settings.leader_idle_timeout_s,
        )

    async def _shutdown(self) -> None:
        if self._leader_stream:
            await self._leader_stream.stop()
        for f in self._followers.values():
            if f.stream:
                await f.stream.stop()
            await f.dispatcher.stop()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._flush(), 5.0)
        for f in self._followers.values():
            await f.broker.close()
        if self._leader_broker:
            await self._leader_broker.close()
        if self._store:
            await self._store.close()
        self._state = EngineState.STOPPED
        self._publish(EngineStateChanged(self.clock.now(), EngineState.STOPPED, "stopped"))

    def _spawn(self, coro: Awaitable[None], name: str) -> None:
        async def guarded() -> None:
            try:
                await coro
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.exception("engine task %s failed", name)
                self._alert(
                    "ENGINE_TASK_FAILED",
                    Severity.CRITICAL,
                    f"Internal task {name} failed: {redact(str(exc))}",
                )

        task = asyncio.create_task(guarded(), name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- persistence -----------------------------------------------------------------------
    # Two paths. Durable writes (an intent before its broker call, the engine state) go to the
    # store at once and are awaited. Everything else is marked dirty or buffered and stored by
    # one flusher in a single transaction a few milliseconds later, writing the *current*
    # in-memory state of each leader order and mirror: a late flush is never stale, and a
    # burst of a hundred orders costs a few commits instead of hundreds, so intents never
    # queue behind journal lines.

    def _persist_leader(self, order_id: str) -> None:
        self._dirty_leaders.add(order_id)
        self._flush_soon()

    def _persist_mirror(self, key: tuple[str, str]) -> None:
        self._dirty_mirrors.add(key)
        self._flush_soon()

    def _flush_soon(self) -> None:
        self._flush_wanted.set()

    def _take_batch(self) -> WriteBatch:
        batch, self._batch = self._batch, WriteBatch()
        batch.leaders = [self._leader[i] for i in self._dirty_leaders if i in self._leader]
        for key in self._dirty_mirrors:
            rec = self._mirrors.get(key)
            if rec is None:
                batch.deleted_mirrors.append(key)
            else:
                batch.mirrors.append(rec)
        self._dirty_leaders.clear()
        self._dirty_mirrors.clear()
        return batch

    async def _flush(self) -> bool:
        """Store what is buffered; False when the store refused it (it is kept for later)."""
        batch = self._take_batch()
        if not batch or self._store is None:
            return True
        try:
            await self._store.write_batch(batch)
        except Exception as exc:
            log.exception("store write failed")
            self._requeue(batch)
            self._alert(
                "STORE_WRITE_FAILED",
                Severity.CRITICAL,
                f"Could not write to the database: {redact(str(exc))}; retrying",
            )
            return False
        return True

    def _requeue(self, batch: WriteBatch) -> None:
        """A batch the store refused (locked, disk full) goes back in front of what came
        since; leader orders and mirrors are re-marked, so their *current* state is written."""
        self._dirty_leaders.update(s.order_id for s in batch.leaders)
        self._dirty_mirrors.update((m.follower, m.leader_order_id) for m in batch.mirrors)
        self._dirty_mirrors.update(batch.deleted_mirrors)
        newer = self._batch
        newer.completions[:0] = batch.completions
        newer.journal[:0] = batch.journal
        newer.alerts[:0] = batch.alerts
        self._flush_soon()

    async def _flusher(self) -> None:
        while True:
            await self._flush_wanted.wait()
            await asyncio.sleep(FLUSH_DELAY_S)  # gather a batch; hot work runs first
            self._flush_wanted.clear()
            # A stop must not cut a batch in half.
            if not await asyncio.shield(self._flush()):
                await asyncio.sleep(STORE_RETRY_S)  # the store is refusing: do not spin

    def _require_store(self) -> Store:
        assert self._store is not None, "engine not started"
        return self._store

    def _journal(self, kind: str, text: str, follower: str | None, leader_id: str | None) -> None:
        self._batch.journal.append((self.clock.now(), kind, follower, leader_id, redact(text)))
        self._flush_soon()

    # --- leader side ---------------------------------------------------------------------

    async def _on_leader_snapshot(self, snap: OrderSnapshot) -> None:
        self._ingest_leader(snap)

    def _ingest_leader(self, snap: OrderSnapshot) -> bool:
        """Take a leader snapshot from any source; True when it changed what we know.

        A snapshot behind what we know is refused; on a tie the later arrival wins, which is
        why a tie between socket alerts is settled by a fresh read from Dhan's REST API."""
        if snap.client_id and snap.client_id != self.settings.leader.client_id:
            return False
        if is_engine_correlation_id(snap.correlation_id):
            return False  # an order this engine placed (the leader is also a follower somewhere)
        self._last_leader_event_at = self.clock.now()
        known = self._leader.get(snap.order_id)
        if known is not None:
            if snap.progress_key() < known.progress_key():
                self._journal(
                    "leader",
                    f"stale snapshot ignored ({snap.status.value}, filled {snap.filled_qty})",
                    None,
                    snap.order_id,
                )
                return False
            tie = snap.progress_key() == known.progress_key()
            snap = _merge_snapshot(known, snap)
            if snap == known.with_changes(source=snap.source):
                return False
            if tie and snap.source is SnapshotSource.STREAM:
                # Two different states with the same progress (edits within one second of
                # Dhan's timestamps): arrival order may be wrong, so ask Dhan which is current.
                self._confirm_leader_order(snap.order_id)
        self._instruments.learn_lot_size(snap.segment, snap.security_id, snap.lot_size)
        self._note_price(snap)
        self._leader[snap.order_id] = snap
        self._leader_seen_mono.setdefault(snap.order_id, self.clock.monotonic())
        self._persist_leader(snap.order_id)
        self._journal("leader", _describe_snapshot(snap), None, snap.order_id)
        self._publish(LeaderOrderSeen(self.clock.now(), snap, is_new=known is None))
        for f in self._followers.values():
            f.dispatcher.mark(snap.order_id, urgent=self._is_urgent(f, snap))
        return True

    def _note_price(self, snap: OrderSnapshot) -> None:
        """The last known market price of an instrument, for the fat-finger price band."""
        price = snap.ref_ltp or (snap.avg_price if snap.filled_qty else 0.0)
        if price > 0:
            self._last_price[(snap.segment, snap.security_id)] = price

    def _confirm_leader_order(self, order_id: str) -> None:
        if order_id in self._confirming:
            return
        self._confirming.add(order_id)

        async def confirm() -> None:
            try:
                await self.clock.sleep(CONFIRM_DELAY_S)  # let alerts already in flight land
                assert self._leader_broker is not None
                snap = await self._leader_broker.order_by_id(order_id)
            finally:
                self._confirming.discard(order_id)
            if snap is not None:
                self._ingest_leader(snap)

        self._spawn(confirm(), f"confirm-{order_id}")

    def _is_urgent(self, f: FollowerRuntime, snap: OrderSnapshot) -> bool:
        mirror = self._mirrors.get((f.name, snap.order_id))
        return bool(mirror and mirror.is_open_at_broker and snap.status.is_terminal)

    async def _on_leader_connected(self) -> None:
        trigger = "startup" if self._first_connect else "reconnect"
        self._first_connect = False
        await self.recover(trigger)

    async def recover(self, trigger: str) -> RecoveryReport:
        """Missed-order recovery: read the books and run every order through the replicator."""
        async with self._recovery_lock:
            started = time.monotonic()
            discrepancies: list[str] = []
            assert self._leader_broker is not None
            try:
                book = await self._leader_broker.order_book()
            except Exception as exc:
                msg = (
                    f"Recovery ({trigger}) could not read the leader's order book: "
                    f"{redact(str(exc))}"
                )
                self._alert("RECOVERY_FAILED", Severity.ERROR, msg)
                report = RecoveryReport(trigger, 0, 0, (msg,), time.monotonic() - started)
                self._publish(RecoveryCompleted(self.clock.now(), report))
                return report
            # Follower books first, so the decisions below see the followers as they are now.
            await self._refresh_follower_books(discrepancies)
            for snap in book:
                known = self._leader.get(snap.order_id)
                if known is None and not is_engine_correlation_id(snap.correlation_id):
                    discrepancies.append(
                        f"leader order {snap.order_id} was missed ({snap.status.value})"
                    )
                elif known is not None and known.progress_key() < snap.progress_key():
                    discrepancies.append(
                        f"leader order {snap.order_id} changed while away: "
                        f"{known.status.value} -> {snap.status.value}"
                    )
                self._ingest_leader(snap)
            # Counted with no await since the ingest: no worker has acted on them yet. Only
            # orders that need work are queued (a day's book times every follower would
            # otherwise flood the dispatchers on every periodic reconcile).
            actions = 0
            for f in self._followers.values():
                for leader_id, leader in self._leader.items():
                    decision = self._decide(f, leader)
                    if not isinstance(decision, NoAction):
                        actions += 1
                        f.dispatcher.mark(leader_id, urgent=isinstance(decision, Cancel))
            if trigger == "manual":
                discrepancies.extend(await self.check_drift())
            report = RecoveryReport(
                trigger, len(book), actions, tuple(discrepancies), time.monotonic() - started
            )
            if discrepancies or trigger in ("manual", "reconnect"):
                self._alert(
                    "RECOVERY",
                    Severity.INFO if not discrepancies else Severity.WARNING,
                    f"Recovery ({trigger}): {len(book)} leader orders checked, "
                    f"{actions} actions, {len(discrepancies)} discrepancies",
                )
            self._publish(RecoveryCompleted(self.clock.now(), report))
            return report

    async def _refresh_follower_books(self, discrepancies: list[str]) -> None:
        async def one(f: FollowerRuntime) -> None:
            try:
                book = await f.broker.order_book()
            except Exception as exc:
                discrepancies.append(f"{f.name}: order book unreadable ({redact(str(exc))})")
                return
            for snap in book:
                self._on_follower_snapshot(f, snap)

        await asyncio.gather(*(one(f) for f in self._followers.values()))

    async def _periodic_reconcile(self) -> None:
        while True:
            await self.clock.sleep(self.settings.reconcile_interval_s)
            await self.recover("periodic")

    # --- follower side -------------------------------------------------------------------

    def _on_follower_snapshot_for(self, name: str) -> Callable[[OrderSnapshot], Awaitable[None]]:
        async def handler(snap: OrderSnapshot) -> None:
            f = self._followers.get(name)
            if f is not None:
                self._on_follower_snapshot(f, snap)

        return handler

    def _on_follower_snapshot(self, f: FollowerRuntime, snap: OrderSnapshot) -> None:
        key = self._by_cid.get(snap.correlation_id)
        if key is None or key[0] != f.name:
            return  # the follower's own manual order, or another engine's
        mirror = self._mirrors.get(key)
        if (
            mirror is None
            or mirror.correlation_id != snap.correlation_id
            or mirror.state is MirrorState.REPLACING
        ):
            return  # an earlier generation's order (cancelled to re-place, or filled)
        known = f.follower_keys.get(snap.order_id)
        if known is not None and snap.progress_key() < known:
            return
        f.follower_keys[snap.order_id] = snap.progress_key()
        self._note_price(snap)
        leader = self._leader.get(mirror.leader_order_id)
        state = mirror.state
        if mirror.state is MirrorState.LIVE and snap.status.is_terminal:
            state = MirrorState.DONE
        slippage = mirror.slippage
        if snap.filled_qty and leader is not None and leader.avg_price and snap.avg_price:
            diff = snap.avg_price - leader.avg_price
            slippage = diff if leader.side is Side.BUY else -diff
        updated = mirror.with_changes(
            follower_order_id=mirror.follower_order_id or snap.order_id,
            broker_status=snap.status,
            filled_qty=snap.filled_qty,
            avg_price=snap.avg_price,
            slippage=slippage,
            state=state,
            reason=snap.reason if snap.status is OrderStatus.REJECTED else mirror.reason,
            updated_at=self.clock.now(),
        )
        if updated == mirror:
            return
        if snap.filled_qty > mirror.filled_qty:
            self._journal(
                "fill",
                f"{f.name} filled {snap.filled_qty}/{snap.quantity} "
                f"avg {snap.avg_price:.2f}"
                + (f" slippage {slippage:+.2f}" if slippage is not None else ""),
                f.name,
                mirror.leader_order_id,
            )
            if slippage is not None and snap.status is OrderStatus.TRADED:
                self._slippages.append(slippage)
        if snap.status is not mirror.broker_status:
            self._journal(
                "broker",
                f"{f.name} order {snap.order_id} {snap.status.value}"
                + (f": {snap.reason}" if snap.reason else ""),
                f.name,
                mirror.leader_order_id,
            )
            if snap.status is OrderStatus.REJECTED:
                self._failed += 1
                self._alert(
                    "FOLLOWER_REJECTED",
                    Severity.ERROR,
                    f"{f.name}: order for leader {mirror.leader_order_id} rejected by Dhan: "
                    f"{snap.reason or 'no reason given'}",
                    f.name,
                    mirror.leader_order_id,
                )
            elif (
                snap.status is OrderStatus.CANCELLED
                and leader is not None
                and leader.is_open
                and self._state is EngineState.ARMED
            ):
                self._alert(
                    "FOLLOWER_CANCELLED_OUTSIDE",
                    Severity.WARNING,
                    f"{f.name}: order {snap.order_id} was cancelled outside the engine while "
                    f"the leader's is still open; not re-placed",
                    f.name,
                    mirror.leader_order_id,
                )
        self._set_mirror(updated)
        f.dispatcher.mark(mirror.leader_order_id)

    # --- the work: decide and act ----------------------------------------------------------

    def _context(self, f: FollowerRuntime, leader: OrderSnapshot) -> DecisionContext:
        lot = self._instruments.lot_size(leader.segment, leader.security_id) or leader.lot_size
        market_open, reason = True, ""
        if self.settings.enforce_market_hours:
            market_open, reason = self._calendar.can_send(
                leader.segment, self.clock.now(), leader.amo
            )
        return DecisionContext(
            armed=self._state is EngineState.ARMED and not f.killed_reason,
            cancel_when_killed=self._kill_cancels,
            max_modifications=self.settings.max_modifications,
            lot_size=lot,
            is_option=self._instruments.is_option(leader.segment, leader.security_id),
            capital_ratio=self._capital.ratio(f.name, self.clock.monotonic(), _refresh_s(f)),
            market_open=market_open,
            market_reason=reason,
        )

    def _decide(
        self, f: FollowerRuntime, leader: OrderSnapshot
    ) -> NoAction | Skip | Place | Modify | Cancel:
        return decide(
            leader, self._mirrors.get((f.name, leader.order_id)), f.rules, self._context(f, leader)
        )

    async def _work(self, f: FollowerRuntime, leader_id: str) -> None:
        leader = self._leader.get(leader_id)
        if leader is None:
            return
        if f.rules.sizing.kind == "capital_ratio" and self._capital.is_stale(
            f.name, self.clock.monotonic(), _refresh_s(f)
        ):
            await self._refresh_funds([f])  # never size on stale capital
        decision = self._decide(f, leader)
        if isinstance(decision, NoAction):
            return
        if isinstance(decision, Skip):
            self._record_skip(f, leader, decision)
            return
        if not isinstance(decision, Cancel) and f.circuit.state is CircuitState.OPEN:
            self._hold_for_circuit(f, leader_id)
            return
        slot = await f.limiter.acquire()
        trial = False  # this call holds the breaker's one half-open trial
        try:
            # Decide again: the state may have moved while we waited for a token.
            leader = self._leader[leader_id]
            decision = self._decide(f, leader)
            if isinstance(decision, (Place, Modify)):
                trial = f.circuit.state is CircuitState.HALF_OPEN
                if not f.circuit.allow():  # checked again: it may have opened while we waited
                    trial = False
                    self._hold_for_circuit(f, leader_id)
                    return
                verdict = self._risk_verdict(f, leader, decision)
                if verdict is not None:
                    self._block_for_risk(f, leader, decision, verdict)
                    return
            if isinstance(decision, Place):
                await self._place(f, leader, decision)
            elif isinstance(decision, Modify):
                await self._modify(f, leader, decision)
            elif isinstance(decision, Cancel):
                await self._cancel(f, leader, decision)
            elif isinstance(decision, Skip):
                self._record_skip(f, leader, decision)
        finally:
            if trial:
                # Answered (success or failure already recorded) or never sent: either way the
                # trial is over; left in flight, it would hold every later request forever.
                f.circuit.release_trial()
            f.limiter.complete(slot)
            self._publish(
                LimiterChanged(self.clock.now(), f.limiter.view(f.dispatcher.queue_depth))
            )

    def _hold_for_circuit(self, f: FollowerRuntime, leader_id: str) -> None:
        """The account keeps failing: hold this work until the breaker half-opens."""
        self._spawn(self._mark_later(f, leader_id, f.circuit.retry_in(), False), "circuit")

    def _risk_verdict(
        self, f: FollowerRuntime, leader: OrderSnapshot, decision: Place | Modify
    ) -> RiskVerdict | None:
        limits = f.rules.risk
        if limits == _NO_LIMITS:
            return None  # the common case: nothing to check, nothing to count
        now = self.clock.monotonic()
        open_orders = 0
        if limits.max_open_orders is not None:
            open_orders = sum(
                1 for m in self._mirrors.values() if m.follower == f.name and m.is_open_at_broker
            )
        return check_pre_trade(
            f.rules.risk,
            decision.params,
            lot_size=self._instruments.lot_size(leader.segment, leader.security_id) or 1,
            last_price=self._last_price.get((leader.segment, leader.security_id)),
            open_orders=open_orders,
            orders_last_minute=f.orders_per_minute.count(now),
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
        self._journal(
            "risk", f"{f.name} modify blocked: {verdict.message}", f.name, leader.order_id
        )
        self._alert(
            "RISK_BLOCKED",
            Severity.ERROR,
            f"{f.name}: modification of the copy of {leader.order_id} blocked by risk "
            f"limit {verdict.message}",
            f.name,
            leader.order_id,
        )

    def _record_skip(self, f: FollowerRuntime, leader: OrderSnapshot, skip: Skip) -> None:
        earlier = self._mirrors.get((f.name, leader.order_id))
        if (
            earlier is not None
            and earlier.state is MirrorState.SKIPPED
            and earlier.reason == skip.reason
        ):
            return  # reconsidered and still skipped for the same reason: said already
        rec = MirrorRecord(
            follower=f.name,
            leader_order_id=leader.order_id,
            correlation_id=f"skip-{leader.order_id}",
            state=MirrorState.SKIPPED,
            reason=skip.reason,
            skip_code=skip.code.value,
            symbol=leader.trading_symbol,
            updated_at=self.clock.now(),
        )
        self._set_mirror(rec)
        self._journal("skip", f"{f.name} skipped: {skip.reason}", f.name, leader.order_id)
        self._alert(
            skip.code.value,
            Severity.WARNING,
            f"{f.name}: leader order {leader.order_id} not copied: {skip.reason}",
            f.name,
            leader.order_id,
        )

    def _armed_now(self, f: FollowerRuntime, kind: IntentKind) -> bool:
        # Checked with no await between it and the broker call: the kill switch always wins.
        if kind is IntentKind.CANCEL:
            return True
        return self._state is EngineState.ARMED and not f.killed_reason

    async def _place(self, f: FollowerRuntime, leader: OrderSnapshot, decision: Place) -> None:
        params, notes = adapt_for_dhan_api(
            decision.params,
            leader,
            tick=self._instruments.tick_size(leader.segment, leader.security_id),
        )
        mirror = MirrorRecord(
            follower=f.name,
            leader_order_id=leader.order_id,
            correlation_id=params.correlation_id,
            state=MirrorState.PLACING,
            params=decision.params,
            symbol=leader.trading_symbol,
            leader_seen_mono=self._leader_seen_mono.get(leader.order_id),
            updated_at=self.clock.now(),
        )
        earlier = self._mirrors.get((f.name, leader.order_id))
        if decision.generation > 0 and earlier is not None:
            # The next generation of a copy (re-placed, or topped up after it filled): what
            # the earlier orders filled stays counted.
            mirror = earlier.with_changes(
                correlation_id=params.correlation_id,
                state=MirrorState.PLACING,
                generation=decision.generation,
                params=decision.params,
                prior_filled=earlier.total_filled,
                filled_qty=0,
                avg_price=0.0,
                modifications=0,
                follower_order_id="",
                broker_status=None,
                leader_seen_mono=None,
                latency_ms=None,
                updated_at=self.clock.now(),
            )
        intent = Intent(f.name, leader.order_id, IntentKind.PLACE, params.correlation_id, params)
        self._set_mirror(mirror)
        stored = await self._record_intent(intent, mirror)
        if stored is None:  # not durable, so not sent: decide again once the store takes it
            self._forget_mirror(mirror)
            return
        for note in notes:
            self._journal("intent", f"{f.name}: {note}", f.name, leader.order_id)
        if not self._armed_now(f, IntentKind.PLACE):
            await self._finish_intent(stored, IntentOutcome.REFUSED, "engine killed before send")
            self._set_mirror(
                mirror.with_changes(
                    state=MirrorState.SKIPPED,
                    reason="engine killed before the order was sent",
                    skip_code=SkipCode.KILLED.value,
                )
            )
            return
        if f.circuit.state is CircuitState.OPEN:  # opened by another request meanwhile
            await self._finish_intent(stored, IntentOutcome.REFUSED, "held: circuit open")
            self._forget_mirror(mirror)
            self._hold_for_circuit(f, leader.order_id)
            return
        result = await self._call(f.broker.place(params))
        self._note_result(f, result)
        await self._handle_place_result(f, leader, mirror, stored, result, decision.catch_up)

    async def _handle_place_result(
        self,
        f: FollowerRuntime,
        leader: OrderSnapshot,
        mirror: MirrorRecord,
        intent: Intent,
        result: BrokerResult,
        catch_up: bool,
    ) -> None:
        current = self._mirrors.get((f.name, leader.order_id), mirror)
        if result.kind is ResultKind.AMBIGUOUS:
            found = await self._lookup_correlation(f, mirror.correlation_id)
            if found is None:
                # Not at Dhan: the request never arrived. Forget the placement so the next
                # decision places again with the same correlationId.
                await self._finish_intent(
                    intent, IntentOutcome.AMBIGUOUS, f"not found after: {result.message}"
                )
                self._forget_mirror(current)
                self._alert(
                    "PLACE_RETRY",
                    Severity.WARNING,
                    f"{f.name}: no clear answer placing for leader {leader.order_id} "
                    f"({result.message}); not at Dhan, placing again",
                    f.name,
                    leader.order_id,
                )
                f.dispatcher.mark(leader.order_id)
                return
            if found is _UNKNOWN:
                await self._finish_intent(intent, IntentOutcome.AMBIGUOUS, result.message)
                self._alert(
                    "PLACE_AMBIGUOUS",
                    Severity.ERROR,
                    f"{f.name}: placement for leader {leader.order_id} has no clear answer; "
                    "will check again before acting",
                    f.name,
                    leader.order_id,
                )
                self._spawn(self._retry_resolve(f, leader.order_id, intent), "resolve")
                return
            assert isinstance(found, OrderSnapshot)
            result = BrokerResult(ResultKind.OK, order_id=found.order_id, status=found.status)
        if result.kind is ResultKind.OK:
            now_mono = self.clock.monotonic()
            latency = (
                (now_mono - mirror.leader_seen_mono) * 1000.0
                if mirror.leader_seen_mono is not None
                else None
            )
            if latency is not None and not catch_up:
                self._latencies.append(latency)
            self._replicated += 1
            f.limiter.note_success()
            status = current.broker_status or result.status
            live = current.with_changes(
                state=MirrorState.DONE
                if status is not None and status.is_terminal
                else MirrorState.LIVE,
                follower_order_id=result.order_id or current.follower_order_id,
                broker_status=status,
                latency_ms=latency,
                updated_at=self.clock.now(),
            )
            self._set_mirror(live)
            await self._finish_intent(
                intent, IntentOutcome.ACKED, f"order {live.follower_order_id}", live
            )
            self._journal(
                "broker",
                f"{f.name} placed order {live.follower_order_id} "
                f"({live.params.quantity if live.params else 0} qty)"
                + (f" in {latency:.1f} ms" if latency is not None else "")
                + (" [catch-up of a missed fill]" if catch_up else ""),
                f.name,
                leader.order_id,
            )
            f.dispatcher.mark(leader.order_id)
            return
        if result.kind is ResultKind.RATE_LIMITED or result.kind is ResultKind.TRANSIENT:
            await self._finish_intent(intent, IntentOutcome.REFUSED, result.message)
            self._forget_mirror(current)
            await self._backoff(f, result, leader.order_id)
            return
        # REFUSED, AUTH_FAILED, NOT_FOUND: definitive.
        self._failed += 1
        failed = current.with_changes(
            state=MirrorState.FAILED,
            reason=f"{result.error_code} {result.message}".strip(),
            updated_at=self.clock.now(),
        )
        self._set_mirror(failed)
        await self._finish_intent(intent, IntentOutcome.REFUSED, failed.reason, failed)
        severity = Severity.CRITICAL if result.kind is ResultKind.AUTH_FAILED else Severity.ERROR
        self._alert(
            "FOLLOWER_REFUSED",
            severity,
            f"{f.name}: Dhan refused the copy of leader order {leader.order_id}: {failed.reason}",
            f.name,
            leader.order_id,
        )

    async def _modify(self, f: FollowerRuntime, leader: OrderSnapshot, decision: Modify) -> None:
        mirror = self._mirrors[(f.name, leader.order_id)]
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
        stored = await self._record_intent(intent, None)
        if stored is None:
            return
        if not self._armed_now(f, IntentKind.MODIFY):
            await self._finish_intent(stored, IntentOutcome.REFUSED, "engine killed before send")
            f.dispatcher.mark(leader.order_id, urgent=True)
            return
        if f.circuit.state is CircuitState.OPEN:  # opened by another request meanwhile
            await self._finish_intent(stored, IntentOutcome.REFUSED, "held: circuit open")
            self._hold_for_circuit(f, leader.order_id)
            return
        result = await self._call(f.broker.modify(decision.follower_order_id, params))
        self._note_result(f, result)
        current = self._mirrors[(f.name, leader.order_id)]
        if result.kind is ResultKind.OK:
            f.limiter.note_success()
            updated = current.with_changes(
                params=decision.params,
                modifications=current.modifications + 1,
                updated_at=self.clock.now(),
            )
            self._set_mirror(updated)
            await self._finish_intent(
                stored, IntentOutcome.ACKED, ",".join(decision.changed), updated
            )
            self._journal(
                "broker",
                f"{f.name} modified {decision.follower_order_id}: "
                + ", ".join(f"{c}={getattr(params, c)}" for c in decision.changed)
                + (f" ({'; '.join(notes)})" if notes else ""),
                f.name,
                leader.order_id,
            )
            f.dispatcher.mark(leader.order_id)
            return
        await self._finish_intent(
            stored,
            IntentOutcome.AMBIGUOUS
            if result.kind is ResultKind.AMBIGUOUS
            else IntentOutcome.REFUSED,
            result.message,
        )
        if result.kind in (ResultKind.RATE_LIMITED, ResultKind.TRANSIENT, ResultKind.AMBIGUOUS):
            await self._refresh_follower_order(f, current)
            await self._backoff(f, result, leader.order_id)
            return
        # Refused: often because the order filled or was cancelled meanwhile; read it back.
        await self._refresh_follower_order(f, current)
        self._journal(
            "broker",
            f"{f.name} modify refused: {result.error_code} {result.message}",
            f.name,
            leader.order_id,
        )
        after = self._mirrors[(f.name, leader.order_id)]
        if (after.filled_qty, after.broker_status) != (current.filled_qty, current.broker_status):
            # Refused because our view was behind (it filled meanwhile): decide again on
            # the fresh state rather than give up on the copy.
            f.dispatcher.mark(leader.order_id)
            return
        if after.is_open_at_broker:
            self._set_mirror(
                self._mirrors[(f.name, leader.order_id)].with_changes(
                    state=MirrorState.FAILED, reason=f"modify refused: {result.message}"
                )
            )
            self._alert(
                "MODIFY_REFUSED",
                Severity.ERROR,
                f"{f.name}: Dhan refused to modify order {decision.follower_order_id}: "
                f"{result.message}",
                f.name,
                leader.order_id,
            )

    async def _cancel(self, f: FollowerRuntime, leader: OrderSnapshot, decision: Cancel) -> None:
        mirror = self._mirrors[(f.name, leader.order_id)]
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
        stored = await self._record_intent(intent, None) or intent
        result = await self._call(f.broker.cancel(decision.follower_order_id))
        self._note_result(f, result)
        current = self._mirrors[(f.name, leader.order_id)]
        if result.kind is ResultKind.OK:
            f.limiter.note_success()
            done = current.with_changes(
                state=MirrorState.DONE,
                broker_status=OrderStatus.CANCELLED,
                reason=decision.reason,
                updated_at=self.clock.now(),
            )
            self._set_mirror(done)
            await self._finish_intent(stored, IntentOutcome.ACKED, decision.reason, done)
            self._journal(
                "broker",
                f"{f.name} cancelled {decision.follower_order_id}: {decision.reason}",
                f.name,
                leader.order_id,
            )
            if decision.replace:
                await self._replace(f, leader, done)
            return
        await self._finish_intent(
            stored,
            IntentOutcome.AMBIGUOUS
            if result.kind is ResultKind.AMBIGUOUS
            else IntentOutcome.REFUSED,
            result.message,
        )
        await self._refresh_follower_order(f, current)
        if result.kind in (ResultKind.RATE_LIMITED, ResultKind.TRANSIENT, ResultKind.AMBIGUOUS):
            await self._backoff(f, result, leader.order_id, urgent=True)
            return
        after = self._mirrors[(f.name, leader.order_id)]
        if after.is_open_at_broker:
            self._alert(
                "CANCEL_REFUSED",
                Severity.ERROR,
                f"{f.name}: Dhan refused to cancel order {decision.follower_order_id}: "
                f"{result.message}",
                f.name,
                leader.order_id,
            )

    async def _replace(
        self, f: FollowerRuntime, leader: OrderSnapshot, cancelled: MirrorRecord
    ) -> None:
        """After cancelling a copy whose modification budget is used: the rest is placed as a
        new order (next generation, new correlationId), counting what the old one filled."""
        # What the cancelled order finally filled must be known before the rest is sized:
        # a fill just before the cancel, missed here, would be bought twice.
        final = await self._read_order(f, cancelled.follower_order_id)
        for attempt in range(REPLACE_READ_TRIES - 1):
            if final is not None:
                break
            await self.clock.sleep(0.5 * (attempt + 1))
            final = await self._read_order(f, cancelled.follower_order_id)
        if final is None:
            self._alert(
                "REPLACE_HELD",
                Severity.ERROR,
                f"{f.name}: could not read what order {cancelled.follower_order_id} filled "
                "before its cancel, so the rest is not re-placed (it could be bought twice); "
                "check that follower and place the rest by hand if wanted",
                f.name,
                leader.order_id,
            )
            return
        regen = cancelled.with_changes(
            generation=cancelled.generation + 1,
            prior_filled=cancelled.prior_filled + final.filled_qty,
            filled_qty=0,
            avg_price=0.0,
            modifications=0,
            follower_order_id="",
            broker_status=None,
            state=MirrorState.REPLACING,
        )
        self._set_mirror(regen)
        f.dispatcher.mark(leader.order_id)

    async def _read_order(self, f: FollowerRuntime, order_id: str) -> OrderSnapshot | None:
        try:
            return await f.broker.order_by_id(order_id)
        except Exception:
            return None

    def _note_result(self, f: FollowerRuntime, result: BrokerResult) -> None:
        """Every order request sent: its answer feeds the per-minute count, the circuit
        breaker and the token check."""
        f.orders_per_minute.record(self.clock.monotonic())
        if result.kind is ResultKind.OK:
            if f.circuit.record_success():
                self._alert(
                    "CIRCUIT_CLOSED",
                    Severity.INFO,
                    f"{f.name}: broker answering again; circuit closed",
                    f.name,
                )
            return
        if result.kind is ResultKind.RATE_LIMITED:
            return
        if result.kind is ResultKind.AUTH_FAILED:
            self._kill_follower(
                f,
                f"Dhan refused the token ({result.error_code}): invalid or "
                "expired; renew it and restart",
            )
        if f.circuit.record_failure():
            self._alert(
                "CIRCUIT_OPEN",
                Severity.ERROR,
                f"{f.name}: {f.circuit.failures} broker failures in a row "
                f"(last: {result.error_code} {result.message}); pausing this follower "
                f"for {f.circuit.cooldown_s:.0f}s",
                f.name,
            )

    def _kill_follower(self, f: FollowerRuntime, reason: str) -> None:
        """Stop one follower: nothing new for it, its open copies cancelled first in line."""
        if f.killed_reason:
            return
        f.killed_reason = reason
        self._alert("FOLLOWER_KILLED", Severity.CRITICAL, f"{f.name} stopped: {reason}", f.name)
        for (name, leader_id), mirror in self._mirrors.items():
            if name == f.name and mirror.is_open_at_broker:
                f.dispatcher.mark(leader_id, urgent=True)

    async def _backoff(
        self, f: FollowerRuntime, result: BrokerResult, leader_id: str, urgent: bool = False
    ) -> None:
        if result.kind is ResultKind.RATE_LIMITED:
            delay = f.limiter.note_rate_limited()
            self._alert(
                "RATE_LIMITED",
                Severity.WARNING,
                f"{f.name}: Dhan answered DH-904 (rate limit); backing off {delay:.1f}s",
                f.name,
            )
        else:
            delay = 0.5
        self._spawn(self._mark_later(f, leader_id, delay, urgent), "retry")

    async def _mark_later(self, f: FollowerRuntime, key: str, delay: float, urgent: bool) -> None:
        await self.clock.sleep(delay)
        f.dispatcher.mark(key, urgent=urgent)

    async def _call(self, call: Awaitable[BrokerResult]) -> BrokerResult:
        self._calls_in_flight += 1
        try:
            return await call
        finally:
            self._calls_in_flight -= 1

    async def _refresh_follower_order(self, f: FollowerRuntime, mirror: MirrorRecord) -> None:
        if not mirror.follower_order_id:
            return
        with contextlib.suppress(Exception):
            snap = await f.broker.order_by_id(mirror.follower_order_id)
            if snap is not None:
                self._on_follower_snapshot(f, snap)

    async def _lookup_correlation(
        self, f: FollowerRuntime, cid: str
    ) -> OrderSnapshot | object | None:
        """The order with this correlationId at Dhan; None if Dhan says there is none,
        _UNKNOWN when Dhan could not answer (then nothing may be placed)."""
        for attempt in range(3):
            try:
                found = await f.broker.order_by_correlation(cid)
            except Exception:
                await self.clock.sleep(0.2 * (attempt + 1))
                continue
            if found is not None:
                self._on_follower_snapshot(f, found)
            return found
        return _UNKNOWN

    async def _retry_resolve(self, f: FollowerRuntime, leader_id: str, intent: Intent) -> None:
        delay = 1.0
        while True:
            await self.clock.sleep(delay)
            found = await self._lookup_correlation(f, intent.correlation_id)
            mirror = self._mirrors.get((f.name, leader_id))
            if mirror is None:
                return
            if found is None:
                self._forget_mirror(mirror)
                f.dispatcher.mark(leader_id)
                return
            if isinstance(found, OrderSnapshot):
                self._set_mirror(
                    mirror.with_changes(
                        state=MirrorState.LIVE if found.is_open else MirrorState.DONE,
                        follower_order_id=found.order_id,
                        broker_status=found.status,
                    )
                )
                await self._finish_intent(intent, IntentOutcome.ACKED, f"found {found.order_id}")
                f.dispatcher.mark(leader_id)
                return
            delay = min(delay * 2, 30.0)

    async def _resolve_unfinished_intents(self) -> None:
        """After a restart: every placement whose answer we never recorded is looked up by its
        correlationId before anything else happens, so nothing is placed twice."""
        store = self._require_store()
        for intent in await store.unfinished_intents():
            f = self._followers.get(intent.follower)
            mirror = self._mirrors.get((intent.follower, intent.leader_order_id))
            if f is None:
                continue
            if intent.kind is IntentKind.PLACE:
                found = await self._lookup_correlation(f, intent.correlation_id)
                if isinstance(found, OrderSnapshot):
                    base = mirror or MirrorRecord(
                        intent.follower,
                        intent.leader_order_id,
                        intent.correlation_id,
                        MirrorState.LIVE,
                        params=intent.params,
                    )
                    rec = base.with_changes(
                        state=MirrorState.LIVE if found.is_open else MirrorState.DONE,
                        follower_order_id=found.order_id,
                        broker_status=found.status,
                        filled_qty=found.filled_qty,
                        avg_price=found.avg_price,
                    )
                    self._set_mirror(rec)
                    await store.complete_intent(
                        intent.id,
                        IntentOutcome.ACKED,
                        f"found after restart: {found.order_id}",
                        rec,
                    )
                    self._journal(
                        "recovery",
                        f"{f.name}: placement found after restart "
                        f"({found.order_id}); not placed again",
                        f.name,
                        intent.leader_order_id,
                    )
                elif found is None:
                    await store.complete_intent(
                        intent.id,
                        IntentOutcome.REFUSED,
                        "not at Dhan after restart; will place again",
                    )
                    if mirror is not None and mirror.state is MirrorState.PLACING:
                        self._forget_mirror(mirror)
                    self._journal(
                        "recovery",
                        f"{f.name}: placement never reached Dhan; deciding again",
                        f.name,
                        intent.leader_order_id,
                    )
                else:
                    self._alert(
                        "RESTART_UNRESOLVED",
                        Severity.ERROR,
                        f"{f.name}: could not confirm placement {intent.correlation_id} "
                        "after restart; holding it",
                        f.name,
                        intent.leader_order_id,
                    )
                    self._spawn(self._retry_resolve(f, intent.leader_order_id, intent), "resolve")
            else:
                if mirror is not None:
                    await self._refresh_follower_order(f, mirror)
                await store.complete_intent(
                    intent.id,
                    IntentOutcome.AMBIGUOUS,
                    "process stopped before the answer; order re-read",
                )

    async def _record_intent(self, intent: Intent, mirror: MirrorRecord | None) -> Intent | None:
        """The intent, durable; None when the store refused it (locked past its busy timeout,
        disk full): then nothing may be placed or modified, an alert says so and the order is
        looked at again a second later."""
        try:
            stored = await self._require_store().record_intent(intent, mirror)
        except Exception as exc:
            log.exception("could not record an intent")
            self._alert(
                "STORE_WRITE_FAILED",
                Severity.CRITICAL,
                f"{intent.follower}: could not record the {intent.kind.value.lower()} intent "
                f"for leader order {intent.leader_order_id} ({redact(str(exc))})"
                + ("; cancelling anyway" if intent.kind is IntentKind.CANCEL else "; not sent"),
                intent.follower,
                intent.leader_order_id,
            )
            f = self._followers.get(intent.follower)
            if f is not None and intent.kind is not IntentKind.CANCEL:
                urgent = False
                self._spawn(self._mark_later(f, intent.leader_order_id, 1.0, urgent), "retry")
            return None
        self._journal(
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

    async def _finish_intent(
        self,
        intent: Intent,
        outcome: IntentOutcome,
        detail: str,
        mirror: MirrorRecord | None = None,
    ) -> None:
        order_id = mirror.follower_order_id if mirror is not None else ""
        self._batch.completions.append((intent.id, outcome, redact(detail), order_id))
        if mirror is not None:
            self._persist_mirror((mirror.follower, mirror.leader_order_id))
        self._flush_soon()

    def _set_mirror(self, rec: MirrorRecord) -> None:
        self._mirrors[(rec.follower, rec.leader_order_id)] = rec
        self._by_cid[rec.correlation_id] = (rec.follower, rec.leader_order_id)
        self._persist_mirror((rec.follower, rec.leader_order_id))
        self._publish(FollowerOrderChanged(self.clock.now(), rec.to_view()))

    def _forget_mirror(self, rec: MirrorRecord) -> None:
        """A placement that never reached Dhan: decide again from scratch (same correlationId)."""
        if rec.generation > 0:
            # A re-placement: keep what earlier generations filled.
            self._set_mirror(rec.with_changes(state=MirrorState.REPLACING, follower_order_id=""))
            return
        self._mirrors.pop((rec.follower, rec.leader_order_id), None)
        self._persist_mirror((rec.follower, rec.leader_order_id))

    # --- funds, kill switch, stats ---------------------------------------------------------

    async def _refresh_funds_loop(self) -> None:
        wanted = [f for f in self._followers.values() if f.rules.sizing.kind == "capital_ratio"]
        if not wanted:
            return
        interval = min(_refresh_s(f) for f in wanted)
        while True:
            await self._refresh_funds(wanted)
            await self.clock.sleep(interval / 2)

    async def _refresh_funds(self, wanted: list[FollowerRuntime]) -> None:
        assert self._leader_broker is not None
        now = self.clock.monotonic()
        try:
            leader_funds = await self._leader_broker.fund_limits()
            self._capital.set_leader(_capital_of(leader_funds), now)
        except Exception as exc:
            self._alert(
                "FUNDS_UNAVAILABLE",
                Severity.WARNING,
                f"Leader fund limits unavailable: {redact(str(exc))}",
            )
            return
        for f in wanted:
            try:
                funds = await f.broker.fund_limits()
                self._capital.set_follower(f.name, _capital_of(funds), now)
            except Exception as exc:
                self._alert(
                    "FUNDS_UNAVAILABLE",
                    Severity.WARNING,
                    f"{f.name}: fund limits unavailable: {redact(str(exc))}",
                    f.name,
                )

    # --- risk supervisors ------------------------------------------------------------------

    async def _check_loss_limits(self) -> None:
        """Kill a follower (or the engine) whose day's P&L breached its loss limit."""
        for f in self._followers.values():
            if f.rules.risk.daily_loss_limit is None or f.killed_reason:
                continue
            try:
                positions = await f.broker.positions()
            except Exception as exc:
                self._alert(
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
                self._kill_follower(f, reason)

    async def _risk_loop(self) -> None:
        last_drift = self.clock.monotonic()
        while True:
            await self._check_loss_limits()
            self._check_leader_dark()
            if self.clock.monotonic() - last_drift >= self.settings.drift_check_interval_s:
                last_drift = self.clock.monotonic()
                await self.check_drift()
            await self.clock.sleep(self.settings.risk_check_interval_s)

    def _check_leader_dark(self) -> None:
        """The leader's socket dark too long while the market is open: we are copying blind."""
        limit = self.settings.leader_dark_kill_after_s
        stream = self._leader_stream
        if limit is None or stream is None or self._state is not EngineState.ARMED:
            return
        if stream.state is ConnectionState.CONNECTED:
            self._leader_dark_since = None
            return
        now = self.clock.monotonic()
        if self._leader_dark_since is None:
            self._leader_dark_since = now
            return
        market_open = (
            not self.settings.enforce_market_hours
            or self._calendar.can_send(Segment.NSE_FNO, self.clock.now(), False)[0]
        )
        if market_open and now - self._leader_dark_since >= limit:
            self._kill_cancels = self.settings.leader_dark_cancel
            self._spawn(
                self.kill(
                    f"leader order stream dark for {now - self._leader_dark_since:.0f}s "
                    "while the market is open"
                ),
                "dark-kill",
            )

    async def check_drift(self) -> list[str]:
        """Compare each follower's net positions with what the leader's imply; alert on drift.

        Never trades to fix it: a drift may be the trader's own manual work in that account.
        """
        assert self._leader_broker is not None
        try:
            leader_positions = await self._leader_broker.positions()
        except Exception as exc:
            return [f"leader positions unavailable: {redact(str(exc))}"]
        leader_net = {(p.segment, p.security_id): p.net_qty for p in leader_positions}
        drifts: list[str] = []
        for f in self._followers.values():
            if f.rules.sizing.kind == "fixed_lots":
                continue  # a fixed size per order implies no position ratio
            try:
                mine = {(p.segment, p.security_id): p for p in await f.broker.positions()}
            except Exception as exc:
                drifts.append(f"{f.name}: positions unavailable ({redact(str(exc))})")
                continue
            ratio = self._capital.ratio(f.name, self.clock.monotonic(), _refresh_s(f))
            for key in set(leader_net) | set(mine):
                seg, sec = key
                net = leader_net.get(key, 0)
                lot = self._instruments.lot_size(seg, sec) or 1
                sized = size_order(
                    f.rules.sizing,
                    f.rules.bounds,
                    leader_qty=abs(net),
                    lot_size=lot,
                    capital_ratio=ratio,
                ).quantity
                expected = sized if net >= 0 else -sized
                actual = mine[key].net_qty if key in mine else 0
                if actual != expected:
                    symbol = mine[key].symbol if key in mine else sec
                    drifts.append(
                        f"{f.name} {seg.value} {symbol}: net {actual}, leader {net} "
                        f"implies {expected} (drift {actual - expected:+d})"
                    )
        for text in drifts:
            self._alert("POSITION_DRIFT", Severity.WARNING, text)
        return drifts

    async def _activate_dhan_kill_switches(self) -> None:
        for _ in range(60):
            if self._state is not EngineState.KILLED:
                return
            if not any(m.is_open_at_broker for m in self._mirrors.values()):
                break
            await self.clock.sleep(1.0)
        for f in self._followers.values():
            result = await f.broker.kill_switch(True)
            ok = result.kind is ResultKind.OK
            self._alert(
                "DHAN_KILL_SWITCH",
                Severity.WARNING if ok else Severity.ERROR,
                f"{f.name}: Dhan kill switch "
                + ("activated" if ok else f"not activated: {result.message}"),
                f.name,
            )

    async def _publish_stats_loop(self) -> None:
        while True:
            self._publish(StatsUpdated(self.clock.now(), self.stats()))
            for alert in self._alerts.flush_due():  # repeats held back by the cooldown
                self._publish(AlertRaised(self.clock.now(), alert))
            await self.clock.sleep(1.0)

    # --- events --------------------------------------------------------------------------

    def _publish(self, event: EngineEvent) -> None:
        self._bus.publish(event)

    def _alert(
        self,
        code: str,
        severity: Severity,
        message: str,
        follower: str | None = None,
        leader_order_id: str | None = None,
    ) -> None:
        alert = self._alerts.raise_alert(
            code, severity, message, follower=follower, leader_order_id=leader_order_id
        )
        if alert is None:
            return
        self._batch.alerts.append(alert)
        self._flush_soon()
        if leader_order_id:
            self._journal("alert", f"{severity.value}: {alert.message}", follower, leader_order_id)
        self._publish(AlertRaised(self.clock.now(), alert))

    def _on_connection(self, account: str, state: ConnectionState, detail: str) -> None:
        self._publish(ConnectionChanged(self.clock.now(), account, state, redact(detail)))
        if account == LEADER and detail == LOGIN_REFUSED and self._state is EngineState.ARMED:
            self._spawn(
                self.kill("leader token refused by Dhan (invalid or expired)"), "token-kill"
            )
        elif account != LEADER and detail == LOGIN_REFUSED and account in self._followers:
            self._kill_follower(
                self._followers[account],
                "Dhan refused the token on the order stream (invalid or expired)",
            )
        if state is ConnectionState.DISCONNECTED and account == LEADER:
            self._alert(
                "LEADER_DISCONNECTED",
                Severity.WARNING,
                f"Leader order stream disconnected: {redact(detail)}; "
                "missed orders will be recovered on reconnect",
            )
        elif state is ConnectionState.STALLED:
            self._alert(
                "STREAM_STALLED",
                Severity.WARNING,
                f"{account} order stream silent past the watchdog; reconnecting",
            )

    def _on_malformed(self, account: str, raw: str, error: str) -> None:
        self._spawn(self._require_store().record_malformed(redact(raw), error), "malformed")
        self._alert(
            "MALFORMED_MESSAGE",
            Severity.WARNING,
            f"{account}: a malformed order update was kept for inspection: {error}",
        )


_UNKNOWN = object()


def _capital_of(funds: Funds) -> float:
    """An account's capital for sizing: its start-of-day limit, which does not move as the
    day's own orders block margin (the available balance would shrink each follower's ratio
    with every order it places), else the available balance."""
    return funds.sod_limit if funds.sod_limit > 0 else funds.available


def _refresh_s(f: FollowerRuntime) -> float:
    return float(getattr(f.rules.sizing, "refresh_s", 60.0))


def _merge_snapshot(known: OrderSnapshot, new: OrderSnapshot) -> OrderSnapshot:
    """The REST dialect lacks a few socket fields (lot size, symbol); keep what we knew."""
    return new.with_changes(
        lot_size=new.lot_size or known.lot_size,
        trading_symbol=new.trading_symbol or known.trading_symbol,
        created_at=new.created_at or known.created_at,
        amo_time=new.amo_time or known.amo_time,
    )


def _describe_snapshot(s: OrderSnapshot) -> str:
    price = f" @ {s.price:g}" if s.price else ""
    trig = f" trg {s.trigger_price:g}" if s.trigger_price else ""
    return (
        f"{s.status.value} {s.side.value} {s.filled_qty}/{s.quantity} "
        f"{s.trading_symbol or s.security_id}"
        f" {s.order_type.value}{price}{trig} {s.product.value} {s.validity.value}"
        + (" AMO" if s.amo else "")
        + f" [{s.source.value}]"
    )
