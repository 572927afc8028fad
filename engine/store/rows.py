"""Row mapping: the engine's records as the tuples SQLite stores, and back.

Free text is redacted on the way in; ``params`` and leader-order snapshots are JSON columns
(``engine.store.serialization``), every other field a column of its own.
"""

from __future__ import annotations

import functools
import json
import sqlite3
from datetime import datetime
from typing import Any

from engine.domain import Alert, MirrorState, OrderParams, OrderSnapshot, OrderStatus, Severity
from engine.records import Intent, IntentKind, IntentOutcome, MirrorRecord, SliceState
from engine.secrets import redact, secrets_version
from engine.store.serialization import (
    format_datetime,
    format_optional_datetime,
    from_json,
    parse_datetime,
    parse_optional_datetime,
    to_json,
)

MIRROR_COLUMNS = (
    "follower, leader_order_id, correlation_id, state, generation, follower_order_id,"
    " broker_status, params, filled_qty, avg_price, modifications, reason, symbol,"
    " leader_seen_mono, latency_ms, slippage, updated_at, prior_filled, skip_code, slices,"
    " refused_params"
)
MIRROR_COLUMN_NAMES = tuple(c.strip() for c in MIRROR_COLUMNS.split(","))
MIRROR_COLUMN_COUNT = len(MIRROR_COLUMN_NAMES)
# The columns added since the intents' journal first held mirror rows, as an older row means
# them: a journal the previous version wrote is read after an upgrade.
_LATER_MIRROR_COLUMNS: tuple[Any, ...] = (None,)  # refused_params


