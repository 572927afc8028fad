"""The replicator's decisions as a pure function: one case per rule, and idempotence."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from engine.clock import IST
from engine.domain import (
    AmoTime,
    MirrorState,
    OrderParams,
    OrderSnapshot,
    OrderStatus,
    OrderType,
    Product,
    Segment,
    Side,
    SnapshotSource,
    Validity,
)
from engine.records import MirrorRecord
from engine.replication.correlation import correlation_id
from engine.replication.replicator import (
    Cancel,
    DecisionContext,
    FollowerRules,
    Modify,
    NoAction,
    Place,
    Skip,
    SkipCode,
    awaits_exchange,
    decide,
    wakes_followers,
)
from engine.replication.rules import (
    CapitalRatioSizing,
    CopyFilters,
    FixedLotsSizing,
    MultiplierSizing,
    OrderSizeBounds,
    RiskLimits,
)

T0 = IST.localize(datetime(2026, 11, 23, 10, 0, 0))


def leader(**kw: object) -> OrderSnapshot:
    base = OrderSnapshot(
        order_id="52260000001",
        client_id="1000000001",
        status=OrderStatus.PENDING,
        side=Side.BUY,
        order_type=OrderType.LIMIT,
        product=Product.INTRADAY,
        validity=Validity.DAY,
        segment=Segment.NSE_FNO,
        security_id="48201",
        quantity=130,
        price=120.5,
        lot_size=65,
        updated_at=T0,
    )
    return base.with_changes(**kw)


def rules(sizing: object = None, **kw: object) -> FollowerRules:
    return FollowerRules(
        name="alpha",
        sizing=sizing or MultiplierSizing(),  # type: ignore[arg-type]
        bounds=kw.get("bounds", OrderSizeBounds()),  # type: ignore[arg-type]
        filters=kw.get("filters", CopyFilters()),  # type: ignore[arg-type]
        risk=RiskLimits(),
    )


CTX = DecisionContext(armed=True, lot_size=65, is_option=True, capital_ratio=None)


def live(params: OrderParams, **kw: object) -> MirrorRecord:
    rec = MirrorRecord(
        follower="alpha",
        leader_order_id="52260000001",
        correlation_id=params.correlation_id,
        state=MirrorState.LIVE,
        follower_order_id="9001",
        broker_status=OrderStatus.PENDING,
        params=params,
    )
    return rec.with_changes(**kw)


def placed(snapshot: OrderSnapshot, r: FollowerRules | None = None) -> MirrorRecord:
    decision = decide(snapshot, None, r or rules(), CTX)
    assert isinstance(decision, Place)
    return live(decision.params)


def test_new_pending_order_is_placed_with_every_parameter() -> None:
    snap = leader(
        order_type=OrderType.STOP_LOSS,
        trigger_price=119.0,
        validity=Validity.IOC,
        disclosed_qty=65,
        product=Product.MARGIN,
    )
    decision = decide(snap, None, rules(), CTX)
    assert isinstance(decision, Place)
    p = decision.params
    assert (p.side, p.order_type, p.product, p.validity) == (
        Side.BUY,
        OrderType.STOP_LOSS,
        Product.MARGIN,
        Validity.IOC,
    )
    assert (p.quantity, p.price, p.trigger_price, p.disclosed_qty) == (130, 120.5, 119.0, 65)
    assert p.correlation_id == correlation_id("52260000001", "alpha", 0)


def test_amo_is_copied_as_amo_even_when_market_closed() -> None:
    snap = leader(amo=True, amo_time=AmoTime.OPEN_30)
    ctx = DecisionContext(
        armed=True,
        lot_size=65,
        is_option=True,
        capital_ratio=None,
        market_open=False,
        market_reason="closed",
    )
    decision = decide(snap, None, rules(), ctx)
    assert isinstance(decision, Place) and decision.params.amo
    assert decision.params.amo_time is AmoTime.OPEN_30


def test_amo_without_its_time_waits_for_the_order_book() -> None:
    ctx = DecisionContext(armed=True, lot_size=65, is_option=True, capital_ratio=None)
    waiting = decide(leader(amo=True), None, rules(), ctx)
    assert isinstance(waiting, NoAction) and "order book" in waiting.reason
    from_book = leader(amo=True, source=SnapshotSource.ORDER_BOOK)
    assert isinstance(decide(from_book, None, rules(), ctx), Place)
    pre_open = leader(amo=True, amo_time=AmoTime.PRE_OPEN)
    skipped = decide(pre_open, None, rules(), ctx)
    assert isinstance(skipped, Skip) and "PRE_OPEN" in skipped.reason


def test_market_closed_skips_with_reason() -> None:
    ctx = DecisionContext(
        armed=True,
        lot_size=65,
        is_option=True,
        capital_ratio=None,
        market_open=False,
        market_reason="NSE_FNO closed: holiday",
    )
    decision = decide(leader(), None, rules(), ctx)
    assert decision == Skip(SkipCode.MARKET_CLOSED, "NSE_FNO closed: holiday")


def test_transit_waits_for_exchange_acceptance() -> None:
    assert isinstance(decide(leader(status=OrderStatus.TRANSIT), None, rules(), CTX), NoAction)


def test_only_a_transit_order_without_a_copy_awaits_the_exchange() -> None:
    """What the leader feed asks before waking a follower: a copy that exists is looked at
    whatever the leader's status (a modification goes through TRANSIT too)."""
    transit = leader(status=OrderStatus.TRANSIT)
    assert awaits_exchange(transit, None)
    assert not awaits_exchange(leader(), None)
    assert not awaits_exchange(transit, placed(leader()))


