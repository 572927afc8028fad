"""The replication engine: wires the leader stream, the replicator, the dispatchers, the
brokers and the store, and shows one face (`engine.api.EngineHandle`) to the terminal and the
headless runner.

Flow: leader snapshot (stream or order book) -> `LeaderFeed` -> the `ReplicationBook` -> every
follower's dispatcher marks the order -> a worker runs `Executor.work` -> `decide` -> intent
written durably -> broker call (`OrderActions`) -> answer recorded through
`engine.transitions` -> the order is marked again, so the next decision sees the new state
(and is usually NoAction). Everything runs on one asyncio loop; broker calls run in each
account's own threads. Each job lives in its own module under `engine.live`;
`engine.live.wiring` builds them and `engine.live.streams_and_loops` runs and stops them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from pydantic import SecretStr

from engine.accounts.tokens import ReplaceOutcome
from engine.alerts import AlertCenter
from engine.clock import Clock, SystemClock
from engine.config import Settings
from engine.control.protocol import ResumeReport, UncopiedOrder
from engine.control.server import ControlServer, ControlSocketError
from engine.dhan.order_stream import LOGIN_REFUSED
from engine.dhan.recorder import Recorder
from engine.domain import (
    Alert,
    ConnectionState,
    EngineState,
    OrderSnapshot,
    Segment,
    Severity,
)
from engine.events import (
    EngineEvent,
    EventBus,
    StatsUpdated,
)
from engine.instance_lock import InstanceLock
from engine.instruments import InstrumentBook
from engine.live import scrip_loader, startup
from engine.live.accounts import (
    LEADER,
    Accounts,
    Broker,
    BrokerFactory,
    default_broker_factory,
    source_bound_factory,
)
from engine.live.arming import Arming
from engine.live.book import ReplicationBook
from engine.live.collector import freeze_long_lived
from engine.live.notifier import Notifier
from engine.live.resuming import resume_replication
from engine.live.stats import Stats
from engine.live.status_report import engine_status
from engine.live.streams_and_loops import start_streams_and_loops, stop_streams_and_loops
from engine.live.tasks import TaskSet
from engine.live.uncopied import uncopied_orders
from engine.live.wiring import SharedState, wire_live_parts
from engine.live.write_behind import WriteBehind
from engine.market_hours import MarketCalendar
from engine.records import MirrorRecord
from engine.secrets import redact
from engine.store import Store
from engine.views import (
    AccountView,
    CopyStepView,
    EngineStats,
    FollowerOrderView,
    KillPreview,
    LimiterView,
    PositionsView,
    RecoveryReport,
    SyncPreview,
    SyncReport,
    TimelineEntry,
)

__all__ = ["LEADER", "Broker", "BrokerFactory", "Engine", "default_broker_factory"]

log = logging.getLogger(__name__)


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
        recorder: Recorder | None = None,
    ) -> None:
        self.settings = settings
        self.clock: Clock = clock or SystemClock()
        # --record: every REST exchange and socket frame, redacted (engine.dhan.recorder).
        self._recorder = recorder
        if recorder is not None and broker_factory is default_broker_factory:
            broker_factory = source_bound_factory(settings, recorder)
        self._broker_factory = broker_factory
        self._use_follower_streams = follower_streams
        self._instruments_given = instruments is not None or settings.instruments_file is not None
        if instruments is None and settings.instruments_file is not None:
            instruments = InstrumentBook.from_scrip_master(settings.instruments_file)
        # No book given and no file: Dhan's scrip master, loaded in the background.
        self._fetch_instruments = instruments is None and scrip_loader.wanted(
            settings.instruments_url, settings.dhan.rest_url
        )
        self._instruments = instruments or InstrumentBook()
        self._calendar = MarketCalendar(override_path=settings.holiday_override_file)
        self._bus = EventBus()
        self._accounts = Accounts()
        self._arming = Arming()
        self._stats = Stats()
        self._book = ReplicationBook(self.clock, self._bus.publish, self._flush_soon)
        self._writes = WriteBehind(self._book, self._on_store_failure)
        self._notifier = Notifier(
            self.clock, self._bus, AlertCenter(self.clock, redact=redact), self._writes
        )
        self._tasks = TaskSet(self._on_task_failure)
        self._wire(settings)
        self._stop = asyncio.Event()
        self._started = asyncio.Event()
        # One engine per database: taken before the store opens, held until the very end.
        self._instance_lock = InstanceLock(settings.db_path)
        self._control: ControlServer | None = None

    def _wire(self, s: Settings) -> None:
        self._shared = SharedState(
            clock=self.clock,
            accounts=self._accounts,
            arming=self._arming,
            book=self._book,
            instruments=self._instruments,
            calendar=self._calendar,
            publish=self._bus.publish,
            notifier=self._notifier,
            writes=self._writes,
            tasks=self._tasks,
            stats=self._stats,
        )
        self._live = wire_live_parts(s, self._shared, self.recover)

    # --- EngineHandle -------------------------------------------------------------------

    @property
    def state(self) -> EngineState:
        return self._arming.shown_state  # FROZEN while an engine-wide freeze holds

    def subscribe(self, listener: Callable[[EngineEvent], None]) -> Callable[[], None]:
        return self._bus.subscribe(listener)

    def configure_endpoints(self, rest_url: str, ws_url: str, instruments_url: str = "") -> None:
        """Point the engine at another Dhan (the demo's in-process simulator) before run();
        ``instruments_url``: the scrip master that Dhan serves (loaded unless a book was given)."""
        dhan = self.settings.dhan.model_copy(update={"rest_url": rest_url, "order_ws_url": ws_url})
        update: dict[str, object] = {"dhan": dhan}
        if instruments_url:
            update["instruments_url"] = instruments_url
        self.settings = self.settings.model_copy(update=update)
        if instruments_url and not self._instruments_given:
            self._fetch_instruments = True
        self._wire(self.settings)  # the parts hold the settings they were given

    def claim_database(self) -> None:
        """Take the engine's lock on its database (idempotent); raises
        `engine.instance_lock.InstanceLockError` (one line) when another engine holds it."""
        self._instance_lock.acquire()

    async def run(self) -> None:
        self.claim_database()  # before the store opens: a second engine never touches it
        try:
            await self._open_control()
            try:
                await self._start()
                await self._stop.wait()
            finally:
                await self._shutdown()
        finally:
            if self._control is not None:  # closed last: status answers until the end
                await self._control.close()
            self._instance_lock.release()

    async def _open_control(self) -> None:
        self._control = ControlServer(self, self.settings.db_path)
        try:
            await self._control.start()
        except ControlSocketError as exc:  # the engine still runs; only the CLI cannot reach it
            self._control = None
            log.warning("control channel unavailable: %s", exc)
            self._notifier.alert(
                "CONTROL_UNAVAILABLE",
                Severity.WARNING,
                f"copytrade status/kill/resume cannot reach this engine: {exc}",
            )

    async def wait_started(self) -> None:
        await self._started.wait()

    async def stop(self) -> None:
        self._stop.set()

    async def kill(self, reason: str) -> None:
        await self._live.supervisor.kill(reason)

    async def resume(self, replace_open: bool = False) -> ResumeReport:
        """Back from the trader's kill (and the freezes only the trader clears); lists the
        leader's open orders left without a copy and, with `replace_open`, places them again
        (each under a fresh correlationId)."""
        return await resume_replication(self._shared, self._live.supervisor, replace_open)

    async def resync(self) -> RecoveryReport:
        return await self.recover("manual")

    async def set_token(self, account: str, token: SecretStr) -> ReplaceOutcome:
        """A new access token for `account` ("leader" or a follower's name), used at once by
        its calls and its socket's next login; Dhan checks it first (refused: the old stays).
        The outcome's message never holds the token."""
        return await self._live.tokens.replace(account, token)

    def status(self) -> dict[str, object]:
        """The control channel's `status`: secret-free, one look at the whole engine."""
        return engine_status(
            self._shared,
            state=self.state,
            stats=self.stats(),
            leader=self.leader_connection(),
            market=self.market_label(),
            database=self.settings.db_path,
            in_flight=self.in_flight(),
        )

    async def recover(self, trigger: str) -> RecoveryReport:
        return await self._live.recovery.recover(trigger)

    async def check_drift(self) -> list[str]:
        return await self._live.drift.check()

    def kill_preview(self) -> KillPreview:
        open_copies = self._book.open_copies()
        return KillPreview(
            open_follower_orders=len(open_copies),
            accounts=len({m.follower for m in open_copies}),
            queued_actions=self._queued(),
        )

    def in_flight(self) -> int:
        return self._live.answers.calls_in_flight + self._queued() + self._book.count_placing()

    async def timeline(self, leader_order_id: str) -> list[TimelineEntry]:
        store = self._writes.store
        if store is None:
            return []
        await self._writes.flush()  # include what is still buffered
        return await store.timeline(leader_order_id)

    def follower_views(self) -> list[FollowerOrderView]:
        return [m.to_view() for m in self._book.mirrors()]

    def limiter_views(self) -> list[LimiterView]:
        return [f.limiter.view(f.dispatcher.queue_depth) for f in self._accounts.all()]

    def market_label(self) -> str:
        if not self.settings.enforce_market_hours:
            return "market hours not enforced (paper)"
        return self._calendar.session(Segment.NSE_FNO, self.clock.now()).label

    # --- the cockpit ----------------------------------------------------------------------

    def account_views(self) -> list[AccountView]:
        return self._live.cockpit.account_views()

    def positions_view(self) -> PositionsView:
        return self._live.cockpit.positions_view()

    async def read_positions(self) -> PositionsView:
        """Read every account's positions now (the pane's timer does it every few seconds)."""
        return await self._live.cockpit.read_positions()

    def copy_steps(self) -> list[CopyStepView]:
        return self._live.cockpit.copy_steps()

    async def detach(self, follower: str, leader_order_id: str) -> str:
        """The trader takes one copy over: the engine no longer touches it (not even to follow
        the leader's cancel or the kill). One line saying what happened."""
        return await self._live.supervisor.detach(follower, leader_order_id)

    async def uncopied_orders(self) -> list[UncopiedOrder]:
        """The leader's open orders some follower has no working copy of (after a kill)."""
        return uncopied_orders(self._book, self._accounts.followers)

    async def sync_preview(self) -> SyncPreview:
        """Per follower and instrument, the order that would bring it to its target (the
        leader's position at its attach point counted); nothing is placed."""
        return await self._live.sync.preview()

    async def sync_apply(self, preview: SyncPreview) -> SyncReport:
        """Place the orders of a preview the trader confirmed, each checked again now."""
        return await self._live.sync.apply(preview)

    async def sync_positions(self, preview: SyncPreview) -> SyncReport:
        return await self._live.sync.apply(preview)

    async def clear_freeze(self, account: str | None) -> str:
        """The trader clears the freezes of `account` ("" the engine's, None all) after a
        resync; one line saying what happened."""
        line = await self._live.supervisor.clear_freeze(account)
        if line:
            return line
        return (
            "nothing is frozen" if account is None else f"{account or 'the engine'} is not frozen"
        )

    async def replace_token(self, account: str, token: SecretStr) -> str:
        """The terminal's T key: `set_token`, answered in one line (never the token)."""
        return redact((await self.set_token(account, token)).message)

    def stats(self) -> EngineStats:
        stream = self._accounts.leader_stream
        return self._stats.snapshot(stream.reconnects if stream else 0)

    # --- read-outs for tests, bench and checks -----------------------------------------------

    def leader_orders(self) -> list[OrderSnapshot]:
        return self._book.leader_orders()

    def mirror(self, follower: str, leader_order_id: str) -> MirrorRecord | None:
        return self._book.mirror(follower, leader_order_id)

    def mirrors(self) -> list[MirrorRecord]:
        return self._book.mirrors()

    @property
    def store(self) -> Store | None:
        return self._writes.store

    def recent_alerts(self) -> list[Alert]:
        return self._notifier.recent_alerts()

    def leader_connection(self) -> ConnectionState | None:
        stream = self._accounts.leader_stream
        return stream.state if stream else None

    def follower_stop_reason(self, name: str) -> str:
        """Why this follower alone is frozen ("" while it copies)."""
        return "; ".join(self._arming.freezes.get(name, {}).values())

    def circuit_failures(self, name: str) -> int:
        return self._accounts.followers[name].circuit.failures

    def forget_capital(self, follower: str) -> None:
        """Read this follower's capital afresh before its next sizing."""
        self._live.funds.forget(follower)

    async def settle(self, timeout: float = 10.0) -> None:
        """Wait until every dispatcher is idle and every write is stored."""

        async def _all_idle() -> None:
            while True:
                for f in self._accounts.all():
                    await f.dispatcher.wait_idle()
                await self._writes.flush()
                if all(
                    f.dispatcher.queue_depth == 0 and f.dispatcher.busy == 0
                    for f in self._accounts.all()
                ):
                    return

        await asyncio.wait_for(_all_idle(), timeout)

    # --- start and stop ------------------------------------------------------------------

    async def _start(self) -> None:
        store = await Store.open(self.settings.db_path, clock=self.clock)
        self._writes.attach(store)
        await startup.restore(store, self._book, self._arming, self._instruments)
        # Copies of a trading day that has ended are not open at Dhan: settled before the
        # accounts open (a disabled follower is kept only to drain copies really open).
        self._live.day_end.settle_copies()
        await self._live.supervisor.restore()
        await self._live.tokens.start()  # every account's token, before its broker and socket
        startup.open_accounts(
            self.settings,
            self.clock,
            self._account_broker_factory(),
            self._accounts,
            self._live.executor.work,
            guard=self._live.tokens.guard,
            drained={m.follower for m in self._book.open_copies()},
        )
        await startup.preload_limiters(
            store, self._accounts, self.clock, self.settings.dhan.timeout_s
        )
        await self._live.positions.load(store)  # attach points: before the first leader order
        self._live.day_end.settle()  # the leader's orders of an ended day, now the ledgers hold
        await self._live.day_end.finish_intents(store)
        startup.publish_restored(
            self.clock, self._bus.publish, self._book, self._arming, self._notifier
        )
        await self._live.resolver.resolve_unfinished()
        # What startup built lives all session: frozen, no full pass walks it again. Done
        # before the streams start, so the one collection it costs delays no leader alert.
        freeze_long_lived()
        self._start_streams_and_loops()
        self._started.set()

    def _start_streams_and_loops(self) -> None:
        start_streams_and_loops(
            self.settings,
            self._shared,
            self._live,
            follower_streams=self._use_follower_streams,
            recorder=self._recorder,
            fetch_instruments=self._fetch_instruments,
            on_connection=self._on_connection,
            on_malformed=self._on_malformed,
            stats_loop=self._publish_stats_loop,
        )

    async def _shutdown(self) -> None:
        await stop_streams_and_loops(self._shared, self._live)

    # --- small wiring ----------------------------------------------------------------------

    def _account_broker_factory(self) -> BrokerFactory:
        """The default brokers leave from each account's source_ip; a given factory as is."""
        if self._broker_factory is default_broker_factory:
            return source_bound_factory(self.settings)
        return self._broker_factory

    def _on_connection(self, account: str, state: ConnectionState, detail: str) -> None:
        self._live.supervisor.on_connection(account, state, detail)
        if detail == LOGIN_REFUSED:
            self._live.tokens.stream_refused(account)

    def _queued(self) -> int:
        return sum(f.dispatcher.queue_depth for f in self._accounts.all())

    def _flush_soon(self) -> None:
        self._writes.flush_soon()

    async def _publish_stats_loop(self) -> None:
        while True:
            self._bus.publish(StatsUpdated(self.clock.now(), self.stats()))
            self._notifier.publish_due_alerts()
            await self.clock.sleep(1.0)

    def _on_store_failure(self, exc: Exception) -> None:
        self._notifier.alert(
            "STORE_WRITE_FAILED",
            Severity.CRITICAL,
            f"Could not write to the database: {redact(str(exc))}; retrying",
        )

    def _on_task_failure(self, name: str, exc: Exception) -> None:
        self._notifier.alert(
            "ENGINE_TASK_FAILED",
            Severity.CRITICAL,
            f"Internal task {name} failed: {redact(str(exc))}",
        )

    def _on_malformed(self, account: str, raw: str, error: str) -> None:
        store = self._writes.require_store()
        self._tasks.spawn(store.record_malformed(redact(raw), error), "malformed")
        self._notifier.alert(
            "MALFORMED_MESSAGE",
            Severity.WARNING,
            f"{account}: a malformed order update was kept for inspection: {error}",
        )
