"""A tiny loopback HTTP server speaking Dhan's auth contract, for the token and IP unit tests.

It answers exactly the requests the SDK's ``DhanLogin`` makes (mint, renew, profile, getIP),
checks the PIN and the TOTP code against a clock the test controls, and records each request
with the address it came from. The e2e tests use the project's simulator instead.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pyotp

from engine.clock import IST


def make_jwt(client_id: str, expires: datetime, serial: int) -> str:
    """A JWT-shaped token built at run time (no token-shaped text is committed)."""

    def part(obj: dict[str, Any]) -> str:
        raw = json.dumps(obj, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    header = part({"typ": "JWT", "alg": "HS512"})
    payload = part({"iss": "dhan", "dhanClientId": client_id, "exp": int(expires.timestamp())})
    return f"{header}.{payload}.c2lnbmF0dXJl{serial:06d}"


@dataclass
class Seen:
    method: str
    path: str
    client_address: str
    query: dict[str, list[str]]
    headers: dict[str, str]


@dataclass
class AuthState:
    client_id: str
    pin: str
    totp_secret: str
    now: Callable[[], datetime]
    lifetime: timedelta = timedelta(hours=24)
    renew_allowed: bool = True
    down: bool = False  # answer 503 with an HTML body to everything
    whitelist: tuple[str, str] = ("", "")
    tokens: dict[str, datetime] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    serial: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def issue(self) -> tuple[str, datetime]:
        with self.lock:
            self.serial += 1
            expires = self.now() + self.lifetime
            token = make_jwt(self.client_id, expires, self.serial)
            self.tokens[token] = expires
            return token, expires

    def valid(self, token: str | None) -> bool:
        expires = self.tokens.get(token or "")
        return expires is not None and self.now() < expires

    def paths(self) -> list[str]:
        return [s.path for s in self.seen]


def _handler(state: AuthState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
            return

        def _answer(self, status: int, body: object) -> None:
            raw = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def _refuse_token(self) -> None:
            self._answer(
                401,
                {
                    "errorType": "Invalid_Authentication",
                    "errorCode": "DH-901",
                    "errorMessage": "Client ID or user generated access token is invalid or"
                    " expired.",
                },
            )

        def _handle(self) -> None:
            parts = urlsplit(self.path)
            query = parse_qs(parts.query)
            state.seen.append(
                Seen(self.command, parts.path, self.client_address[0], query, dict(self.headers))
            )
            if state.down:
                raw = b"<html>503 Service Temporarily Unavailable</html>"
                self.send_response(503)
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)
                return
            token = self.headers.get("access-token")
            if self.command == "POST" and parts.path == "/app/generateAccessToken":
                pin = query.get("pin", [""])[0]
                code = query.get("totp", [""])[0]
                totp = pyotp.TOTP(state.totp_secret)
                if query.get("dhanClientId", [""])[0] != state.client_id or pin != state.pin:
                    self._answer(400, {"status": "error", "message": "Invalid PIN"})
                    return
                if not totp.verify(code, for_time=state.now(), valid_window=1):
                    self._answer(400, {"status": "error", "message": "Invalid TOTP"})
                    return
                new, expires = state.issue()
                self._answer(200, _grant(state.client_id, new, expires))
            elif self.command == "GET" and parts.path == "/v2/RenewToken":
                if not state.valid(token):
                    self._refuse_token()
                elif not state.renew_allowed:
                    self._answer(
                        400,
                        {
                            "errorType": "Input_Exception",
                            "errorCode": "DH-905",
                            "errorMessage": "Token cannot be renewed",
                        },
                    )
                else:
                    new, expires = state.issue()
                    self._answer(200, _grant(state.client_id, new, expires))
            elif self.command == "GET" and parts.path == "/v2/profile":
                if not state.valid(token):
                    self._refuse_token()
                    return
                validity = state.tokens[token or ""]
                self._answer(
                    200,
                    {
                        "dhanClientId": state.client_id,
                        "tokenValidity": validity.astimezone(IST).strftime("%d/%m/%Y %H:%M"),
                        "activeSegment": "Equity, Derivative",
                    },
                )
            elif self.command == "GET" and parts.path == "/v2/ip/getIP":
                if not state.valid(token):
                    self._refuse_token()
                    return
                primary, secondary = state.whitelist
                self._answer(
                    200,
                    {
                        "primaryIP": primary,
                        "secondaryIP": secondary,
                        "modifyDatePrimary": "2026-12-08",
                        "modifyDateSecondary": "",
                    },
                )
            else:
                self._answer(404, {"status": 404, "error": "Not Found", "path": parts.path})

        def do_GET(self) -> None:
            self._handle()

        def do_POST(self) -> None:
            self._handle()

    return Handler


def _grant(client_id: str, token: str, expires: datetime) -> dict[str, Any]:
    return {
        "dhanClientId": client_id,
        "dhanClientName": "TEST USER",
        "dhanClientUcc": "ABCD1234",
        "givenPowerOfAttorney": False,
        "accessToken": token,
        "expiryTime": expires.astimezone(IST).strftime("%Y-%m-%dT%H:%M:%S"),
    }


@contextmanager
def serve(state: AuthState, host: str = "127.0.0.1") -> Iterator[str]:
    """Run the server on ``host`` (any free port); yields its base URL (auth and API share it)."""
    server = ThreadingHTTPServer((host, 0), _handler(state))
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
