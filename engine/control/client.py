"""The command line's end of the control channel: one request, one answer, no engine inside.

Blocking and small on purpose: `copytrade status` must answer even when the engine is busy,
and must never need the accounts' tokens.
"""

from __future__ import annotations

import json
import os
import socket
import stat
from pathlib import Path
from typing import Any

from engine.control.protocol import Command, Request, encode_request
from engine.paths import control_socket_path, normalise_db_path

__all__ = [
    "TIMEOUTS_S",
    "ControlClientError",
    "EngineNotRunning",
    "EngineRefused",
    "send_command",
]

# How long each command may take: a resync reads every book, a status is instant.
TIMEOUTS_S: dict[Command, float] = {
    Command.STATUS: 10.0,
    Command.UNCOPIED: 30.0,
    Command.KILL: 60.0,
    Command.RESUME: 120.0,
    Command.RESYNC: 120.0,
    Command.TOKEN_SET: 30.0,  # the engine checks the token with Dhan first
    Command.SYNC_PREVIEW: 60.0,  # reads every account's positions
    Command.SYNC_APPLY: 60.0,
    Command.UNFREEZE: 120.0,  # a resync first
}
_MAX_ANSWER_BYTES = 16 * 1024 * 1024


class ControlClientError(Exception):
    """The request could not be made or answered; the message is one line."""


class EngineNotRunning(ControlClientError):
    def __init__(self, db_path: Path) -> None:
        self.db_path = db_path
        super().__init__(f"no engine is running for {db_path}")


class EngineRefused(ControlClientError):
    """The engine answered with an error line (a refused or failed command)."""


def send_command(
    db_path: Path | str,
    request: Request,
    *,
    timeout_s: float | None = None,
    socket_path: Path | None = None,
) -> Any:
    """Send one request to the engine serving `db_path` and return its result.

    Raises `EngineNotRunning` when nobody listens, `EngineRefused` with the engine's own
    error line, `ControlClientError` for anything else (timeout, a socket that is not ours).
    """
    db = normalise_db_path(db_path)
    try:
        path = socket_path if socket_path is not None else control_socket_path(db)
    except OSError as exc:  # platformdirs refuses an unsafe runtime directory
        raise ControlClientError(f"cannot find the control socket: {exc}") from None
    _check_socket_file(db, path)
    timeout = TIMEOUTS_S[request.command] if timeout_s is None else timeout_s
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError):
            raise EngineNotRunning(db) from None
        except PermissionError:
            raise ControlClientError(f"permission denied on the control socket {path}") from None
        except TimeoutError:
            raise ControlClientError(
                f"the engine for {db} did not accept within {timeout:g} s"
            ) from None
        try:
            sock.sendall(encode_request(request))
            raw = _read_line(sock)
        except TimeoutError:
            raise ControlClientError(
                f"the engine for {db} did not answer {request.command.value} within {timeout:g} s"
            ) from None
        except OSError as exc:
            raise ControlClientError(
                f"the control channel broke: {exc.strerror or type(exc).__name__}"
            ) from None
    return _result(raw, request.command)


def _check_socket_file(db: Path, path: Path) -> None:
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise EngineNotRunning(db) from None
    except OSError as exc:
        raise ControlClientError(f"cannot reach {path}: {exc.strerror}") from None
    if not stat.S_ISSOCK(info.st_mode):
        raise ControlClientError(f"{path} is not a control socket")
    # Talking to a socket another user planted would hand it our kill/resume decisions.
    if info.st_uid != os.getuid():
        raise ControlClientError(f"{path} belongs to another user (uid {info.st_uid}); not used")


def _read_line(sock: socket.socket) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
        if chunk.endswith(b"\n") or size > _MAX_ANSWER_BYTES:
            break
    return b"".join(chunks)


def _result(raw: bytes, command: Command) -> Any:
    if not raw.strip():
        raise ControlClientError(f"the engine closed the channel without answering {command.value}")
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ControlClientError("the engine's answer is not JSON") from None
    if not isinstance(body, dict) or "ok" not in body:
        raise ControlClientError("the engine's answer has no ok field")
    if body["ok"] is True:
        return body.get("result")
    raise EngineRefused(str(body.get("error") or "the engine refused without a reason"))