def mirror_row_completed(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """A mirror row from the intents' journal, with the columns its version lacked."""
    missing = MIRROR_COLUMN_COUNT - len(row)
    if 0 < missing <= len(_LATER_MIRROR_COLUMNS):
        return row + _LATER_MIRROR_COLUMNS[-missing:]
    return row


def slices_json(slices: tuple[SliceState, ...]) -> str:
    """The ``slices`` column: "" for a copy placed as one order."""
    if not slices:
        return ""
    return json.dumps(
        [
            [
                s.order_id,
                s.quantity,
                s.filled_qty,
                s.avg_price,
                s.status.value if s.status else None,
            ]
            for s in slices
        ]
    )


def slices_from(text: str | None) -> tuple[SliceState, ...]:
    if not text:
        return ()
    return tuple(
        SliceState(str(oid), int(qty), int(filled), float(avg), OrderStatus(st) if st else None)
        for oid, qty, filled, avg, st in json.loads(text)
    )


def params_json(params: OrderParams) -> str:
    """The ``params`` column. A copy's params are written with its intent and again with every
    state of its mirror row: the text is made once (it was ~4 serialisations per copy)."""
    return _params_json(params, secrets_version())


@functools.lru_cache(maxsize=2048)
def _params_json(params: OrderParams, secrets: int) -> str:
    # Keyed by the secrets' version too: a text redacted before a secret was registered is
    # never reused after it.
    return to_json(params)


def mirror_row(rec: MirrorRecord) -> tuple[Any, ...]:
    """In ``MIRROR_COLUMNS`` order."""
    return (
        rec.follower,
        rec.leader_order_id,
        rec.correlation_id,
        rec.state.value,
        rec.generation,
        rec.follower_order_id,
        rec.broker_status.value if rec.broker_status else None,
        None if rec.params is None else params_json(rec.params),
        rec.filled_qty,
        float(rec.avg_price),
        rec.modifications,
        redact(rec.reason),
        rec.symbol,
        rec.leader_seen_mono,
        rec.latency_ms,
        rec.slippage,
        format_optional_datetime(rec.updated_at),
        rec.prior_filled,
        rec.skip_code,
        slices_json(rec.slices),
        None if rec.refused_params is None else params_json(rec.refused_params),
    )


def mirror_from(row: sqlite3.Row) -> MirrorRecord:
    return MirrorRecord(
        follower=row["follower"],
        leader_order_id=row["leader_order_id"],
        correlation_id=row["correlation_id"],
        state=MirrorState(row["state"]),
        generation=row["generation"],
        follower_order_id=row["follower_order_id"],
        broker_status=OrderStatus(row["broker_status"]) if row["broker_status"] else None,
        params=_params_from(row["params"]),
        filled_qty=row["filled_qty"],
        avg_price=row["avg_price"],
        modifications=row["modifications"],
        reason=row["reason"],
        symbol=row["symbol"],
        leader_seen_mono=row["leader_seen_mono"],
        latency_ms=row["latency_ms"],
        slippage=row["slippage"],
        updated_at=parse_optional_datetime(row["updated_at"]),
        prior_filled=row["prior_filled"],
        skip_code=row["skip_code"],
        slices=slices_from(row["slices"]),
        refused_params=_params_from(row["refused_params"]),
    )


def leader_row(snap: OrderSnapshot, stored_at: datetime) -> tuple[Any, ...]:
    """The columns of ``leader_orders``; the whole snapshot is its ``snapshot`` column."""
    return (
        snap.order_id,
        snap.client_id,
        snap.status.value,
        snap.segment.value,
        snap.security_id,
        snap.correlation_id,
        snap.quantity,
        snap.filled_qty,
        format_optional_datetime(snap.updated_at),
        to_json(snap),
        format_datetime(stored_at),
    )


def snapshot_from(text: str) -> OrderSnapshot:
    return from_json(OrderSnapshot, text)


def intent_row(intent: Intent, created: datetime, seq: int) -> tuple[Any, ...]:
    """The columns of a new intent: follower, leader_order_id, kind, correlation_id, params,
    follower_order_id, outcome, detail, created_at, seq."""
    return (
        intent.follower,
        intent.leader_order_id,
        intent.kind.value,
        intent.correlation_id,
        None if intent.params is None else params_json(intent.params),
        intent.follower_order_id,
        intent.outcome.value,
        redact(intent.detail),
        format_datetime(created),
        seq,
    )


def intent_from(row: sqlite3.Row) -> Intent:
    return Intent(
        follower=row["follower"],
        leader_order_id=row["leader_order_id"],
        kind=IntentKind(row["kind"]),
        correlation_id=row["correlation_id"],
        params=_params_from(row["params"]),
        follower_order_id=row["follower_order_id"],
        id=row["id"],
        outcome=IntentOutcome(row["outcome"]),
        detail=row["detail"],
        created_at=parse_datetime(row["created_at"]),
    )


def completion_row(
    intent_id: int, outcome: IntentOutcome, detail: str, order_id: str, now: datetime
) -> tuple[Any, ...]:
    """outcome, detail, completed_at (only once ACKED, REFUSED or EXPIRED), follower order
    id, id."""
    finished = outcome in (IntentOutcome.ACKED, IntentOutcome.REFUSED, IntentOutcome.EXPIRED)
    completed = format_datetime(now) if finished else None
    return (outcome.value, redact(detail), completed, order_id, intent_id)


def journal_row(
    at: datetime,
    kind: str,
    follower: str | None,
    leader_order_id: str | None,
    text: str,
    seq: int,
) -> tuple[Any, ...]:
    return (format_datetime(at), kind, follower, leader_order_id, redact(text), seq)


def alert_row(alert: Alert) -> tuple[Any, ...]:
    return (
        format_datetime(alert.at),
        alert.code,
        alert.severity.value,
        redact(alert.message),
        alert.follower,
        alert.leader_order_id,
        alert.count,
    )


def alert_from(row: sqlite3.Row) -> Alert:
    return Alert(
        code=row["code"],
        severity=Severity(row["severity"]),
        message=row["message"],
        at=parse_datetime(row["at"]),
        follower=row["follower"],
        leader_order_id=row["leader_order_id"],
        count=row["count"],
    )


def _params_from(text: str | None) -> OrderParams | None:
    return None if text is None else from_json(OrderParams, text)
