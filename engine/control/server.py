"""The engine's end of the control channel: a Unix socket only its own user can open.

The engine starts one `ControlServer` once it holds the instance lock and closes it when it
stops. Each connection carries one request line and gets one answer line; a malformed or
hostile request costs only its own connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import stat
import struct
from pathlib import Path
from types import TracebackType
from typing import Any

from engine.control.protocol import (
    MAX_LINE_BYTES,
    Command,
    ControlledEngine,
    ControlRefused,
    FreezeClearing,
    PositionSyncing,
    ProtocolError,
    Request,
    TokenSetting,
    decode_request,
    encode_error,
    encode_result,
)
from engine.paths import control_socket_path, ensure_private_dir, normalise_db_path
from engine.secrets import redact

__all__ = ["DEFAULT_KILL_REASON", "ControlServer", "ControlSocketError"]

log = logging.getLogger(__name__)

DEFAULT_KILL_REASON = "killed from the command line (copytrade kill)"
_REQUEST_TIMEOUT_S = 5.0  # a client that connects and says nothing does not hold a handler
_CLOSE_GRACE_S = 5.0  # a kill or resume in progress at shutdown is let finish this long
_DISCARD_S = 1.0
_DISCARD_MAX_BYTES = 1 << 20
_PEERCRED = getattr(socket, "SO_PEERCRED", None)  # Linux; elsewhere the 0600 mode alone guards


class ControlSocketError(Exception):
    """The control socket cannot be set up; one line for the trader."""


class ControlServer:
    """Serves `engine` on the control socket derived from `db_path`.

    `await start()` binds (mode 0600), `await close()` stops and removes the socket; or use
    `async with ControlServer(engine, db_path):`.
    """

    def __init__(
        self,
        engine: ControlledEngine,
        db_path: Path | str,
        *,
        socket_path: Path | None = None,
        request_timeout_s: float = _REQUEST_TIMEOUT_S,
    ) -> None:
        self._engine = engine
        self.db_path = normalise_db_path(db_path)
        self.path = socket_path if socket_path is not None else control_socket_path(self.db_path)
        self._request_timeout_s = request_timeout_s
        self._server: asyncio.AbstractServer | None = None
        self._inode: int | None = None
        self._handlers: set[asyncio.Task[Any]] = set()

    @property
    def serving(self) -> bool:
        return self._server is not None

    async def start(self) -> None:
        if self._server is not None:
            return
        directory = self.path.parent
        try:
            if directory == self.db_path.parent:
                directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            else:  # the shared runtime fallback: it must be ours and private
                ensure_private_dir(directory)
            await self._clear_stale_socket()
            # Created 0600 from the first instant: no window in which another user connects.
            previous_umask = os.umask(0o177)
            try:
                server = await asyncio.start_unix_server(
                    self._handle, path=str(self.path), limit=MAX_LINE_BYTES
                )
            finally:
                os.umask(previous_umask)
            os.chmod(self.path, 0o600)
            self._inode = os.stat(self.path).st_ino
        except ControlSocketError:
            raise
        except Exception as exc:
            raise ControlSocketError(f"cannot open the control socket {self.path}: {exc}") from None
        self._server = server
        log.info("control channel listening on %s", self.path)

    async def close(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        handlers = set(self._handlers)
        if handlers:
            _, late = await asyncio.wait(handlers, timeout=_CLOSE_GRACE_S)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        self._remove_own_socket()

    async def __aenter__(self) -> ControlServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # --- socket file ----------------------------------------------------------------------

    async def _clear_stale_socket(self) -> None:
        """A socket file left by a dead engine is removed; a live one is never stolen
        (asyncio would silently unlink it and take over)."""
        try:
            info = os.lstat(self.path)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(info.st_mode):
            raise ControlSocketError(f"{self.path} exists and is not a control socket")
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_unix_connection(str(self.path)), timeout=1.0
            )
        except (ConnectionRefusedError, FileNotFoundError, TimeoutError):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
            return
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        raise ControlSocketError(f"another engine already answers on {self.path}")

    def _remove_own_socket(self) -> None:
        try:
            if os.lstat(self.path).st_ino == self._inode:
                os.unlink(self.path)
        except FileNotFoundError:
            pass

    # --- one connection -------------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        try:
            answer = await self._answer_connection(reader, writer)
            if answer:
                writer.write(answer)
                await writer.drain()
            await _discard_unread(reader)
        except (ConnectionError, OSError):
            pass  # the client left; nothing to tell it
        except Exception:  # the server outlives any one request
            log.exception("control channel: unexpected failure answering a request")
        finally:
            if task is not None:
                self._handlers.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _answer_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bytes:
        if not _peer_is_same_user(writer):
            return encode_error("refused: the control channel serves only its own user")
        try:
            line = await asyncio.wait_for(reader.readuntil(b"\n"), self._request_timeout_s)
        except asyncio.IncompleteReadError as exc:
            if not exc.partial.strip():
                return b""  # connected and left: a liveness probe
            line = exc.partial
        except asyncio.LimitOverrunError:
            return encode_error(f"request longer than {MAX_LINE_BYTES} bytes")
        except TimeoutError:
            return encode_error(f"no request line within {self._request_timeout_s:g} s")
        try:
            request = decode_request(line.strip())
        except ProtocolError as exc:
            return encode_error(str(exc))
        return await self._execute(request)

    async def _execute(self, request: Request) -> bytes:
        try:
            result = await self._dispatch(request)
            return encode_result(result)
        except ControlRefused as exc:
            log.info("control channel: %s refused: %s", request.command.value, exc)
            return encode_error(str(exc))
        except Exception as exc:
            log.exception("control channel: %s failed", request.command.value)
            detail = redact(str(exc)).strip().splitlines()
            suffix = f": {detail[0]}" if detail else ""
            return encode_error(
                f"the engine could not {request.command.value}: {type(exc).__name__}{suffix}"
            )

    async def _dispatch(self, request: Request) -> Any:
        engine = self._engine
        if request.command is Command.STATUS:
            return self._status()
        if request.command is Command.KILL:
            reason = request.reason or DEFAULT_KILL_REASON
            log.warning("control channel: kill requested (%s)", reason)
            await engine.kill(reason)
            return self._status()
        if request.command is Command.RESUME:
            log.info("control channel: resume requested (replace_open=%s)", request.replace_open)
            return await engine.resume(request.replace_open)
        if request.command is Command.RESYNC:
            log.info("control channel: resync requested")
            return await engine.resync()
        if request.command is Command.UNCOPIED:
            return {"orders": await engine.uncopied_orders()}
        if request.command is Command.TOKEN_SET:
            return await self._set_token(request)
        if request.command is Command.UNFREEZE:
            if not isinstance(engine, FreezeClearing):
                raise ControlRefused("this engine has no freezes to clear")
            account = request.account
            scope = None if not account else ("" if account == "engine" else account)
            log.warning("control channel: unfreeze requested (%s)", account or "all")
            return {"message": await engine.clear_freeze(scope)}
        if request.command in (Command.SYNC_PREVIEW, Command.SYNC_APPLY):
            return await self._sync(request.command is Command.SYNC_APPLY)
        raise ProtocolError(f"unhandled command {request.command.value}")  # pragma: no cover

    async def _set_token(self, request: Request) -> dict[str, Any]:
        if not isinstance(self._engine, TokenSetting) or request.token is None:
            raise ControlRefused("this engine cannot take a new token while it runs")
        log.info("control channel: new token for %s", request.account)
        outcome = await self._engine.set_token(request.account, request.token)
        if not outcome.accepted:
            raise ControlRefused(outcome.message)
        return {
            "account": request.account,
            "message": outcome.message,
            "expires_at": outcome.expires_at,
        }

    async def _sync(self, apply: bool) -> dict[str, Any]:
        if not isinstance(self._engine, PositionSyncing):
            raise ControlRefused("this engine cannot sync positions")
        preview = await self._engine.sync_preview()
        answer: dict[str, Any] = {"orders": preview.orders, "notes": preview.notes}
        if apply:
            log.warning("control channel: position sync confirmed (%d orders)", len(preview.orders))
            report = await self._engine.sync_apply(preview)
            answer.update(placed=report.placed, refused=report.refused, message=report.message)
        return answer

    def _status(self) -> dict[str, Any]:
        status = dict(self._engine.status())
        status.setdefault("pid", os.getpid())
        status.setdefault("database", str(self.db_path))
        return status


async def _discard_unread(reader: asyncio.StreamReader) -> None:
    """Read what the client still sends (an over-long or refused request) until it hangs up:
    closing with unread input would reset the connection and lose the error line we wrote."""
    received = 0
    with contextlib.suppress(Exception):
        async with asyncio.timeout(_DISCARD_S):
            while received < _DISCARD_MAX_BYTES:
                chunk = await reader.read(65536)
                if not chunk:
                    return
                received += len(chunk)


def _peer_is_same_user(writer: asyncio.StreamWriter) -> bool:
    """The peer's uid from the kernel (Linux SO_PEERCRED); the 0600 mode already keeps other
    users out, this also refuses one that got hold of a descriptor some other way."""
    if _PEERCRED is None:
        return True
    sock = writer.get_extra_info("socket")
    if sock is None:
        return True
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, _PEERCRED, struct.calcsize("3i"))
    except OSError:
        return True
    _pid, uid, _gid = struct.unpack("3i", raw)
    return bool(uid == os.getuid())
