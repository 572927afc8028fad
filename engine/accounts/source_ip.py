"""Make every connection of one account leave from its own local address (its static IP).

Dhan accepts orders only from an account's whitelisted IP, and wants a distinct IP per person.
On a machine that holds several addresses, each account's REST calls and order socket are
bound to the account's ``source_ip``:

- REST: :func:`bind_session` mounts a :class:`SourceAddressAdapter` on a ``requests.Session``
  for ``http://`` and ``https://``; the SDK keeps its session in ``DhanHTTP.session``, so
  ``bind_dhan_http(ctx.dhan_http, ip)`` binds every SDK call of that account.
- Socket: :func:`socket_connect_kwargs` returns the keyword arguments for
  ``websockets.connect`` (``local_addr`` goes through to ``loop.create_connection``).

:func:`check_local_address` says whether this machine can send from an address at all.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from typing import Any, Protocol

import requests
from requests.adapters import HTTPAdapter
from urllib3.poolmanager import ProxyManager

__all__ = [
    "SourceAddressAdapter",
    "SourceIpError",
    "bind_dhan_http",
    "bind_session",
    "check_local_address",
    "normalise_address",
    "refused_for_ip",
    "socket_connect_kwargs",
]


class SourceIpError(ValueError):
    """The address cannot be used as a source address here. ``str(err)`` is one line."""


def normalise_address(text: str) -> str:
    """The canonical text of an IPv4/IPv6 address; SourceIpError if it is not one."""
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        raise SourceIpError(f"{text.strip()!r} is not an IPv4 or IPv6 address") from None


def check_local_address(text: str) -> str:
    """The normalised address if this machine can send from it; SourceIpError otherwise.

    Binding a throw-away socket to (address, 0) is the one test the kernel itself applies.
    """
    address = normalise_address(text)
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.bind((address, 0))
    except OSError as exc:
        raise SourceIpError(
            f"{address} is not an address of this machine (cannot send from it: "
            f"{exc.strerror or exc})"
        ) from None
    return address


class SourceAddressAdapter(HTTPAdapter):
    """A requests adapter whose connections are opened from ``source_ip`` (any free port)."""

    def __init__(self, source_ip: str, **kwargs: Any) -> None:
        # Set before super().__init__, which builds the pool manager.
        self.source_ip = normalise_address(source_ip)
        super().__init__(**kwargs)

    def init_poolmanager(
        self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any
    ) -> None:
        pool_kwargs["source_address"] = (self.source_ip, 0)
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> ProxyManager:
        proxy_kwargs["source_address"] = (self.source_ip, 0)
        manager: ProxyManager = super().proxy_manager_for(proxy, **proxy_kwargs)
        return manager

    def __setstate__(self, state: dict[str, Any]) -> None:
        # HTTPAdapter pickles only its __attrs__; keep the address across a copy.
        source_ip = state.pop("source_ip", None)
        if source_ip is not None:
            self.source_ip = source_ip
        super().__setstate__(state)

    def __getstate__(self) -> dict[str, Any]:
        state: dict[str, Any] = super().__getstate__()
        state["source_ip"] = self.source_ip
        return state


def bind_session(session: requests.Session, source_ip: str, **adapter_kwargs: Any) -> None:
    """Every request of ``session`` (http and https) now leaves from ``source_ip``."""
    adapter = SourceAddressAdapter(source_ip, **adapter_kwargs)
    session.mount("http://", adapter)
    session.mount("https://", adapter)


class _HasSession(Protocol):
    session: requests.Session


def bind_dhan_http(http: _HasSession, source_ip: str | None) -> None:
    """Bind the SDK's ``DhanHTTP`` (``ctx.dhan_http``) to the account's address; None: no-op.

    Every SDK mixin of that account shares this one DhanHTTP, so this binds all its REST calls.
    """
    if source_ip:
        bind_session(http.session, source_ip)


def socket_connect_kwargs(source_ip: str | None) -> dict[str, Any]:
    """Extra keyword arguments for ``websockets.connect`` so the socket leaves from the address.

    ``websockets`` passes unknown keyword arguments to ``loop.create_connection``, whose
    ``local_addr`` is the local (address, port) to bind. Empty without an address.
    """
    if not source_ip:
        return {}
    return {"local_addr": (normalise_address(source_ip), 0)}


_IP_WORDS = re.compile(r"\bIP\b|whitelist", re.IGNORECASE)


def refused_for_ip(error_code: str, message: str) -> bool:
    """Dhan refused an order for the address it came from: DH-911 (Invalid IP), or DH-905 /
    DH-906 whose message speaks of the IP (both seen in the wild, facts §4)."""
    code = error_code.strip().upper()
    if code == "DH-911":
        return True
    return code in ("DH-905", "DH-906") and bool(_IP_WORDS.search(message))
