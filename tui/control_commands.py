"""`copytrade status|kill|resume|resync`: ask the running engine over its control channel.

Finds the engine by its database (`--db-path`, else COPYTRADE_DB_PATH from the environment or
the settings file, else the per-user default), sends one request, prints the answer as a
table (or JSON with `--json`). Exit codes: 0 done, 1 the engine refused, 2 no engine to ask.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

from rich.console import Console
from rich.table import Table

from engine.control.client import (
    ControlClientError,
    EngineNotRunning,
    EngineRefused,
    send_command,
)
from engine.control.protocol import Command, Request
from engine.paths import configured_db_path

__all__ = ["control_command"]

_NOT_SHOWN = "\u2014"


def control_command(
    command: Command,
    *,
    env_file: str | None,
    db_path: str | None,
    as_json: bool = False,
    reason: str = "",
    replace_open: bool = False,
    account: str = "",
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    db = configured_db_path(explicit=db_path, env_file=env_file)
    request = Request(command=command, reason=reason, replace_open=replace_open, account=account)
    try:
        result = send_command(db, request)
    except EngineNotRunning as exc:
        print(f"copytrade: {exc}", file=err)
        return 2
    except EngineRefused as exc:
        print(f"copytrade: {command.value} refused: {exc}", file=err)
        return 1
    except ControlClientError as exc:
        print(f"copytrade: {exc}", file=err)
        return 2
    if as_json:
        out.write(json.dumps(result, indent=2, ensure_ascii=False, sort_keys=True) + "\n")
        return 0
    console = Console(file=out, highlight=False, soft_wrap=True)
    _RENDERERS[command](console, result if isinstance(result, Mapping) else {}, replace_open)
    return 0


# --- rendering ------------------------------------------------------------------------------


def _label(key: str) -> str:
    return key.replace("_", " ")


def _cell(value: Any) -> str:
    if value is None or value == "":
        return _NOT_SHOWN
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.2f}"  # prices and milliseconds alike read best with two decimals
    if isinstance(value, Mapping):
        return ", ".join(f"{_label(str(k))} {_cell(v)}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(_cell(v) for v in value) or _NOT_SHOWN
    return str(value)


def _rows_table(rows: Sequence[Mapping[str, Any]], title: str | None = None) -> Table:
    columns: list[str] = []
    for row in rows:
        for key in row:
            if key not in columns:
                columns.append(key)
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(_label(column))
    for row in rows:
        table.add_row(*(_cell(row.get(column)) for column in columns))
    return table


def _pairs_table(pairs: Mapping[str, Any], title: str | None = None) -> Table:
    table = Table(title=title, title_justify="left", show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    for key, value in pairs.items():
        table.add_row(_label(key), _cell(value))
    return table


def _is_rows(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, Mapping) for v in value)


def render_status(console: Console, status: Mapping[str, Any], _replace_open: bool) -> None:
    """Scalars first as one table, then each nested mapping and list of rows as its own."""
    state = status.get("state", "unknown")
    console.print(f"Engine {state}")
    scalars = {k: v for k, v in status.items() if not isinstance(v, Mapping) and not _is_rows(v)}
    console.print(_pairs_table(scalars))
    for key, value in status.items():
        if isinstance(value, Mapping) and value:
            console.print(_pairs_table(value, title=_label(key)))
        elif _is_rows(value):
            console.print(_rows_table(value, title=_label(key)))


def render_kill(console: Console, status: Mapping[str, Any], replace_open: bool) -> None:
    console.print("Kill sent.")
    render_status(console, status, replace_open)


_UNCOPIED_COLUMNS = (
    ("leader_order_id", "leader order"),
    ("symbol", "symbol"),
    ("side", "side"),
    ("order_type", "type"),
    ("quantity", "qty"),
    ("price", "price"),
    ("trigger_price", "trigger"),
    ("followers", "without a copy"),
)


def _uncopied_table(orders: Sequence[Mapping[str, Any]]) -> Table:
    table = Table(title="Leader orders open without a copy", title_justify="left")
    for _, header in _UNCOPIED_COLUMNS:
        table.add_column(header)
    for order in orders:
        table.add_row(*(_cell(order.get(key)) for key, _ in _UNCOPIED_COLUMNS))
    return table


def render_resume(console: Console, report: Mapping[str, Any], replace_open: bool) -> None:
    console.print(f"Engine {report.get('state', 'unknown')}")
    if report.get("message"):
        console.print(str(report["message"]))
    replaced = report.get("replaced") or []
    if replaced:
        console.print(f"Copies placed again for {len(replaced)} leader orders: {_cell(replaced)}")
    uncopied = [o for o in report.get("uncopied") or [] if isinstance(o, Mapping)]
    if uncopied:
        console.print(_uncopied_table(uncopied))
        if not replace_open:
            console.print("To place copies of these now: copytrade resume --replace-open")
    elif not replaced:
        console.print("Every open leader order has its copies.")


def render_resync(console: Console, report: Mapping[str, Any], _replace_open: bool) -> None:
    checked = report.get("leader_orders_checked", 0)
    actions = report.get("actions_taken", 0)
    duration = report.get("duration_s") or 0.0
    console.print(
        f"Resync done in {float(duration):.2f} s: {checked} leader orders checked, "
        f"{actions} actions taken."
    )
    discrepancies = report.get("discrepancies") or []
    for line in discrepancies:
        console.print(f"  - {line}")
    if not discrepancies:
        console.print("No discrepancies.")


def render_uncopied(console: Console, answer: Mapping[str, Any], _replace_open: bool) -> None:
    orders = [o for o in answer.get("orders") or [] if isinstance(o, Mapping)]
    if orders:
        console.print(_uncopied_table(orders))
    else:
        console.print("Every open leader order has its copies.")


def render_sync(console: Console, answer: Mapping[str, Any], _replace_open: bool) -> None:
    """A position sync: the orders (to place, or placed), notes, and what was not placed."""
    orders = answer.get("orders") or []
    applied = "placed" in answer
    if orders:
        title = "Position sync orders" if applied else "Position sync would place (nothing sent)"
        rows = [
            {k: o.get(k) for k in ("follower", "symbol", "product", "side", "quantity")}
            | {"holds": o.get("net"), "target": o.get("target")}
            for o in orders
        ]
        console.print(_rows_table(rows, title))
    else:
        console.print("Every follower is at its target: nothing to sync")
    for note in answer.get("notes") or []:
        console.print(f"note: {note}")
    if applied:
        console.print(str(answer.get("message") or f"{answer.get('placed', 0)} placed"))
        for line in answer.get("refused") or []:
            console.print(f"not placed: {line}")
    elif orders:
        console.print("Run `copytrade sync --yes` to place them.")


def render_unfreeze(console: Console, answer: Mapping[str, Any], _replace_open: bool) -> None:
    console.print(str(answer.get("message") or "done"))


_RENDERERS = {
    Command.UNFREEZE: render_unfreeze,
    Command.STATUS: render_status,
    Command.KILL: render_kill,
    Command.RESUME: render_resume,
    Command.RESYNC: render_resync,
    Command.UNCOPIED: render_uncopied,
    Command.SYNC_PREVIEW: render_sync,
    Command.SYNC_APPLY: render_sync,
}
