"""Settings: the leader, the followers and their rules, Dhan URLs, limits, storage.

Everything comes from environment variables prefixed ``COPYTRADE_`` (nested keys joined by
``__``, e.g. ``COPYTRADE_LEADER__ACCESS_TOKEN``) and from a ``.env`` file; a real environment
variable wins over the file. ``COPYTRADE_FOLLOWERS`` is a JSON list. ``.env.example``
documents every key.

``load_settings`` raises ``ConfigError`` whose text is one line naming the offending key in
its environment form and never echoing a token. Every access token is registered with
``engine.secrets`` as soon as it is read, so logs mask it even if the load fails later.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from engine.replication.rules import (
    CopyFilters,
    MultiplierSizing,
    OrderSizeBounds,
    RiskLimits,
    SizingRule,
)
from engine.secrets import redact, register_secret

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

ENV_PREFIX = "COPYTRADE_"
_NESTED = "__"
_CLIENT_ID = re.compile(r"\d{6,20}")
_FOLLOWER_NAME = re.compile(r"[A-Za-z0-9_-]{1,24}")
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_SIZING_KINDS = frozenset({"multiplier", "capital_ratio", "fixed_lots"})


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


class AccountSettings(_Section):
    """One Dhan account: its client id and its (24-hour) access token."""

    client_id: str
    access_token: SecretStr


class FollowerSettings(_Section):
    """A follower account and its rules. With no ``sizing`` it copies 1:1."""

    name: str
    client_id: str
    access_token: SecretStr
    sizing: SizingRule = MultiplierSizing()
    bounds: OrderSizeBounds = OrderSizeBounds()
    filters: CopyFilters = CopyFilters()
    risk: RiskLimits = RiskLimits()
    enabled: bool = True

    @field_validator("name", mode="before")
    @classmethod
    def _check_name(cls, value: Any) -> Any:
        if isinstance(value, str) and not _FOLLOWER_NAME.fullmatch(value):
            raise ValueError("must be 1 to 24 letters, digits, '_' or '-'")
        return value


class DhanSettings(_Section):
    """Where Dhan lives. Point both URLs at the simulator (``copytrade sim``) to paper-trade."""

    rest_url: str = "https://api.dhan.co/v2"
    order_ws_url: str = "wss://api-order-update.dhan.co"
    timeout_s: float = Field(default=10, gt=0, le=120)

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


# The environment ``load_settings`` was given instead of ``os.environ`` (None: os.environ).
_environ: ContextVar[Mapping[str, str] | None] = ContextVar("copytrade_environ", default=None)


class _MappingEnvSource(EnvSettingsSource):
    """The environment source, reading a given mapping instead of ``os.environ``."""

    def _load_env_vars(self) -> Mapping[str, str | None]:
        environ = _environ.get()
        if environ is None:
            return super()._load_env_vars()
        return {
            (name if self.case_sensitive else name.lower()): value
            for name, value in environ.items()
            if not (self.env_ignore_empty and value == "")
        }


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=_NESTED,
        env_ignore_empty=True,
        extra="ignore",
        case_sensitive=False,
        validate_default=True,
    )

    leader: AccountSettings
    followers: Annotated[list[FollowerSettings], NoDecode]
    dhan: DhanSettings = DhanSettings()
    limiter: LimiterSettings = LimiterSettings()
    db_path: Path = Path("copytrade.db")
    enforce_market_hours: bool = True
    holiday_override_file: Path | None = None
    instruments_file: Path | None = None
    reconcile_interval_s: float = Field(default=30, gt=0)
    leader_idle_timeout_s: float = Field(default=60, gt=0)
    leader_dark_kill_after_s: float | None = Field(default=None, gt=0)
    activate_dhan_kill_switch: bool = False
    leader_dark_cancel: bool = True
    max_modifications: int = Field(default=25, ge=1, le=25)
    circuit_threshold: int = Field(default=5, ge=1)
    circuit_cooldown_s: float = Field(default=30, gt=0)
    risk_check_interval_s: float = Field(default=5, gt=0)
    drift_check_interval_s: float = Field(default=300, gt=0)
    log_level: str = "INFO"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Precedence: explicit arguments, then the environment, then the .env file.
        return (init_settings, _MappingEnvSource(settings_cls), dotenv_settings)

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
                    token = item.get("access_token")
                    if isinstance(token, str):
                        register_secret(token.strip())
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
        return followers

    @field_validator("log_level", mode="before")
    @classmethod
    def _level(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip().upper()
            if value not in _LOG_LEVELS:
                raise ValueError(f"must be one of {', '.join(_LOG_LEVELS)}")
        return value

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
        return [self.leader.access_token, *(f.access_token for f in self.followers)]


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


def _is_secret_loc(loc: tuple[int | str, ...]) -> bool:
    return any(isinstance(p, str) and ("token" in p.lower() or "secret" in p.lower()) for p in loc)


def _problem(error: Mapping[str, Any]) -> str:
    loc: tuple[int | str, ...] = tuple(error.get("loc", ()))
    kind = str(error.get("type", ""))
    msg = str(error.get("msg", "is invalid"))
    key = _env_key(loc)
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
    if isinstance(value, str) and len(value) >= 4 and value in msg:
        msg = msg.replace(value, "***")
    msg = msg[0].lower() + msg[1:] if msg[:1].isupper() and not msg[:2].isupper() else msg
    return f"{key}: {msg}" if key else msg


@contextmanager
def _using_environ(environ: Mapping[str, str] | None) -> Iterator[None]:
    token = _environ.set(environ)
    try:
        yield
    finally:
        _environ.reset(token)


def load_settings(
    env_file: str | Path | None = ".env", environ: Mapping[str, str] | None = None
) -> Settings:
    """Read and validate the settings.

    ``env_file``: the .env file to read (None: none). The default ``.env`` may be absent;
    any other path must exist. ``environ``: the environment to read instead of
    ``os.environ`` (tests). A variable in the environment wins over the same one in the file.
    """
    if env_file is not None and str(env_file) != ".env" and not Path(env_file).is_file():
        raise ConfigError(f"env file not found: {env_file}")
    try:
        with _using_environ(environ):
            settings = Settings(_env_file=env_file)  # type: ignore[call-arg]
    except ValidationError as exc:
        raise ConfigError([_problem(e) for e in exc.errors(include_url=False)]) from None
    except SettingsError as exc:
        # pydantic-settings failed to decode a nested JSON value (e.g. COPYTRADE_DHAN).
        field = re.search(r'field "([^"]+)"', str(exc))
        name = f"{ENV_PREFIX}{field.group(1).upper()}" if field else "a COPYTRADE_ setting"
        raise ConfigError(f"{name}: is not valid JSON") from None
    for token in settings.tokens():
        register_secret(token.get_secret_value())
    return settings
