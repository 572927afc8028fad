"""Safety bookkeeping as pure rules: freezes per engine and follower, copies managed by hand,
the uncopied-order offer after a kill, and the durable safety tables."""

from __future__ import annotations

from pathlib import Path

from engine.domain import EngineState, FreezeCause, MirrorState, OrderStatus
from engine.live.arming import ENGINE_SCOPE, Arming
from engine.live.hand_made import changed_by_hand, within_hand_rules
from engine.live.uncopied import missing_copy
from engine.replication.replicator import Cancel, Modify, NoAction, Place, decide
from engine.store import Store
from engine.transitions import KILLED_SKIP_CODE, detached, managed_by_hand
from tests.unit.test_replicator_freeze import ARMED, RULES, resting_copy, stop_loss


def test_a_freeze_holds_until_its_last_cause_is_gone_and_the_engine_shows_frozen() -> None:
    arming = Arming(state=EngineState.ARMED)
    told: list[tuple[str, FreezeCause, str]] = []
    arming.announce = lambda a, c, r: told.append((a, c, r))
    arming.freeze_now(ENGINE_SCOPE, FreezeCause.TOKEN_REFUSED, "token refused")
    arming.freeze_now(ENGINE_SCOPE, FreezeCause.TOKEN_REFUSED, "token refused")  # once
    arming.freeze_now("alpha", FreezeCause.LOSS_LIMIT, "loss limit")
    assert len(told) == 2
    assert arming.shown_state.value == "FROZEN" and arming.armed  # not killed
    assert arming.frozen_reason("alpha") == "token refused; loss limit"
    assert arming.frozen_reason("beta") == "token refused"
    assert arming.remove(ENGINE_SCOPE, FreezeCause.TOKEN_REFUSED)
    assert arming.shown_state is EngineState.ARMED
    assert arming.frozen_reason("beta") == "" and arming.frozen_reason("alpha") == "loss limit"
    arming.state = EngineState.KILLED
    arming.add(ENGINE_SCOPE, FreezeCause.LEADER_DARK, "dark")
    assert arming.shown_state.value == "KILLED"  # the kill shows over any freeze


def test_which_freezes_clear_themselves() -> None:
    assert {c for c in FreezeCause if c.clears_itself} == {
        FreezeCause.TOKEN_REFUSED,
        FreezeCause.LEADER_DARK,
        FreezeCause.CIRCUIT_OPEN,
    }


def test_a_hand_edit_is_told_from_our_own_rounding() -> None:
    leader = stop_loss()
    copy = resting_copy(leader)
    at_dhan = leader.with_changes(order_id="9007")
    assert changed_by_hand(copy, at_dhan) == ""
    assert changed_by_hand(copy, at_dhan.with_changes(trigger_price=110.05)) == ""  # a tick
    assert changed_by_hand(copy, at_dhan.with_changes(quantity=65)) == "quantity 130 -> 65"
    assert "trigger" in changed_by_hand(copy, at_dhan.with_changes(trigger_price=105.0))
    assert "price" in changed_by_hand(copy, at_dhan.with_changes(price=100.0))
    ended = at_dhan.with_changes(status=OrderStatus.CANCELLED, quantity=65)
    assert changed_by_hand(copy, ended) == ""  # not open: nothing to respect
    assert changed_by_hand(copy, at_dhan.with_changes(order_id="1", quantity=65)) == ""


def test_a_copy_managed_by_hand_is_never_modified_but_follows_the_leaders_cancel() -> None:
    leader = stop_loss()
    copy = resting_copy(leader)
    mine = managed_by_hand(copy, leader.with_changes(order_id="9007", quantity=65), None)
    assert mine.by_hand and mine.params is not None and mine.params.quantity == 65
    assert "quantity 130 -> 65" in mine.reason
    trailed = leader.with_changes(trigger_price=112.0, price=111.0)
    assert isinstance(decide(trailed, copy, RULES, ARMED), Modify)
    assert isinstance(within_hand_rules(mine, decide(trailed, mine, RULES, ARMED)), NoAction)
    cancelled = leader.with_changes(status=OrderStatus.CANCELLED)
    assert isinstance(within_hand_rules(mine, decide(cancelled, mine, RULES, ARMED)), Cancel)
    alone = detached(mine, None)
    assert isinstance(within_hand_rules(alone, decide(cancelled, alone, RULES, ARMED)), NoAction)
    assert isinstance(within_hand_rules(alone, Place(mine.params)), NoAction)


def test_only_copies_lost_to_a_kill_are_offered_for_re_placing() -> None:
    leader = stop_loss()
    copy = resting_copy(leader)
    assert missing_copy(leader, None)
    assert not missing_copy(leader, copy)  # working
    by_kill = copy.with_changes(
        state=MirrorState.DONE,
        broker_status=OrderStatus.CANCELLED,
        reason="engine killed: cancelling open follower orders",
    )
    assert missing_copy(leader, by_kill)
    by_hand = by_kill.with_changes(reason="")
    assert not missing_copy(leader, by_hand)  # cancelled by the trader: stays cancelled
    while_killed = copy.with_changes(state=MirrorState.SKIPPED, skip_code=KILLED_SKIP_CODE)
    assert missing_copy(leader, while_killed)
    filtered = copy.with_changes(state=MirrorState.SKIPPED, skip_code="FILTERED")
    assert not missing_copy(leader, filtered)
    assert not missing_copy(leader.with_changes(status=OrderStatus.CANCELLED), by_kill)


async def test_freezes_and_hand_marks_survive_reopening_the_store(tmp_path: Path) -> None:
    path = tmp_path / "safety.db"
    async with await Store.open(path) as store:
        await store.set_freeze("", "TOKEN_REFUSED", "leader token refused")
        await store.set_freeze("alpha", "LOSS_LIMIT", "loss limit")
        await store.clear_freeze("", "TOKEN_REFUSED")
        await store.set_hand_managed("alpha", "L1", detached=True, reason="detached")
        await store.set_hand_managed("alpha", "L1", detached=False, reason="changed by hand")
    async with await Store.open(path) as store:
        assert await store.freezes() == [("alpha", "LOSS_LIMIT", "loss limit")]
        # Once detached, always detached (a later hand mark does not undo it).
        assert await store.hand_managed() == [("alpha", "L1", True, "changed by hand")]
