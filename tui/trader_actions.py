"""What the trader's keys do: the kill switch and resume, resync, position sync, clearing a
freeze, replacing a token, the timeline and the followers filter, help and quit. Each asks
first where the brief says so and tells the outcome; it decides nothing about orders.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from pydantic import SecretStr
from textual.binding import Binding, BindingType
from textual.widgets import DataTable

from engine.control.protocol import UncopiedOrder
from engine.domain import Alert, EngineState, Severity
from engine.events import AlertRaised
from engine.views import (
    AccountState,
    KillPreview,
    RecoveryReport,
    SyncPreview,
)
from tui.cockpit import CockpitShell
from tui.dialog_text import (
    kill_message,
    plural,
    resume_line,
    resync_summary,
    sync_lines,
    sync_report_line,
    uncopied_lines,
)
from tui.format import one_line, plain_words
from tui.screens.confirm import ConfirmScreen
from tui.screens.help import HelpScreen
from tui.screens.timeline import TimelineScreen
from tui.screens.token import TokenScreen
from tui.widgets.keyed_table import KeyedTable

KILL_REASON = "manual kill switch"


class TraderActions(CockpitShell):
    """The key bindings and the dialogs they open, over the cockpit's panes."""

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
            f"{plural(len(uncopied), 'open leader order')} "
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
                f"Resuming. Place copies of these {plural(len(uncopied), 'open leader order')} "
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
                f"Place {plural(len(preview.orders), 'order')} in "
                f"{plural(accounts, 'follower')} to bring each to its target now, at today's "
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
            f"{account or 'the engine (every follower)'}: "
            # Most reasons already open with the account's name (they are alert texts too).
            + plain_words(why.removeprefix(f"{account}: ") if account else why, 200)
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

    def action_help(self) -> None:
        if isinstance(self.screen, HelpScreen):
            return
        # Built once and kept (installed): opening it again only shows it, no compose and
        # mount of its widgets on every press.
        if not self.is_screen_installed("help"):
            self.install_screen(HelpScreen(self.HELP_KEYS), name="help")
        self.push_screen("help")

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
            else f"{plural(in_flight, 'order')} "
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
