"""The words of the terminal's dialogs and notices, from the engine's own reports.

Pure functions: what the kill switch, a resume, a resync or a position sync will do or did,
as the trader reads it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from engine.control.protocol import ResumeReport, UncopiedOrder
from engine.views import (
    KillPreview,
    RecoveryReport,
    SyncOrderView,
    SyncPreview,
    SyncReport,
)
from tui.format import one_line, plain_words, short_id


def plural(n: int, word: str) -> str:
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
            f"Cancel {plural(preview.open_follower_orders, 'open follower order')} in "
            f"{plural(preview.accounts, 'account')} and send nothing new until you resume."
        )
    else:
        text = "No follower order is open. Send nothing new until you resume."
    if preview.queued_actions:
        text += f" {plural(preview.queued_actions, 'queued action')} will not be sent."
    return text


def resync_summary(report: RecoveryReport) -> str:
    text = (
        f"Resync ({report.trigger}): {plural(report.leader_orders_checked, 'leader order')} "
        f"checked, {plural(report.actions_taken, 'action')} taken, "
        f"{plural(len(report.discrepancies), 'discrepancy')}"
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
        text += f" {plural(len(report.replaced), 'leader order')} re-placed."
    elif report.uncopied:
        still = plural(len(report.uncopied), "open leader order")
        text += f" {still} still without a copy" + (" (re-placing asked)." if replace_open else ".")
    if report.message:
        text += f" {plain_words(report.message, 160)}"
    return text


def sync_report_line(report: SyncReport) -> str:
    text = f"Position sync: {plural(report.placed, 'order')} placed"
    if report.refused:
        text += f", {len(report.refused)} not placed"
    if report.message:
        text += f" ({one_line(report.message, 160)})"
    return text
