"""A follower's position against its target: what working copies will close, what nothing
will, and what a position sync would place. The drift check, the positions pane and the sync
preview all read these numbers. Pure; no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from engine.domain import Side
from engine.replication.targets import PositionKey, PositionLedger, TargetState, target_state

__all__ = ["PositionDrift", "catching_up", "drifts", "position_drift", "sync_step"]


def _sign(x: int) -> int:
    return (x > 0) - (x < 0)


@dataclass(frozen=True, slots=True)
class PositionDrift:
    key: PositionKey
    leader_net: int
    target: int
    follower_net: int
    closing_by_working: int  # of |drift|, what open copies will close when they fill
    uncovered: int  # of |drift|, what nothing working will close
    working_away: int  # open copies working the other way (they would add to the drift)

    @property
    def drift(self) -> int:
        """follower - target: > 0 the follower is above its target (longer), < 0 below."""
        return self.follower_net - self.target

    @property
    def in_line(self) -> bool:
        return self.drift == 0 and self.working_away == 0

    def describe(self) -> str:
        if self.in_line:
            return f"{self.key.security_id}: net {self.follower_net:+d} on target"
        text = (
            f"{self.key.segment.value} {self.key.security_id} {self.key.product.value}: "
            f"net {self.follower_net:+d}, target {self.target:+d} "
            f"(leader {self.leader_net:+d}), drift {self.drift:+d}"
        )
        if self.closing_by_working:
            text += f"; {self.closing_by_working} will close as open copies fill"
        if self.uncovered:
            text += f"; {self.uncovered} that no open order will close"
        if self.working_away:
            text += f"; {self.working_away} working in open copies would widen it"
        return text


def catching_up(ledger: PositionLedger, state: TargetState | None = None) -> tuple[int, int]:
    """(buy, sell): what the open copies still work toward the target as it is now, the one
    measure the drift check, the positions pane and a position sync share.

    A copy counts only for the part that makes up its leader's fills it has not matched:
    - a copy whose leader order has ended (filled, or cancelled after fills) counts all it
      still works: it is a copy left behind, filling on its own or handled by its lagging
      policy, and a sync placing the same again would go beyond the target (or flip the
      follower when it is an exit or a stop-loss that gapped);
    - a copy whose leader order is still working (a resting stop-loss, an exit or entry at a
      limit) counts only its share of what the leader has filled so far; the rest fills when
      the leader's does, and the target moves with it. A resting protective stop therefore
      counts nothing: it is not a sell waiting to close a gap, and the follower holding its
      target with its stop resting needs nothing.
    """
    moved = (state or target_state(ledger)).moved_by
    buy = sell = 0
    for leg in ledger.legs:
        if not leg.copy_working:
            continue
        if leg.leader_open:
            owed = max(leg.sign * moved.get(leg.leader_order_id, 0) - leg.copy_filled, 0)
            counted = min(leg.copy_working, owed)
        else:
            counted = leg.copy_working
        if leg.side is Side.BUY:
            buy += counted
        else:
            sell += counted
    return buy, sell


def position_drift(ledger: PositionLedger) -> PositionDrift:
    """The follower's position against its target, split into the part working copies will
    close and the part nothing will (working copies counted by `catching_up`). Drift is
    reported, never traded (a position sync is the trader's explicit way to close it)."""
    state = target_state(ledger)
    target = state.target
    net = ledger.follower_net
    buy, sell = catching_up(ledger, state)
    need = target - net  # > 0: the follower must buy to reach its target
    toward = buy if need > 0 else sell if need < 0 else 0
    away = sell if need > 0 else buy if need < 0 else 0
    if need == 0:
        away = buy + sell
    closing = min(abs(need), toward)
    return PositionDrift(
        key=ledger.key,
        leader_net=state.leader_net,
        target=target,
        follower_net=net,
        closing_by_working=closing,
        uncovered=abs(need) - closing,
        working_away=away + max(toward - abs(need), 0),
    )


def sync_step(ledger: PositionLedger) -> int:
    """The signed order a position sync places for this ledger (0: none).

    A sync brings the follower's NET position to its target: the step is the drift that no
    working copy will close (`position_drift(...).uncovered`), in the target's direction, so
    the follower's position plus the copies catching up plus the step is at most the target,
    never beyond it. Resting copies that only follow the leader's own working orders (stops,
    exits, entries at a limit) count nothing either way. When the target is flat or on the
    other side of the follower's position, the step stops at flat: a sync order never flips
    the follower's sign (a later sync, once flat, opens the new side).
    """
    drift = position_drift(ledger)
    need = drift.target - drift.follower_net
    if need == 0:
        return 0
    room = drift.uncovered
    held = drift.follower_net
    if held and _sign(drift.target) != _sign(held):
        room = min(room, max(abs(held) - drift.closing_by_working, 0))
    return _sign(need) * room


def drifts(ledgers: Iterable[PositionLedger]) -> list[PositionDrift]:
    """The ledgers whose follower is off its target or has copies working past it."""
    return [d for d in map(position_drift, ledgers) if not d.in_line]
