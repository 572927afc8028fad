"""Position-true sizing: targets follow the leader's position, each copy is the step."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from engine.domain import (
    OrderSnapshot,
    OrderStatus,
    OrderType,
    Product,
    Segment,
    Side,
    Validity,
)
from engine.replication.copy_step import copy_order_total
from engine.replication.position_drift import drifts, position_drift, sync_step
from engine.replication.rules import (
    CapitalRatioSizing,
    FixedLotsSizing,
    MultiplierSizing,
    OrderSizeBounds,
)
from engine.replication.sizing import position_ratio, size_position
from engine.replication.targets import (
    PositionKey,
    PositionLedger,
    SizingTerms,
    forget_folds,
    is_history,
    next_target,
    record_copy_progress,
    record_leader_progress,
    refresh_terms,
    register_leader_order,
    target_state,
)

LOT = 75
KEY = PositionKey(Segment.NSE_FNO, "35001", Product.MARGIN)
NO_BOUNDS = OrderSizeBounds()
IST = ZoneInfo("Asia/Kolkata")


def times(multiplier: float, bounds: OrderSizeBounds = NO_BOUNDS) -> SizingTerms:
    return SizingTerms(MultiplierSizing(multiplier=multiplier), bounds, LOT)


def fixed(lots: int) -> SizingTerms:
    return SizingTerms(FixedLotsSizing(lots=lots), NO_BOUNDS, LOT)


class Account:
    """One follower's ledger driven the way the engine will: a leader order arrives, its copy
    is sized and placed, then the leader fills and the copy fills behind it."""

    def __init__(self, ledger: PositionLedger | None = None) -> None:
        self.ledger = ledger or PositionLedger(KEY)
        self._n = 0

    def order(self, side: Side, lots: int, terms: SizingTerms) -> tuple[str, int]:
        """The leader places an order; returns its id and the copy's quantity (placed)."""
        self._n += 1
        oid = f"L{self._n}"
        self.ledger = register_leader_order(
            self.ledger,
            leader_order_id=oid,
            side=side,
            quantity=lots * LOT,
            filled=0,
            is_open=True,
            terms=terms,
        )
        qty = copy_order_total(self.ledger, oid).total
        self.ledger = record_copy_progress(self.ledger, leader_order_id=oid, filled=0, working=qty)
        return oid, qty

    def redecide(self) -> None:
        """The engine after any change in the ledger: every copy re-sized, in arrival order
        (an open copy is modified to its new total; a smaller total means a cancel)."""
        for leg in self.ledger.legs:
            total = copy_order_total(self.ledger, leg.leader_order_id).total
            self.ledger = record_copy_progress(
                self.ledger,
                leader_order_id=leg.leader_order_id,
                filled=leg.copy_filled,
                working=total - leg.copy_filled,
            )

    def leader_fills(self, oid: str, filled_lots: int, *, done: bool | None = None) -> None:
        leg = self.ledger.leg(oid)
        assert leg is not None
        filled = filled_lots * LOT
        self.ledger = record_leader_progress(
            self.ledger,
            leader_order_id=oid,
            quantity=leg.leader_qty,
            filled=filled,
            is_open=not (done if done is not None else filled >= leg.leader_qty),
        )

    def copy_fills(self, oid: str) -> None:
        """The copy fills completely at its current total."""
        leg = self.ledger.leg(oid)
        assert leg is not None
        total = max(leg.copy_filled + leg.copy_working, 0)
        self.ledger = record_copy_progress(
            self.ledger, leader_order_id=oid, filled=total, working=0
        )

    def trade(self, side: Side, lots: int, terms: SizingTerms) -> int:
        """A leader order that fills at once, its copy filled behind it; returns the copy qty."""
        oid, qty = self.order(side, lots, terms)
        self.leader_fills(oid, lots)
        self.copy_fills(oid)
        return qty


# --- sizing helpers -------------------------------------------------------------------------


def test_position_ratio_and_size_position_round_toward_zero() -> None:
    assert position_ratio(MultiplierSizing(multiplier=0.29), None) is not None
    ratio = position_ratio(MultiplierSizing(multiplier=0.29), None)
    assert ratio is not None and size_position(100, ratio, 1) == 29  # not 28 (float artifact)
    assert position_ratio(FixedLotsSizing(lots=2), 0.5) is None
    assert position_ratio(CapitalRatioSizing(), None) is None  # funds unknown
    cap = position_ratio(CapitalRatioSizing(factor=2.0), 0.25)
    assert cap is not None and size_position(10 * LOT, cap, LOT) == 5 * LOT
    assert size_position(0, cap, LOT) == 0


