"""The copy-trading terminal: a view over the engine.

It renders engine events and sends commands (kill, resume, resync, timeline); it decides
nothing about orders. The engine runs as a long-lived worker on the same asyncio loop. Its
events land in a bounded buffer (the listener only appends), and a flush at most every
`flush_interval` seconds folds them by key and applies them as keyed diffs, one
`batch_update()` for all panes.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import ClassVar

from pydantic import SecretStr
from rich.markup import escape
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Footer, Sparkline, Static
from textual.worker import Worker, WorkerState

from engine.api import EngineHandle
from engine.clock import IST
from engine.control.protocol import ResumeReport, UncopiedOrder
from engine.domain import Alert, EngineState, Severity
from engine.events import AlertRaised, EngineEvent
from engine.views import (
    AccountState,
    KillPreview,
    RecoveryReport,
    SyncOrderView,
    SyncPreview,
    SyncReport,
)
from tui.coalesce import Batch, EventCoalescer
from tui.format import hms, one_line, plain_words, short_id
from tui.screens.confirm import ConfirmScreen
from tui.screens.help import HelpScreen
from tui.screens.timeline import TimelineScreen
from tui.screens.token import TokenScreen
from tui.widgets.accounts import AccountsPane
from tui.widgets.alerts import AlertsPane
from tui.widgets.follower_orders import FollowerOrdersTable
from tui.widgets.keyed_table import KeyedTable
from tui.widgets.leader_orders import LeaderOrdersTable
from tui.widgets.positions import PositionsTable
from tui.widgets.status_line import StatusLine

KILL_REASON = "manual kill switch"
STOP_TIMEOUT_S = 15.0
LATENCY_HISTORY = 300  # one point a second: five minutes


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def kill_message(preview: KillPreview | None) -> str:
    """Exactly what pulling the kill switch will do, from the engine's own preview."""
    if preview is None:
        return (
            "The engine could not say how many follower orders are open. Cancel every open "
            "follower order and send nothing new until you resume."
        )
    if preview.open_follower_orders:
        text = (
            f"Cancel {_plural(preview.open_follower_orders, 'open follower order')} in "
            f"{_plural(preview.accounts, 'account')} and send nothing new until you resume."
        )
    else:
        text = "No follower order is open. Send nothing new until you resume."
    if preview.queued_actions:
        text += f" {_plural(preview.queued_actions, 'queued action')} will not be sent."
    return text


def resync_summary(report: RecoveryReport) -> str:
    text = (
        f"Resync ({report.trigger}): {_plural(report.leader_orders_checked, 'leader order')} "
        f"checked, {_plural(report.actions_taken, 'action')} taken, "
        f"{_plural(len(report.discrepancies), 'discrepancy')}"
    ).replace("discrepancys", "discrepancies")
    if report.discrepancies:
        shown = "; ".join(one_line(d, 120) for d in report.discrepancies[:3])
        more = f" (+{len(report.discrepancies) - 3} more)" if len(report.discrepancies) > 3 else ""
        text += f": {shown}{more}"
    return text


def sync_lines(preview: SyncPreview, symbols: Mapping[str, str] | None = None) -> str:
    """The exact orders a position sync would place, one per line (`symbols`: names for
    security ids the preview could not name, from the positions pane)."""
    names = symbols or {}

    def name(o: SyncOrderView) -> str:
        return names.get(o.security_id, o.symbol) if o.symbol == o.security_id else o.symbol

    lines = [
        f"{o.follower:<10} {o.side:<4} {o.quantity:>6}  {one_line(name(o), 30)} {o.product}"
        f"   (net {o.net:+d} -> target {o.target:+d})"
        for o in preview.orders
    ]
    lines.extend(f"note: {one_line(note, 200)}" for note in preview.notes)
    return "\n".join(lines)


