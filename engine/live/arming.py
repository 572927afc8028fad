"""Whether the engine may copy: ARMED / KILLED (and STARTING, STOPPED), shared by the
executor (checked right before every broker call) and the supervisor (which changes it)."""

from __future__ import annotations

from dataclasses import dataclass

from engine.domain import EngineState
from engine.live.accounts import FollowerRuntime


@dataclass
class Arming:
    state: EngineState = EngineState.STARTING
    cancel_when_killed: bool = True  # a kill cancels open copies (a leader-dark kill may not)

    @property
    def armed(self) -> bool:
        return self.state is EngineState.ARMED

    def armed_for(self, f: FollowerRuntime) -> bool:
        return self.state is EngineState.ARMED and not f.killed_reason
