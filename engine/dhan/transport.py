"""The ``dhanhq`` SDK's requests, carried on asyncio: one keep-alive HTTP session per account.

The SDK stays the client of record. Its public order methods (``place_order``,
``modify_order``, ...) build every request: the endpoint and the JSON payload. They hand it to
whatever their context gives them as ``dhan_http``; here that is a :class:`RequestBuilder`, which
sends nothing and returns the request as an :class:`SdkRequest`. :class:`AsyncDhanTransport`
then puts on the wire exactly what the SDK's ``DhanHTTP`` (over its ``requests.Session``) would:
the same request line, the same headers in the same order, the same body bytes
(``tests/unit/test_transport.py`` compares both byte for byte on every call the broker makes),
and answers exactly the SDK's ``{status, remarks, data}`` dict:

- 2xx with a JSON body: ``{"status": "success", "remarks": "", "data": <body>}``;
- non-2xx with a JSON body: ``{"status": "failure", "remarks": {error_code, error_type,
  error_message}, "data": ""}``;
- a body that is not JSON (an empty 202, an HTML 502): ``{"status": "failure",
  "remarks": <the JSON error text>, "data": ""}``;
- no answer at all (refused, reset, timed out): ``{"status": "failure", "remarks": <what
  happened>, "data": ""}``.

Why: the SDK's synchronous ``requests`` path costs a thread hop and most of a millisecond of
CPU per request; a leader order fanned out to many followers pays it once per follower.

Never sent twice: aiohttp sends an idempotent request (GET, PUT, DELETE) again on its own when
the connection breaks under it (RFC 9112's retry of a persistent connection), which the SDK's
``requests`` session never does. A modify or a cancel sent twice counts twice against Dhan's
order limits (10 a second: a soak with connection resets met DH-904 through it) and a modify
twice against the order's 25 modifications, while the rate limiter counted one. So a broken
connection reaches us as the failure it is (``_not_resent``, a client middleware).

``source_ip``: every connection of the account leaves from that local address (its whitelisted
static IP), like ``engine.accounts.source_ip`` does for a ``requests.Session``. The access token
is only ever in the request headers: never in an answer, a log line or ``repr``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from dhanhq import dhanhq
from requests.structures import CaseInsensitiveDict
from requests.utils import default_headers, get_environ_proxies, select_proxy

__all__ = [
    "AsyncDhanTransport",
    "Exchange",
    "RequestBuilder",
    "SdkRequest",
    "request_building_sdk",
    "sdk_headers",
]

log = logging.getLogger(__name__)

SUCCESS = "success"
FAILURE = "failure"


@dataclass(frozen=True, slots=True)
class SdkRequest:
    """One request as the SDK built it: what it handed to ``DhanHTTP.get/post/put/delete``."""

    method: str  # GET, POST, PUT, DELETE
    endpoint: str  # below the base URL, e.g. "/orders/12345"
    payload: dict[str, Any] | None = None


class RequestBuilder:
    """Stands where the SDK keeps its ``DhanHTTP``: records the request, sends nothing."""

    def get(self, endpoint: str) -> SdkRequest:
        return SdkRequest("GET", endpoint)

    def post(self, endpoint: str, payload: dict[str, Any]) -> SdkRequest:
        return SdkRequest("POST", endpoint, payload)

    def put(self, endpoint: str, payload: dict[str, Any]) -> SdkRequest:
        return SdkRequest("PUT", endpoint, payload)

    def delete(self, endpoint: str) -> SdkRequest:
        return SdkRequest("DELETE", endpoint)


class _BuildingContext:
    """What the SDK's classes ask of a ``DhanContext`` when they are built: its ``dhan_http``."""

    def __init__(self, builder: RequestBuilder) -> None:
        self._builder = builder

    def get_dhan_http(self) -> RequestBuilder:
        return self._builder


def request_building_sdk() -> dhanhq:
    """A ``dhanhq`` whose methods return the :class:`SdkRequest` they would send.

    It holds no account data (``DhanHTTP`` adds the client id and token when sending), so one
    instance can serve every account.
    """
    return dhanhq(_BuildingContext(RequestBuilder()))


def sdk_headers(client_id: str, access_token: str) -> dict[str, str]:
    """The headers of every SDK request, in the order ``requests`` writes them: a fresh
    session's defaults, then ``DhanHTTP.header`` merged in case-insensitively (its ``Accept``
    takes the default's place)."""
    merged = CaseInsensitiveDict(default_headers())
    merged.update(
        {
            "access-token": access_token,
            "client-id": client_id,
            "Content-type": "application/json",
            "Accept": "application/json",
        }
    )
    return dict(merged.items())


class ConnectionBroke(aiohttp.ClientConnectionError):
    """The connection broke under a request (reset, closed by the server): the request may
    have reached Dhan. Not one of the errors aiohttp answers by sending the request again."""

    def __init__(self, cause: aiohttp.ClientConnectionError) -> None:
        super().__init__(str(cause))
        self.cause = cause


async def _not_resent(
    request: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
) -> aiohttp.ClientResponse:
    try:
        return await handler(request)
    except (aiohttp.ClientOSError, aiohttp.ServerDisconnectedError) as exc:
        raise ConnectionBroke(exc) from exc