# --- the cases ------------------------------------------------------------------------


def test_half_follower_carries_the_remainder_and_never_goes_short() -> None:
    acct = Account()
    assert acct.trade(Side.BUY, 1, times(0.5)) == 0  # 0.5 lot: nothing yet
    assert acct.trade(Side.BUY, 1, times(0.5)) == LOT  # 1 lot of 2 x 0.5: the remainder carried
    assert acct.ledger.follower_net == LOT
    assert acct.trade(Side.SELL, 2, times(0.5)) == LOT  # sells what it holds, not more
    assert acct.ledger.follower_net == 0 and acct.ledger.target == 0


def test_half_follower_whose_entries_were_not_copied_sells_nothing_on_the_exit() -> None:
    acct = Account()
    for _ in range(2):
        oid, _qty = acct.order(Side.BUY, 1, times(0.5))
        acct.leader_fills(oid, 1)
        # the copy never happened (e.g. market closed for this follower): no fill, nothing working
        acct.ledger = record_copy_progress(acct.ledger, leader_order_id=oid, filled=0, working=0)
    oid, qty = acct.order(Side.SELL, 2, times(0.5))
    assert qty == 0
    step = copy_order_total(acct.ledger, oid)
    assert "closing capped at 0 (holds +0)" in step.reason
    acct.leader_fills(oid, 2)
    assert acct.ledger.follower_net == 0


def test_fixed_lots_trim_keeps_the_leaders_kept_share() -> None:
    acct = Account()
    for _ in range(5):  # five 1-lot entries: the 1-lot fixed follower holds 5 lots
        acct.trade(Side.BUY, 1, fixed(1))
    assert acct.ledger.follower_net == 5 * LOT
    assert acct.trade(Side.SELL, 1, fixed(1)) == LOT  # leader 5 -> 4: keeps 4/5 of 5 lots
    assert acct.ledger.follower_net == 4 * LOT


def test_fixed_lots_trim_rounds_so_it_never_over_exits() -> None:
    acct = Account()
    assert acct.trade(Side.BUY, 5, fixed(2)) == 2 * LOT  # one entry of 5 lots: 2 fixed lots
    assert acct.trade(Side.SELL, 1, fixed(2)) == 0  # 2 x 4/5 = 1.6 lots: keep 2 (not flat)
    assert acct.trade(Side.SELL, 2, fixed(2)) == LOT  # 2 x 2/4 = 1 lot kept
    assert acct.trade(Side.SELL, 2, fixed(2)) == LOT  # leader flat: follower flat
    assert acct.ledger.follower_net == 0


def test_fixed_lots_partial_fills_add_the_lots_once() -> None:
    acct = Account()
    oid, qty = acct.order(Side.BUY, 4, fixed(3))
    assert qty == 3 * LOT
    for lots in (1, 2, 4):
        acct.leader_fills(oid, lots)
        assert copy_order_total(acct.ledger, oid).total == 3 * LOT
    assert acct.ledger.target == 3 * LOT


def test_multiplier_raised_after_a_fill_never_tops_up() -> None:
    acct = Account()
    first = acct.trade(Side.BUY, 1, times(1))
    assert first == LOT
    # The trader raises the multiplier to 2 (and restarts): the filled order keeps its terms.
    assert copy_order_total(acct.ledger, "L1").total == LOT
    assert acct.ledger.target == LOT
    assert position_drift(acct.ledger).in_line
    # The next leader order is sized at x2: only its own step.
    assert acct.trade(Side.BUY, 1, times(2)) == 2 * LOT
    assert acct.ledger.target == 3 * LOT
    # Leader flat: follower flat, whatever the history of ratios.
    assert acct.trade(Side.SELL, 2, times(2)) == 3 * LOT
    assert acct.ledger.follower_net == 0


