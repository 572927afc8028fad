"""The control channel's `status`: one secret-free look at the whole engine, from the shared
state and the figures the engine already shows."""

from __future__ import annotations

from pathlib import Path

from engine.domain import ConnectionState, EngineState
from engine.live.wiring import SharedState
from engine.views import EngineStats

__all__ = ["engine_status"]


def engine_status(
    shared: SharedState,
    *,
    state: EngineState,
    stats: EngineStats,
    leader: ConnectionState | None,
    market: str,
    database: Path,
    in_flight: int,
) -> dict[str, object]:
    book, freezes = shared.book, shared.arming.freezes
    return {
        "state": state.value,
        "frozen": shared.arming.frozen_reason(""),
        "leader_feed": leader.value if leader else "",
        "market": market,
        "database": str(database),
        "replicated": stats.replicated,
        "failed": stats.failed,
        "open_copies": len(book.open_copies()),
        "in_flight": in_flight,
        "followers": [
            {
                "name": f.name,
                "frozen": "; ".join(freezes.get(f.name, {}).values()),
                "open_copies": book.count_open(f.name),
                "queued": f.dispatcher.queue_depth,
                "circuit": f.circuit.state.value,
            }
            for f in shared.accounts.all()
        ],
    }
