"""One engine per database: an exclusive OS lock held for the engine's whole life.

Two engines on one database would place every order twice. The lock is `flock` on a file
beside the database: the kernel drops it when the process dies however it dies (kill -9, a
crash, a power cut), so there is never a stale lock to clean by hand. The holder writes its pid
into the file only so the refusal can name it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from types import TracebackType

from engine.paths import lock_path, normalise_db_path

__all__ = ["AnotherEngineRunning", "InstanceLock", "InstanceLockError"]


class InstanceLockError(Exception):
    """The lock could not be taken; the message is one line for the trader."""


class AnotherEngineRunning(InstanceLockError):
    def __init__(self, db_path: Path, pid: int | None) -> None:
        self.db_path = db_path
        self.pid = pid
        who = f"pid {pid}" if pid is not None else "pid unknown"
        super().__init__(f"another engine is already running on {db_path} ({who})")


class InstanceLock:
    """The exclusive lock on one database; `acquire()` at start, `release()` at the end.

    Also a context manager. Locks are per open file, so even a second engine inside the same
    process is refused.
    """

    def __init__(self, db_path: Path | str) -> None:
        self.db_path = normalise_db_path(db_path)
        self.path = lock_path(self.db_path)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock or raise: `AnotherEngineRunning` when an engine holds it, else
        `InstanceLockError` (the lock file cannot be created or opened)."""
        if self._fd is not None:
            return
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise InstanceLockError(
                f"cannot open the engine lock {self.path}: {exc.strerror or exc}"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            raise AnotherEngineRunning(self.db_path, pid) from None
        except OSError as exc:
            os.close(fd)
            raise InstanceLockError(f"cannot lock {self.path}: {exc.strerror or exc}") from None
        self._fd = fd
        _write_pid(fd, os.getpid())

    def release(self) -> None:
        """Give the lock back (idempotent). The file stays: removing it would let a third
        engine lock a fresh file while a second one still waits on the old one."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    def __enter__(self) -> InstanceLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def _write_pid(fd: int, pid: int) -> None:
    # Best effort: the pid only makes the refusal friendlier, the lock is what protects.
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{pid}\n".encode(), 0)


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", errors="replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
