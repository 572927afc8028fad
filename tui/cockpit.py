"""The terminal's shell: its panes, the engine's worker, and the engine's events drawn into
the panes.

The engine runs as a long-lived worker; `copytrade` gives it a thread and loop of its own
(tui/engine_thread.py), so a repaint never holds a copy back. Its events land in a bounded
buffer (the listener only appends), and a flush at most every `flush_interval` seconds folds them
by key and applies them as keyed diffs, one `batch_update()` for all panes. The keys and dialogs
live in tui/trader_actions.py, the app itself in tui/app.py.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime

from rich.markup import escape
from textual import events
from textual.app import App, ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Sparkline, Static
from textual.worker import Worker, WorkerState

from engine.api import EngineHandle
from engine.clock import IST
from engine.domain import Alert, EngineState, Severity
from engine.events import AlertRaised, EngineEvent
from tui.coalesce import Batch, EventCoalescer
from tui.collector import CollectorPolicy
from tui.dialog_text import plural
from tui.format import hms, one_line, short_id
from tui.widgets.accounts import AccountsPane
from tui.widgets.alerts import AlertsPane
from tui.widgets.follower_orders import FollowerOrdersTable
from tui.widgets.leader_orders import LeaderOrdersTable
from tui.widgets.positions import PositionsTable
from tui.widgets.status_line import StatusLine
from tui.widgets.steady_footer import SteadyFooter

STOP_TIMEOUT_S = 15.0
# A key's effect (a dialog opening, the cursor moving) is drawn before the next flush: after a
# key, flushes wait this long, but never more than INPUT_FLUSH_MAX_DELAY_S after the last one.
INPUT_QUIET_S = 0.15
INPUT_FLUSH_MAX_DELAY_S = 0.5
# Under a dimmed dialog or the help, the panes below are redrawn twice per flush (their own
# screen, then tinted under the dialog): flush them this many times less often.
COVERED_FLUSH_FACTOR = 3
# Copies before pixels: while the engine's events still come (a leader order fanned out to its
# followers, its copies being sent and answered), a flush waits for them to pause this long,
# but never more than ENGINE_BUSY_MAX_DELAY_S after the last flush. A repaint of a busy screen
# takes tens of milliseconds of the interpreter, which the engine's thread would share.
ENGINE_QUIET_S = 0.03
ENGINE_BUSY_MAX_DELAY_S = 0.3
LATENCY_HISTORY = 300  # one point a second: five minutes


class CockpitShell(App[None]):
    """Panes, lifecycle and event intake. Give it an engine; it subscribes, runs it in a worker
    and renders it."""

    def __init__(
        self,
        engine: EngineHandle,
        *,
        title: str = "Dhan copy-trading terminal",
        demo: bool = False,
        clock: Callable[[], datetime] | None = None,
        flush_interval: float = 0.1,
        leader_rows: int = 500,
        follower_rows: int = 500,
        sample_every: float = 1.0,
    ) -> None:
        super().__init__()
        self.engine = engine
        self.title = title
        self.sub_title = "DEMO · simulated exchange" if demo else ""
        self.demo = demo
        self.clock: Callable[[], datetime] = clock or (lambda: datetime.now(IST))
        self.flush_interval = flush_interval
        self._leader_rows = leader_rows
        self._follower_rows = follower_rows
        self._sample_every = sample_every
        self.coalescer = EventCoalescer()
        self.events_applied = 0
        self.flushes = 0
        self.flush_seconds = 0.0  # total time spent applying batches (for the bench)
        self.last_flush_ms = 0.0
        self._flush_not_before = 0.0
        self._last_flush_at = 0.0
        self._input_quiet_until = 0.0
        self._unsubscribe: Callable[[], None] | None = None
        self._loop_thread = threading.get_ident()
        self._engine_worker: Worker[None] | None = None
        self._stopping = False
        self._stopped = False
        self._resync_running = False
        self._kill_busy = False
        self._sync_busy = False
        self.latency_history: deque[float] = deque(maxlen=LATENCY_HISTORY)
        self.collector = CollectorPolicy()

    # --- layout --------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        status = StatusLine(self.clock)
        status.facts.demo = self.demo
        self._status_line = status
        yield status
        with Horizontal(id="main"):
            with Vertical(id="left"):
                leader = LeaderOrdersTable(cap=self._leader_rows)
                self._leader_table = leader
                leader.border_title = "Leader orders"
                yield leader
                positions = PositionsTable()
                self._positions_table = positions
                positions.border_title = "Positions · not read yet"
                yield positions
                follower = FollowerOrdersTable(cap=self._follower_rows)
                self._follower_table = follower
                follower.border_title = "Follower orders · all"
                yield follower
            with Vertical(id="right"):
                accounts = AccountsPane()
                self._accounts_pane = accounts
                accounts.border_title = "Accounts"
                yield accounts
                with Vertical(id="latency-box") as box:
                    box.border_title = "Copy latency p50, last 5 min"
                    self._latency_label = Static("no copies yet", id="latency-label")
                    yield self._latency_label
                    spark = Sparkline([], summary_function=max, id="latency-spark")
                    spark.display = False
                    self._latency_spark = spark
                    yield spark
                alerts = AlertsPane()
                self._alerts_pane = alerts
                alerts.border_title = "Alerts"
                yield alerts
        yield SteadyFooter()

    # The panes are held, not queried: a query runs on the active screen, and with a dialog
    # or the help on top (or the main screen already gone at quit) the timers and the
    # engine's events would find nothing.
    @property
    def status_line(self) -> StatusLine:
        return self._status_line

    @property
    def leader_table(self) -> LeaderOrdersTable:
        return self._leader_table

    @property
    def follower_table(self) -> FollowerOrdersTable:
        return self._follower_table

    @property
    def accounts_pane(self) -> AccountsPane:
        return self._accounts_pane

    @property
    def positions_table(self) -> PositionsTable:
        return self._positions_table

    @property
    def alerts_pane(self) -> AlertsPane:
        return self._alerts_pane

    # --- lifecycle -----------------------------------------------------------------------

    def on_mount(self) -> None:
        self._loop_thread = threading.get_ident()
        loop = asyncio.get_running_loop()

        def fold_soon() -> None:  # the engine's thread found the buffer full
            loop.call_soon_threadsafe(self.coalescer.fold_now)

        self.coalescer.fold_soon = fold_soon
        self._unsubscribe = self.engine.subscribe(self._on_engine_event)
        self._seed()
        self._engine_worker = self.run_worker(
            self.engine.run(), group="engine", exit_on_error=False, name="engine"
        )
        self.set_interval(self.flush_interval, self._on_flush_timer, name="flush")
        self.set_interval(1.0, self._tick, name="status-clock")
        self.set_interval(self._sample_every, self.sample_sparklines, name="sparklines")
        self.leader_table.focus()
        self._tick()
        # Once the panes exist: a full collection must not stall a key (see tui/collector.py).
        self.call_after_refresh(self.collector.apply)

    def _seed(self) -> None:
        """What the engine already knows before the first event (a restart mid-session)."""
        batch = Batch()
        try:
            for view in self.engine.follower_views():
                batch.followers[(view.follower, view.leader_order_id)] = view
            for limiter in self.engine.limiter_views():
                batch.limiters[limiter.account] = limiter
            for account in self.engine.account_views():
                batch.accounts[account.account] = account
            for step in self.engine.copy_steps():
                batch.steps[step.leader_order_id] = step
            positions = self.engine.positions_view()
            batch.positions = positions if positions.read_at is not None else None
        except Exception as exc:
            self._ui_alert(Severity.ERROR, "UI_SEED_FAILED", f"Could not read engine state: {exc}")
        self.status_line.facts.engine_state = self._engine_state()
        self._apply(batch)
        self._show_state()

    async def on_unmount(self) -> None:
        self.collector.restore()
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        await self._stop_engine()

    async def _stop_engine(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self._stopping = True
        try:
            await asyncio.wait_for(self.engine.stop(), timeout=STOP_TIMEOUT_S)
            # Let the engine finish its own shutdown (sockets closed, the store flushed)
            # before the app tears its workers down.
            worker = getattr(self, "_engine_worker", None)
            if worker is not None and not worker.is_finished:
                await asyncio.wait_for(worker.wait(), timeout=STOP_TIMEOUT_S)
        except Exception as exc:  # a failing stop must not keep the terminal from closing
            self.log.error(f"engine stop failed: {one_line(str(exc))}")

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        worker = event.worker
        if worker.group != "engine" or self._stopping:
            return
        facts = self.status_line.facts
        if event.state is WorkerState.ERROR:
            error = worker.error
            detail = one_line(f"{type(error).__name__}: {error}", 160)
            facts.engine_stopped = True
            facts.engine_note = detail
            self._ui_alert(
                Severity.CRITICAL,
                "ENGINE_STOPPED",
                f"The engine stopped with an error ({detail}); nothing is being replicated. "
                "Check open follower orders and restart.",
            )
        elif event.state in (WorkerState.SUCCESS, WorkerState.CANCELLED):
            facts.engine_stopped = True
            facts.engine_note = "the engine ended; nothing is being replicated"
            self._ui_alert(
                Severity.CRITICAL,
                "ENGINE_STOPPED",
                "The engine stopped; nothing is being replicated. Restart the terminal.",
            )
        self.status_line.refresh_status()

    # --- event intake --------------------------------------------------------------------

    def _on_engine_event(self, event: EngineEvent) -> None:
        """The engine's listener: append and return (the flush does the work)."""
        if threading.get_ident() == self._loop_thread:
            self.coalescer.append(event)
        else:  # tolerated, not expected (the contract is one loop): append only
            self.coalescer.append_from_thread(event)

    def _on_flush_timer(self) -> None:
        """Flush at most every `flush_interval`; under a heavy flood, back off adaptively.

        A flush that took `t` is followed by at least `4t` before the next one (the repaint it
        causes costs about as much again, and input gets the rest), capped at one second. Key
        presses always get their turn; batches just get bigger (and coalesce more) instead of
        the screen falling behind. Right after a key, and under a dialog, flushes are spaced
        further (INPUT_QUIET_S, COVERED_FLUSH_FACTOR); while the engine's events still come,
        they wait for a pause (ENGINE_QUIET_S).
        """
        now = time.perf_counter()
        if now < self._flush_not_before:
            return
        if now < self._input_quiet_until and now - self._last_flush_at < INPUT_FLUSH_MAX_DELAY_S:
            return
        busy = now - self.coalescer.last_event_at < ENGINE_QUIET_S
        if busy and now - self._last_flush_at < ENGINE_BUSY_MAX_DELAY_S:
            return
        covered = len(self.screen_stack) > 1
        if covered and now - self._last_flush_at < self.flush_interval * COVERED_FLUSH_FACTOR:
            return
        self._last_flush_at = now
        self.flush_events()
        self._flush_not_before = time.perf_counter() + min(self.last_flush_ms * 0.004, 1.0)

    async def on_event(self, event: events.Event) -> None:
        if isinstance(event, events.Key):  # input first: see INPUT_QUIET_S
            self._input_quiet_until = time.perf_counter() + INPUT_QUIET_S
        await super().on_event(event)

    def flush_events(self) -> int:
        """Fold everything received since the last flush and draw it; returns events applied."""
        if not self.coalescer.has_pending():
            return 0
        start = time.perf_counter()
        batch = self.coalescer.drain()
        self._apply(batch)
        elapsed = time.perf_counter() - start
        self.flush_seconds += elapsed
        self.last_flush_ms = elapsed * 1000
        self.flushes += 1
        self.events_applied += batch.events
        return batch.events

    def _apply(self, batch: Batch) -> None:
        facts = self.status_line.facts
        with self.batch_update():
            if batch.leaders or batch.steps:
                self.leader_table.apply_snapshots(batch.leaders, batch.steps)
                self._title_leaders()
            if batch.followers:
                self.follower_table.apply_views(batch.followers)
            if batch.steps:
                self.follower_table.apply_steps(batch.steps)
            if batch.followers or batch.steps:
                self._title_followers()
            if batch.accounts:
                self.accounts_pane.apply_accounts(batch.accounts)
            if batch.limiters:
                self.accounts_pane.apply_limiters(batch.limiters)
            if batch.positions is not None:
                self.positions_table.apply_positions(batch.positions)
                self._title_positions()
            if batch.alerts:
                self.alerts_pane.apply_alerts(batch.alerts)
            if batch.stats is not None:
                facts.stats = batch.stats
                self._note_leader_event(batch.stats.last_leader_event_at)
            self._note_leader_event(batch.last_leader_event_at)
            for account, change in batch.connections.items():
                facts.connections[account] = change.state
            if batch.state is not None:
                facts.engine_state = batch.state.state
                facts.engine_note = (
                    one_line(batch.state.reason, 80)
                    if batch.state.state is EngineState.KILLED
                    else ""
                )
            self._show_state()

    def _note_leader_event(self, at: datetime | None) -> None:
        facts = self.status_line.facts
        if at is not None and (
            facts.last_leader_event_at is None or at > facts.last_leader_event_at
        ):
            facts.last_leader_event_at = at

    def _tick(self) -> None:
        try:
            self.status_line.facts.market = self.engine.market_label()
        except Exception as exc:
            self.status_line.facts.market = f"market: unknown ({one_line(str(exc), 40)})"
        self.status_line.refresh_status()

    def sample_sparklines(self) -> None:
        """One point a second: copy latency (p50) and each account's rate use."""
        stats = self.status_line.facts.stats
        p50 = stats.latency_p50_ms
        with self.batch_update():
            if p50 is not None:  # nothing to draw before the first copy
                self.latency_history.append(p50)
                spark = self._latency_spark
                spark.display = True
                spark.data = list(self.latency_history)
                peak = max(self.latency_history)
                self._latency_label.update(
                    f"now {p50:.0f} ms · peak {peak:.0f} ms · p99 "
                    f"{stats.latency_p99_ms or 0:.0f} ms",
                    layout=False,  # one line, always (its CSS height)
                )
            self.accounts_pane.sample()

    def _title_leaders(self) -> None:
        table = self.leader_table
        title = f"Leader orders ({table.row_count})"
        if table.new_above:
            title += f" · {table.new_above} new above ↑"
        table.border_title = title

    def _title_positions(self) -> None:
        table = self.positions_table
        view = table.view
        title = f"Positions · {plural(len(view.positions), 'instrument')}"
        if view.read_at is not None:
            title += f" · read {hms(view.read_at)}"
        if view.unavailable:
            title += f" · {len(view.unavailable)} not read"
        table.border_title = title

    def _title_followers(self) -> None:
        table = self.follower_table
        if table.leader_filter is None:
            title = f"Follower orders · all ({table.row_count})"
        else:
            title = (
                f"Follower orders · leader {escape(short_id(table.leader_filter, 14))} "
                f"({table.row_count}) · f: all"
            )
        if table.new_above:
            title += f" · {table.new_above} new above ↑"
        table.border_title = title

    def _show_state(self) -> None:
        """The status line, and the main screen's red frame while KILLED."""
        killed = self.status_line.facts.engine_state is EngineState.KILLED
        self.screen_stack[0].set_class(killed, "-killed")
        self.status_line.refresh_status()

    def _engine_state(self) -> EngineState:
        try:
            return self.engine.state
        except Exception:
            return self.status_line.facts.engine_state

    # --- alerts the terminal itself raises -----------------------------------------------

    def _make_alert(self, severity: Severity, code: str, message: str) -> Alert:
        return Alert(code=code, severity=severity, message=one_line(message), at=self.clock())

    def _ui_alert(self, severity: Severity, code: str, message: str) -> None:
        alert = self._make_alert(severity, code, message)
        self.coalescer.append(AlertRaised(at=alert.at, alert=alert))
        self.flush_events()