def test_a_leader_state_wakes_followers_unless_only_its_description_changed() -> None:
    """A REST read settling a tie of socket alerts brings the same order with Dhan's text,
    another market price and its own source: nothing for a follower to decide."""
    known = leader(reason="CONFIRMED", ref_ltp=151.35)
    read = known.with_changes(source=SnapshotSource.ORDER_BOOK, reason="", ref_ltp=152.0)
    assert wakes_followers(None, known)
    assert not wakes_followers(known, read)
    assert not wakes_followers(known, known)
    for change in (
        {"status": OrderStatus.CANCELLED},
        {"filled_qty": 65},
        {"quantity": 195},
        {"price": 151.0},
        {"trigger_price": 150.0},
        {"updated_at": T0 + timedelta(seconds=1)},
    ):
        assert wakes_followers(known, read.with_changes(**change)), change


@pytest.mark.parametrize(
    "status", [OrderStatus.REJECTED, OrderStatus.CANCELLED, OrderStatus.EXPIRED]
)
def test_leader_ended_before_we_placed_places_nothing(status: OrderStatus) -> None:
    assert isinstance(decide(leader(status=status), None, rules(), CTX), NoAction)


def test_fill_missed_while_away_is_caught_up_for_the_filled_quantity() -> None:
    snap = leader(status=OrderStatus.CANCELLED, filled_qty=65)
    decision = decide(snap, None, rules(), CTX)
    assert isinstance(decision, Place) and decision.catch_up
    assert decision.params.quantity == 65


def test_sized_to_zero_is_skipped_with_the_numbers() -> None:
    decision = decide(leader(quantity=65), None, rules(MultiplierSizing(multiplier=0.5)), CTX)
    assert isinstance(decision, Skip) and decision.code is SkipCode.SIZED_TO_ZERO
    assert "0.5" in decision.reason and "65" in decision.reason


def test_fixed_lots_and_filters() -> None:
    decision = decide(leader(), None, rules(FixedLotsSizing(lots=3)), CTX)
    assert isinstance(decision, Place) and decision.params.quantity == 195
    only_eq = rules(filters=CopyFilters(segments=(Segment.NSE_EQ,)))
    skip = decide(leader(), None, only_eq, CTX)
    assert isinstance(skip, Skip) and skip.code is SkipCode.FILTERED


def test_capital_ratio_uses_the_fresh_ratio() -> None:
    ctx = DecisionContext(armed=True, lot_size=65, is_option=True, capital_ratio=0.5)
    decision = decide(leader(quantity=260), None, rules(CapitalRatioSizing()), ctx)
    assert isinstance(decision, Place) and decision.params.quantity == 130


def test_killed_skips_new_orders_and_cancels_open_copies() -> None:
    killed = DecisionContext(armed=False, lot_size=65, is_option=True, capital_ratio=None)
    assert decide(leader(), None, rules(), killed).code is SkipCode.KILLED  # type: ignore[union-attr]
    mirror = placed(leader())
    assert isinstance(decide(leader(), mirror, rules(), killed), Cancel)


