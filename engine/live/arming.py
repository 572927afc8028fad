"""Whether the engine may copy, shared by the executor (checked right before every broker call)
and the supervisor (which changes it).

Two different stops: KILLED is the trader's (every open copy cancelled, nothing sent until
resumed); FROZEN is automatic safety (nothing new opened, every resting copy kept, above all the
stop-losses). A freeze holds the whole engine (account "") or one follower, with one or more
causes; it is lifted when its last cause is gone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from engine.domain import EngineState, FreezeCause
from engine.live.accounts import FollowerRuntime
from engine.records import MirrorRecord

ENGINE_SCOPE = ""  # the freeze account that holds every follower


@dataclass
class Arming:
    state: EngineState = EngineState.STARTING  # STARTING / ARMED / KILLED / STOPPED
    cancel_when_killed: bool = True
    # account ("" = the whole engine) -> cause -> the one-line reason the trader sees
    freezes: dict[str, dict[FreezeCause, str]] = field(default_factory=dict)
    # Stores, publishes and alerts a new freeze (the supervisor's); in-memory takes effect first.
    announce: Callable[[str, FreezeCause, str], None] | None = None
    # Stores that a copy is managed by hand (or detached), so a restart still respects it.
    remember_hand_made: Callable[[MirrorRecord], None] | None = None

    @property
    def armed(self) -> bool:
        """Not killed (and started): copies may follow the leader, frozen or not."""
        return self.state is EngineState.ARMED

    @property
    def shown_state(self) -> EngineState:
        """What the trader sees: FROZEN while armed under an engine-wide freeze."""
        if self.state is EngineState.ARMED and self.freezes.get(ENGINE_SCOPE):
            return EngineState.FROZEN
        return self.state

    def armed_for(self, f: FollowerRuntime) -> bool:
        return self.state is EngineState.ARMED

    def frozen_reason(self, account: str) -> str:
        """Why `account` may open nothing new ("" when it may): its own freezes and the
        engine's, in one line."""
        reasons = list(self.freezes.get(ENGINE_SCOPE, {}).values())
        if account != ENGINE_SCOPE:
            reasons += list(self.freezes.get(account, {}).values())
        return "; ".join(reasons)

    def frozen_for(self, f: FollowerRuntime) -> str:
        return self.frozen_reason(f.name)

    def causes(self, account: str) -> tuple[FreezeCause, ...]:
        return tuple(self.freezes.get(account, {}))

    def has(self, account: str, cause: FreezeCause) -> bool:
        return cause in self.freezes.get(account, {})

    def add(self, account: str, cause: FreezeCause, reason: str) -> bool:
        """True when this cause is new for the account."""
        held = self.freezes.setdefault(account, {})
        new = cause not in held
        held[cause] = reason
        return new

    def freeze_now(self, account: str, cause: FreezeCause, reason: str) -> None:
        """Freeze at once (the very next decision sees it); stored and told right after."""
        if self.add(account, cause, reason) and self.announce is not None:
            self.announce(account, cause, reason)

    def remove(self, account: str, cause: FreezeCause) -> bool:
        """True when the cause was held."""
        held = self.freezes.get(account)
        if not held or cause not in held:
            return False
        del held[cause]
        if not held:
            del self.freezes[account]
        return True
