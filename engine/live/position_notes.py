"""Alerts that sum up many leader orders at once (history not traded, open orders not copied,
orders beyond the catch-up bound): one alert per follower and kind after the current pass, not
one per order (a recovery ingests a whole order book without awaiting)."""

from __future__ import annotations

import asyncio

from engine.domain import OrderSnapshot, Severity
from engine.live.notifier import Notifier

HISTORY = "history"
EXISTING = "existing"
LATE = "late"


class PositionNotes:
    def __init__(self, notifier: Notifier) -> None:
        self._notifier = notifier
        self._pending: dict[tuple[str, str], list[str]] = {}  # (follower, kind) -> lines
        self._scheduled = False

    def note(self, follower: str, kind: str, line: str) -> None:
        self._pending.setdefault((follower, kind), []).append(line)
        if not self._scheduled:
            self._scheduled = True
            # After the current pass (a recovery ingests a whole order book without awaiting):
            # one alert per follower and kind, not one per order.
            asyncio.get_running_loop().call_soon(self._publish)

    def _publish(self) -> None:
        self._scheduled = False
        notes, self._pending = self._pending, {}
        for (follower, kind), lines in notes.items():
            shown = "; ".join(lines[:20]) + (
                f"; and {len(lines) - 20} more" if len(lines) > 20 else ""
            )
            if kind == "history":
                code, severity = "HISTORY_NOT_TRADED", Severity.INFO
                text = (
                    f"{follower}: {len(lines)} leader order(s) filled before this follower's "
                    f"attach point are history and not traded: {shown}"
                )
            elif kind == "existing":
                code, severity = "EXISTING_NOT_COPIED", Severity.INFO
                text = (
                    f"{follower}: {len(lines)} leader order(s) open at the attach point are "
                    f"not copied (COPYTRADE_COPY_EXISTING=none): {shown}"
                )
            else:
                code, severity = "CATCH_UP_REFUSED", Severity.WARNING
                text = (
                    f"{follower}: {len(lines)} leader order(s) that ended while the engine "
                    f"was away are beyond the catch-up bound and not traded: {shown}"
                )
            self._notifier.alert(code, severity, text, follower)


def describe(snap: OrderSnapshot) -> str:
    return (
        f"{snap.order_id} {snap.side.value} {snap.filled_qty} "
        f"{snap.trading_symbol or snap.security_id}"
    )
