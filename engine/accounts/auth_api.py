"""The Dhan calls behind an account's token and whitelist, as typed, secret-free results.

What is sent is exactly what the ``dhanhq`` 2.3.0 SDK's ``DhanLogin`` sends (dhanhq/auth.py):

- mint:     ``POST {auth}/app/generateAccessToken?dhanClientId=..&pin=..&totp=..`` (no body)
- renew:    ``GET {api}/RenewToken``, headers ``access-token``, ``dhanClientId``
- profile:  ``GET {api}/profile``, same headers
- whitelist: ``GET {api}/ip/getIP`` through the SDK's own ``DhanHTTP`` (as ``DhanLogin.get_ip``)

Why not call ``DhanLogin`` itself: it goes through module-level ``requests.post/get`` with no
timeout (a silent auth server would hang a thread for ever), through no session (so the
account's ``source_ip`` cannot be applied), and it logs Dhan's whole answer and raises
``Exception(f"... {response_json}")``. Here one ``requests.Session`` per account carries the
timeout and the source address, and every failure becomes an :class:`AuthFailure` whose text
holds no PIN, TOTP code or token (query strings are cut, registered secrets masked).
``get_ip`` does use the SDK's ``DhanHTTP`` (on its instance ``base_url``, never the class
constant), because that path takes a session we can bind.

All calls are synchronous (``requests``); callers run them in a thread.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

import requests
from dhanhq.dhan_http import DhanHTTP
from pydantic import SecretStr

from engine.accounts.source_ip import bind_session
from engine.clock import to_ist
from engine.secrets import MASK, redact, register_secret

__all__ = [
    "AuthFailure",
    "AuthFailureKind",
    "DhanAuthApi",
    "ProfileInfo",
    "TokenGrant",
    "WhitelistedIps",
    "parse_dhan_time",
]

DEFAULT_AUTH_BASE_URL = "https://auth.dhan.co"
DEFAULT_API_BASE_URL = "https://api.dhan.co/v2"

# Dhan codes that mean "this token (or these credentials) is not accepted".
_TOKEN_REFUSED_CODES = frozenset({"DH-901", "807", "808", "809"})
_QUERY = re.compile(r"\?[^\s'\"]*")
_MAX_MESSAGE = 300


class AuthFailureKind(StrEnum):
    REFUSED = "REFUSED"  # Dhan answered no: bad PIN/TOTP, token invalid or not renewable
    UNREACHABLE = "UNREACHABLE"  # no answer: connection refused, timeout, TLS
    UNREADABLE = "UNREADABLE"  # an answer, but not one we can read (no token in it, not JSON)


@dataclass(frozen=True, slots=True)
class AuthFailure:
    """A Dhan auth call that did not give what was asked. ``message`` is safe to show."""

    kind: AuthFailureKind
    message: str
    code: str | None = None  # Dhan's errorCode when it sent one
    http_status: int | None = None

    @property
    def token_refused(self) -> bool:
        """Dhan says the token itself is no good (DH-901 and its feed cousins)."""
        return self.code in _TOKEN_REFUSED_CODES or (self.code is None and self.http_status == 401)

    def __str__(self) -> str:
        code = f" {self.code}" if self.code else ""
        return f"{self.kind.value.lower()}{code}: {self.message}"


@dataclass(frozen=True, slots=True)
class TokenGrant:
    """A token Dhan handed out. ``token`` is a SecretStr so a repr never shows it."""

    token: SecretStr
    expires_at: datetime | None  # IST, tz-aware; None when Dhan did not say


@dataclass(frozen=True, slots=True)
class ProfileInfo:
    client_id: str
    token_valid_until: datetime | None  # IST, tz-aware


@dataclass(frozen=True, slots=True)
class WhitelistedIps:
    primary: str | None
    secondary: str | None
    extra: tuple[str, ...] = field(default=())

    @property
    def addresses(self) -> tuple[str, ...]:
        return tuple(ip for ip in (self.primary, self.secondary, *self.extra) if ip)

    def allows(self, address: str) -> bool:
        """True when ``address`` is one of them (compared as addresses: ``::1`` == ``0::1``)."""
        wanted = _as_address(address)
        return (
            any(wanted is not None and _as_address(ip) == wanted for ip in self.addresses)
            or address.strip() in self.addresses
        )


def _as_address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


_DHAN_TIME_FORMATS = (
    "%Y-%m-%dT%H:%M:%S",  # token expiryTime
    "%Y-%m-%dT%H:%M:%S.%f",
    "%d/%m/%Y %H:%M",  # profile tokenValidity
    "%d/%m/%Y %H:%M:%S",
    "%Y-%m-%d %H:%M:%S",
)


def parse_dhan_time(text: object) -> datetime | None:
    """A Dhan IST wall time in any of the forms its auth answers use; None if unreadable."""
    if not isinstance(text, str) or not text.strip():
        return None
    for fmt in _DHAN_TIME_FORMATS:
        try:
            return to_ist(datetime.strptime(text.strip(), fmt))
        except ValueError:
            continue
    return None


def _folded(obj: Mapping[Any, Any]) -> dict[str, Any]:
    return {str(k).lower(): v for k, v in obj.items()}


def _safe(text: str, *secrets: str) -> str:
    """One line with no query string (the PIN and TOTP ride in it), no secret, bounded."""
    text = _QUERY.sub("?" + MASK, " ".join(str(text).split()))
    for secret in secrets:
        if secret:
            text = text.replace(secret, MASK)
    text = redact(text)
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 1] + "…"


def _describe_transport(exc: BaseException) -> str:
    if isinstance(exc, requests.Timeout):
        return "no answer in time"
    if isinstance(exc, requests.ConnectionError):
        return "could not connect"
    return type(exc).__name__


class DhanAuthApi:
    """One account's auth calls. Construct one per account; ``close()`` when done.

    ``auth_base_url`` / ``api_base_url`` default to Dhan's and are per instance (tests point
    them at the simulator). ``source_ip``: leave from that local address (see source_ip.py).
    """

    AUTH_BASE_URL = DEFAULT_AUTH_BASE_URL
    API_BASE_URL = DEFAULT_API_BASE_URL

    def __init__(
        self,
        client_id: str,
        *,
        auth_base_url: str | None = None,
        api_base_url: str | None = None,
        timeout_s: float = 10.0,
        source_ip: str | None = None,
    ) -> None:
        self.client_id = client_id
        self.AUTH_BASE_URL = (auth_base_url or DEFAULT_AUTH_BASE_URL).rstrip("/")
        self.API_BASE_URL = (api_base_url or DEFAULT_API_BASE_URL).rstrip("/")
        self.timeout_s = timeout_s
        self.source_ip = source_ip
        self._session = requests.Session()
        if source_ip:
            bind_session(self._session, source_ip)

    def __repr__(self) -> str:
        return f"DhanAuthApi(client_id={self.client_id!r}, api={self.API_BASE_URL!r})"

    def close(self) -> None:
        self._session.close()

    # --- calls ------------------------------------------------------------------------------

    def mint(self, pin: str, totp_code: str) -> TokenGrant | AuthFailure:
        """A new token from the account's PIN and current TOTP code."""
        register_secret(pin)
        params = {"dhanClientId": self.client_id, "pin": pin, "totp": totp_code}
        answer = self._send(
            "POST",
            f"{self.AUTH_BASE_URL}/app/generateAccessToken",
            params=params,
            secrets=(pin, totp_code),
        )
        return answer if isinstance(answer, AuthFailure) else self._grant(answer, (pin,))

    def renew(self, token: str) -> TokenGrant | AuthFailure:
        """Dhan's RenewToken: a fresh 24 hours for a token that is still valid."""
        answer = self._send(
            "GET",
            f"{self.API_BASE_URL}/RenewToken",
            headers=self._headers(token),
            secrets=(token,),
        )
        return answer if isinstance(answer, AuthFailure) else self._grant(answer, (token,))

    def profile(self, token: str) -> ProfileInfo | AuthFailure:
        answer = self._send(
            "GET",
            f"{self.API_BASE_URL}/profile",
            headers=self._headers(token),
            secrets=(token,),
        )
        if isinstance(answer, AuthFailure):
            return answer
        d = _folded(answer)
        return ProfileInfo(
            client_id=str(d.get("dhanclientid") or self.client_id),
            token_valid_until=parse_dhan_time(d.get("tokenvalidity")),
        )

    def whitelisted_ips(self, token: str) -> WhitelistedIps | AuthFailure:
        """``GET /v2/ip/getIP`` through the SDK's DhanHTTP, on this account's session."""
        register_secret(token)
        http = DhanHTTP(self.client_id, token)
        http.base_url = self.API_BASE_URL
        http.timeout = self.timeout_s
        http.session.close()
        http.session = self._session
        response = http.get("/ip/getIP")
        if response.get("status") != "success":
            return _sdk_failure(response.get("remarks"), token)
        data = response.get("data")
        if not isinstance(data, Mapping):
            return AuthFailure(AuthFailureKind.UNREADABLE, "the whitelist answer is not an object")
        d = _folded(data)

        def text(key: str) -> str | None:
            value = d.get(key)
            return value.strip() if isinstance(value, str) and value.strip() else None

        return WhitelistedIps(primary=text("primaryip"), secondary=text("secondaryip"))

    # --- plumbing ---------------------------------------------------------------------------

    def _headers(self, token: str) -> dict[str, str]:
        register_secret(token)
        return {"access-token": token, "dhanClientId": self.client_id}

    def _send(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        secrets: tuple[str, ...] = (),
    ) -> Mapping[str, Any] | AuthFailure:
        try:
            response = self._session.request(
                method, url, params=params, headers=headers, timeout=self.timeout_s
            )
        except requests.RequestException as exc:
            # str(exc) carries the URL with the PIN and TOTP in its query: never use it.
            return AuthFailure(AuthFailureKind.UNREACHABLE, _describe_transport(exc))
        try:
            body: Any = response.json()
        except ValueError:
            return AuthFailure(
                AuthFailureKind.UNREADABLE,
                f"HTTP {response.status_code} with a body that is not JSON",
                http_status=response.status_code,
            )
        if response.status_code != 200:
            return _error_answer(response.status_code, body, secrets)
        if not isinstance(body, Mapping):
            return AuthFailure(
                AuthFailureKind.UNREADABLE, "the answer is not an object", http_status=200
            )
        if str(body.get("status", "")).lower() in ("failed", "failure", "error"):
            return _error_answer(200, body, secrets)
        return body

    def _grant(self, body: Mapping[str, Any], secrets: tuple[str, ...]) -> TokenGrant | AuthFailure:
        d = _folded(body)
        token = d.get("accesstoken") or d.get("token")
        if not isinstance(token, str) or not token.strip():
            return AuthFailure(AuthFailureKind.UNREADABLE, "the answer holds no access token")
        token = token.strip()
        register_secret(token)
        expires = parse_dhan_time(d.get("expirytime"))
        return TokenGrant(token=SecretStr(token), expires_at=expires)


