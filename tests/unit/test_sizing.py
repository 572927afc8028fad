"""Sizing: whole lots, rounding down, bounds, reasons that name the numbers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.replication.rules import (
    CapitalRatioSizing,
    FixedLotsSizing,
    MultiplierSizing,
    OrderSizeBounds,
)
from engine.replication.sizing import (
    CapitalRatioCache,
    SizingResult,
    scale_disclosed,
    size_order,
    target_total,
)

NO_BOUNDS = OrderSizeBounds()


def test_multiplier_rounds_down_to_zero_with_named_numbers() -> None:
    r = size_order(MultiplierSizing(multiplier=0.5), NO_BOUNDS, leader_qty=65, lot_size=65)
    assert r == SizingResult(0, "leader 65 \u00d7 0.5 = 32.5 → 0 lots of 65")


def test_multiplier_rounds_down_to_whole_lots() -> None:
    r = size_order(MultiplierSizing(multiplier=1.5), NO_BOUNDS, leader_qty=195, lot_size=65)
    # 292.5 -> 4 lots (260), never 5 lots
    assert r.quantity == 260
    assert "292.5" in r.reason and "4 lots of 65" in r.reason


def test_multiplier_float_artifacts_do_not_lose_a_lot() -> None:
    # 0.29 * 100 == 28.999999999999996 in floating point
    r = size_order(MultiplierSizing(multiplier=0.29), NO_BOUNDS, leader_qty=100, lot_size=1)
    assert r.quantity == 29
    r = size_order(MultiplierSizing(multiplier=0.7), NO_BOUNDS, leader_qty=100, lot_size=10)
    assert r.quantity == 70


@pytest.mark.parametrize("lot_size", [0, -5])
def test_non_positive_lot_size_means_one(lot_size: int) -> None:
    r = size_order(MultiplierSizing(multiplier=2), NO_BOUNDS, leader_qty=7, lot_size=lot_size)
    assert r.quantity == 14


def test_leader_zero_quantity_sizes_to_zero() -> None:
    r = size_order(MultiplierSizing(), NO_BOUNDS, leader_qty=0, lot_size=50)
    assert r.quantity == 0 and "0" in r.reason


def test_fixed_lots_ignores_leader_size() -> None:
    r = size_order(FixedLotsSizing(lots=3), NO_BOUNDS, leader_qty=1, lot_size=75)
    assert r.quantity == 225
    assert "3 lots of 75" in r.reason


def test_capital_ratio_sizing() -> None:
    rule = CapitalRatioSizing(factor=1.0)
    r = size_order(rule, NO_BOUNDS, leader_qty=650, lot_size=65, capital_ratio=0.25)
    assert r.quantity == 130  # 162.5 -> 2 lots
    assert "capital ratio 0.25" in r.reason


def test_capital_ratio_with_factor() -> None:
    rule = CapitalRatioSizing(factor=2.0)
    r = size_order(rule, NO_BOUNDS, leader_qty=650, lot_size=65, capital_ratio=0.25)
    assert r.quantity == 325
    assert "factor 2" in r.reason


def test_capital_ratio_unknown_funds() -> None:
    r = size_order(CapitalRatioSizing(), NO_BOUNDS, leader_qty=650, lot_size=65)
    assert r == SizingResult(0, "fund limits not yet known")


def test_capital_ratio_negative_is_zero() -> None:
    r = size_order(CapitalRatioSizing(), NO_BOUNDS, leader_qty=650, lot_size=65, capital_ratio=-1.0)
    assert r.quantity == 0


def test_max_qty_clamps_down_to_lot_multiple() -> None:
    r = size_order(FixedLotsSizing(lots=3), OrderSizeBounds(max_qty=140), leader_qty=1, lot_size=65)
    assert r.quantity == 130
    assert "max_qty 140" in r.reason


def test_max_qty_below_one_lot_is_zero() -> None:
    r = size_order(FixedLotsSizing(lots=1), OrderSizeBounds(max_qty=50), leader_qty=1, lot_size=65)
    assert r.quantity == 0
    assert "less than one lot of 65" in r.reason


def test_below_min_qty_is_zero() -> None:
    r = size_order(
        MultiplierSizing(multiplier=1), OrderSizeBounds(min_qty=100), leader_qty=65, lot_size=65
    )
    assert r.quantity == 0
    assert "min_qty 100" in r.reason


def test_at_min_qty_is_kept() -> None:
    r = size_order(MultiplierSizing(), OrderSizeBounds(min_qty=65), leader_qty=65, lot_size=65)
    assert r.quantity == 65


@given(
    leader_qty=st.integers(min_value=0, max_value=100_000),
    lot=st.integers(min_value=1, max_value=2000),
    mult=st.floats(min_value=0.01, max_value=50, allow_nan=False),
    max_qty=st.one_of(st.none(), st.integers(min_value=1, max_value=1_000_000)),
)
def test_multiplier_properties(leader_qty: int, lot: int, mult: float, max_qty: int | None) -> None:
    bounds = OrderSizeBounds(max_qty=max_qty)
    r = size_order(MultiplierSizing(multiplier=mult), bounds, leader_qty=leader_qty, lot_size=lot)
    assert r.quantity >= 0
    assert r.quantity % lot == 0
    assert r.quantity <= leader_qty * mult + 1e-6 * max(1.0, leader_qty * mult)
    if max_qty is not None:
        assert r.quantity <= max_qty
    else:
        # Rounding down loses less than one lot.
        assert r.quantity > leader_qty * mult - lot - 1e-6
    assert r.reason


def test_target_total_never_below_filled() -> None:
    assert target_total(100, 40) == 100
    assert target_total(30, 40) == 40


def test_scale_disclosed_zero_when_leader_zero() -> None:
    assert scale_disclosed(0, 1000, 500, 1) == 0


def test_scale_disclosed_proportional() -> None:
    assert scale_disclosed(500, 1000, 400, 1) == 200


def test_scale_disclosed_rounded_to_lots() -> None:
    # 400 * 650/1300... proportional 325 -> 5 lots of 65
    assert scale_disclosed(650, 1300, 650, 65) == 325


def test_scale_disclosed_raised_above_30_percent() -> None:
    # proportional 50 of 500 is 10%, Dhan needs more than 30% -> 151
    assert scale_disclosed(100, 1000, 500, 1) == 151
    # with lots: 30% of 650 = 195 = 3 lots; strictly more -> 4 lots
    assert scale_disclosed(65, 1300, 650, 65) == 260


def test_scale_disclosed_unsatisfiable_is_zero() -> None:
    # follower qty 65 with lot 65 -> only candidate 65 (100%), valid
    assert scale_disclosed(65, 650, 65, 65) == 65
    # follower qty not a lot multiple and too small: nothing valid
    assert scale_disclosed(1, 10, 3, 5) == 0


def test_scale_disclosed_leader_fully_disclosed() -> None:
    assert scale_disclosed(100, 100, 50, 1) == 50


@given(
    leader_qty=st.integers(min_value=1, max_value=100_000),
    frac=st.floats(min_value=0.0, max_value=1.0),
    follower_lots=st.integers(min_value=1, max_value=1000),
    lot=st.integers(min_value=1, max_value=500),
)
def test_scale_disclosed_always_valid(
    leader_qty: int, frac: float, follower_lots: int, lot: int
) -> None:
    leader_disclosed = int(leader_qty * frac)
    follower_qty = follower_lots * lot
    d = scale_disclosed(leader_disclosed, leader_qty, follower_qty, lot)
    if leader_disclosed == 0:
        assert d == 0
    if d:
        assert d % lot == 0
        assert d * 10 > follower_qty * 3
        assert d <= follower_qty


def test_capital_ratio_cache_fresh_and_stale() -> None:
    cache = CapitalRatioCache(refresh_s=60)
    assert cache.ratio("f1", 100.0) is None
    cache.set_leader(1_000_000.0, 100.0)
    assert cache.ratio("f1", 100.0) is None
    cache.set_follower("f1", 250_000.0, 110.0)
    assert cache.ratio("f1", 120.0) == pytest.approx(0.25)
    assert not cache.is_stale("f1", 120.0)
    # leader fetched at 100, stale after 160
    assert cache.ratio("f1", 160.0) == pytest.approx(0.25)
    assert cache.ratio("f1", 160.5) is None
    assert cache.is_stale("f1", 160.5)
    cache.set_leader(500_000.0, 161.0)
    assert cache.ratio("f1", 165.0) == pytest.approx(0.5)
    # per-rule refresh interval
    assert cache.ratio("f1", 165.0, refresh_s=10) is None


def test_capital_ratio_cache_leader_without_funds() -> None:
    cache = CapitalRatioCache()
    cache.set_leader(0.0, 0.0)
    cache.set_follower("f", 10.0, 0.0)
    assert cache.ratio("f", 1.0) is None


def test_capital_ratio_cache_forget() -> None:
    cache = CapitalRatioCache()
    cache.set_leader(100.0, 0.0)
    cache.set_follower("f", 10.0, 0.0)
    assert cache.ratio("f", 1.0) == pytest.approx(0.1)
    cache.forget("f")
    assert cache.ratio("f", 1.0) is None
    cache.set_follower("f", 10.0, 0.0)
    cache.forget()
    assert cache.ratio("f", 1.0) is None
