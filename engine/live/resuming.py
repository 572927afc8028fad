"""The trader's resume: back from the kill (and from the freezes only the trader clears), with
the leader's open orders left without a copy listed and, when asked, placed again."""

from __future__ import annotations

from engine.control.protocol import ResumeReport
from engine.domain import EngineState
from engine.live.supervision import Supervisor
from engine.live.uncopied import release_for_replace, uncopied_orders
from engine.live.wiring import SharedState

__all__ = ["resume_replication"]


async def resume_replication(
    shared: SharedState, supervisor: Supervisor, replace_open: bool
) -> ResumeReport:
    """Resume; with `replace_open`, the open leader orders without a copy are placed again
    (each under a fresh correlationId)."""
    arming, book, followers = shared.arming, shared.book, shared.accounts.followers
    resumed = await supervisor.resume()
    if arming.freezes:  # the freezes only the trader clears (loss limit, ...)
        cleared = await supervisor.clear_freeze(None, only_trader_cleared=True)
        resumed = resumed or bool(cleared)
    uncopied = uncopied_orders(book, followers)
    replaced: list[str] = []
    if replace_open and arming.armed:
        for order in uncopied:
            if release_for_replace(book, followers, order):
                replaced.append(order.leader_order_id)
        uncopied = [o for o in uncopied if o.leader_order_id not in replaced]
    frozen = arming.frozen_reason("")
    state = arming.shown_state
    if not resumed and arming.state is not EngineState.ARMED:
        message = f"the engine is {state.value}, not resumed"
    else:
        message = (
            ("resumed" if resumed else "not killed")
            + (f"; {len(replaced)} open leader orders placed again" if replaced else "")
            + (f"; {len(uncopied)} open leader orders have no copy" if uncopied else "")
        )
        if frozen:
            message += f"; still frozen: {frozen}"
    return ResumeReport(state.value, tuple(uncopied), tuple(replaced), message)