def test_applying_the_same_snapshot_again_does_nothing() -> None:
    snap = leader()
    mirror = placed(snap)
    for _ in range(3):
        assert isinstance(decide(snap, mirror, rules(), CTX), NoAction)


def test_placement_in_flight_decides_nothing_until_answered() -> None:
    snap = leader()
    mirror = placed(snap).with_changes(state=MirrorState.PLACING, follower_order_id="")
    assert isinstance(decide(leader(status=OrderStatus.CANCELLED), mirror, rules(), CTX), NoAction)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"price": 121.0}, "price"),
        ({"quantity": 195}, "quantity"),
        ({"order_type": OrderType.STOP_LOSS, "trigger_price": 119.0}, "trigger_price"),
        ({"validity": Validity.IOC}, "validity"),
        ({"order_type": OrderType.MARKET, "price": 0.0}, "order_type"),
    ],
)
def test_leader_modification_becomes_a_modify(change: dict[str, object], field: str) -> None:
    mirror = placed(leader())
    decision = decide(leader(**change), mirror, rules(), CTX)
    assert isinstance(decision, Modify)
    assert field in decision.changed
    assert decision.follower_order_id == "9001"


def test_modify_total_keeps_exposure_parity_with_partial_fills() -> None:
    mirror = placed(leader(quantity=260)).with_changes(filled_qty=65)
    # Leader cuts its order to 195 total: the follower's order total becomes 195 too.
    decision = decide(leader(quantity=195, filled_qty=130), mirror, rules(), CTX)
    assert isinstance(decision, Modify) and decision.params.quantity == 195
    # Leader cuts below what the follower already filled: cancel the rest instead.
    decision = decide(
        leader(quantity=65, filled_qty=65), mirror.with_changes(filled_qty=130), rules(), CTX
    )
    assert isinstance(decision, Cancel)


def test_leader_cancel_cancels_follower_including_partly_filled() -> None:
    mirror = placed(leader()).with_changes(filled_qty=65, broker_status=OrderStatus.PART_TRADED)
    decision = decide(leader(status=OrderStatus.CANCELLED, filled_qty=65), mirror, rules(), CTX)
    assert isinstance(decision, Cancel)  # the follower already has its share of the fills
    nothing_filled = placed(leader())
    assert isinstance(
        decide(leader(status=OrderStatus.CANCELLED), nothing_filled, rules(), CTX), Cancel
    )


def test_leader_rejected_after_we_placed_cancels_follower() -> None:
    mirror = placed(leader())
    assert isinstance(decide(leader(status=OrderStatus.REJECTED), mirror, rules(), CTX), Cancel)


def test_leader_filled_leaves_follower_order_working() -> None:
    mirror = placed(leader())
    snap = leader(status=OrderStatus.TRADED, filled_qty=130, avg_price=120.5)
    assert isinstance(decide(snap, mirror, rules(), CTX), NoAction)


def test_failed_or_cancelled_copies_are_final() -> None:
    mirror = placed(leader())
    failed = mirror.with_changes(state=MirrorState.FAILED)
    assert isinstance(decide(leader(price=130.0), failed, rules(), CTX), NoAction)
    cancelled = mirror.with_changes(state=MirrorState.DONE, broker_status=OrderStatus.CANCELLED)
    assert isinstance(decide(leader(price=130.0), cancelled, rules(), CTX), NoAction)


def test_a_skip_is_reconsidered_except_one_made_while_killed() -> None:
    skipped = MirrorRecord(
        follower="alpha",
        leader_order_id="52260000001",
        correlation_id="skip-52260000001",
        state=MirrorState.SKIPPED,
        reason="0 lots",
        skip_code=SkipCode.SIZED_TO_ZERO.value,
    )
    half = rules(MultiplierSizing(multiplier=0.5))
    assert isinstance(decide(leader(quantity=65), skipped, half, CTX), NoAction)
    assert isinstance(decide(leader(quantity=260), skipped, half, CTX), Place)  # resized
    killed = skipped.with_changes(skip_code=SkipCode.KILLED.value)
    assert isinstance(decide(leader(quantity=260), killed, half, CTX), NoAction)


