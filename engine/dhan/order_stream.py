"""Our own reader of Dhan's order-update WebSocket (never the SDK's ``OrderUpdate``, which prints
the access token).

Protocol (facts §2): connect, send ``{"LoginReq": {"MsgCode": 42, "ClientId": ..., "Token": ...},
"UserType": "SELF"}``; every order of the account then arrives as ``{"Type": "order_alert",
"Data": {...}}``. No acknowledgement of the login and no replay are documented, so:

* after each (re)connect ``on_connected`` is awaited, for the engine's missed-order recovery;
* a close with code 1008 or 4000-4999 before any frame arrived is reported as
  ``DISCONNECTED`` / ``"login refused (token invalid or expired?)"``, and retried with capped
  backoff;
* we ping every ``ping_interval_s`` ourselves; when nothing at all (no frame, no pong) has
  arrived for ``idle_timeout_s``, the state becomes ``STALLED`` and the connection is dropped
  and re-made;
* reconnects use jittered exponential backoff, reset after a connection that lived longer than
  ``stable_after_s``.

Time: silence, connection lifetimes and the backoff pause use the injected clock; the ping
cadence and the watchdog's polling are real-time ``asyncio.sleep`` (network concerns), so a
``ManualClock`` never turns them into busy loops.

Secrets: the login frame carries the token. ``websockets`` logs every frame at DEBUG on the
connection's logger, so the connection is given our own logger
(``engine.dhan.order_stream.wire``), pinned at INFO (its DEBUG frame dumps never happen, whatever
the root or "websockets" logger levels are) and carrying a redacting filter as a second guard.
``engine.secrets.install_log_redaction`` covers the process-wide side.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from engine.accounts.source_ip import socket_connect_kwargs
from engine.clock import Clock, SystemClock
from engine.dhan.codec import (
    InstrumentHint,
    SocketDecodeKind,
    decode_socket_message,
)
from engine.dhan.errors import sanitize
from engine.dhan.recorder import Recorder
from engine.domain import ConnectionState, OrderSnapshot
from engine.secrets import RedactingFilter, register_secret

__all__ = ["LOGIN_REFUSED", "OrderStream", "login_message"]

log = logging.getLogger(__name__)

# The logger handed to websockets: INFO at least, so its DEBUG frame logging is never enabled.
_wire_log = logging.getLogger(f"{__name__}.wire")
_wire_log.setLevel(logging.INFO)
if not any(isinstance(f, RedactingFilter) for f in _wire_log.filters):
    _wire_log.addFilter(RedactingFilter())

LOGIN_REFUSED = "login refused (token invalid or expired?)"
_REFUSAL_CODES = frozenset({1008})  # plus 4000-4999


def login_message(client_id: str, access_token: str) -> str:
    """The login frame (facts §2); MsgCode is an int, as the SDK sends it."""
    return json.dumps(
        {
            "LoginReq": {"MsgCode": 42, "ClientId": str(client_id), "Token": access_token},
            "UserType": "SELF",
        }
    )


@dataclass
class _Outcome:
    connected: bool
    lived_s: float = 0.0
    detail: str = ""
    refused: bool = False
    stalled: bool = False


class OrderStream:
    def __init__(
        self,
        *,
        account: str,
        client_id: str,
        access_token: str,
        url: str,
        on_snapshot: Callable[[OrderSnapshot], Awaitable[None]],
        on_state: Callable[[ConnectionState, str], None],
        on_connected: Callable[[], Awaitable[None]] | None = None,
        on_malformed: Callable[[str, str], None] | None = None,
        clock: Clock | None = None,
        idle_timeout_s: float = 60.0,
        backoff_initial_s: float = 0.25,
        backoff_max_s: float = 30.0,
        rng: random.Random | None = None,
        ping_interval_s: float | None = None,
        stable_after_s: float = 5.0,
        open_timeout_s: float = 10.0,
        recorder: Recorder | None = None,
        on_instrument: Callable[[InstrumentHint], None] | None = None,
        source_ip: str | None = None,
        hold: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.account = account
        self.client_id = str(client_id)
        self._token = access_token
        register_secret(access_token)
        self.token_in_login = access_token  # the token the last login sent (for a refusal)
        self._backoff_sleep: asyncio.Task[None] | None = None  # cut short by a new token
        # The account's whitelisted static IP: the socket leaves from it (engine.accounts).
        self._connect_kwargs = socket_connect_kwargs(source_ip)
        self.url = url
        self._on_snapshot = on_snapshot
        self._on_state = on_state
        self._on_connected = on_connected
        self._on_malformed = on_malformed
        # Every frame received (never the login frame we send) goes to the recorder, raw.
        self._recorder = recorder
        # What an order alert says about its instrument (LotSize, TickSize, OptType).
        self._on_instrument = on_instrument
        # Awaited before each frame is taken: the engine holds a follower's alerts while a
        # fan-out's sends go out (engine.dispatch.send_line).
        self._hold = hold
        self._clock: Clock = clock or SystemClock()
        self.idle_timeout_s = idle_timeout_s
        self.ping_interval_s = (
            ping_interval_s if ping_interval_s is not None else min(idle_timeout_s / 3, 20.0)
        )
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.stable_after_s = stable_after_s
        self.open_timeout_s = open_timeout_s
        self._rng = rng or random.Random()
        self._stop = asyncio.Event()
        self._ws: ClientConnection | None = None
        self._connected_once = False
        self.reconnects = 0  # successful connections after the first one
        self.last_message_mono: float | None = None  # any frame or pong, on the clock
        self.dropped_foreign = 0  # alerts of another ClientId, dropped
        self.state = ConnectionState.DISCONNECTED

    def __repr__(self) -> str:
        return (
            f"OrderStream(account={self.account!r}, client_id={self.client_id!r}, url={self.url!r})"
        )

    __str__ = __repr__

    # --- public ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Connect, read, reconnect, until :meth:`stop` (a stopped stream stays stopped)."""
        backoff = self.backoff_initial_s
        try:
            while not self._stop.is_set():
                self._emit(
                    ConnectionState.CONNECTING, "reconnecting" if self._connected_once else ""
                )
                session = asyncio.create_task(self._session(), name=f"order-stream-{self.account}")
                if not await self._until_stopped(session):
                    break
                try:
                    outcome = session.result()
                except Exception as exc:  # a bug or a surprise: report it, keep reconnecting
                    log.exception("%s: order stream session failed", self.account)
                    outcome = _Outcome(connected=False, detail=f"error: {_describe(exc)}")
                if (
                    outcome.connected
                    and outcome.lived_s >= self.stable_after_s
                    and not outcome.refused
                ):
                    backoff = self.backoff_initial_s
                delay = backoff * (0.5 + 0.5 * self._rng.random())
                if not outcome.stalled:
                    detail = outcome.detail or "disconnected"
                    self._emit(
                        ConnectionState.DISCONNECTED,
                        f"{detail}; retrying in {delay:.1f}s"
                        if not outcome.refused
                        else LOGIN_REFUSED,
                    )
                backoff = min(backoff * 2, self.backoff_max_s)
                sleeper = asyncio.create_task(self._clock.sleep(delay))
                self._backoff_sleep = sleeper
                if not await self._until_stopped(sleeper):
                    break
                self._backoff_sleep = None
        finally:
            self._emit(ConnectionState.DISCONNECTED, "stopped")

    async def stop(self) -> None:
        self._stop.set()
        ws = self._ws
        if ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), timeout=2)

    # --- internals ------------------------------------------------------------------------

    async def _until_stopped(self, task: asyncio.Task[Any]) -> bool:
        """Wait for ``task`` or stop(); False (and ``task`` cancelled) when stopped first."""
        stopper = asyncio.create_task(self._stop.wait())
        try:
            await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
        if task.done() and not self._stop.is_set():
            return True
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        return False

    def use_token(self, access_token: str) -> None:
        """The next login (every reconnect) sends this token; a live session is kept. A stream
        waiting to reconnect (e.g. after its login was refused) tries at once."""
        register_secret(access_token)
        self._token = access_token
        sleeper = self._backoff_sleep
        if sleeper is not None and not sleeper.done():
            sleeper.cancel()

    def _emit(self, state: ConnectionState, detail: str) -> None:
        self.state = state
        try:
            self._on_state(state, sanitize(detail, self._token))
        except Exception:
            log.exception("%s: on_state callback failed", self.account)

    async def _session(self) -> _Outcome:
        try:
            ws = await connect(
                self.url,
                proxy=None,
                open_timeout=self.open_timeout_s,
                ping_interval=None,  # our own keepalive, so pongs feed the idle watchdog
                ping_timeout=None,
                close_timeout=2,
                max_queue=1024,
                logger=_wire_log,
                compression=None,
                **self._connect_kwargs,
            )
        except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as exc:
            return _Outcome(connected=False, detail=f"connect failed: {_describe(exc)}")
        self._ws = ws
        started = self._clock.monotonic()
        received_any = False
        stalled = asyncio.Event()
        helpers: list[asyncio.Task[None]] = []
        try:
            self.token_in_login = self._token
            await ws.send(login_message(self.client_id, self._token))
            self.last_message_mono = started
            if self._connected_once:
                self.reconnects += 1
            self._connected_once = True
            self._emit(ConnectionState.CONNECTED, "")
            helpers.append(asyncio.create_task(self._keepalive(ws)))
            helpers.append(asyncio.create_task(self._watchdog(ws, stalled)))
            if self._on_connected is not None:
                try:
                    await self._on_connected()
                except Exception:
                    log.exception("%s: on_connected callback failed", self.account)
            while True:
                if self._hold is not None:
                    await self._hold()  # frames wait in the socket's queue meanwhile
                frame = await ws.recv()
                received_any = True
                self.last_message_mono = self._clock.monotonic()
                self._record(frame)
                if self._hold is not None:
                    await self._hold()  # a hold that began while this frame was awaited
                await self._handle(frame)
        except ConnectionClosed:
            pass
        finally:
            for task in helpers:
                task.cancel()
            for task in helpers:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), timeout=2)
            self._ws = None
        lived = self._clock.monotonic() - started
        if stalled.is_set():
            return _Outcome(connected=True, lived_s=lived, stalled=True, detail="stalled")
        code = ws.close_code
        reason = ws.close_reason or ""
        refused = code is not None and (code in _REFUSAL_CODES or 4000 <= code <= 4999)
        if refused and not received_any:
            return _Outcome(connected=True, lived_s=lived, refused=True, detail=LOGIN_REFUSED)
        detail = f"closed by server (code {code}{': ' + reason if reason else ''})"
        return _Outcome(connected=True, lived_s=lived, detail=detail)

    def _record(self, frame: str | bytes) -> None:
        if self._recorder is None:
            return
        try:
            text = frame.decode("utf-8", errors="replace") if isinstance(frame, bytes) else frame
            self._recorder.frame(self.account, text)
        except Exception:  # recording must never cost an order update
            log.debug("%s: recording a frame failed", self.account)

    async def _handle(self, frame: str | bytes) -> None:
        result = decode_socket_message(frame)
        if result.kind is SocketDecodeKind.ORDER and result.snapshot is not None:
            snapshot = result.snapshot
            if snapshot.client_id and snapshot.client_id != self.client_id:
                self.dropped_foreign += 1
                log.debug("%s: dropped an alert of another client", self.account)
                return
            if self._on_instrument is not None:
                hint = result.hint
                if hint is not None:
                    try:
                        self._on_instrument(hint)
                    except Exception:
                        log.exception("%s: on_instrument callback failed", self.account)
            try:
                await self._on_snapshot(snapshot)
            except Exception:
                log.exception("%s: on_snapshot callback failed", self.account)
        elif result.kind is SocketDecodeKind.IGNORED:
            log.debug("%s: ignored a %r frame", self.account, result.message_type)
        else:
            log.warning("%s: malformed order-update frame: %s", self.account, result.error)
            if self._on_malformed is not None:
                try:
                    self._on_malformed(
                        sanitize(result.raw, self._token), sanitize(result.error, self._token)
                    )
                except Exception:
                    log.exception("%s: on_malformed callback failed", self.account)

    async def _keepalive(self, ws: ClientConnection) -> None:
        while True:
            await asyncio.sleep(self.ping_interval_s)  # network cadence: real time
            try:
                waiter = asyncio.ensure_future(await ws.ping())
            except ConnectionClosed:
                return
            waiter.add_done_callback(self._pong)

    def _pong(self, waiter: asyncio.Future[float]) -> None:
        if not waiter.cancelled() and waiter.exception() is None:
            self.last_message_mono = self._clock.monotonic()

    async def _watchdog(self, ws: ClientConnection, stalled: asyncio.Event) -> None:
        step = max(min(self.idle_timeout_s / 4, 1.0), 0.01)
        while True:
            # Poll in real time, measure silence on the injected clock: with a manual clock
            # the watchdog fires only when a test moves time past the idle timeout.
            await asyncio.sleep(step)
            last = self.last_message_mono
            if last is None:
                continue
            silent = self._clock.monotonic() - last
            if silent >= self.idle_timeout_s:
                stalled.set()
                self._emit(
                    ConnectionState.STALLED,
                    f"no data or pong for {silent:.0f}s; reconnecting",
                )
                ws.transport.abort()  # a silent peer would not answer a close handshake
                return


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
