"""Source-IP binding: REST calls (plain session, the SDK's DhanHTTP) and the order socket leave
from the account's own local address. On loopback every 127.0.0.x is local, so a server on
127.0.0.1 sees each bound client arrive from its own 127.0.0.x."""

from __future__ import annotations

import asyncio
import pickle
import socket
from collections.abc import Iterator
from datetime import datetime

import pytest
import requests
from dhanhq import DhanContext, dhanhq
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve

from engine.accounts.auth_api import DhanAuthApi, WhitelistedIps
from engine.accounts.source_ip import (
    SourceAddressAdapter,
    SourceIpError,
    bind_dhan_http,
    bind_session,
    check_local_address,
    socket_connect_kwargs,
)
from engine.clock import IST
from tests.unit.auth_server import AuthState
from tests.unit.auth_server import serve as serve_auth

CLIENT_ID = "2000000001"


@pytest.fixture
def state() -> AuthState:
    return AuthState(
        client_id=CLIENT_ID,
        pin="111111",
        totp_secret="JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP",
        now=lambda: datetime.now(IST),
        whitelist=("127.0.0.2", "::1"),
    )


@pytest.fixture
def base_url(state: AuthState) -> Iterator[str]:
    with serve_auth(state) as url:
        yield url


def test_bound_session_requests_arrive_from_the_source_ip(base_url: str, state: AuthState) -> None:
    with requests.Session() as session:
        bind_session(session, "127.0.0.2")
        session.get(f"{base_url}/v2/profile", timeout=5)
        session.post(f"{base_url}/v2/anything", timeout=5)
    with requests.Session() as other:
        other.get(f"{base_url}/v2/profile", timeout=5)
    assert [s.client_address for s in state.seen] == ["127.0.0.2", "127.0.0.2", "127.0.0.1"]


def test_sdk_calls_of_a_bound_context_arrive_from_the_source_ip(
    base_url: str, state: AuthState
) -> None:
    ctx = DhanContext(CLIENT_ID, "sdk-test-token")
    ctx.dhan_http.base_url = f"{base_url}/v2"
    ctx.dhan_http.timeout = 5
    bind_dhan_http(ctx.dhan_http, "127.0.0.3")
    sdk = dhanhq(ctx)
    sdk.get_fund_limits()
    sdk.get_order_list()
    assert [(s.path, s.client_address) for s in state.seen] == [
        ("/v2/fundlimit", "127.0.0.3"),
        ("/v2/orders", "127.0.0.3"),
    ]
    bind_dhan_http(ctx.dhan_http, None)  # no address: nothing changes
    assert isinstance(ctx.dhan_http.session.get_adapter("https://x"), SourceAddressAdapter)


def test_auth_calls_and_whitelist_leave_from_the_source_ip(base_url: str, state: AuthState) -> None:
    token, _ = state.issue()
    api = DhanAuthApi(
        CLIENT_ID, auth_base_url=base_url, api_base_url=f"{base_url}/v2", source_ip="127.0.0.4"
    )
    try:
        ips = api.whitelisted_ips(token)
        profile = api.profile(token)
    finally:
        api.close()
    assert ips == WhitelistedIps(primary="127.0.0.2", secondary="::1")
    assert ips.allows("127.0.0.2") and ips.allows("0:0::1") and not ips.allows("127.0.0.4")
    assert not isinstance(profile, Exception)
    assert {s.client_address for s in state.seen} == {"127.0.0.4"}
    assert state.seen[0].headers["access-token"] == token
    assert state.seen[0].headers["client-id"] == CLIENT_ID  # sent by the SDK's DhanHTTP


async def test_order_socket_leaves_from_the_source_ip() -> None:
    peers: list[str] = []

    async def handler(ws: ServerConnection) -> None:
        peers.append(ws.remote_address[0])
        await ws.send("hello")

    async with serve(handler, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        for source in ("127.0.0.2", "127.0.0.5", None):
            async with connect(
                f"ws://127.0.0.1:{port}", proxy=None, **socket_connect_kwargs(source)
            ) as ws:
                assert await asyncio.wait_for(ws.recv(), 5) == "hello"
    assert peers == ["127.0.0.2", "127.0.0.5", "127.0.0.1"]
    assert socket_connect_kwargs(None) == {}
    assert socket_connect_kwargs(" 127.0.0.2 ") == {"local_addr": ("127.0.0.2", 0)}


def test_local_address_check() -> None:
    assert check_local_address(" 127.0.0.9 ") == "127.0.0.9"
    with pytest.raises(SourceIpError) as not_here:
        check_local_address("192.0.2.10")  # TEST-NET-1: never assigned to a host
    assert "192.0.2.10 is not an address of this machine" in str(not_here.value)
    assert "\n" not in str(not_here.value)
    with pytest.raises(SourceIpError, match="not an IPv4 or IPv6 address"):
        check_local_address("my-laptop")


def test_ipv6_loopback_when_the_machine_has_it() -> None:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        with pytest.raises(SourceIpError):
            check_local_address("::1")
        return
    assert check_local_address("0:0:0:0:0:0:0:1") == "::1"


def test_adapter_keeps_its_address_through_a_pickle() -> None:
    adapter = SourceAddressAdapter("127.0.0.2")
    copy = pickle.loads(pickle.dumps(adapter))
    assert copy.source_ip == "127.0.0.2"
    assert copy.poolmanager.connection_pool_kw["source_address"] == ("127.0.0.2", 0)
