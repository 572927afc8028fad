"""Per-follower rules as configuration models: how to size, what to copy, which limits to enforce.

They are pydantic models so the settings loader validates them with clear messages; the
functions that apply them live beside them (sizing.py, filters.py, risk.py) and are pure.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from engine.domain import Product, Segment


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MultiplierSizing(_Rule):
    """Follower quantity = leader quantity x multiplier, rounded down to whole lots."""

    kind: Literal["multiplier"] = "multiplier"
    multiplier: float = Field(default=1.0, gt=0, le=1000)


class CapitalRatioSizing(_Rule):
    """Follower quantity = leader quantity x (follower capital / leader capital) x factor.

    Capital is each account's available balance from Dhan's fund limits, refreshed every
    `refresh_s` seconds so the ratio is never stale by more than that.
    """

    kind: Literal["capital_ratio"] = "capital_ratio"
    factor: float = Field(default=1.0, gt=0, le=100)
    refresh_s: float = Field(default=60.0, ge=5, le=3600)


class FixedLotsSizing(_Rule):
    """Every copied order is exactly this many lots, whatever the leader's size."""

    kind: Literal["fixed_lots"] = "fixed_lots"
    lots: int = Field(default=1, ge=1, le=10_000)


SizingRule = Annotated[
    MultiplierSizing | CapitalRatioSizing | FixedLotsSizing, Field(discriminator="kind")
]


class OrderSizeBounds(_Rule):
    """Per-order clamp applied after sizing (quantities in shares/units, not lots)."""

    min_qty: int = Field(default=0, ge=0)
    max_qty: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> OrderSizeBounds:
        if self.max_qty is not None and self.max_qty < self.min_qty:
            raise ValueError("max_qty must be at least min_qty")
        return self


class CopyFilters(_Rule):
    """Which leader orders this follower copies. None means no restriction."""

    segments: tuple[Segment, ...] | None = None
    products: tuple[Product, ...] | None = None
    security_ids: tuple[str, ...] | None = None
    options_only: bool = False


class RiskLimits(_Rule):
    """Pre-trade checks per follower; None disables a check."""

    max_qty: int | None = Field(default=None, ge=1)
    max_lots: int | None = Field(default=None, ge=1)
    max_order_value: float | None = Field(default=None, gt=0)
    max_open_orders: int | None = Field(default=None, ge=1)
    price_band_pct: float | None = Field(default=None, gt=0, le=100)
    max_orders_per_minute: int | None = Field(default=None, ge=1)
    daily_loss_limit: float | None = Field(default=None, gt=0)
    on_loss_breach: Literal["kill_follower", "kill_engine"] = "kill_follower"
