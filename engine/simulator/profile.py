"""Dialect profiles: how the simulated Dhan answers where live Dhan is not settled.

The defaults ("live") follow what recordings of live Dhan show (shared/dhan-api-facts.md §8b);
each other key chooses between answers no source settles yet (§8b's last paragraph, §9).
``copytrade probe`` writes a JSON file with these keys for a real account; loading it here
reproduces that account's answers.

    profile = load_profile("pascal-upper")        # a built-in name
    profile = load_profile("probe-report.json")   # a file: unknown keys are refused
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class SimProfile(BaseModel):
    """One answer per unsettled question; defaults are the live answers."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # GET /orders/{id} (and modify/cancel/trades of an id) for an order the account lacks.
    unknown_order_id: Literal["dh905_400", "dh907_404"] = "dh905_400"
    # GET /orders/external/{correlationId} for a correlation id no order carries.
    unknown_correlation_id: Literal["dh905_400", "dh907_404", "empty_200", "empty_list_200"] = (
        "dh905_400"
    )
    socket_keys: Literal["camel", "pascal"] = "camel"
    socket_status_case: Literal["title", "upper"] = "title"
    # A partial fill on the socket: PART_TRADED (true) or the order's PENDING (false).
    socket_part_traded: bool = False
    # A modification produces its own alert (true) or shows only in the order book (false).
    modify_alert: bool = True
    cancel_response: Literal["json_200", "empty_202"] = "json_200"
    # API STOP_LOSS_MARKET: refused DH-906, or accepted as a LIMIT at the MPP price, trigger
    # dropped, and so filled at once (§8b L5).
    api_slm: Literal["refuse", "accept_fill"] = "refuse"
    mpp_band_pct: float = Field(default=1.0, ge=0.0, le=20.0)
    order_by_id_shape: Literal["list", "object"] = "list"
    invalid_ip_code: Literal["DH-905", "DH-906", "DH-911"] = "DH-911"
    token_validity_s: int = Field(default=86400, gt=0)
    # GET /positions: its day quantities count today's fills only (dayBuyQty, daySellQty;
    # the carried ones in carryForwardBuyQty...), or every day's, the carried ones included.
    positions_day_qty: Literal["today", "with_carried"] = "today"
    # GET /positions answers the positions as they stood this long ago: whether Dhan's
    # positions trail its order stream (or by how much) is not documented.
    positions_lag_s: float = Field(default=0.0, ge=0.0, le=60.0)
    # The rows §8b settles (L6-L12) answered as the simulator did before them: null
    # placeholders, remainingQuantity kept on cancel, DH-907 404 for unknown endpoints,
    # "Rate_Limit" 429s, a strict modify body, no lower-camel duplicates on the socket.
    classic_details: bool = False


LIVE = SimProfile()

BUILTIN_PROFILES: dict[str, SimProfile] = {
    "live": LIVE,
    # What the simulator answered before issue 11, for tests written against it.
    "classic": SimProfile(
        unknown_order_id="dh907_404",
        unknown_correlation_id="dh907_404",
        socket_keys="pascal",
        socket_status_case="upper",
        order_by_id_shape="object",
        classic_details=True,
    ),
    "lookup-dh907": SimProfile(unknown_correlation_id="dh907_404"),
    "lookup-empty200": SimProfile(unknown_correlation_id="empty_200"),
    "lookup-emptylist": SimProfile(unknown_correlation_id="empty_list_200"),
    "pascal-upper": SimProfile(socket_keys="pascal", socket_status_case="upper"),
    "part-traded": SimProfile(socket_part_traded=True),
    "no-modify-alert": SimProfile(modify_alert=False),
    "cancel-202": SimProfile(cancel_response="empty_202"),
    "slm-accept-fill": SimProfile(api_slm="accept_fill"),
    "positions-with-carried": SimProfile(positions_day_qty="with_carried"),
    "positions-lag": SimProfile(positions_lag_s=1.5),
}


class ProfileError(ValueError):
    """A profile name or file that cannot be used; the message is one line for the user."""


def load_profile(spec: str | SimProfile | None) -> SimProfile:
    """A built-in profile by name, a JSON file by path, or the live default for None."""
    if spec is None:
        return LIVE
    if isinstance(spec, SimProfile):
        return spec
    if spec in BUILTIN_PROFILES:
        return BUILTIN_PROFILES[spec]
    path = Path(spec)
    if path.suffix != ".json" and not path.exists():
        names = ", ".join(BUILTIN_PROFILES)
        raise ProfileError(f"unknown profile {spec!r} (built-in: {names}; or a .json file)")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ProfileError(f"cannot read profile file {spec}: {exc.strerror}") from None
    except ValueError:
        raise ProfileError(f"profile file {spec} is not valid JSON") from None
    return profile_from_mapping(raw, str(spec))


def profile_from_mapping(raw: object, source: str = "profile") -> SimProfile:
    if not isinstance(raw, dict):
        raise ProfileError(f"{source}: a profile must be a JSON object")
    try:
        return SimProfile.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top)"
        if first["type"] == "extra_forbidden":
            raise ProfileError(f"{source}: unknown key {where!r}") from None
        raise ProfileError(f"{source}: bad value for {where!r}: {first['msg']}") from None