def test_ratio_raised_then_a_partial_exit_keeps_the_leaders_kept_share() -> None:
    acct = Account()
    assert acct.trade(Side.BUY, 4, times(0.5)) == 2 * LOT
    # Raised to x2: the follower holds 2 lots, not its new share (8); the leader sells half.
    assert acct.trade(Side.SELL, 2, times(2)) == LOT
    assert acct.trade(Side.SELL, 1, times(2)) == 0  # 1 lot x 1/2 rounds up: keeps 1
    assert acct.trade(Side.SELL, 1, times(2)) == LOT
    assert acct.ledger.follower_net == 0


def test_terms_of_an_untouched_leg_can_be_refreshed_but_not_of_a_filled_one() -> None:
    acct = Account()
    capital = SizingTerms(CapitalRatioSizing(), NO_BOUNDS, LOT, capital_ratio=None)
    oid, qty = acct.order(Side.BUY, 4, capital)
    assert qty == 0  # funds unknown: nothing opened on a guess
    known = SizingTerms(CapitalRatioSizing(), NO_BOUNDS, LOT, capital_ratio=0.5)
    acct.ledger = refresh_terms(acct.ledger, oid, known)
    assert copy_order_total(acct.ledger, oid).total == 2 * LOT
    acct.leader_fills(oid, 4)
    later = SizingTerms(CapitalRatioSizing(), NO_BOUNDS, LOT, capital_ratio=1.0)
    assert refresh_terms(acct.ledger, oid, later) is acct.ledger


@pytest.mark.parametrize("multiplier", [1.0, 2.0, 0.5])
def test_round_trip_ends_flat(multiplier: float) -> None:
    acct = Account()
    bought = acct.trade(Side.BUY, 4, times(multiplier))
    assert bought == int(4 * multiplier) * LOT
    assert acct.trade(Side.SELL, 4, times(multiplier)) == bought
    assert acct.ledger.follower_net == 0 and acct.ledger.leader_net == 0


def test_reversal_closes_then_opens_the_sized_new_side() -> None:
    acct = Account()
    acct.trade(Side.BUY, 2, times(1))
    oid, qty = acct.order(Side.SELL, 3, times(1))  # long 2 -> short 1 in one order
    step = copy_order_total(acct.ledger, oid)
    # While the leader is long, the copy only closes: a fast copy must not leave it short.
    assert (step.closing, step.opening, step.total) == (2 * LOT, 0, 2 * LOT)
    assert qty == 2 * LOT and step.target_after == -LOT
    assert "opens once the leader's own fills cross flat" in step.reason
    acct.leader_fills(oid, 1)
    assert copy_order_total(acct.ledger, oid).total == 2 * LOT
    acct.leader_fills(oid, 2)  # the leader is flat: the short joins the copy's total
    step = copy_order_total(acct.ledger, oid)
    assert (step.closing, step.opening, step.total) == (2 * LOT, LOT, 3 * LOT)
    acct.leader_fills(oid, 3)
    acct.ledger = record_copy_progress(acct.ledger, leader_order_id=oid, filled=3 * LOT, working=0)
    assert acct.ledger.follower_net == -LOT == acct.ledger.target


def test_reversal_opens_nothing_when_the_new_side_sizes_to_zero() -> None:
    acct = Account()
    acct.trade(Side.BUY, 2, times(0.5))  # 1 lot
    oid, qty = acct.order(Side.SELL, 3, times(0.5))  # short 1 x 0.5 = 0 lots
    assert qty == LOT
    step = copy_order_total(acct.ledger, oid)
    assert (step.closing, step.opening) == (LOT, 0)
    assert step.target_after == 0


def test_reversal_closes_all_of_a_follower_that_outran_its_leader() -> None:
    acct = Account()
    oid, _ = acct.order(Side.BUY, 3, times(1))
    acct.leader_fills(oid, 1, done=True)  # the leader's order ends with 1 of 3 lots
    acct.copy_fills(oid)  # the copy had already filled all 3: 2 lots above target
    rev, qty = acct.order(Side.SELL, 2, times(1))  # long 1 -> short 1
    assert qty == 3 * LOT  # closes everything it holds, beyond the order's 2-lot step
    step = copy_order_total(acct.ledger, rev)
    assert (step.closing, step.opening) == (3 * LOT, 0)
    acct.leader_fills(rev, 2)  # the leader crossed flat: the short joins
    step = copy_order_total(acct.ledger, rev)
    assert (step.closing, step.opening, step.total) == (3 * LOT, LOT, 4 * LOT)


