"""Recording what Dhan really sent, for ``copytrade run --record DIR`` (issue 11, item 6).

The broker and the order-stream reader take an optional :class:`Recorder`; the one shipped here,
:class:`JsonlRecorder`, appends one JSON object per line to ``DIR/rest.jsonl`` (every REST
exchange) and ``DIR/socket.jsonl`` (every order-update frame received)::

    rest.jsonl:   {"at": ISO time, "account": name, "method": "GET", "path": "/v2/orders",
                   "request": <body or null>, "response": {"status": 200, "body": <JSON or text>}}
                  (a call that got no HTTP answer: "response": {"error": "<what happened>"})
    socket.jsonl: {"at": ISO time, "account": name, "frame": "<raw frame text>"}

Redaction, applied to every line before it is written:
- request headers are never passed to a recorder (the access token travels only there);
- the configured client ids become stable placeholders "CLIENT-1", "CLIENT-2"… (in bodies,
  paths and frames alike);
- values of keys that name a secret (token, pin, totp, secret, password) become ``***``;
- every secret registered with :mod:`engine.secrets` and every JWT-shaped string becomes ``***``.
The frames we send (the login frame carries the token) are never recorded.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, TextIO

from engine.secrets import MASK, redact

__all__ = ["JsonlRecorder", "Recorder", "Redactor"]

REST_FILE = "rest.jsonl"
SOCKET_FILE = "socket.jsonl"

_SECRET_KEY = re.compile(r"token|pin|totp|secret|password|passwd", re.IGNORECASE)
# A secret in a JSON text whose structure we could not parse ("access-token": "...").
_SECRET_PAIR = re.compile(
    r"(\"?[A-Za-z_-]*(?:token|pin|totp|secret|password)[A-Za-z_-]*\"?\s*[:=]\s*)\"[^\"]*\"",
    re.IGNORECASE,
)


# A secret as a URL/form parameter (pin=1234&totp=...).
_SECRET_PARAM = re.compile(
    r"((?:^|[?&\s])[A-Za-z_-]*(?:token|pin|totp|secret|password)[A-Za-z_-]*=)[^&\s\"]+",
    re.IGNORECASE,
)


class Recorder(Protocol):
    """Receives every REST exchange and every socket frame of an account, raw."""

    def rest(
        self, account: str, method: str, path: str, request_body: object, response: object
    ) -> None: ...

    def frame(self, account: str, text: str) -> None: ...


class Redactor:
    """Client ids -> "CLIENT-n" placeholders, secrets -> ``***``, for any text or JSON value."""

    def __init__(self, client_ids: Iterable[str] = ()) -> None:
        self._placeholders: dict[str, str] = {}
        for client_id in client_ids:
            self.add_client_id(client_id)

    def add_client_id(self, client_id: str) -> str:
        client_id = str(client_id).strip()
        if not client_id:
            return ""
        if client_id not in self._placeholders:
            self._placeholders[client_id] = f"CLIENT-{len(self._placeholders) + 1}"
        return self._placeholders[client_id]

    def text(self, text: str) -> str:
        out = redact(text)
        out = _SECRET_PAIR.sub(lambda m: f'{m.group(1)}"{MASK}"', out)
        out = _SECRET_PARAM.sub(lambda m: f"{m.group(1)}{MASK}", out)
        # Longest first, so an id that contains another is replaced whole.
        for client_id in sorted(self._placeholders, key=len, reverse=True):
            out = out.replace(client_id, self._placeholders[client_id])
        return out

    def value(self, value: object) -> object:
        """A JSON-like value with secret-named keys masked and every string redacted."""
        if isinstance(value, dict):
            return {
                self.text(str(k)): (
                    MASK if _SECRET_KEY.search(str(k)) and v not in (None, "") else self.value(v)
                )
                for k, v in value.items()
            }
        if isinstance(value, (list, tuple)):
            return [self.value(v) for v in value]
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            # A client id may arrive as a number in a body.
            text = str(value)
            return self.text(text) if text in self._placeholders else value
        return value


def _maybe_json(value: object) -> object:
    """Bodies arrive as bytes/str; keep them as JSON when they are JSON, else as text."""
    if isinstance(value, (bytes, bytearray)):
        value = value.decode("utf-8", errors="replace")
    if isinstance(value, str):
        text = value.strip()
        if text[:1] in ("{", "["):
            try:
                return json.loads(text)
            except ValueError:
                return value
    return value


class JsonlRecorder:
    """Appends redacted JSON lines to ``directory/rest.jsonl`` and ``directory/socket.jsonl``.

    Thread-safe (the broker's SDK calls run on worker threads). A write that fails is counted
    in ``write_errors`` and never raised into the caller: recording must not stop trading.
    """

    def __init__(
        self,
        directory: Path,
        client_ids: Iterable[str] = (),
        *,
        now: Callable[[], datetime] | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.redactor = Redactor(client_ids)
        self._now = now or (lambda: datetime.now().astimezone())
        self._lock = threading.Lock()
        self._rest: TextIO = (self.directory / REST_FILE).open("a", encoding="utf-8")
        self._socket: TextIO = (self.directory / SOCKET_FILE).open("a", encoding="utf-8")
        self.write_errors = 0
        self._closed = False

    def rest(
        self, account: str, method: str, path: str, request_body: object, response: object
    ) -> None:
        record = {
            "at": self._now().isoformat(),
            "account": account,
            "method": method,
            "path": path,
            "request": _maybe_json(request_body) if request_body not in (None, b"", "") else None,
            "response": response,
        }
        self._write(self._rest, record)

    def frame(self, account: str, text: str) -> None:
        self._write(
            self._socket, {"at": self._now().isoformat(), "account": account, "frame": text}
        )

    def _write(self, stream: TextIO, record: dict[str, Any]) -> None:
        try:
            line = json.dumps(self.redactor.value(record), ensure_ascii=False, default=str)
        except (TypeError, ValueError):
            line = json.dumps({"unserialisable": self.redactor.text(repr(record))})
        with self._lock:
            if self._closed:
                return
            try:
                stream.write(line + "\n")
                stream.flush()
            except OSError:
                self.write_errors += 1

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for stream in (self._rest, self._socket):
                try:
                    stream.close()
                except OSError:
                    self.write_errors += 1