def _error_answer(status: int, body: Any, secrets: tuple[str, ...]) -> AuthFailure:
    code: str | None = None
    message = f"HTTP {status}"
    if isinstance(body, Mapping):
        d = _folded(body)
        raw_code = d.get("errorcode")
        code = str(raw_code) if raw_code else None
        words = d.get("errormessage") or d.get("message") or d.get("remarks")
        if isinstance(d.get("data"), Mapping) and not words:
            words = "; ".join(f"{k}: {v}" for k, v in d["data"].items())
        if words:
            message = f"{message}: {words}"
    return AuthFailure(
        AuthFailureKind.REFUSED, _safe(message, *secrets), code=code, http_status=status
    )


def _sdk_failure(remarks: object, token: str) -> AuthFailure:
    """The SDK's failure ``remarks``: Dhan's error dict, or an exception text."""
    if isinstance(remarks, Mapping):
        code = remarks.get("error_code")
        words = remarks.get("error_message") or remarks.get("error_type") or "refused"
        return AuthFailure(
            AuthFailureKind.REFUSED, _safe(str(words), token), code=str(code) if code else None
        )
    text = str(remarks or "")
    if "Expecting value" in text:
        return AuthFailure(AuthFailureKind.UNREADABLE, "an answer that is not JSON")
    return AuthFailure(AuthFailureKind.UNREACHABLE, _safe(text, token) or "no answer")