def test_partial_exit_of_a_follower_that_outran_its_leader_sells_only_the_step() -> None:
    acct = Account()
    oid, _ = acct.order(Side.BUY, 3, times(1))
    acct.leader_fills(oid, 2, done=True)
    acct.copy_fills(oid)  # 3 lots held, target 2
    assert acct.trade(Side.SELL, 1, times(1)) == LOT  # drift is reported, not traded
    drift = position_drift(acct.ledger)
    assert (drift.drift, drift.uncovered) == (LOT, LOT)


def test_an_exit_counts_what_other_copies_already_work_to_close() -> None:
    acct = Account()
    acct.trade(Side.BUY, 2, times(1))
    stop, stop_qty = acct.order(Side.SELL, 2, times(1))  # a resting stop-loss, working
    assert stop_qty == 2 * LOT
    target_exit, qty = acct.order(Side.SELL, 2, times(1))  # a second exit of the same lots
    assert qty == 0  # all the follower holds is already working to close
    assert stop != target_exit


def test_what_the_followers_own_trades_closed_no_exit_closes_again() -> None:
    acct = Account()
    acct.trade(Side.BUY, 2, times(1))
    acct.ledger = replace(acct.ledger, follower_own=-LOT)  # it sold a lot by hand
    oid, qty = acct.order(Side.SELL, 2, times(1))  # the leader exits all
    assert qty == LOT  # what it still holds, not the copies' 2 lots
    reason = copy_order_total(acct.ledger, oid).reason
    assert f"closing capped at {LOT} (holds +{2 * LOT}, of which {LOT} closed by the " in reason


def test_a_follower_that_closed_by_hand_reverses_with_the_leader_from_flat() -> None:
    acct = Account()
    acct.trade(Side.BUY, 1, times(1))
    acct.ledger = replace(acct.ledger, follower_own=-LOT)  # flat by hand
    oid, qty = acct.order(Side.SELL, 2, times(1))  # the leader goes from long 1 to short 1
    assert qty == 0  # nothing to close, and the short waits for the leader to cross flat
    acct.leader_fills(oid, 2)
    step = copy_order_total(acct.ledger, oid)
    assert (step.closing, step.opening, step.total) == (0, LOT, LOT)  # short 1, as the leader


def test_what_the_follower_adds_by_hand_is_not_ours_to_close() -> None:
    acct = Account()
    acct.trade(Side.BUY, 1, times(1))
    acct.ledger = replace(acct.ledger, follower_own=3 * LOT)
    _, qty = acct.order(Side.SELL, 1, times(1))
    assert qty == LOT


def test_concurrent_entries_each_get_their_share() -> None:
    acct = Account()
    first, q1 = acct.order(Side.BUY, 1, times(1))
    second, q2 = acct.order(Side.BUY, 1, times(1))
    assert (q1, q2) == (LOT, LOT)
    acct.leader_fills(second, 1)  # the later order fills first
    assert copy_order_total(acct.ledger, first).total == LOT
    assert copy_order_total(acct.ledger, second).total == LOT


def test_the_second_exit_copies_once_the_first_is_cancelled() -> None:
    acct = Account()
    acct.trade(Side.BUY, 2, times(1))
    stop, _ = acct.order(Side.SELL, 2, times(1))  # a resting stop-loss
    target_exit, qty = acct.order(Side.SELL, 2, times(1))  # and a resting target
    assert qty == 0
    # The leader cancels the stop; the engine cancels its copy and re-decides the ledger.
    acct.leader_fills(stop, 0, done=True)
    acct.ledger = record_copy_progress(acct.ledger, leader_order_id=stop, filled=0, working=0)
    assert copy_order_total(acct.ledger, target_exit).total == 2 * LOT