def test_a_filled_copy_is_topped_up_when_the_leader_enlarges_its_order() -> None:
    done = placed(leader()).with_changes(
        state=MirrorState.DONE, broker_status=OrderStatus.TRADED, filled_qty=130
    )
    assert isinstance(decide(leader(), done, rules(), CTX), NoAction)
    top_up = decide(leader(quantity=195), done, rules(), CTX)
    assert isinstance(top_up, Place) and top_up.generation == 1
    assert top_up.params.quantity == 65
    assert top_up.params.correlation_id == correlation_id("52260000001", "alpha", 1)


def test_leader_cancelled_after_partial_fill_keeps_the_followers_share_working() -> None:
    mirror = placed(leader(quantity=260))
    ended = leader(quantity=260, filled_qty=130, status=OrderStatus.CANCELLED)
    decision = decide(ended, mirror, rules(), CTX)
    assert isinstance(decision, Modify) and decision.params.quantity == 130
    resized = mirror.with_changes(params=decision.params)
    assert isinstance(decide(ended, resized, rules(), CTX), NoAction)
    has_share = resized.with_changes(filled_qty=130)
    assert isinstance(decide(ended, has_share, rules(), CTX), Cancel)


def test_bracket_and_cover_orders_are_skipped_with_an_explanation() -> None:
    decision = decide(leader(product=Product.BO, leg="ENTRY_LEG"), None, rules(), CTX)
    assert isinstance(decision, Skip) and decision.code is SkipCode.UNSUPPORTED


def test_unknown_lot_size_skips_unless_copying_one_to_one() -> None:
    ctx = DecisionContext(armed=True, lot_size=0, is_option=True, capital_ratio=None)
    assert isinstance(decide(leader(), None, rules(), ctx), Place)
    skip = decide(leader(), None, rules(MultiplierSizing(multiplier=2)), ctx)
    assert isinstance(skip, Skip) and skip.code is SkipCode.UNKNOWN_LOT


def test_modification_budget_used_cancels_to_replace() -> None:
    mirror = placed(leader()).with_changes(modifications=25)
    decision = decide(leader(price=121.0), mirror, rules(), CTX)
    assert isinstance(decision, Cancel) and decision.replace
    # Within budget it is a plain modify.
    assert isinstance(
        decide(leader(price=121.0), mirror.with_changes(modifications=24), rules(), CTX), Modify
    )


def test_a_refused_modification_is_not_asked_again_but_the_copy_still_follows() -> None:
    mirror = placed(leader())
    first = decide(leader(price=121.0), mirror, rules(), CTX)
    assert isinstance(first, Modify)
    refused = mirror.with_changes(refused_params=first.params, reason="modify refused: RMS")
    again = decide(leader(price=121.0), refused, rules(), CTX)
    assert isinstance(again, NoAction) and "refused" in again.reason
    # The leader's next change is a new request; its cancel and the kill still reach the copy.
    assert isinstance(decide(leader(price=122.0), refused, rules(), CTX), Modify)
    cancelled = leader(price=121.0, status=OrderStatus.CANCELLED)
    assert isinstance(decide(cancelled, refused, rules(), CTX), Cancel)
    killed = DecisionContext(armed=False, lot_size=65, is_option=True, capital_ratio=None)
    assert isinstance(decide(leader(price=121.0), refused, rules(), killed), Cancel)


def test_a_refused_reduction_cancels_to_replace() -> None:
    mirror = placed(leader(quantity=130))
    smaller = decide(leader(quantity=65), mirror, rules(), CTX)
    assert isinstance(smaller, Modify) and smaller.params.quantity == 65
    refused = mirror.with_changes(refused_params=smaller.params)
    decision = decide(leader(quantity=65), refused, rules(), CTX)
    assert isinstance(decision, Cancel) and decision.replace


def test_replaced_generation_orders_only_the_rest() -> None:
    first = placed(leader(quantity=260))
    # Generation 1 after 65 filled in generation 0: the new order is for 195.
    regen = first.with_changes(generation=1, prior_filled=65, filled_qty=0, modifications=0)
    assert regen.params is not None
    wanted = decide(leader(quantity=260, price=125.0), regen, rules(), CTX)
    assert isinstance(wanted, Modify)
    assert wanted.params.quantity == 195
    assert wanted.params.correlation_id == correlation_id("52260000001", "alpha", 1)


def test_killed_without_cancel_leaves_open_copies() -> None:
    ctx = DecisionContext(
        armed=False, lot_size=65, is_option=True, capital_ratio=None, cancel_when_killed=False
    )
    assert isinstance(decide(leader(), placed(leader()), rules(), ctx), NoAction)
