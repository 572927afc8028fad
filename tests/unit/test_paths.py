"""Where the database, the log, the lock and the control socket live."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import platformdirs
import pytest

from engine.paths import (
    MAX_SOCKET_PATH_BYTES,
    UnsafeDirectoryError,
    configured_db_path,
    control_socket_path,
    default_db_path,
    default_log_path,
    ensure_private_dir,
    lock_path,
)


def test_database_and_log_default_to_the_users_data_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    assert default_db_path() == tmp_path / "data" / "copytrade" / "copytrade.db"
    assert default_log_path() == tmp_path / "data" / "copytrade" / "copytrade.log"
    assert default_db_path().parent == Path(platformdirs.user_data_dir("copytrade", False))


def test_default_is_not_the_current_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    assert default_db_path().parent != tmp_path
    assert default_db_path().is_absolute()


def test_explicit_path_wins_over_environment_and_file(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("COPYTRADE_DB_PATH=/from/file.db\n")
    found = configured_db_path(
        explicit=tmp_path / "cli.db",
        env_file=env_file,
        environ={"COPYTRADE_DB_PATH": "/from/env.db"},
    )
    assert found == tmp_path / "cli.db"


def test_environment_wins_over_the_file_and_any_case_is_read(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("COPYTRADE_DB_PATH=/from/file.db\n")
    found = configured_db_path(env_file=env_file, environ={"copytrade_db_path": "/from/env.db"})
    assert found == Path("/from/env.db")


def test_the_settings_file_is_read_for_the_database_only(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(
        "# accounts\nCOPYTRADE_LEADER__ACCESS_TOKEN=abc\ncopytrade_db_path = ~/trading/c.db\n"
    )
    found = configured_db_path(env_file=env_file, environ={})
    assert found == Path.home() / "trading" / "c.db"


def test_nothing_configured_means_the_default(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert configured_db_path(env_file=tmp_path / "missing.env", environ={}) == default_db_path()
    assert configured_db_path(explicit="  ", environ={"COPYTRADE_DB_PATH": ""}) == (
        default_db_path()
    )


def test_a_relative_database_is_made_absolute(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    assert configured_db_path(explicit="rel.db", environ={}) == tmp_path / "rel.db"


def test_lock_and_socket_sit_beside_the_database(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    assert lock_path(db) == tmp_path / "c.db.lock"
    assert control_socket_path(db) == tmp_path / "c.db.sock"
    # another spelling of the same file derives the same paths
    assert control_socket_path(tmp_path / "x" / ".." / "c.db") == control_socket_path(db)


def test_a_socket_path_too_long_falls_back_to_a_short_name_per_database(
    runtime_dir: Path, tmp_path: Path
) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60) / "c.db"
    other = tmp_path / ("d" * 60) / ("e" * 60) / "other.db"
    sock = control_socket_path(deep)
    assert len(os.fsencode(sock)) <= MAX_SOCKET_PATH_BYTES
    assert sock.parent == runtime_dir / "copytrade"
    assert sock.suffix == ".sock"
    assert sock == control_socket_path(deep)  # stable
    assert sock != control_socket_path(other)  # keyed by the database


def test_private_dir_is_created_0700(tmp_path: Path) -> None:
    made = ensure_private_dir(tmp_path / "a" / "b")
    assert stat.S_IMODE(made.stat().st_mode) == 0o700


def test_a_directory_others_can_write_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(UnsafeDirectoryError, match="can be written by other users"):
        ensure_private_dir(shared)