def test_a_lagging_copy_whose_leader_round_tripped_shrinks_to_nothing() -> None:
    acct = Account()
    filled, _ = acct.order(Side.BUY, 1, times(1))
    acct.leader_fills(filled, 1)  # the copy still works: it lags
    exit_, qty = acct.order(Side.SELL, 1, times(1))
    assert qty == 0  # nothing held yet to sell
    acct.leader_fills(exit_, 1)  # leader flat
    acct.redecide()
    # The lagging copy is now for nothing (the leader bought and sold): cancelled.
    assert acct.ledger.working_buy == 0
    later, later_qty = acct.order(Side.BUY, 1, times(1))  # a new entry, not filled
    assert later_qty == LOT  # its copy carries its own lot
    acct.redecide()
    assert copy_order_total(acct.ledger, filled).total == 0
    assert copy_order_total(acct.ledger, later).total == LOT


def test_a_resting_buy_does_not_stop_the_copy_of_a_short_sale() -> None:
    acct = Account()
    acct.order(Side.BUY, 2, times(1))  # a resting buy limit, not filled
    short, qty = acct.order(Side.SELL, 3, times(1))  # the leader sells short
    assert qty == 3 * LOT
    acct.leader_fills(short, 3)
    acct.redecide()
    assert copy_order_total(acct.ledger, short).total == 3 * LOT


# --- partial fills and modifications ------------------------------------------------------------


def test_partial_fills_keep_the_copy_total_consistent() -> None:
    acct = Account()
    oid, qty = acct.order(Side.BUY, 3, times(0.5))  # 1.5 -> 1 lot
    assert qty == LOT
    acct.leader_fills(oid, 1)  # target 0 so far, the rest will make it 1 lot
    assert copy_order_total(acct.ledger, oid).total == LOT
    acct.leader_fills(oid, 2)  # target 1 lot now
    assert copy_order_total(acct.ledger, oid).total == LOT
    acct.leader_fills(oid, 3)
    assert copy_order_total(acct.ledger, oid).total == LOT


def test_leader_modify_maps_to_a_consistent_follower_total() -> None:
    acct = Account()
    oid, qty = acct.order(Side.BUY, 2, times(1.5))  # 3 lots
    assert qty == 3 * LOT
    acct.leader_fills(oid, 1, done=False)
    acct.ledger = record_copy_progress(
        acct.ledger, leader_order_id=oid, filled=LOT, working=2 * LOT
    )
    # The leader raises the order to 4 lots: total = x1.5 of 4 = 6 lots, whatever filled so far.
    acct.ledger = record_leader_progress(
        acct.ledger, leader_order_id=oid, quantity=4 * LOT, filled=LOT, is_open=True
    )
    assert copy_order_total(acct.ledger, oid).total == 6 * LOT
    # The leader cuts it to 1 lot (what is filled): 1.5 lots -> 1 lot; the copy filled 1.
    acct.ledger = record_leader_progress(
        acct.ledger, leader_order_id=oid, quantity=LOT, filled=LOT, is_open=True
    )
    assert copy_order_total(acct.ledger, oid).total == LOT


def test_leader_cancelled_after_a_partial_fill_sizes_the_copy_on_the_fills() -> None:
    acct = Account()
    oid, qty = acct.order(Side.BUY, 4, times(1))
    assert qty == 4 * LOT
    acct.leader_fills(oid, 1, done=True)  # cancelled with 1 of 4 filled
    assert copy_order_total(acct.ledger, oid).total == LOT
    # The copy had already filled 2 lots: its total is never below its fills.
    acct.ledger = record_copy_progress(acct.ledger, leader_order_id=oid, filled=2 * LOT, working=0)
    assert copy_order_total(acct.ledger, oid).total == 2 * LOT
    drift = position_drift(acct.ledger)
    assert (drift.drift, drift.uncovered) == (LOT, LOT)


def test_stale_and_replayed_snapshots_change_nothing() -> None:
    acct = Account()
    oid, _ = acct.order(Side.BUY, 2, times(1))
    acct.leader_fills(oid, 2)
    before = acct.ledger
    acct.ledger = record_leader_progress(
        acct.ledger, leader_order_id=oid, quantity=2 * LOT, filled=LOT, is_open=True
    )
    assert acct.ledger.leader_net == before.leader_net and acct.ledger.fills == before.fills
    again = register_leader_order(
        acct.ledger,
        leader_order_id=oid,
        side=Side.BUY,
        quantity=2 * LOT,
        filled=2 * LOT,
        is_open=False,
        terms=times(5),
    )
    assert again.leg(oid) == acct.ledger.leg(oid)  # terms stay those it arrived under