def uncopied_lines(orders: Sequence[UncopiedOrder]) -> str:
    lines = []
    for o in orders:
        price_text = f" @ {o.price:.2f}" if o.price else ""
        if o.trigger_price:
            price_text += f" trigger {o.trigger_price:.2f}"
        lines.append(
            f"{short_id(o.leader_order_id, 14):<14} {o.side:<4} {o.quantity:>6} "
            f"{one_line(o.symbol, 28)} {o.order_type}{price_text}"
            f"  · no copy in {', '.join(o.followers)}"
        )
    return "\n".join(lines)


def resume_line(report: ResumeReport | None, replace_open: bool) -> str:
    if report is None:
        return "Resumed: replication is ARMED."
    text = f"Resumed: replication is {report.state}."
    if report.replaced:
        text += f" {_plural(len(report.replaced), 'leader order')} re-placed."
    elif report.uncopied:
        still = _plural(len(report.uncopied), "open leader order")
        text += f" {still} still without a copy" + (" (re-placing asked)." if replace_open else ".")
    if report.message:
        text += f" {plain_words(report.message, 160)}"
    return text


def sync_report_line(report: SyncReport) -> str:
    text = f"Position sync: {_plural(report.placed, 'order')} placed"
    if report.refused:
        text += f", {len(report.refused)} not placed"
    if report.message:
        text += f" ({one_line(report.message, 160)})"
    return text


