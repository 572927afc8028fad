"""Settings: the leader, the followers and their rules, Dhan URLs, limits, storage.

Everything comes from environment variables prefixed ``COPYTRADE_`` (nested keys joined by
``__``, e.g. ``COPYTRADE_LEADER__ACCESS_TOKEN``) and from a ``.env`` file; a real environment
variable wins over the file (``engine.settings_env`` reads both). ``COPYTRADE_FOLLOWERS`` is a
JSON list. ``.env.example`` documents every key; any other ``COPYTRADE_`` name is refused.
Files the settings name (holiday overrides, instruments, the database) are checked here, so a
wrong one is a one-line error at start-up rather than a traceback later.

``load_settings`` raises ``ConfigError`` whose text is one line naming the offending key in
its environment form and never echoing a token. Every access token is registered with
``engine.secrets`` as soon as it is read, so logs mask it even if the load fails later.
"""

from __future__ import annotations

import csv
import ipaddress
import json
import os
import re
from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from engine.accounts.credentials import normalise_totp_secret, pin_problem, totp_secret_problem
from engine.accounts.secret_sources import (
    SecretSourceError,
    apply_secrets,
    keyring_secrets,
    read_secrets_file,
)
from engine.accounts.source_ip import SourceIpError, check_local_address
from engine.market_hours import MarketCalendar, MarketCalendarError
from engine.paths import default_db_path
from engine.replication.rules import (
    CopyFilters,
    MultiplierSizing,
    OrderSizeBounds,
    RiskLimits,
    SizingRule,
)
from engine.secrets import redact, register_secret
from engine.settings_env import (
    ENV_PREFIX,
    NESTED,
    SettingsSourceError,
    known_keys,
    nest,
    read_variables,
)

__all__ = [
    "ENV_PREFIX",
    "AccountSettings",
    "ConfigError",
    "DhanSettings",
    "FollowerSettings",
    "LimiterSettings",
    "Settings",
    "load_settings",
]

_NESTED = NESTED
_CLIENT_ID = re.compile(r"\d{6,20}")
_FOLLOWER_NAME = re.compile(r"[A-Za-z0-9_-]{1,24}")
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_SIZING_KINDS = frozenset({"multiplier", "capital_ratio", "fixed_lots"})
# Dhan's order-API limits per account (dhan-api-facts §8b); a setting above them is refused.
DHAN_ORDER_LIMITS = {"per_second": 10, "per_minute": 250, "per_hour": 1000, "per_day": 7000}
_SQLITE_HEADER = b"SQLite format 3\x00"
# Columns engine.instruments reads from Dhan's scrip master (the rest are optional).
_SCRIP_MASTER_COLUMNS = ("SEM_EXM_EXCH_ID", "SEM_SEGMENT", "SEM_SMST_SECURITY_ID", "SEM_LOT_UNITS")
# Settings that name a file: their errors show the path (it is not a secret).
_FILE_SETTINGS = frozenset({"db_path", "holiday_override_file", "instruments_file"})


class ConfigError(Exception):
    """The settings cannot be used. ``str(err)`` is one line; ``problems`` lists each one."""

    def __init__(self, problems: list[str] | str) -> None:
        items = [problems] if isinstance(problems, str) else list(problems)
        self.problems: list[str] = [redact(" ".join(p.split())) for p in items]
        super().__init__("; ".join(self.problems))


class _Section(BaseModel):
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


class AccountSettings(_Section):
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


class FollowerSettings(_Section):
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


class DhanSettings(_Section):
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


class LimiterSettings(_Section):
    """Per-account order-API budget (Dhan: 10/s, 250/min, 1000/h, 7000/day).

    ``headroom`` is the fraction of each window kept unused (0.1 = use at most 90%).
    """

    headroom: float = Field(default=0.0, ge=0, le=0.5)
    per_second: int = Field(default=10, ge=1)
    per_minute: int = Field(default=250, ge=1)
    per_hour: int = Field(default=1000, ge=1)
    per_day: int = Field(default=7000, ge=1)


class _VariablesSource(PydanticBaseSettingsSource):
    """pydantic-settings' source for our variables: the environment and the .env file, read
    by ``engine.settings_env`` (which refuses unknown keys and unparsable lines, where the
    built-in sources would silently ignore them), then the secrets file and the keyring."""

    def __init__(self, settings_cls: type[BaseSettings], data: dict[str, Any]) -> None:
        super().__init__(settings_cls)
        self._data = data

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return self._data


# The variables ``load_settings`` gathered for the model being built (a context variable, as
# pydantic-settings builds its sources in a classmethod with no per-call arguments).
_loaded_variables: ContextVar[dict[str, Any] | None] = ContextVar(
    "copytrade_settings_variables", default=None
)