def test_a_snapshot_with_no_progress_returns_the_very_same_ledger() -> None:
    """Most alerts of an order (TRANSIT then PENDING, a repeat) say nothing new: the ledger
    is not rebuilt, so nothing downstream sees a change."""
    acct = Account()
    oid, _ = acct.order(Side.BUY, 2, times(1))
    before = acct.ledger
    same = record_leader_progress(
        before, leader_order_id=oid, quantity=2 * LOT, filled=0, is_open=True
    )
    assert same is before
    acct.leader_fills(oid, 1)
    moved = acct.ledger
    assert moved is not before and moved.fills != before.fills
    ended = record_leader_progress(
        moved, leader_order_id=oid, quantity=2 * LOT, filled=LOT, is_open=False
    )
    leg = ended.leg(oid)
    assert ended is not moved and leg is not None and not leg.leader_open


# --- attach point ----------------------------------------------------------------------------


def test_leader_position_from_before_the_attach_point_is_never_traded() -> None:
    acct = Account(PositionLedger(KEY, leader_at_attach=2 * LOT))
    assert acct.trade(Side.SELL, 2, times(1)) == 0  # leader closes history: follower holds none
    assert acct.ledger.leader_net == 0 and acct.ledger.follower_net == 0


def test_leader_reversing_out_of_history_opens_only_the_new_side() -> None:
    acct = Account(PositionLedger(KEY, leader_at_attach=2 * LOT))
    oid, qty = acct.order(Side.SELL, 3, times(1))
    assert qty == 0  # the follower holds none of it, and the leader is still long
    acct.leader_fills(oid, 3)
    step = copy_order_total(acct.ledger, oid)
    assert (step.closing, step.opening, step.target_after) == (0, LOT, -LOT)


def test_an_order_open_at_attach_counts_only_later_fills() -> None:
    ledger = PositionLedger(KEY, leader_at_attach=LOT)  # 1 lot of it filled before attach
    ledger = register_leader_order(
        ledger,
        leader_order_id="A",
        side=Side.BUY,
        quantity=3 * LOT,
        filled=LOT,
        is_open=True,
        terms=times(1),
        baseline_filled=LOT,
    )
    assert copy_order_total(ledger, "A").total == 2 * LOT
    ledger = record_leader_progress(
        ledger, leader_order_id="A", quantity=3 * LOT, filled=3 * LOT, is_open=False
    )
    assert ledger.leader_net == 3 * LOT and ledger.target == 2 * LOT


def test_synced_target_must_have_the_leaders_sign() -> None:
    with pytest.raises(ValueError):
        PositionLedger(KEY, leader_at_attach=LOT, target_at_attach=-LOT)
    synced = PositionLedger(
        KEY, leader_at_attach=2 * LOT, target_at_attach=LOT, follower_at_attach=LOT
    )
    assert position_drift(synced).in_line


def test_is_history() -> None:
    attach = datetime(2026, 12, 1, 10, 0, tzinfo=IST)
    order = OrderSnapshot(
        order_id="1",
        client_id="1000000001",
        status=OrderStatus.TRADED,
        side=Side.BUY,
        order_type=OrderType.MARKET,
        product=Product.MARGIN,
        validity=Validity.DAY,
        segment=Segment.NSE_FNO,
        security_id="35001",
        quantity=LOT,
        filled_qty=LOT,
        updated_at=attach - timedelta(minutes=5),
    )
    assert is_history(order, attach)
    assert not is_history(order.with_changes(updated_at=attach + timedelta(seconds=1)), attach)
    assert not is_history(order.with_changes(status=OrderStatus.PENDING), attach)
    assert PositionKey.of(order) == KEY


# --- caps -------------------------------------------------------------------------------------


def test_max_qty_caps_an_entry_but_never_an_exit() -> None:
    capped = times(1, OrderSizeBounds(max_qty=2 * LOT + 10))
    acct = Account()
    assert acct.trade(Side.BUY, 5, capped) == 2 * LOT
    assert acct.trade(Side.BUY, 1, capped) == LOT  # the next entry adds its own step
    assert acct.ledger.target == 3 * LOT
    # Leader 6 -> 3 lots: the follower (off its x1 share) keeps half of 3 lots, rounded up.
    assert acct.trade(Side.SELL, 3, capped) == LOT
    assert acct.trade(Side.SELL, 3, capped) == 2 * LOT  # leader flat: follower flat, uncapped
    assert acct.ledger.follower_net == 0


