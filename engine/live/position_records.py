"""The records of the positions job: a follower's attach point, the orders a position sync
placed, and a sync's plan (engine.live.positions keeps them; engine.live.position_codec
stores them)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from engine.domain import Side
from engine.replication.position_drift import PositionDrift
from engine.replication.targets import PositionKey, PositionLedger

LedgerId = tuple[str, PositionKey]  # (follower, position)
SYNC_PREFIX = "SYNC-"  # the id of an order a position sync placed (not a leader order)


@dataclass(frozen=True, slots=True)
class SyncOrder:
    """One order a confirmed position sync placed for a follower: it brings the follower
    to its target, and what it fills counts in the follower's position (with what the
    account held outside our copies when the sync was confirmed, `adopted`)."""

    order_id: str
    follower: str
    key: PositionKey
    adopted: int
    side: Side


@dataclass(frozen=True, slots=True)
class SyncPlan:
    follower: str
    key: PositionKey
    net: int  # what the account holds now
    target: int  # the follower's target once synced
    step: int  # signed: the order that brings it there (targets.sync_step)
    synced: PositionLedger
    # The follower's net against the target (the drift check's and the positions pane's
    # numbers too): what working copies will close, and what nothing but a sync will.
    drift: PositionDrift
    from_copies: int  # of `net`, what our copies (and earlier syncs) gave the follower
    unsynced_share: int  # of `target`, the leader's attach-point position not yet synced


@dataclass(frozen=True, slots=True)
class AttachPoint:
    at: datetime
    leader_net: dict[PositionKey, int]
    # The leader's positions could not be read at attach: his net there is taken from the
    # history orders of the day's order book instead (misses positions carried overnight).
    derived: bool = False
    # Leader orders refused as beyond the catch-up bound: a later restart, when the bound
    # might read differently, does not trade them either.
    refused: set[str] = field(default_factory=set)