class CopyTradeApp(App[None]):
    """The terminal. Give it an engine; it subscribes, runs it in a worker and renders it."""

    CSS_PATH = "app.tcss"
    ENABLE_COMMAND_PALETTE = False
    HORIZONTAL_BREAKPOINTS = [
        (0, "-narrow"),
        (110, "-wide"),
    ]
    # Under 28 rows, three tables stacked show no rows at all: the follower orders give way
    # (a leader order's copies in step, and its timeline, still say how each copy is doing).
    VERTICAL_BREAKPOINTS = [
        (0, "-short"),
        (28, "-tall"),
    ]

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("k,K", "kill_switch", "Kill switch", id="kill_switch", key_display="K"),
        Binding("r,R", "resync", "Resync", id="resync", key_display="R"),
        Binding("s,S", "sync_positions", "Sync positions", id="sync_positions", key_display="S"),
        Binding("u,U", "clear_freeze", "Clear freeze", id="clear_freeze", key_display="U"),
        Binding("T", "replace_token", "Replace token", id="replace_token", key_display="T"),
        Binding("t", "timeline", "Timeline", id="timeline"),
        Binding("f", "toggle_filter", "Filter followers", id="toggle_filter"),
        Binding("question_mark,f1", "help", "Help", id="help", key_display="?"),
        Binding("q", "quit", "Quit", id="quit"),
    ]

    HELP_KEYS: ClassVar[list[tuple[str, str]]] = [
        ("K", "kill switch: cancel open follower orders, send nothing new (asks first)"),
        ("K (when KILLED)", "resume (lists open leader orders without a copy, offers to re-place)"),
        ("R", "resync now: read the leader's order book and converge every follower"),
        ("S", "position sync: preview the orders that bring followers to target (asks first)"),
        ("U", "clear a freeze (lists what is frozen and why; asks first)"),
        ("T (Shift+t)", "replace an account's access token (masked; asks first)"),
        ("Enter (alerts)", "open the picked alert in full; ↑ ↓ pick"),
        ("Enter / t", "timeline of the leader order under the cursor"),
        ("f", "followers pane: only the highlighted leader order / all"),
        ("Tab / Shift+Tab", "move between panes"),
        ("↑ ↓ PgUp PgDn", "move in a table"),
        ("? / F1", "this help"),
        ("q / Ctrl+Q", "quit (asks first if orders are in flight)"),
        ("y / n / Esc", "in a confirmation: yes / no / no"),
    ]

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
        self._unsubscribe: Callable[[], None] | None = None
        self._loop_thread = threading.get_ident()
        self._engine_worker: Worker[None] | None = None
        self._stopping = False
        self._stopped = False
        self._resync_running = False
        self._kill_busy = False
        self._sync_busy = False
        self.latency_history: deque[float] = deque(maxlen=LATENCY_HISTORY)

    # --- layout --------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        status = StatusLine(self.clock)
        status.facts.demo = self.demo
        yield status
        with Horizontal(id="main"):
            with Vertical(id="left"):
                leader = LeaderOrdersTable(cap=self._leader_rows)
                leader.border_title = "Leader orders"
                yield leader
                positions = PositionsTable()
                positions.border_title = "Positions · not read yet"
                yield positions
                follower = FollowerOrdersTable(cap=self._follower_rows)
                follower.border_title = "Follower orders · all"
                yield follower
            with Vertical(id="right"):
                accounts = AccountsPane()
                accounts.border_title = "Accounts"
                yield accounts
                with Vertical(id="latency-box") as box:
                    box.border_title = "Copy latency p50, last 5 min"
                    yield Static("no copies yet", id="latency-label")
                    spark = Sparkline([], summary_function=max, id="latency-spark")
                    spark.display = False
                    yield spark
                alerts = AlertsPane()
                alerts.border_title = "Alerts"
                yield alerts
        yield Footer()

    @property
    def status_line(self) -> StatusLine:
        return self.query_one(StatusLine)

    @property
    def leader_table(self) -> LeaderOrdersTable:
        return self.query_one(LeaderOrdersTable)

    @property
    def follower_table(self) -> FollowerOrdersTable:
        return self.query_one(FollowerOrdersTable)

    @property
    def accounts_pane(self) -> AccountsPane:
        return self.query_one(AccountsPane)

    @property
    def positions_table(self) -> PositionsTable:
        return self.query_one(PositionsTable)

    @property
    def alerts_pane(self) -> AlertsPane:
        return self.query_one(AlertsPane)

    # --- lifecycle -----------------------------------------------------------------------

    def on_mount(self) -> None:
        self._loop_thread = threading.get_ident()
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
        the screen falling behind.
        """
        now = time.perf_counter()
        if now < self._flush_not_before:
            return
        self.flush_events()
        self._flush_not_before = time.perf_counter() + min(self.last_flush_ms * 0.004, 1.0)

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
                spark = self.query_one("#latency-spark", Sparkline)
                spark.display = True
                spark.data = list(self.latency_history)
                peak = max(self.latency_history)
                self.query_one("#latency-label", Static).update(
                    f"now {p50:.0f} ms · peak {peak:.0f} ms · p99 "
                    f"{stats.latency_p99_ms or 0:.0f} ms"
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
        title = f"Positions · {_plural(len(view.positions), 'instrument')}"
        if view.read_at is not None:
            title += f" · read {hms(view.read_at)}"
        if view.unavailable:
            title += f" · {len(view.unavailable)} not read"
        table.border_title = title

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

    def _recovery_alert(self, report: RecoveryReport) -> Alert:
        severity = Severity.WARNING if report.discrepancies else Severity.INFO
        return self._make_alert(severity, "RESYNC_DONE", resync_summary(report))

    # --- actions -------------------------------------------------------------------------

    def _confirm_open(self) -> bool:
        return isinstance(self.screen, ConfirmScreen | TokenScreen)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """While a confirmation is open, the main keys do nothing (it has its own y/n/Esc)."""
        dialogs = {"sync_positions", "clear_freeze", "replace_token"}
        if (
            action
            in {"kill_switch", "resync", "timeline", "toggle_filter", "help", "quit"} | dialogs
        ):
            if self._confirm_open():
                return False
            on_main = self.screen is self.screen_stack[0]
            if action in {"timeline", "toggle_filter"} | dialogs and not on_main:
                return False
            if action == "help" and isinstance(self.screen, HelpScreen):
                return False
        return True

    def action_kill_switch(self) -> None:
        if self._confirm_open():
            return
        if self._kill_busy:
            self.notify("The kill switch is already being applied.", severity="warning")
            return
        if self._engine_state() is EngineState.KILLED:
            self.run_worker(self._ask_resume(), group="commands", name="resume-preview")
            return
        preview: KillPreview | None
        try:
            preview = self.engine.kill_preview()
        except Exception as exc:
            self.log.error(f"kill preview failed: {one_line(str(exc))}")
            preview = None
        self.push_screen(
            ConfirmScreen(
                "KILL SWITCH",
                kill_message(preview),
                yes_label="Yes, kill",
                no_label="No",
                id="confirm-kill",
            ),
            self._on_kill_answer,
        )

    def _on_kill_answer(self, yes: bool | None) -> None:
        if not yes or self._kill_busy:
            return
        self._kill_busy = True
        self.status_line.facts.busy = "killing…"
        self.status_line.refresh_status()
        self.run_worker(self._kill(), group="commands", name="kill", exit_on_error=False)

    async def _kill(self) -> None:
        try:
            await self.engine.kill(KILL_REASON)
        except Exception as exc:
            detail = one_line(f"{type(exc).__name__}: {exc}", 160)
            self._ui_alert(
                Severity.CRITICAL,
                "KILL_FAILED",
                f"The kill switch failed ({detail}). Press K again, or cancel follower orders "
                "in Dhan directly.",
            )
            self.notify(f"Kill switch failed: {detail}", severity="error", timeout=10)
        else:
            self.notify("KILLED: nothing new is sent; open follower orders are being cancelled.")
        finally:
            self._kill_busy = False
            self._after_command()

    async def _ask_resume(self) -> None:
        """Resume, with the exact list of open leader orders that have no copy; when there are
        some, a second question offers to re-place them (No keeps them uncopied)."""
        try:
            uncopied = await self.engine.uncopied_orders()
        except Exception as exc:
            self.log.error(f"uncopied orders unavailable: {one_line(str(exc))}")
            uncopied = []
        if self.screen is not self.screen_stack[0]:
            return
        message = (
            "The engine is KILLED. Resume copying new leader orders to the followers?"
            if not uncopied
            else f"The engine is KILLED. Resume copying new leader orders? "
            f"{_plural(len(uncopied), 'open leader order')} "
            f"{'has' if len(uncopied) == 1 else 'have'} no copy in some follower "
            "(cancelled by the kill, or placed while killed); the next question offers to "
            "re-place them."
        )
        self.push_screen(
            ConfirmScreen(
                "RESUME REPLICATION?",
                message,
                yes_label="Yes, resume",
                no_label="No, stay killed",
                danger=False,
                details=uncopied_lines(uncopied),
                id="confirm-resume",
            ),
            lambda yes: self._on_resume_answer(yes, uncopied),
        )

    def _on_resume_answer(self, yes: bool | None, uncopied: Sequence[UncopiedOrder]) -> None:
        if not yes or self._kill_busy:
            return
        if not uncopied:
            self._start_resume(False)
            return
        self.push_screen(
            ConfirmScreen(
                "RE-PLACE OPEN LEADER ORDERS?",
                f"Resuming. Place copies of these {_plural(len(uncopied), 'open leader order')} "
                "again in the followers listed? No resumes without them.",
                yes_label="Yes, re-place",
                no_label="No, resume only",
                details=uncopied_lines(uncopied),
                id="confirm-replace",
            ),
            lambda replace: self._start_resume(bool(replace)),
        )

    def _start_resume(self, replace_open: bool) -> None:
        if self._kill_busy:
            return
        self._kill_busy = True
        self.status_line.facts.busy = "resuming…"
        self.status_line.refresh_status()
        self.run_worker(
            self._resume(replace_open), group="commands", name="resume", exit_on_error=False
        )

    async def _resume(self, replace_open: bool = False) -> None:
        try:
            report = await self.engine.resume(replace_open)
        except Exception as exc:
            detail = one_line(f"{type(exc).__name__}: {exc}", 160)
            self._ui_alert(Severity.ERROR, "RESUME_FAILED", f"Resume failed ({detail}).")
            self.notify(f"Resume failed: {detail}", severity="error", timeout=10)
        else:
            self.notify(resume_line(report, replace_open))
        finally:
            self._kill_busy = False
            self._after_command()

    # --- position sync, freezes, tokens ------------------------------------------------------

    def action_sync_positions(self) -> None:
        if self._sync_busy:
            self.notify("A position sync is already being prepared or sent.", severity="warning")
            return
        self._sync_busy = True
        self.status_line.facts.busy = "reading positions…"
        self.status_line.refresh_status()
        self.run_worker(
            self._ask_sync(), group="commands", name="sync-preview", exit_on_error=False
        )

    async def _ask_sync(self) -> None:
        try:
            preview = await self.engine.sync_preview()
        except Exception as exc:
            self._sync_busy = False
            self._after_command()
            detail = one_line(f"{type(exc).__name__}: {exc}", 160)
            self.notify(f"Position sync preview failed: {detail}", severity="error", timeout=10)
            return
        self._after_command()
        if self.screen is not self.screen_stack[0]:
            self._sync_busy = False
            return
        if not preview.orders:
            self._sync_busy = False
            notes = f" ({one_line('; '.join(preview.notes), 200)})" if preview.notes else ""
            self.notify(f"Every follower is at its target: nothing to sync{notes}.")
            return
        accounts = len({o.follower for o in preview.orders})
        self.push_screen(
            ConfirmScreen(
                "POSITION SYNC",
                f"Place {_plural(len(preview.orders), 'order')} in "
                f"{_plural(accounts, 'follower')} to bring each to its target now, at today's "
                "prices? Exactly these:",
                yes_label="Yes, place them",
                no_label="No",
                details=sync_lines(preview, self._symbols()),
                id="confirm-sync",
            ),
            lambda yes: self._on_sync_answer(yes, preview),
        )

    def _symbols(self) -> dict[str, str]:
        """Security id -> trading symbol, as the last positions read named them."""
        return {p.security_id: p.symbol for p in self.positions_table.view.positions}

    def _on_sync_answer(self, yes: bool | None, preview: SyncPreview) -> None:
        if not yes:
            self._sync_busy = False
            return
        self.status_line.facts.busy = "syncing positions…"
        self.status_line.refresh_status()
        self.run_worker(self._sync(preview), group="commands", name="sync", exit_on_error=False)

    async def _sync(self, preview: SyncPreview) -> None:
        try:
            report = await self.engine.sync_positions(preview)
        except Exception as exc:
            detail = one_line(f"{type(exc).__name__}: {exc}", 160)
            self._ui_alert(Severity.ERROR, "SYNC_FAILED", f"Position sync failed ({detail}).")
        else:
            severity = Severity.WARNING if report.refused else Severity.INFO
            self._ui_alert(severity, "POSITION_SYNC", sync_report_line(report))
            self.notify(
                sync_report_line(report), severity="warning" if report.refused else "information"
            )
        finally:
            self._sync_busy = False
            self._after_command()

    def _frozen(self) -> list[tuple[str, str]]:
        """(account, why) of every frozen account, the engine first ("" = the engine)."""
        try:
            views = self.engine.account_views()
        except Exception as exc:
            self.log.error(f"account views unavailable: {one_line(str(exc))}")
            return []
        frozen = []
        for view in views:
            if view.state is AccountState.FROZEN:
                frozen.append(("" if view.is_leader else view.account, view.why))
        return frozen

    def action_clear_freeze(self) -> None:
        frozen = self._frozen()
        if not frozen:
            self.notify("Nothing is frozen.")
            return
        details = "\n".join(
            f"{account or 'the engine (every follower)'}: {plain_words(why, 200)}"
            for account, why in frozen
        )
        self.push_screen(
            ConfirmScreen(
                "CLEAR FREEZE?",
                "Automatic safety froze these: nothing new is opened while frozen, and resting "
                "copies stay. Clear the freeze and let them open new positions again?",
                yes_label="Yes, clear",
                no_label="No, stay frozen",
                details=details,
                id="confirm-unfreeze",
            ),
            lambda yes: self._on_unfreeze_answer(yes, [account for account, _ in frozen]),
        )

    def _on_unfreeze_answer(self, yes: bool | None, accounts: list[str]) -> None:
        if yes:
            self.run_worker(
                self._clear_freezes(accounts),
                group="commands",
                name="unfreeze",
                exit_on_error=False,
            )

    async def _clear_freezes(self, accounts: list[str]) -> None:
        for account in accounts:
            try:
                line = await self.engine.clear_freeze(account)
            except Exception as exc:
                line = f"{account or 'engine'}: clearing failed ({type(exc).__name__}: {exc})"
                self.notify(one_line(line, 200), severity="error", timeout=10)
            else:
                self.notify(plain_words(line, 200))
        self._after_command()

    def action_replace_token(self) -> None:
        try:
            views = self.engine.account_views()
        except Exception as exc:
            self.notify(f"Accounts unavailable: {one_line(str(exc), 120)}", severity="error")
            return
        if not views:
            self.notify("No account to replace a token for yet.")
            return
        # the account whose token Dhan refused (or that ran out) comes up first
        refused = [v.account for v in views if v.token_status in ("REFUSED", "EXPIRED")]
        screen = TokenScreen([v.account for v in views], selected=(refused or [""])[0])
        self.push_screen(screen, lambda yes: self._on_token_answer(yes, screen))

    def _on_token_answer(self, yes: bool | None, screen: TokenScreen) -> None:
        token = screen.take_token()
        if not yes or token is None or not token.get_secret_value():
            return
        account = screen.chosen_account
        self.run_worker(
            self._replace_token(account, token), group="commands", name="token", exit_on_error=False
        )

    async def _replace_token(self, account: str, token: SecretStr) -> None:
        try:
            line = await self.engine.replace_token(account, token)
        except Exception as exc:  # the text goes through one_line (redacted) like any other
            line = f"{account}: token not replaced ({type(exc).__name__}: {exc})"
            self.notify(one_line(line, 200), severity="error", timeout=10)
        else:  # the engine's own line: registered secrets, JWTs and blobs are still masked
            self.notify(plain_words(line, 200))

    def _after_command(self) -> None:
        facts = self.status_line.facts
        facts.busy = "recovering…" if self._resync_running else ""
        facts.engine_state = self._engine_state()
        if facts.engine_state is not EngineState.KILLED:
            facts.engine_note = ""
        self.flush_events()
        self._show_state()

    def _show_state(self) -> None:
        """The status line, and the main screen's red frame while KILLED."""
        killed = self.status_line.facts.engine_state is EngineState.KILLED
        self.screen_stack[0].set_class(killed, "-killed")
        self.status_line.refresh_status()

    def action_resync(self) -> None:
        if self._confirm_open():
            return
        if self._resync_running:
            self.notify("A resync is already running; this R is ignored.", severity="warning")
            return
        if self._kill_busy:
            self.notify("Wait for the kill switch to finish before a resync.", severity="warning")
            return
        self._resync_running = True
        self.status_line.facts.busy = "recovering…"
        self.status_line.refresh_status()
        self.run_worker(self._resync(), group="commands", name="resync", exit_on_error=False)

    async def _resync(self) -> None:
        try:
            report = await self.engine.resync()
        except Exception as exc:
            detail = one_line(f"{type(exc).__name__}: {exc}", 160)
            self._ui_alert(Severity.ERROR, "RESYNC_FAILED", f"Resync failed ({detail}).")
            self.notify(f"Resync failed: {detail}", severity="error", timeout=10)
        else:
            summary = resync_summary(report)
            alert = self._recovery_alert(report)
            self.coalescer.append(AlertRaised(at=alert.at, alert=alert))
            self.notify(
                summary,
                title="Resync done",
                severity="warning" if report.discrepancies else "information",
            )
        finally:
            self._resync_running = False
            self._after_command()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        table = event.data_table
        key = table.key_of_row(event.row_key) if isinstance(table, KeyedTable) else None
        if key is None:
            return
        event.stop()
        if event.data_table is self.leader_table:
            self._open_timeline(key)
        elif event.data_table is self.follower_table:
            leader_id = self.follower_table.leader_of(key)
            if leader_id:
                self._open_timeline(leader_id)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.cursor_row == 0:  # back on the newest row: nothing new above any more
            if event.data_table is self.leader_table:
                self.leader_table.new_above = 0
                self._title_leaders()
            elif event.data_table is self.follower_table:
                self.follower_table.new_above = 0
                self._title_followers()
        table = self.leader_table
        if event.data_table is not table or self.follower_table.leader_filter is None:
            return
        key = table.key_of_row(event.row_key)
        if key:
            self.follower_table.set_filter(key)
            self._title_followers()

    def action_timeline(self) -> None:
        focused = self.focused
        if focused is self.follower_table:
            key = self.follower_table.cursor_key()
            leader_id = self.follower_table.leader_of(key) if key else None
        else:
            leader_id = self.leader_table.cursor_key()
        if leader_id:
            self._open_timeline(leader_id)

    def _open_timeline(self, leader_order_id: str) -> None:
        if self.screen is not self.screen_stack[0]:
            return
        self.run_worker(
            self._load_timeline(leader_order_id),
            group="timeline",
            name="timeline",
            exclusive=True,
            exit_on_error=False,
        )

    async def _load_timeline(self, leader_order_id: str) -> None:
        try:
            entries = await self.engine.timeline(leader_order_id)
        except Exception as exc:
            detail = one_line(f"{type(exc).__name__}: {exc}", 160)
            self.notify(f"Timeline unavailable: {detail}", severity="error")
            return
        if self.screen is not self.screen_stack[0]:
            return  # a dialog opened meanwhile (e.g. the kill switch): don't cover it
        await self.push_screen(TimelineScreen(leader_order_id, entries))

    def action_toggle_filter(self) -> None:
        table = self.follower_table
        if table.leader_filter is not None:
            table.set_filter(None)
        else:
            leader_id = self.leader_table.cursor_key()
            if leader_id is None:
                self.notify("No leader order to filter on yet.")
                return
            table.set_filter(leader_id)
        self._title_followers()

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

    def action_help(self) -> None:
        if isinstance(self.screen, HelpScreen):
            return
        self.push_screen(HelpScreen(self.HELP_KEYS))

    async def action_quit(self) -> None:
        if self._confirm_open():
            return
        in_flight, unknown_why = self._in_flight()
        if in_flight == 0:
            await self._quit_now()
            return
        question = (
            f"The engine can't say what is in flight ({unknown_why}); quit anyway?"
            if in_flight is None
            else f"{_plural(in_flight, 'order')} "
            f"{'is' if in_flight == 1 else 'are'} in flight; quit anyway?"
        )
        self.push_screen(
            ConfirmScreen(
                "QUIT?", question, yes_label="Yes, quit", no_label="No", id="confirm-quit"
            ),
            self._on_quit_answer,
        )

    def _in_flight(self) -> tuple[int | None, str]:
        """Orders in flight, or None and why when the engine can't say (then quit asks)."""
        worker = self._engine_worker
        if worker is None or worker.is_finished:
            return None, "it is not running"
        if self._engine_state() is EngineState.STARTING:
            return None, "it is still starting"
        try:
            return self.engine.in_flight(), ""
        except Exception as exc:  # any failure means "unknown": fail closed, ask
            return None, f"it did not answer: {type(exc).__name__}"

    def _on_quit_answer(self, yes: bool | None) -> None:
        if yes:
            self.run_worker(self._quit_now(), group="commands", name="quit")

    async def _quit_now(self) -> None:
        self.status_line.facts.busy = "stopping the engine…"
        self.status_line.refresh_status()
        await self._stop_engine()
        self.exit()
