"""FROZEN in the pure replicator: nothing new is opened, resting copies keep protecting.

Automatic safety (a refused token, a dark feed, a loss limit) freezes; only the trader's kill
cancels. These cases pin what a frozen follower may and may not do with each kind of copy.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime

from engine.clock import IST
from engine.domain import (
    MirrorState,
    OrderSnapshot,
    OrderStatus,
    OrderType,
    Product,
    Segment,
    Side,
    Validity,
)
from engine.records import MirrorRecord
from engine.replication.replicator import (
    Cancel,
    DecisionContext,
    FollowerRules,
    Modify,
    NoAction,
    Place,
    decide,
)
from engine.replication.rules import CopyFilters, MultiplierSizing, OrderSizeBounds, RiskLimits

T0 = IST.localize(datetime(2026, 11, 23, 10, 0, 0))
RULES = FollowerRules(
    name="alpha",
    sizing=MultiplierSizing(),
    bounds=OrderSizeBounds(),
    filters=CopyFilters(),
    risk=RiskLimits(),
)
ARMED = DecisionContext(armed=True, lot_size=65, is_option=True, capital_ratio=None)
FROZEN = dataclasses.replace(ARMED, frozen=True, frozen_reason="leader token refused")
KILLED = dataclasses.replace(ARMED, armed=False)


def stop_loss(**kw: object) -> OrderSnapshot:
    """The leader's protective stop: SELL 130 at trigger 110 / limit 109."""
    base = OrderSnapshot(
        order_id="52260000007",
        client_id="1000000001",
        status=OrderStatus.PENDING,
        side=Side.SELL,
        order_type=OrderType.STOP_LOSS,
        product=Product.INTRADAY,
        validity=Validity.DAY,
        segment=Segment.NSE_FNO,
        security_id="48201",
        quantity=130,
        price=109.0,
        trigger_price=110.0,
        lot_size=65,
        updated_at=T0,
    )
    return base.with_changes(**kw)


def resting_copy(snapshot: OrderSnapshot) -> MirrorRecord:
    placed = decide(snapshot, None, RULES, ARMED)
    assert isinstance(placed, Place)
    return MirrorRecord(
        follower="alpha",
        leader_order_id=snapshot.order_id,
        correlation_id=placed.params.correlation_id,
        state=MirrorState.LIVE,
        follower_order_id="9007",
        broker_status=OrderStatus.PENDING,
        params=placed.params,
    )


def test_frozen_opens_nothing_new_and_does_not_make_it_sticky() -> None:
    snap = stop_loss()
    frozen = decide(snap, None, RULES, FROZEN)
    assert isinstance(frozen, NoAction)
    assert "frozen" in frozen.reason
    # Once the freeze clears, the same leader order (still open) is copied.
    assert isinstance(decide(snap, None, RULES, ARMED), Place)


def test_frozen_keeps_the_resting_stop_loss_where_killed_cancels_it() -> None:
    snap = stop_loss()
    mirror = resting_copy(snap)
    assert isinstance(decide(snap, mirror, RULES, FROZEN), NoAction)
    killed = decide(snap, mirror, RULES, KILLED)
    assert isinstance(killed, Cancel)


def test_frozen_follows_a_trailing_stop() -> None:
    snap = stop_loss()
    mirror = resting_copy(snap)
    trailed = decide(snap.with_changes(trigger_price=115.0, price=114.0), mirror, RULES, FROZEN)
    assert isinstance(trailed, Modify)
    assert mirror.params is not None
    assert (trailed.params.trigger_price, trailed.params.quantity) == (
        115.0,
        mirror.params.quantity,
    )


def test_frozen_follows_the_leaders_cancel() -> None:
    snap = stop_loss()
    mirror = resting_copy(snap)
    cancelled = decide(snap.with_changes(status=OrderStatus.CANCELLED), mirror, RULES, FROZEN)
    assert isinstance(cancelled, Cancel)


def test_frozen_never_enlarges_a_copy() -> None:
    snap = stop_loss()
    mirror = resting_copy(snap)
    enlarged = decide(snap.with_changes(quantity=195), mirror, RULES, FROZEN)
    assert isinstance(enlarged, NoAction)
    assert "not enlarged" in enlarged.reason
    assert isinstance(decide(snap.with_changes(quantity=195), mirror, RULES, ARMED), Modify)


def test_frozen_follows_a_smaller_quantity() -> None:
    snap = stop_loss()
    mirror = resting_copy(snap)
    trimmed = decide(snap.with_changes(quantity=65), mirror, RULES, FROZEN)
    assert isinstance(trimmed, Modify)
    assert trimmed.params.quantity == 65


def test_frozen_does_not_re_place_when_the_modification_budget_is_used() -> None:
    snap = stop_loss()
    mirror = resting_copy(snap).with_changes(modifications=25)
    moved = snap.with_changes(trigger_price=115.0, price=114.0)
    assert isinstance(decide(moved, mirror, RULES, ARMED), Cancel)
    assert isinstance(decide(moved, mirror, RULES, FROZEN), NoAction)


def test_frozen_never_tops_up_a_filled_copy() -> None:
    snap = stop_loss(status=OrderStatus.PENDING, quantity=195)
    mirror = resting_copy(stop_loss()).with_changes(
        broker_status=OrderStatus.TRADED, state=MirrorState.DONE, filled_qty=130
    )
    assert isinstance(decide(snap, mirror, RULES, ARMED), Place)
    assert isinstance(decide(snap, mirror, RULES, FROZEN), NoAction)
