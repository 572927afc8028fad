"""Configuration errors as the trader reads them: one line per problem, naming the key in
its environment form (``COPYTRADE_LEADER__CLIENT_ID``, ``COPYTRADE_FOLLOWERS[1].sizing``), and
never echoing a token, PIN or TOTP secret.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.secrets import redact
from engine.settings_env import (
    ENV_PREFIX,
    NESTED,
)

__all__ = ["ConfigError", "env_key", "problem_line"]

_SIZING_KINDS = frozenset({"multiplier", "capital_ratio", "fixed_lots"})
# Settings that name a file: their errors show the path (it is not a secret).
_FILE_SETTINGS = frozenset({"db_path", "holiday_override_file", "instruments_file"})


class ConfigError(Exception):
    """The settings cannot be used. ``str(err)`` is one line; ``problems`` lists each one."""

    def __init__(self, problems: list[str] | str) -> None:
        items = [problems] if isinstance(problems, str) else list(problems)
        self.problems: list[str] = [redact(" ".join(p.split())) for p in items]
        super().__init__("; ".join(self.problems))


def env_key(loc: tuple[int | str, ...]) -> str:
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
            key += NESTED + part.upper()
    return key


def _is_secret_loc(loc: tuple[int | str, ...]) -> bool:
    return any(
        isinstance(p, str) and ("token" in p.lower() or "secret" in p.lower() or p == "pin")
        for p in loc
    )


def _sibling_key(key: str, field: str) -> str:
    """The key of another field of the same account: ...ACCESS_TOKEN -> ...PIN / ...pin."""
    if key.endswith(f"{NESTED}ACCESS_TOKEN"):
        return key[: -len("ACCESS_TOKEN")] + field.upper()
    return key[: -len("access_token")] + field


def problem_line(error: Mapping[str, Any]) -> str:
    loc: tuple[int | str, ...] = tuple(error.get("loc", ()))
    kind = str(error.get("type", ""))
    msg = str(error.get("msg", "is invalid"))
    key = env_key(loc)
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
