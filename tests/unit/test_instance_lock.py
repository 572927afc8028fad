"""One engine per database: the OS lock, across real processes."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.instance_lock import AnotherEngineRunning, InstanceLock, InstanceLockError

ROOT = Path(__file__).resolve().parents[2]

# A second process that takes the lock, says so, and holds it until its stdin closes.
HOLDER = """
import sys
from engine.instance_lock import InstanceLock
lock = InstanceLock(sys.argv[1])
lock.acquire()
print("locked", flush=True)
sys.stdin.read()
lock.release()
print("released", flush=True)
"""


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path / "engine.db")],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "locked"  # waits on the child's word, no sleep
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)


def test_a_second_engine_on_the_same_database_is_refused_naming_the_holder(
    tmp_path: Path, holder: subprocess.Popen[str]
) -> None:
    lock = InstanceLock(tmp_path / "engine.db")
    with pytest.raises(AnotherEngineRunning) as refused:
        lock.acquire()
    db = (tmp_path / "engine.db").resolve()
    assert str(refused.value) == f"another engine is already running on {db} (pid {holder.pid})"
    assert refused.value.pid == holder.pid
    assert not lock.held


def test_the_lock_is_free_again_after_a_clean_release(
    tmp_path: Path, holder: subprocess.Popen[str]
) -> None:
    assert holder.stdin is not None and holder.stdout is not None
    holder.stdin.close()
    assert holder.stdout.readline().strip() == "released"
    assert holder.wait(timeout=10) == 0
    with InstanceLock(tmp_path / "engine.db") as lock:
        assert lock.held


def test_kill_9_leaves_no_stale_lock(tmp_path: Path, holder: subprocess.Popen[str]) -> None:
    os.kill(holder.pid, signal.SIGKILL)
    assert holder.wait(timeout=10) == -signal.SIGKILL
    lock = InstanceLock(tmp_path / "engine.db")
    lock.acquire()  # the kernel dropped the dead process's lock
    assert lock.held
    assert lock.path.read_text() == f"{os.getpid()}\n"
    lock.release()


def test_the_same_database_by_another_spelling_is_the_same_lock(
    tmp_path: Path, holder: subprocess.Popen[str]
) -> None:
    (tmp_path / "sub").mkdir()
    with pytest.raises(AnotherEngineRunning):
        InstanceLock(tmp_path / "sub" / ".." / "engine.db").acquire()
    link = tmp_path / "link.db"
    link.symlink_to(tmp_path / "engine.db")
    with pytest.raises(AnotherEngineRunning):
        InstanceLock(link).acquire()


def test_other_databases_are_not_blocked(tmp_path: Path, holder: subprocess.Popen[str]) -> None:
    with InstanceLock(tmp_path / "other.db") as lock:
        assert lock.held


def test_a_second_engine_in_the_same_process_is_refused(tmp_path: Path) -> None:
    first = InstanceLock(tmp_path / "engine.db")
    first.acquire()
    try:
        with pytest.raises(AnotherEngineRunning) as refused:
            InstanceLock(tmp_path / "engine.db").acquire()
        assert refused.value.pid == os.getpid()
    finally:
        first.release()
    second = InstanceLock(tmp_path / "engine.db")
    second.acquire()
    second.release()


def test_acquire_and_release_are_idempotent(tmp_path: Path) -> None:
    lock = InstanceLock(tmp_path / "engine.db")
    lock.acquire()
    lock.acquire()
    assert lock.held
    lock.release()
    lock.release()
    assert not lock.held
    assert lock.path.read_text() == ""  # the pid goes with the lock


def test_lock_file_is_private_and_beside_the_database(tmp_path: Path) -> None:
    with InstanceLock(tmp_path / "data" / "engine.db") as lock:
        assert lock.path == (tmp_path / "data" / "engine.db.lock").resolve()
        assert stat.S_IMODE(lock.path.stat().st_mode) == 0o600


def test_an_unusable_lock_location_is_one_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(InstanceLockError) as failed:
        InstanceLock(blocker / "engine.db").acquire()
    message = str(failed.value)
    assert message.startswith("cannot open the engine lock ")
    assert "\n" not in message
