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
from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from engine.accounts.secret_sources import (
    SecretSourceError,
    apply_secrets,
    keyring_secrets,
    read_secrets_file,
)
from engine.config_errors import ConfigError, problem_line
from engine.config_sections import (
    AccountSettings,
    DhanSettings,
    FollowerSettings,
    LimiterSettings,
    SettingsSection,
)
from engine.market_hours import MarketCalendar, MarketCalendarError
from engine.paths import default_db_path
from engine.secrets import register_secret
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
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# Dhan's order-API limits per account (dhan-api-facts §8b); a setting above them is refused.
DHAN_ORDER_LIMITS = {"per_second": 10, "per_minute": 250, "per_hour": 1000, "per_day": 7000}
_SQLITE_HEADER = b"SQLite format 3\x00"
# Columns engine.instruments reads from Dhan's scrip master (the rest are optional).
_SCRIP_MASTER_COLUMNS = ("SEM_EXM_EXCH_ID", "SEM_SEGMENT", "SEM_SMST_SECURITY_ID", "SEM_LOT_UNITS")


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
    # At most this many of those reads a second across all followers (beyond 20 followers,
    # each book is read every N / 10 s at the default).
    follower_poll_max_per_s: float = Field(default=10.0, gt=0)
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
        accounts: list[SettingsSection] = [self.leader, *self.followers]
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


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _sections() -> dict[str, tuple[str, ...]]:
    """The settings given as ``COPYTRADE_<SECTION>__<FIELD>``, with their field names."""
    return {
        name: tuple(section.model_fields)
        for name, field in Settings.model_fields.items()
        if isinstance(section := field.annotation, type) and issubclass(section, SettingsSection)
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
        raise ConfigError([problem_line(e) for e in exc.errors(include_url=False)]) from None
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
