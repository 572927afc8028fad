"""How many shares/units a follower gets for a leader order: pure functions over the rules.

Every result is a whole number of lots. Multiplier and capital-ratio sizing round *down*, so a
follower never carries more exposure than its rule allows; a result of zero always comes with a
reason sentence that names the numbers, for the "sized to zero" alert.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal

from engine.replication.rules import (
    CapitalRatioSizing,
    FixedLotsSizing,
    MultiplierSizing,
    OrderSizeBounds,
)

__all__ = [
    "DISCLOSED_MIN_FRACTION",
    "CapitalRatioCache",
    "SizingResult",
    "position_ratio",
    "scale_disclosed",
    "size_order",
    "size_position",
    "target_total",
]

# Relative tolerance when flooring a float product to whole lots: 0.29 x 100 is
# 28.999999999999996 in binary floating point and must still give 29.
_EPS = 1e-9

TIMES = "\u00d7"  # the multiplication sign in reason sentences

# Dhan: "disclosedQuantity: keep more than 30% of quantity". We require strictly more, which also
# satisfies a ">= 30%" reading.
DISCLOSED_MIN_FRACTION = Decimal("0.3")


@dataclass(frozen=True, slots=True)
class SizingResult:
    quantity: int  # a whole multiple of the lot size; 0 = do not copy (see reason)
    reason: str  # how the number was reached, or why it is zero


def _num(value: float | Decimal) -> str:
    """A number for a reason sentence: no trailing zeros, thousands separators."""
    d = Decimal(str(value)) if not isinstance(value, Decimal) else value
    if d == d.to_integral_value():
        return f"{int(d):,}"
    text = f"{d:,.6f}".rstrip("0").rstrip(".")
    return text


def _lots_word(n: int) -> str:
    return "lot" if n == 1 else "lots"


def _floor_lots(raw: float | Decimal, lot: int) -> int:
    if isinstance(raw, Decimal):
        return int((raw / lot).to_integral_value(rounding="ROUND_FLOOR"))
    return math.floor(raw / lot * (1 + _EPS) + _EPS)


def size_order(
    rule: MultiplierSizing | CapitalRatioSizing | FixedLotsSizing,
    bounds: OrderSizeBounds,
    *,
    leader_qty: int,
    lot_size: int,
    capital_ratio: float | None = None,
) -> SizingResult:
    """The follower's quantity for a leader quantity, in whole lots, clamped by `bounds`.

    `capital_ratio` is follower capital / leader capital (see `CapitalRatioCache`); it is only
    used by a capital-ratio rule, for which None means "not known yet" and sizes to zero.
    """
    lot = lot_size if lot_size > 0 else 1
    lot_text = f"{_num(lot)}"

    if isinstance(rule, FixedLotsSizing):
        lots = rule.lots
        qty = lots * lot
        reason = f"fixed {lots} {_lots_word(lots)} of {lot_text} = {_num(qty)}"
    else:
        if leader_qty <= 0:
            return SizingResult(0, f"leader quantity {leader_qty} → 0 lots of {lot_text}")
        raw: float | Decimal
        if isinstance(rule, MultiplierSizing):
            # Decimal from the shortest repr keeps 0.29 x 100 exactly 29.
            raw = Decimal(leader_qty) * Decimal(repr(rule.multiplier))
            formula = f"leader {_num(leader_qty)} {TIMES} {_num(rule.multiplier)}"
        else:
            if capital_ratio is None:
                return SizingResult(0, "fund limits not yet known")
            ratio = max(capital_ratio, 0.0)
            raw = leader_qty * ratio * rule.factor
            formula = f"leader {_num(leader_qty)} {TIMES} capital ratio {ratio:.4g}"
            if rule.factor != 1.0:
                formula += f" {TIMES} factor {_num(rule.factor)}"
        raw_text = _num(raw) if isinstance(raw, Decimal) else _num(round(raw, 4))
        lots = max(_floor_lots(raw, lot), 0)
        qty = lots * lot
        reason = f"{formula} = {raw_text} → {lots} {_lots_word(lots)} of {lot_text}"
        if lots == 0:
            return SizingResult(0, reason)
        reason += f" = {_num(qty)}"

    if bounds.max_qty is not None and qty > bounds.max_qty:
        capped_lots = bounds.max_qty // lot
        qty = capped_lots * lot
        reason += f"; capped by max_qty {_num(bounds.max_qty)} to {_num(qty)}"
        if qty == 0:
            reason += f" (max_qty {_num(bounds.max_qty)} is less than one lot of {lot_text})"
            return SizingResult(0, reason)
    if qty < bounds.min_qty:
        return SizingResult(0, f"{reason}; below min_qty {_num(bounds.min_qty)} → 0")
    return SizingResult(qty, reason)


def position_ratio(
    rule: MultiplierSizing | CapitalRatioSizing | FixedLotsSizing,
    capital_ratio: float | None,
) -> Decimal | None:
    """Follower position per unit of the leader's position for a ratio rule.

    None for a fixed-lots rule (it has no ratio) and for a capital-ratio rule whose fund limits
    are not known yet. Decimal from the shortest repr keeps 0.29 x 100 exactly 29.
    """
    if isinstance(rule, MultiplierSizing):
        return Decimal(repr(rule.multiplier))
    if isinstance(rule, CapitalRatioSizing):
        if capital_ratio is None:
            return None
        return Decimal(repr(max(capital_ratio, 0.0))) * Decimal(repr(rule.factor))
    return None


def size_position(leader_abs_qty: int, ratio: Decimal, lot_size: int) -> int:
    """The follower's position for a leader position of `leader_abs_qty` (>= 0) at `ratio`:
    whole lots, rounded toward zero, never negative. No per-order bounds: those clamp orders,
    not positions."""
    lot = lot_size if lot_size > 0 else 1
    if leader_abs_qty <= 0 or ratio <= 0:
        return 0
    return max(_floor_lots(Decimal(leader_abs_qty) * ratio, lot), 0) * lot


def target_total(sized_total: int, follower_filled: int) -> int:
    """A follower order's total quantity for a modification (Dhan's modify takes the total).

    Never below what the follower has already filled: a leader reducing its order cannot undo
    the follower's fills.
    """
    return max(sized_total, follower_filled)


def scale_disclosed(
    leader_disclosed: int, leader_qty: int, follower_qty: int, lot_size: int
) -> int:
    """The follower's disclosed quantity, proportional to the leader's and valid for Dhan.

    0 means "fully disclosed" (no disclosed quantity): returned when the leader discloses fully,
    or when no lot multiple is both more than 30% of the follower's quantity and at most that
    quantity.
    """
    if leader_disclosed <= 0 or leader_qty <= 0 or follower_qty <= 0:
        return 0
    lot = lot_size if lot_size > 0 else 1
    if leader_disclosed >= leader_qty:
        return 0 if follower_qty % lot else follower_qty
    # Nearest lot multiple of the proportional value (exact rational arithmetic).
    num = leader_disclosed * follower_qty
    den = leader_qty * lot
    lots = (2 * num + den) // (2 * den)  # round half up
    disclosed = lots * lot
    # Smallest lot multiple strictly above 30% of the follower's quantity.
    min_frac = DISCLOSED_MIN_FRACTION * follower_qty
    min_lots = int((min_frac / lot).to_integral_value(rounding="ROUND_FLOOR")) + 1
    disclosed = max(disclosed, min_lots * lot)
    max_valid = (follower_qty // lot) * lot
    if disclosed > max_valid:
        return 0
    return disclosed


@dataclass(frozen=True, slots=True)
class _Balance:
    amount: float
    fetched_at: float  # monotonic seconds


class CapitalRatioCache:
    """Leader and follower available balances with when they were fetched.

    The ratio is None when either balance is missing or older than the refresh interval, so the
    engine refreshes fund limits before sizing instead of sizing on stale capital.
    """

    def __init__(self, refresh_s: float = 60.0) -> None:
        self.refresh_s = refresh_s
        self._leader: _Balance | None = None
        self._followers: dict[str, _Balance] = {}

    def set_leader(self, available: float, fetched_at: float) -> None:
        self._leader = _Balance(available, fetched_at)

    def set_follower(self, follower: str, available: float, fetched_at: float) -> None:
        self._followers[follower] = _Balance(available, fetched_at)

    def forget(self, follower: str | None = None) -> None:
        """Drop a follower's balance (or the leader's, with None), forcing a refresh."""
        if follower is None:
            self._leader = None
        else:
            self._followers.pop(follower, None)

    def _fresh(self, b: _Balance | None, now_mono: float, refresh_s: float) -> bool:
        return b is not None and 0.0 <= now_mono - b.fetched_at <= refresh_s

    def is_stale(self, follower: str, now_mono: float, refresh_s: float | None = None) -> bool:
        """True when the leader's or this follower's balance must be (re)fetched."""
        r = self.refresh_s if refresh_s is None else refresh_s
        return not (
            self._fresh(self._leader, now_mono, r)
            and self._fresh(self._followers.get(follower), now_mono, r)
        )

    def ratio(self, follower: str, now_mono: float, refresh_s: float | None = None) -> float | None:
        """follower available / leader available; None when missing, stale, or leader ≤ 0."""
        if self.is_stale(follower, now_mono, refresh_s):
            return None
        leader = self._leader
        fol = self._followers.get(follower)
        assert leader is not None and fol is not None
        if leader.amount <= 0:
            return None
        return max(fol.amount, 0.0) / leader.amount