class Settings(BaseSettings):
    """All settings, validated. Built by ``load_settings`` from the environment and .env."""

    model_config = SettingsConfigDict(extra="forbid", validate_default=True)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Explicit arguments first (tests, the demo), then what load_settings read.
        return (init_settings, _VariablesSource(settings_cls, _loaded_variables.get() or {}))

    leader: AccountSettings
    followers: list[FollowerSettings]
    dhan: DhanSettings = DhanSettings()
    limiter: LimiterSettings = LimiterSettings()
    db_path: Path = Field(default_factory=default_db_path)  # per-user data directory
    enforce_market_hours: bool = True
    holiday_override_file: Path | None = None
    instruments_file: Path | None = None
    # Dhan's detailed scrip master (lot, tick, freeze quantity, option type); the simulator
    # serves the same file at the same path. COPYTRADE_INSTRUMENTS_FILE overrides it.
    instruments_url: str = "https://images.dhan.co/api-data/api-scrip-master-detailed.csv"
    reconcile_interval_s: float = Field(default=30, gt=0)
    # Seconds between reads of the leader's open orders (a modification may bring no alert of
    # its own: facts §9); 0 turns it off.
    leader_poll_s: float = Field(default=2.0, ge=0)
    # Seconds between reads of the order book of each follower with open copies (a hand edit
    # of a copy may bring no alert either); 0 turns it off.
    follower_poll_s: float = Field(default=2.0, ge=0)
    leader_idle_timeout_s: float = Field(default=60, gt=0)
    leader_dark_kill_after_s: float | None = Field(default=None, gt=0)
    activate_dhan_kill_switch: bool = False
    leader_dark_cancel: bool = True
    max_modifications: int = Field(default=25, ge=1, le=25)
    circuit_threshold: int = Field(default=5, ge=1)
    circuit_cooldown_s: float = Field(default=30, gt=0)
    risk_check_interval_s: float = Field(default=5, gt=0)
    drift_check_interval_s: float = Field(default=300, gt=0)
    # The attach point: leader orders open when a follower starts copying are copied
    # ("open_orders") or not ("none"); orders that ended before it are never traded.
    copy_existing: Literal["open_orders", "none"] = "open_orders"
    # A leader order that ended while the engine was down is caught up only if it ended at
    # most this long ago and the market has moved at most this much from the leader's fill.
    catch_up_max_age_s: float = Field(default=300, gt=0)
    catch_up_max_move_pct: float = Field(default=2.0, gt=0, le=100)
    log_level: str = "INFO"
    # Where secrets may also be kept (read by load_settings; see engine.accounts.secret_sources).
    secrets_file: Path | None = None
    keyring: bool = False

    @field_validator("followers", mode="before")
    @classmethod
    def _decode_followers(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError as exc:
                raise ValueError(
                    f"is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno});"
                    " expected a list of followers, e.g. "
                    '[{"name": "f1", "client_id": "...", "access_token": "..."}]'
                ) from None
        if isinstance(value, dict):
            raise ValueError("must be a JSON list of followers, not a single object")
        if isinstance(value, list):
            # Register tokens now: a later error elsewhere must not let them reach a log.
            for item in value:
                if isinstance(item, Mapping):
                    for secret_field in ("access_token", "pin", "totp_secret"):
                        secret = item.get(secret_field)
                        if isinstance(secret, str):
                            register_secret(secret.strip())
        return value

    @field_validator("followers")
    @classmethod
    def _followers_consistent(cls, followers: list[FollowerSettings]) -> list[FollowerSettings]:
        if not followers:
            raise ValueError("must list at least one follower")
        seen_names: set[str] = set()
        seen_ids: set[str] = set()
        for i, follower in enumerate(followers):
            if follower.name in seen_names:
                raise ValueError(f"follower name {follower.name!r} appears twice (index {i})")
            if follower.client_id in seen_ids:
                raise ValueError(
                    f"follower client id {follower.client_id} appears twice (index {i})"
                )
            seen_names.add(follower.name)
            seen_ids.add(follower.client_id)
        if not any(follower.enabled for follower in followers):
            raise ValueError('every follower is disabled ("enabled": false); enable at least one')
        return followers

    @field_validator("db_path", mode="before")
    @classmethod
    def _blank_is_default(cls, value: object) -> object:
        """A blank COPYTRADE_DB_PATH means the per-user default, not the current folder."""
        if value is None or (isinstance(value, str) and not value.strip()):
            return default_db_path()
        return value

    @field_validator("db_path")
    @classmethod
    def _sqlite_or_new(cls, path: Path) -> Path:
        """An existing database must be SQLite: anything else is not ours to open or overwrite."""
        if path.is_dir():
            raise ValueError(f"{path} is a folder, not a database file")
        try:
            with path.open("rb") as fh:
                header = fh.read(len(_SQLITE_HEADER))
        except FileNotFoundError:
            return path  # created at start
        except OSError as exc:
            raise ValueError(f"{path}: cannot read ({exc.strerror})") from None
        if header and header != _SQLITE_HEADER:
            raise ValueError(f"{path} exists and is not an SQLite database")
        return path

    @field_validator("holiday_override_file")
    @classmethod
    def _holiday_file_loads(cls, path: Path | None) -> Path | None:
        if path is not None:
            try:
                MarketCalendar(override_path=path)
            except MarketCalendarError as exc:
                raise ValueError(str(exc)) from None
        return path

    @field_validator("instruments_file")
    @classmethod
    def _instruments_file_readable(cls, path: Path | None) -> Path | None:
        # The header only: the whole scrip master is read once, by the engine.
        if path is None:
            return None
        try:
            with path.open(newline="", encoding="utf-8") as fh:
                columns = next(csv.reader(fh), [])
        except FileNotFoundError:
            raise ValueError(f"{path}: file not found") from None
        except IsADirectoryError:
            raise ValueError(f"{path} is a folder, not a file") from None
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 CSV text"
            raise ValueError(f"{path}: cannot read ({reason})") from None
        missing = [name for name in _SCRIP_MASTER_COLUMNS if name not in columns]
        if missing:
            raise ValueError(f"{path}: not a Dhan scrip master (missing {', '.join(missing)})")
        return path

    @field_validator("log_level", mode="before")
    @classmethod
    def _level(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip().upper()
            if value not in _LOG_LEVELS:
                raise ValueError(f"must be one of {', '.join(_LOG_LEVELS)}")
        return value

    @model_validator(mode="after")
    def _within_dhan_limits(self) -> Settings:
        # The simulator on loopback may be driven faster (the soak compresses time).
        if _is_loopback(self.dhan.rest_url):
            return self
        problems = [
            f"{ENV_PREFIX}LIMITER{_NESTED}{window.upper()}: {getattr(self.limiter, window)}"
            f" is above Dhan's limit of {limit} orders {window.replace('_', ' ')}"
            for window, limit in DHAN_ORDER_LIMITS.items()
            if getattr(self.limiter, window) > limit
        ]
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @model_validator(mode="after")
    def _leader_not_a_follower(self) -> Settings:
        for i, follower in enumerate(self.followers):
            if follower.client_id == self.leader.client_id:
                raise ValueError(
                    f"{ENV_PREFIX}FOLLOWERS[{i}].client_id: is the leader's client id;"
                    " a follower must be a different account"
                )
        return self

    def tokens(self) -> list[SecretStr]:
        """The pasted tokens (accounts that mint theirs from PIN + TOTP have none here)."""
        accounts: list[_Section] = [self.leader, *self.followers]
        return [
            token
            for account in accounts
            if isinstance(token := getattr(account, "access_token", None), SecretStr)
        ]

    def secret_values(self) -> list[str]:
        """Every token, PIN and TOTP secret in the settings (for redaction and canaries)."""
        return [
            *self.leader.secret_values(),
            *(v for f in self.followers for v in f.secret_values()),
        ]


# --- errors ---------------------------------------------------------------------------------


def _env_key(loc: tuple[int | str, ...]) -> str:
    """The environment form of an error location.

    ('leader', 'client_id') -> COPYTRADE_LEADER__CLIENT_ID
    ('followers', 1, 'sizing', 'multiplier', 'multiplier')
        -> COPYTRADE_FOLLOWERS[1].sizing.multiplier  (the union tag is dropped)
    """
    parts = list(loc)
    # A discriminated union puts the tag in the location: sizing -> <kind> -> field.
    cleaned: list[int | str] = []
    i = 0
    while i < len(parts):
        part = parts[i]
        cleaned.append(part)
        if part == "sizing" and i + 2 < len(parts) and parts[i + 1] in _SIZING_KINDS:
            i += 1  # skip the tag
        i += 1
    if not cleaned:
        return ""
    key = ENV_PREFIX + str(cleaned[0]).upper()
    in_json = False
    for part in cleaned[1:]:
        if isinstance(part, int):
            key += f"[{part}]"
            in_json = True
        elif in_json:
            key += f".{part}"
        else:
            key += _NESTED + part.upper()
    return key


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _is_secret_loc(loc: tuple[int | str, ...]) -> bool:
    return any(
        isinstance(p, str) and ("token" in p.lower() or "secret" in p.lower() or p == "pin")
        for p in loc
    )


def _sibling_key(key: str, field: str) -> str:
    """The key of another field of the same account: ...ACCESS_TOKEN -> ...PIN / ...pin."""
    if key.endswith(f"{_NESTED}ACCESS_TOKEN"):
        return key[: -len("ACCESS_TOKEN")] + field.upper()
    return key[: -len("access_token")] + field


def _problem(error: Mapping[str, Any]) -> str:
    loc: tuple[int | str, ...] = tuple(error.get("loc", ()))
    kind = str(error.get("type", ""))
    msg = str(error.get("msg", "is invalid"))
    key = _env_key(loc)
    if kind == "missing_token":
        return (
            f"{key} is missing (or set {_sibling_key(key, 'pin')} and "
            f"{_sibling_key(key, 'totp_secret')} to mint tokens)"
        )
    if kind == "missing":
        if loc == ("leader",):
            return (
                f"{key} is missing (set {key}__CLIENT_ID and {key}__ACCESS_TOKEN)"
                if key
                else "leader is missing"
            )
        if loc == ("followers",):
            return f"{key} is missing (a JSON list of followers; see .env.example)"
        return f"{key} is missing"
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            msg = msg[len(prefix) :]
    if msg.startswith("Input should be "):
        msg = "must be " + msg[len("Input should be ") :]
    elif msg == "Extra inputs are not permitted":
        msg = "is not a known setting (check the spelling)"
    if _is_secret_loc(loc) and kind not in ("value_error", "extra_forbidden", "string_type"):
        msg = "is invalid"  # pydantic's own message might quote the value
    elif _is_secret_loc(loc) and kind == "string_type":
        msg = "must be a string"
    # Never echo an input value; a secret registered above is masked by redact() as well.
    value = error.get("input")
    names_a_file = len(loc) == 1 and loc[0] in _FILE_SETTINGS
    # An address is not a secret, and the user needs to see which one this machine lacks
    # (a secret pasted there by mistake is still masked by redact()).
    names_an_address = bool(loc) and loc[-1] == "source_ip"
    if (
        isinstance(value, str)
        and len(value) >= 4
        and value in msg
        and not (names_a_file or names_an_address)
    ):
        msg = msg.replace(value, "***")
    msg = msg[0].lower() + msg[1:] if msg[:1].isupper() and not msg[:2].isupper() else msg
    return f"{key}: {msg}" if key else msg


def _sections() -> dict[str, tuple[str, ...]]:
    """The settings given as ``COPYTRADE_<SECTION>__<FIELD>``, with their field names."""
    return {
        name: tuple(section.model_fields)
        for name, field in Settings.model_fields.items()
        if isinstance(section := field.annotation, type) and issubclass(section, _Section)
    }


def load_settings(
    env_file: str | Path | None = ".env", environ: Mapping[str, str] | None = None
) -> Settings:
    """Read and validate the settings.

    ``env_file``: the .env file to read (None: none). The default ``.env`` may be absent;
    any other path must exist. ``environ``: the environment to read instead of
    ``os.environ`` (tests). A variable in the environment wins over the same one in the file.
    """
    path = None if env_file is None else Path(env_file)
    if path is not None and str(env_file) == ".env" and not path.exists():
        path = None  # the default file is optional
    sections = _sections()
    valid = known_keys(Settings.model_fields, sections)
    try:
        variables = read_variables(path, os.environ if environ is None else environ, valid)
        data = nest(variables, set(sections))
    except SettingsSourceError as exc:
        raise ConfigError(exc.problems) from None
    _add_stored_secrets(data)
    loaded = _loaded_variables.set(data)
    try:
        settings = Settings()  # type: ignore[call-arg]  # the values come from the sources
    except ValidationError as exc:
        raise ConfigError([_problem(e) for e in exc.errors(include_url=False)]) from None
    finally:
        _loaded_variables.reset(loaded)
    for secret in settings.secret_values():
        register_secret(secret)
    return settings


def _add_stored_secrets(data: dict[str, Any]) -> None:
    """Fill missing tokens, PINs and TOTP secrets from the secrets file, then the keyring."""
    try:
        secrets_file = data.get("secrets_file")
        if isinstance(secrets_file, str) and secrets_file.strip():
            apply_secrets(data, read_secrets_file(Path(secrets_file.strip())))
        wants_keyring = str(data.get("keyring", "")).strip().lower() in ("1", "true", "yes", "on")
        if wants_keyring:
            apply_secrets(data, keyring_secrets(_account_names(data)))
    except SecretSourceError as exc:
        raise ConfigError(str(exc)) from None


def _account_names(data: Mapping[str, Any]) -> list[str]:
    names = ["leader"]
    followers = data.get("followers")
    if isinstance(followers, str):
        try:
            followers = json.loads(followers)
        except json.JSONDecodeError:
            followers = []
    if isinstance(followers, list):
        names += [f["name"] for f in followers if isinstance(f, Mapping) and "name" in f]
    return [str(n) for n in names]
