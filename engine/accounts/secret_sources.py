"""Where an account's secrets may be kept at rest, besides the environment and ``.env``.

- A secrets file (``COPYTRADE_SECRETS_FILE``): dotenv lines or TOML, readable by its owner
  only (a file that group or others can read is refused with one line). Keys:

  dotenv::

      COPYTRADE_LEADER__PIN=...
      COPYTRADE_LEADER__TOTP_SECRET=...
      COPYTRADE_FOLLOWERS__ALICE__ACCESS_TOKEN=...    (the follower called "alice")

  TOML::

      [leader]
      pin = "..."
      totp_secret = "..."
      [followers.alice]
      access_token = "..."

- The system keyring (``COPYTRADE_KEYRING=true``), through the optional ``keyring`` library:
  service ``copytrade``, user name ``<account>.<field>`` (``leader.pin``, ``alice.totp_secret``).

A secret given in the environment or ``.env`` wins over both. Every value read here is
registered with ``engine.secrets`` at once. Errors are :class:`SecretSourceError`, one line
each, naming the key or the file, never a value.
"""

from __future__ import annotations

import json
import stat
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from dotenv import dotenv_values

from engine.secrets import register_secret

__all__ = [
    "KEYRING_SERVICE",
    "SECRET_FIELDS",
    "SecretSourceError",
    "apply_secrets",
    "keyring_secrets",
    "read_secrets_file",
]

SECRET_FIELDS = ("access_token", "pin", "totp_secret")
KEYRING_SERVICE = "copytrade"
_PREFIX = "COPYTRADE_"

# (account, field) -> value; the account is "leader" or a follower's name (as written).
Secrets = dict[tuple[str, str], str]


class SecretSourceError(ValueError):
    """A secrets file or the keyring cannot be used. ``str(err)`` is one line."""