@dataclass(frozen=True, slots=True)
class Exchange:
    """One request and its answer, as a recorder keeps them (never the headers)."""

    method: str
    path: str  # with the query, e.g. "/v2/killswitch?killSwitchStatus=ACTIVATE"
    body: str | None
    status: int
    content: bytes


class AsyncDhanTransport:
    """One account's HTTP session to Dhan; create it once, ``await send(request)`` many times.

    ``send`` never raises for what the network or Dhan do; it answers the SDK's dict.
    """

    def __init__(
        self,
        client_id: str,
        access_token: str,
        base_url: str,
        *,
        timeout_s: float = 10.0,
        max_connections: int = 4,
        source_ip: str | None = None,
        on_exchange: Callable[[Exchange], None] | None = None,
    ) -> None:
        self._client_id = client_id
        self._base_url = base_url.rstrip("/")
        self._base_path = urlsplit(self._base_url).path
        self._headers = sdk_headers(client_id, access_token)
        # The SDK's timeout is per socket operation (requests' connect and read timeouts).
        self._timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=timeout_s, sock_read=timeout_s
        )
        # Like requests: a proxy from the environment (HTTP(S)_PROXY, ALL_PROXY, NO_PROXY),
        # looked up once for the account's base URL rather than on every request.
        self._proxy: str | None = select_proxy(
            self._base_url, get_environ_proxies(self._base_url, no_proxy=None)
        )
        self._max_connections = max(1, max_connections)
        self._source_ip = source_ip
        self._on_exchange = on_exchange
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"AsyncDhanTransport(client_id={self._client_id!r}, base_url={self._base_url!r})"

    __str__ = __repr__

    def __reduce__(self) -> Any:  # holds the token: never pickled
        raise TypeError("AsyncDhanTransport cannot be pickled")

    @property
    def source_ip(self) -> str | None:
        return self._source_ip

    def use_token(self, access_token: str) -> None:
        """Requests sent from now on carry this token (a renewed or replaced one)."""
        self._headers = sdk_headers(self._client_id, access_token)

    def _open_session(self) -> aiohttp.ClientSession:
        """The account's session, made on first use (it needs the running loop)."""
        if self._closed:
            raise RuntimeError("transport is closed")
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self._max_connections,
                # Like requests' pool: an idle connection is kept until Dhan closes it (aiohttp
                # would drop it after 15 s, and the next order would pay a new TLS handshake).
                keepalive_timeout=None,
                local_addr=(self._source_ip, 0) if self._source_ip else None,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=self._timeout,
                # Exactly the SDK's headers: aiohttp adds none of its own.
                skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding"),
                middlewares=(_not_resent,),
            )
        return self._session

    def body_of(self, request: SdkRequest) -> str | None:
        """The body ``DhanHTTP`` sends: the payload with ``dhanClientId``, as JSON text; no
        body for an empty or missing payload."""
        if not request.payload:
            return None
        payload = dict(request.payload)
        payload["dhanClientId"] = self._client_id
        return json.dumps(payload)

    async def send(self, request: SdkRequest) -> dict[str, Any]:
        """Send ``request`` as the SDK would; the SDK's ``{status, remarks, data}`` answer."""
        body = self.body_of(request)
        # http.client writes a text body as ISO-8859-1 (json.dumps output is ASCII anyway).
        data = None if body is None else body.encode("iso-8859-1")
        try:
            session = self._open_session()
            async with session.request(
                request.method,
                self._base_url + request.endpoint,
                data=data,
                headers=self._headers,
                proxy=self._proxy,
            ) as response:
                content = await response.read()
                status = response.status
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the SDK turns every transport error into a failure
            return {"status": FAILURE, "remarks": self._describe(exc), "data": ""}
        if self._on_exchange is not None:
            self._record(request, body, status, content)
        return parse_answer(status, content)

    def _describe(self, exc: Exception) -> str:
        """The failure's text, worded like requests' own where the SDK users know it."""
        if isinstance(exc, ConnectionBroke):
            exc = exc.cause
        name = type(exc).__name__
        if isinstance(exc, aiohttp.ConnectionTimeoutError):
            return f"{name}: Connect timed out. (connect timeout={self._timeout.sock_connect})"
        if isinstance(exc, aiohttp.SocketTimeoutError):
            return f"{name}: Read timed out. (read timeout={self._timeout.sock_read})"
        detail = str(exc)
        return f"{name}: {detail}" if detail else name

    def _record(self, request: SdkRequest, body: str | None, status: int, content: bytes) -> None:
        assert self._on_exchange is not None
        try:
            path = self._base_path + request.endpoint
            self._on_exchange(Exchange(request.method, path, body, status, content))
        except Exception:  # recording must never disturb a call
            log.debug("%s: recording a REST exchange failed", self._client_id)

    async def close(self) -> None:
        self._closed = True
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()


def parse_answer(status_code: int, content: bytes) -> dict[str, Any]:
    """The SDK's reading of an HTTP answer (``DhanHTTP``'s response parsing), step for step."""
    try:
        status = FAILURE
        remarks: Any = ""
        data: Any = ""
        json_response = json.loads(content)
        if 200 <= status_code <= 299:
            status = SUCCESS
            data = json_response
        else:
            remarks = {
                "error_code": json_response.get("errorCode"),
                "error_type": json_response.get("errorType"),
                "error_message": json_response.get("errorMessage"),
            }
    except Exception as exc:
        status = FAILURE
        remarks = str(exc)
    return {"status": status, "remarks": remarks, "data": data}
