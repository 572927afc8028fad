"""Where the engine keeps its files: one place per user, never the directory it was started in.

The database and the log default to the platform's per-user data directory (through
`platformdirs`: ~/.local/share/copytrade on Linux, ~/Library/Application Support/copytrade on
macOS); `COPYTRADE_DB_PATH` overrides the database. The engine's lock file and its control
socket are derived from the database path, so every command that names the same database finds
the same engine.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Mapping
from pathlib import Path

import platformdirs

__all__ = [
    "APP_NAME",
    "DB_PATH_ENV",
    "MAX_SOCKET_PATH_BYTES",
    "UnsafeDirectoryError",
    "configured_db_path",
    "control_socket_path",
    "default_db_path",
    "default_log_path",
    "ensure_private_dir",
    "lock_path",
    "normalise_db_path",
]

APP_NAME = "copytrade"
DB_PATH_ENV = "COPYTRADE_DB_PATH"
DB_FILE_NAME = "copytrade.db"
LOG_FILE_NAME = "copytrade.log"

# sun_path holds 108 bytes on Linux and 104 on macOS, the terminating NUL included: stay
# within the smaller so a path that works here works everywhere.
MAX_SOCKET_PATH_BYTES = 103


def data_dir() -> Path:
    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def default_db_path() -> Path:
    """The database when nothing overrides it: the per-user data directory."""
    return data_dir() / DB_FILE_NAME


def default_log_path() -> Path:
    """The terminal's log file, beside the default database."""
    return data_dir() / LOG_FILE_NAME


def normalise_db_path(db_path: Path | str) -> Path:
    """The one spelling of a database path: absolute, `~` expanded, symlinks resolved.

    Two commands started from different directories must derive the same lock and socket.
    """
    return Path(db_path).expanduser().resolve()


def configured_db_path(
    *,
    explicit: Path | str | None = None,
    env_file: Path | str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Path:
    """The database a command means, in the engine's order of precedence.

    An explicit path (a command-line option) wins, then `COPYTRADE_DB_PATH` in the
    environment, then the same key in the settings file, then `default_db_path()`. Keys are
    matched without regard to case, as the settings loader does. Only this one key is read
    from the file: a status command must not need the accounts' tokens.
    """
    if explicit is not None and str(explicit).strip():
        return normalise_db_path(explicit)
    env = os.environ if environ is None else environ
    for key, value in env.items():
        if key.upper() == DB_PATH_ENV and value.strip():
            return normalise_db_path(value.strip())
    if env_file is not None:
        from_file = _db_path_from_env_file(Path(env_file))
        if from_file:
            return normalise_db_path(from_file)
    return normalise_db_path(default_db_path())


def _db_path_from_env_file(env_file: Path) -> str | None:
    from dotenv import dotenv_values

    if not env_file.is_file():
        return None
    try:
        values = dotenv_values(env_file)
    except (OSError, UnicodeDecodeError):
        return None
    for key, value in values.items():
        if key.upper() == DB_PATH_ENV and value and value.strip():
            return value.strip()
    return None


def lock_path(db_path: Path | str) -> Path:
    """The engine's lock file, beside the database."""
    db = normalise_db_path(db_path)
    return db.with_name(db.name + ".lock")


def control_socket_path(db_path: Path | str) -> Path:
    """The engine's control socket: beside the database when the path fits in a socket
    address, else a short name in the per-user runtime directory keyed by the database path."""
    db = normalise_db_path(db_path)
    beside = db.with_name(db.name + ".sock")
    if len(os.fsencode(beside)) <= MAX_SOCKET_PATH_BYTES:
        return beside
    digest = hashlib.sha256(os.fsencode(db)).hexdigest()[:20]
    return _runtime_dir() / f"{digest}.sock"


def _runtime_dir() -> Path:
    # Without XDG_RUNTIME_DIR platformdirs falls back to /tmp/runtime-<uid> and warns about it;
    # the control server makes sure that directory is ours and private before binding there.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Path(platformdirs.user_runtime_dir(APP_NAME, appauthor=False))


class UnsafeDirectoryError(Exception):
    """A directory meant to be private belongs to another user or is open to others."""


def ensure_private_dir(directory: Path) -> Path:
    """Create `directory` (mode 0700) if missing; refuse one owned by another user.

    A directory that others can write into would let them replace our socket or lock file.
    """
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = directory.stat()
    if info.st_uid != os.getuid():
        raise UnsafeDirectoryError(f"{directory} belongs to another user (uid {info.st_uid})")
    if info.st_mode & 0o022:
        raise UnsafeDirectoryError(
            f"{directory} can be written by other users (mode {info.st_mode & 0o7777:o})"
        )
    return directory