def test_min_qty_skips_a_small_entry_but_never_an_exit() -> None:
    bounded = times(1, OrderSizeBounds(min_qty=2 * LOT))
    acct = Account()
    oid, qty = acct.order(Side.BUY, 1, bounded)
    assert qty == 0 and "below min_qty" in copy_order_total(acct.ledger, oid).reason
    acct.leader_fills(oid, 1)
    assert acct.trade(Side.BUY, 2, bounded) == 2 * LOT
    assert acct.trade(Side.SELL, 3, bounded) == 2 * LOT  # exits are never held back by min_qty


# --- targets and drift -------------------------------------------------------------------------


def test_next_target_never_flips_and_is_flat_with_the_leader() -> None:
    terms = times(3)
    assert next_target(6 * LOT, 2 * LOT, 0, terms) == (0, 0)
    assert next_target(6 * LOT, 2 * LOT, LOT, terms)[0] == 3 * LOT  # exactly x3 of 1 lot
    assert next_target(LOT, 2 * LOT, LOT, terms)[0] == LOT  # off its share: keeps half, rounded up
    assert next_target(3 * LOT, 3 * LOT, LOT, times(1))[0] == LOT
    assert next_target(0, 2 * LOT, -LOT, terms)[0] == -3 * LOT


def test_capital_ratio_target_uses_the_ratio_in_force() -> None:
    terms = SizingTerms(CapitalRatioSizing(factor=1.0), NO_BOUNDS, LOT, capital_ratio=0.25)
    acct = Account()
    assert acct.trade(Side.BUY, 3, terms) == 0  # 0.75 lot
    assert acct.trade(Side.BUY, 1, terms) == LOT  # 4 x 0.25 = 1 lot: remainder carried


def test_drift_splits_what_working_copies_close_from_what_nothing_closes() -> None:
    acct = Account()
    oid, _ = acct.order(Side.BUY, 3, times(1))
    acct.leader_fills(oid, 3)
    acct.ledger = record_copy_progress(acct.ledger, leader_order_id=oid, filled=LOT, working=LOT)
    drift = position_drift(acct.ledger)
    assert drift.drift == -2 * LOT
    assert (drift.closing_by_working, drift.uncovered) == (LOT, LOT)
    assert "no open order will close" in drift.describe()
    assert drifts([acct.ledger]) == [drift]


def test_drift_reports_copies_working_past_a_flat_target() -> None:
    acct = Account()
    oid, _ = acct.order(Side.BUY, 1, times(1))
    acct.leader_fills(oid, 1)
    acct.trade(Side.SELL, 1, times(1))  # leader flat; the entry copy never filled, still works
    drift = position_drift(acct.ledger)
    assert drift.drift == 0 and drift.working_away == LOT and not drift.in_line
    acct.ledger = record_copy_progress(acct.ledger, leader_order_id=oid, filled=0, working=0)
    assert drifts([acct.ledger]) == []


def test_a_continued_fold_equals_a_fold_from_scratch() -> None:
    """target_state continues from its last fold of the same ledger; the result must be what
    folding every fill from the start gives (here: a cleared cache)."""
    half, two = times(0.5), times(2.0)
    ledger = PositionLedger(KEY)
    for n, (side, lots, terms) in enumerate(
        [(Side.BUY, 3, half), (Side.BUY, 1, two), (Side.SELL, 2, half), (Side.SELL, 3, two)]
    ):
        oid = f"L{n}"
        ledger = register_leader_order(
            ledger,
            leader_order_id=oid,
            side=side,
            quantity=lots * LOT,
            filled=0,
            is_open=True,
            terms=terms,
        )
        for filled in range(1, lots + 1):
            ledger = record_leader_progress(
                ledger, leader_order_id=oid, quantity=lots * LOT, filled=filled * LOT, is_open=True
            )
            continued = target_state(ledger)
            forget_folds()
            assert continued == target_state(ledger)


