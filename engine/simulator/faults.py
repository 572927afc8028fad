"""Faults the simulator can inject, to test a client against a misbehaving Dhan.

REST faults apply to the next N requests under /v2 (optionally only those whose
"METHOD /v2/path" starts with ``match``, e.g. ``match="POST /v2/orders"``; ``fail_next`` can
and ``reset_next`` can also be limited to one account's requests with ``client_id``):
- ``fail_next(n, status=500, code="DH-908", after_accept=False)``: answer with Dhan's error
  body (``code``) without executing. With ``after_accept=True`` the request IS executed and
  the error is its answer: a Dhan that refuses in words what it did in fact (no source says
  Dhan does this; a client must not be misled if it does).
- ``delay_next(n, seconds, after_accept=False)``: hold the request before handling it; if the
  client has hung up meanwhile (its timeout), the request is dropped unexecuted. With
  ``after_accept=True`` the request IS executed first and only the answer is late: the
  ambiguous-timeout case (the client gives up, the order exists).
- ``reset_next(n, after_accept=False)``: abort the TCP connection instead of answering
  (again, ``after_accept=True`` executes the request first).

Socket faults:
- ``drop_sockets(client_id=None)``: abort every order-update socket (of one account) now.
- ``pause_delivery(client_id=None)`` / ``resume_delivery(...)``: the sockets stay open but
  silent; alerts produced meanwhile are LOST for those sockets (a real stall does not replay
  them either; a client must reconcile with GET /orders). They are listed in
  ``DhanSimulator.alerts_dropped``.
- ``duplicate_next_alerts(n)``: the next N alerts are delivered twice.
- ``reorder_next_alerts(n)``: the next N alerts are delivered with each pair swapped (an alert
  held for the swap is flushed after ``REORDER_FLUSH_SECONDS`` if no partner comes).
- ``expire_token(client_id)``: the account's tokens held now (pasted and minted) get DH-901
  from now on and its sockets are closed (4001). ``DhanSimulator.renew_token`` gives the
  account a working token again, and a token minted from PIN + TOTP afterwards works.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

REORDER_FLUSH_SECONDS = 0.25


@dataclass
class RequestFault:
    kind: str  # "fail", "delay", "reset"
    remaining: int
    match: str | None = None
    status: int = 500
    code: str = "DH-908"  # the error a "fail" answers with
    seconds: float = 0.0
    after_accept: bool = False
    client_id: str | None = None  # only this account's requests (None: every account's)

    def matches(self, method: str, path: str, client_id: str | None = None) -> bool:
        if self.client_id is not None and client_id != self.client_id:
            return False
        return self.match is None or f"{method} {path}".startswith(self.match)


class Faults:
    def __init__(
        self,
        drop_sockets: Callable[[str | None], None],
        expire_token: Callable[[str], None],
    ) -> None:
        self._drop = drop_sockets
        self._expire = expire_token
        self.request_faults: list[RequestFault] = []
        self.paused_all = False
        self.paused_clients: set[str] = set()
        self.duplicate_remaining = 0
        self.reorder_remaining = 0

    # ---- REST ---------------------------------------------------------------------------
    def fail_next(
        self,
        n: int = 1,
        status: int = 500,
        match: str | None = None,
        client_id: str | None = None,
        code: str = "DH-908",
        after_accept: bool = False,
    ) -> None:
        self.request_faults.append(
            RequestFault(
                "fail",
                int(n),
                match,
                status=int(status),
                code=code,
                after_accept=after_accept,
                client_id=client_id,
            )
        )

    def delay_next(
        self,
        n: int,
        seconds: float,
        after_accept: bool = False,
        match: str | None = None,
        client_id: str | None = None,
    ) -> None:
        self.request_faults.append(
            RequestFault(
                "delay",
                int(n),
                match,
                seconds=float(seconds),
                after_accept=after_accept,
                client_id=client_id,
            )
        )

    def reset_next(
        self,
        n: int = 1,
        after_accept: bool = False,
        match: str | None = None,
        client_id: str | None = None,
    ) -> None:
        self.request_faults.append(
            RequestFault("reset", int(n), match, after_accept=after_accept, client_id=client_id)
        )

    def take_request_fault(
        self, method: str, path: str, client_id: str | None = None
    ) -> RequestFault | None:
        """The fault (if any) that applies to this request; consumes one of its N."""
        for fault in self.request_faults:
            if fault.remaining > 0 and fault.matches(method, path, client_id):
                fault.remaining -= 1
                self.request_faults = [f for f in self.request_faults if f.remaining > 0]
                return fault
        return None

    # ---- sockets ----------------------------------------------------------------------------
    def drop_sockets(self, client_id: str | None = None) -> None:
        self._drop(client_id)

    def pause_delivery(self, client_id: str | None = None) -> None:
        if client_id is None:
            self.paused_all = True
        else:
            self.paused_clients.add(client_id)

    def resume_delivery(self, client_id: str | None = None) -> None:
        if client_id is None:
            self.paused_all = False
            self.paused_clients.clear()
        else:
            self.paused_clients.discard(client_id)

    def is_paused(self, client_id: str) -> bool:
        return self.paused_all or client_id in self.paused_clients

    def duplicate_next_alerts(self, n: int = 1) -> None:
        self.duplicate_remaining += int(n)

    def reorder_next_alerts(self, n: int = 2) -> None:
        self.reorder_remaining += int(n)

    def expire_token(self, client_id: str) -> None:
        self._expire(client_id)

    def clear(self) -> None:
        """Removes every pending fault and resumes delivery."""
        self.request_faults.clear()
        self.resume_delivery()
        self.duplicate_remaining = 0
        self.reorder_remaining = 0

    def state(self) -> dict[str, Any]:
        return {
            "requestFaults": [
                {
                    "kind": f.kind,
                    "remaining": f.remaining,
                    "match": f.match,
                    "status": f.status,
                    "seconds": f.seconds,
                    "afterAccept": f.after_accept,
                }
                for f in self.request_faults
            ],
            "pausedAll": self.paused_all,
            "pausedClients": sorted(self.paused_clients),
            "duplicateRemaining": self.duplicate_remaining,
            "reorderRemaining": self.reorder_remaining,
        }
