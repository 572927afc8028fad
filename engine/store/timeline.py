"""The timeline of one leader order: its journal lines and its intents, oldest first, as text.

The read side of the journal: intents are stored as data, and worded here when read.
"""

from __future__ import annotations

from datetime import datetime

import aiosqlite

from engine.clock import to_ist
from engine.records import Intent
from engine.store.rows import intent_from
from engine.store.serialization import parse_datetime
from engine.views import TimelineEntry

_Ranked = tuple[datetime, int, TimelineEntry]


async def timeline_rows(db: aiosqlite.Connection, leader_order_id: str) -> list[_Ranked]:
    """Journal entries and intents of one leader order as (at, seq, entry), unsorted."""
    out: list[_Ranked] = []
    for row in await db.execute_fetchall(
        "SELECT at, kind, follower, text, seq FROM journal WHERE leader_order_id = ?",
        (leader_order_id,),
    ):
        at = parse_datetime(row["at"])
        entry = TimelineEntry(at=at, kind=row["kind"], follower=row["follower"], text=row["text"])
        out.append((at, row["seq"], entry))
    intents = await db.execute_fetchall(
        "SELECT * FROM intents WHERE leader_order_id = ?", (leader_order_id,)
    )
    for row in intents:
        intent = intent_from(row)
        assert intent.created_at is not None
        entry = TimelineEntry(
            at=intent.created_at, kind="intent", follower=intent.follower, text=intent_text(intent)
        )
        out.append((intent.created_at, row["seq"], entry))
    return out


def in_order(rows: list[_Ranked]) -> list[TimelineEntry]:
    """Oldest first; entries of one instant in the order they were written (``seq``)."""
    rows.sort(key=lambda r: (_sort_key(r[0]), r[1]))
    return [entry for _, _, entry in rows]


def intent_text(intent: Intent) -> str:
    """One line: kind, what was asked, the order, the correlation id and how it ended."""
    p = intent.params
    parts = [intent.kind.value]
    if p is not None:
        parts.append(f"{p.side.value} {p.quantity} {p.segment.value}:{p.security_id}")
        price = f" @ {p.price:g}" if p.price else ""
        trigger = f" trigger {p.trigger_price:g}" if p.trigger_price else ""
        parts.append(f"{p.order_type.value}{price}{trigger} {p.product.value} {p.validity.value}")
        if p.amo:
            parts.append(f"AMO {p.amo_time.value if p.amo_time else ''}".rstrip())
    if intent.follower_order_id:
        parts.append(f"order {intent.follower_order_id}")
    parts.append(f"[{intent.correlation_id}]")
    text = " ".join(parts) + f" -> {intent.outcome.value}"
    if intent.detail:
        text += f": {intent.detail}"
    return text


def _sort_key(at: datetime) -> float:
    # A naive time (none is written today, older rows may have one) is taken as IST.
    return at.timestamp() if at.tzinfo is not None else to_ist(at).timestamp()