def test_a_fold_continues_only_along_one_lineage() -> None:
    """A remembered fold is continued only by a ledger that grew from it by appended legs and
    progress (checked in one comparison, not leg by leg); new terms for a leg, or a ledger
    built anew, start a lineage of their own, and the fold is then done from scratch."""
    one = times(1.0)
    ledger = register_leader_order(
        PositionLedger(KEY),
        leader_order_id="A",
        side=Side.BUY,
        quantity=2 * LOT,
        filled=LOT,
        is_open=True,
        terms=one,
    )
    lineage = ledger.shape.lineage
    ledger = record_leader_progress(
        ledger, leader_order_id="A", quantity=2 * LOT, filled=2 * LOT, is_open=False
    )
    ledger = register_leader_order(
        ledger,
        leader_order_id="B",
        side=Side.SELL,
        quantity=LOT,
        filled=0,
        is_open=True,
        terms=one,
    )
    ledger = record_copy_progress(ledger, leader_order_id="A", filled=2 * LOT, working=0)
    assert ledger.shape.lineage == lineage
    refreshed = refresh_terms(ledger, "B", times(2.0))
    assert refreshed.shape.lineage != lineage
    rebuilt = replace(ledger, legs=ledger.legs)
    assert rebuilt.shape.lineage not in (lineage, refreshed.shape.lineage)
    for other in (refreshed, rebuilt):
        continued = target_state(other)
        forget_folds()
        assert continued == target_state(other)


# --- position sync: the follower's net to its target, never past it ------------------------------


def test_sync_needs_nothing_while_a_protective_stop_rests() -> None:
    acct = Account()
    acct.trade(Side.BUY, 6, times(1))
    _, stop = acct.order(Side.SELL, 6, times(1))  # the leader's stop-loss rests; so does its copy
    assert stop == 6 * LOT
    assert sync_step(acct.ledger) == 0  # not a sell to make up with a buy
    assert position_drift(acct.ledger).in_line


def test_sync_counts_an_entry_copy_left_behind_by_its_filled_leader() -> None:
    acct = Account()
    oid, _ = acct.order(Side.BUY, 2, times(1))
    acct.leader_fills(oid, 2)  # the leader is done; the copy still works 2 lots
    assert sync_step(acct.ledger) == 0
    assert position_drift(acct.ledger).closing_by_working == 2 * LOT
    acct.ledger = record_copy_progress(acct.ledger, leader_order_id=oid, filled=0, working=0)
    assert sync_step(acct.ledger) == 2 * LOT  # cancelled: nothing closes it but a sync


def test_sync_counts_only_the_filled_share_of_a_copy_whose_leader_still_works() -> None:
    acct = Account()
    oid, _ = acct.order(Side.BUY, 4, times(1))
    acct.leader_fills(oid, 1)  # target 1 lot; the copy works 4 lots, 1 of them owed now
    assert sync_step(acct.ledger) == 0
    drift = position_drift(acct.ledger)
    assert (drift.closing_by_working, drift.working_away) == (LOT, 0)


def test_sync_counts_an_exit_copy_left_behind_and_never_sells_twice() -> None:
    acct = Account()
    acct.trade(Side.BUY, 2, times(1))
    oid, _ = acct.order(Side.SELL, 2, times(1))
    acct.leader_fills(oid, 2)  # the leader is flat; the exit copy still works
    assert acct.ledger.target == 0 and acct.ledger.follower_net == 2 * LOT
    assert sync_step(acct.ledger) == 0


def test_sync_stops_at_flat_and_never_flips_the_follower() -> None:
    acct = Account()
    acct.trade(Side.SELL, 1, times(1))  # target -1 lot
    acct.ledger = replace(acct.ledger, follower_at_attach=3 * LOT)  # but the account holds +2
    assert acct.ledger.follower_net == 2 * LOT
    assert sync_step(acct.ledger) == -2 * LOT  # to flat; the short side on a later sync
    acct.ledger = replace(acct.ledger, follower_at_attach=0)  # holds its -1 lot
    assert sync_step(acct.ledger) == 0


def test_sync_never_goes_past_the_target() -> None:
    acct = Account()
    acct.trade(Side.BUY, 3, times(1))
    acct.ledger = replace(acct.ledger, follower_at_attach=-LOT)  # holds 2 lots of its 3
    assert sync_step(acct.ledger) == LOT
    acct.ledger = replace(acct.ledger, follower_at_attach=LOT)  # holds 4 lots of its 3
    assert sync_step(acct.ledger) == -LOT