def read_secrets_file(path: Path) -> Secrets:
    """The secrets in ``path`` (dotenv, or TOML when it ends in ``.toml``)."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise SecretSourceError(f"{_PREFIX}SECRETS_FILE: {path}: file not found") from None
    except OSError as exc:
        raise SecretSourceError(
            f"{_PREFIX}SECRETS_FILE: {path}: cannot read ({exc.strerror})"
        ) from None
    if not stat.S_ISREG(info.st_mode):
        raise SecretSourceError(f"{_PREFIX}SECRETS_FILE: {path} is not a regular file")
    if info.st_mode & 0o077:
        raise SecretSourceError(
            f"{_PREFIX}SECRETS_FILE: {path} can be read by other users "
            f"(mode {stat.S_IMODE(info.st_mode):o}); run: chmod 600 {path}"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise SecretSourceError(f"{_PREFIX}SECRETS_FILE: {path}: cannot read ({reason})") from None
    found = _from_toml(path, text) if path.suffix.lower() == ".toml" else _from_dotenv(path)
    for value in found.values():
        register_secret(value)
    return found


def _from_dotenv(path: Path) -> Secrets:
    found: Secrets = {}
    for name, value in dotenv_values(path).items():
        if value is None or not value.strip():
            continue
        found[_parse_key(path, name)] = value.strip()
    return found


def _parse_key(path: Path, name: str) -> tuple[str, str]:
    upper = name.strip().upper()
    parts = upper[len(_PREFIX) :].split("__") if upper.startswith(_PREFIX) else []
    account: str | None = None
    field = ""
    if len(parts) == 2 and parts[0] == "LEADER":
        account, field = "leader", parts[1].lower()
    elif len(parts) == 3 and parts[0] == "FOLLOWERS" and parts[1]:
        # the name's case as written: followers are matched case-insensitively later
        account, field = name.strip()[len(_PREFIX) :].split("__")[1], parts[2].lower()
    if account is None or field not in SECRET_FIELDS:
        raise SecretSourceError(
            f"{_PREFIX}SECRETS_FILE: {path}: {name.strip()} is not a secret it may hold "
            f"(COPYTRADE_LEADER__<FIELD> or COPYTRADE_FOLLOWERS__<NAME>__<FIELD>, FIELD one of "
            f"{', '.join(f.upper() for f in SECRET_FIELDS)})"
        )
    return account, field


def _from_toml(path: Path, text: str) -> Secrets:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        # its message may quote the offending line, which may hold a secret
        raise SecretSourceError(f"{_PREFIX}SECRETS_FILE: {path}: not valid TOML") from None
    found: Secrets = {}

    def take(account: str, table: object, where: str) -> None:
        if not isinstance(table, Mapping):
            raise SecretSourceError(f"{_PREFIX}SECRETS_FILE: {path}: [{where}] must be a table")
        for field, value in table.items():
            if field not in SECRET_FIELDS:
                raise SecretSourceError(
                    f"{_PREFIX}SECRETS_FILE: {path}: [{where}] {field} is not a secret it may "
                    f"hold (one of {', '.join(SECRET_FIELDS)})"
                )
            if not isinstance(value, str):
                raise SecretSourceError(
                    f"{_PREFIX}SECRETS_FILE: {path}: [{where}] {field} must be a string"
                )
            if value.strip():
                found[(account, field)] = value.strip()

    for key, table in data.items():
        if key == "leader":
            take("leader", table, "leader")
        elif key == "followers" and isinstance(table, Mapping):
            for name, follower in table.items():
                take(str(name), follower, f"followers.{name}")
        else:
            raise SecretSourceError(
                f"{_PREFIX}SECRETS_FILE: {path}: [{key}] is not a section it may hold "
                "([leader] or [followers.NAME])"
            )
    return found


def keyring_secrets(
    accounts: list[str], get_password: Callable[[str, str], str | None] | None = None
) -> Secrets:
    """The secrets the system keyring holds for these accounts (missing ones are skipped).

    ``get_password`` defaults to ``keyring.get_password``; one line if the library is not
    installed or has no usable backend on this machine.
    """
    if get_password is None:
        get_password = _system_keyring()
    found: Secrets = {}
    for account in accounts:
        for field in SECRET_FIELDS:
            try:
                value = get_password(KEYRING_SERVICE, f"{account}.{field}")
            except Exception as exc:  # backends raise their own types; the text may be long
                raise SecretSourceError(
                    f"{_PREFIX}KEYRING: the system keyring could not be read ({type(exc).__name__})"
                ) from None
            if value and value.strip():
                register_secret(value.strip())
                found[(account, field)] = value.strip()
    return found


def _system_keyring() -> Callable[[str, str], str | None]:
    try:
        import keyring
        from keyring.backends import fail
    except ImportError:
        raise SecretSourceError(
            f"{_PREFIX}KEYRING: the keyring library is not installed (pip install keyring)"
        ) from None
    if isinstance(keyring.get_keyring(), fail.Keyring):
        raise SecretSourceError(f"{_PREFIX}KEYRING: no system keyring is available on this machine")
    get: Callable[[str, str], str | None] = keyring.get_password
    return get


def apply_secrets(data: dict[str, Any], found: Secrets) -> None:
    """Fill ``data`` (the nested settings mapping) with ``found`` where a value is missing.

    ``data["followers"]`` may still be the JSON text of the environment: it is decoded to fill
    it; text that is not valid JSON is left for the settings to report.
    """
    if not found:
        return
    leader = data.get("leader")
    leader_secrets = {f: v for (a, f), v in found.items() if a == "leader"}
    if leader_secrets:
        if leader is None:
            leader = data["leader"] = {}
        if isinstance(leader, dict):
            for field, value in leader_secrets.items():
                if not _given(leader.get(field)):
                    leader[field] = value
    follower_secrets = {(a.lower(), f): v for (a, f), v in found.items() if a != "leader"}
    if not follower_secrets:
        return
    followers = data.get("followers")
    if isinstance(followers, str):
        try:
            followers = json.loads(followers)
        except json.JSONDecodeError:
            return
    if not isinstance(followers, list):
        return
    for item in followers:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            continue
        name = item["name"].lower()
        for field in SECRET_FIELDS:
            secret = follower_secrets.get((name, field))
            if secret is not None and not _given(item.get(field)):
                item[field] = secret
    data["followers"] = followers


def _given(value: object) -> bool:
    return value is not None and not (isinstance(value, str) and not value.strip())
