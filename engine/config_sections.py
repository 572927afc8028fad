"""The settings' sections: the leader and follower accounts (client id, token or PIN + TOTP,
source address, a follower's rules), Dhan's URLs and the order-API budget, each with its
validators. ``engine.config`` assembles them into ``Settings``.
"""

from __future__ import annotations

import re
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError

from engine.accounts.credentials import normalise_totp_secret, pin_problem, totp_secret_problem
from engine.accounts.source_ip import SourceIpError, check_local_address
from engine.replication.rules import (
    CopyFilters,
    MultiplierSizing,
    OrderSizeBounds,
    RiskLimits,
    SizingRule,
)
from engine.secrets import register_secret

__all__ = [
    "AccountSettings",
    "DhanSettings",
    "FollowerSettings",
    "LimiterSettings",
    "SettingsSection",
]

_CLIENT_ID = re.compile(r"\d{6,20}")
_FOLLOWER_NAME = re.compile(r"[A-Za-z0-9_-]{1,24}")


class SettingsSection(BaseModel):
    """A section of the settings (frozen, unknown keys refused) and the account checks."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("client_id", mode="before", check_fields=False)
    @classmethod
    def _check_client_id(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if isinstance(value, str):
            value = value.strip()
            if not _CLIENT_ID.fullmatch(value):
                raise ValueError("must be the Dhan client id: 6 to 20 digits")
        return value

    @field_validator("access_token", mode="before", check_fields=False)
    @classmethod
    def _check_token(cls, value: Any) -> Any:
        """Register the raw token before anything else can fail; trim pasted whitespace."""
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if isinstance(value, str):
            value = value.strip()
            register_secret(value)
            if not value:
                raise ValueError("must not be empty")
        return value

    @field_validator("pin", mode="before", check_fields=False)
    @classmethod
    def _check_pin(cls, value: Any) -> Any:
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if isinstance(value, int) and not isinstance(value, bool):
            raise ValueError("must be given as text (in quotes in JSON: a PIN may start with 0)")
        if isinstance(value, str):
            value = value.strip()
            register_secret(value)
            problem = pin_problem(value)
            if problem:
                raise ValueError(problem)
        return value

    @field_validator("totp_secret", mode="before", check_fields=False)
    @classmethod
    def _check_totp_secret(cls, value: Any) -> Any:
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if isinstance(value, str):
            register_secret(value.strip())
            value = normalise_totp_secret(value)
            register_secret(value)
            if value is None:
                raise ValueError("must not be empty")
            problem = totp_secret_problem(value)
            if problem:
                raise ValueError(problem)
        return value

    @field_validator("totp_secret", check_fields=False)
    @classmethod
    def _pin_with_totp(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if "pin" not in info.data:
            return value  # the PIN itself was refused: that error says enough
        if (info.data["pin"] is None) != (value is None):
            raise ValueError(
                "needs the pin as well"
                if info.data["pin"] is None
                else "is missing: the pin is set; tokens are minted from pin and totp_secret"
            )
        return value

    @field_validator("source_ip", mode="before", check_fields=False)
    @classmethod
    def _check_source_ip(cls, value: Any) -> Any:
        if isinstance(value, str):
            if not value.strip():
                return None
            try:
                return check_local_address(value)
            except SourceIpError as exc:
                raise ValueError(str(exc)) from None
        return value

    @field_validator("access_token", check_fields=False)
    @classmethod
    def _token_or_pin(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        """A pasted token, or a PIN + TOTP secret to mint one: one of the two is needed."""
        if value is not None or "pin" not in info.data or "totp_secret" not in info.data:
            return value
        if info.data["pin"] is None and info.data["totp_secret"] is None:
            raise PydanticCustomError("missing_token", "missing_token")
        return value

    def secret_values(self) -> list[str]:
        """Every secret of this account (for redaction)."""
        fields = (getattr(self, name, None) for name in ("access_token", "pin", "totp_secret"))
        return [f.get_secret_value() for f in fields if isinstance(f, SecretStr)]


class AccountSettings(SettingsSection):
    """One Dhan account: its client id and how it gets its (24-hour) access token.

    A pasted ``access_token``, or ``pin`` + ``totp_secret`` (base32) from which tokens are
    minted, or both. ``source_ip``: the local address this account's calls leave from (its
    whitelisted static IP), on a machine that holds several; None: the system's choice.
    Fields are validated in this order: the token's check reads the PIN and TOTP secret.
    """

    client_id: str
    pin: SecretStr | None = None
    totp_secret: SecretStr | None = Field(default=None, validate_default=True)
    source_ip: str | None = None
    access_token: SecretStr | None = Field(default=None, validate_default=True)


class FollowerSettings(SettingsSection):
    """A follower account and its rules. With no ``sizing`` it copies 1:1."""

    name: str
    client_id: str
    pin: SecretStr | None = None
    totp_secret: SecretStr | None = Field(default=None, validate_default=True)
    source_ip: str | None = None
    access_token: SecretStr | None = Field(default=None, validate_default=True)
    sizing: SizingRule = MultiplierSizing()
    bounds: OrderSizeBounds = OrderSizeBounds()
    filters: CopyFilters = CopyFilters()
    risk: RiskLimits = RiskLimits()
    enabled: bool = True
    # A copy left behind by its filled leader (thin market, a stop gapping through its band):
    # after `lagging_after_s`, alert (default), chase it with a protected marketable limit
    # (within max_slippage_pct of the market, at most max_chases times, then alert), or cancel.
    lagging_policy: Literal["alert", "chase", "cancel"] = "alert"
    lagging_after_s: float = Field(default=10, gt=0, le=3600)
    max_slippage_pct: float = Field(default=1.0, gt=0, le=20)
    max_chases: int = Field(default=3, ge=0, le=20)

    @field_validator("name", mode="before")
    @classmethod
    def _check_name(cls, value: Any) -> Any:
        if isinstance(value, str) and not _FOLLOWER_NAME.fullmatch(value):
            raise ValueError("must be 1 to 24 letters, digits, '_' or '-'")
        if isinstance(value, str) and value.lower() == "leader":
            # Alerts, logs and the terminal say "leader" for the leader account.
            # (The text avoids the word itself: an echo of the input would be masked.)
            raise ValueError("is reserved for the leading account; give the follower another name")
        return value


class DhanSettings(SettingsSection):
    """Where Dhan lives. Point both URLs at the simulator (``copytrade sim``) to paper-trade."""

    rest_url: str = "https://api.dhan.co/v2"
    order_ws_url: str = "wss://api-order-update.dhan.co"
    timeout_s: float = Field(default=10, gt=0, le=120)
    # Where tokens are minted from PIN + TOTP. None: Dhan's auth host for Dhan's REST URL,
    # else the REST URL's own host (the simulator serves both on one port).
    auth_url: str | None = None

    @field_validator("auth_url")
    @classmethod
    def _auth_http(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip().rstrip("/")
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value

    @property
    def auth_base_url(self) -> str:
        if self.auth_url:
            return self.auth_url
        parts = urlsplit(self.rest_url)
        if parts.hostname == "api.dhan.co":
            return "https://auth.dhan.co"
        return f"{parts.scheme}://{parts.netloc}"

    @field_validator("rest_url")
    @classmethod
    def _http(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value

    @field_validator("order_ws_url")
    @classmethod
    def _ws(cls, value: str) -> str:
        value = value.strip()
        if not value.startswith(("ws://", "wss://")):
            raise ValueError("must start with ws:// or wss://")
        return value


class LimiterSettings(SettingsSection):
    """Per-account order-API budget (Dhan: 10/s, 250/min, 1000/h, 7000/day).

    ``headroom`` is the fraction of each window kept unused (0.1 = use at most 90%).
    """

    headroom: float = Field(default=0.0, ge=0, le=0.5)
    per_second: int = Field(default=10, ge=1)
    per_minute: int = Field(default=250, ge=1)
    per_hour: int = Field(default=1000, ge=1)
    per_day: int = Field(default=7000, ge=1)
