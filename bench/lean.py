"""The lean copier: the least any copier could do, as the yardstick for ``bench.followers``.

It reads the leader's order socket, and on the first PENDING alert of a leader order (the
alert the engine copies on, and the one the figures are measured from) posts each
follower's place-order request (the JSON body the ``dhanhq`` SDK sends, with a correlationId)
on that follower's own warm keep-alive connection (aiohttp, one session per account, opened
and warmed before the orders). No store, no decision, no sizing, no rate limit: only the
bytes a copier cannot avoid. Its timings are taken at the simulator like the engine's.

Like the engine, it keeps every follower's order socket logged in (a copier must hear its
fills), reading and dropping the frames: the simulator then does the same work per order in
both runs (an alert to each follower's socket), and only the copier differs.

With a ``journal`` it is the least a copier that never places twice could do: before its
POSTs, one row naming the leader order and its copies' correlationIds, committed to SQLite
with ``synchronous=FULL`` (one fsync per leader order, on the loop: it has nothing else to
do meanwhile). The yardstick for what durability itself costs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from collections.abc import AsyncIterator, Sequence
from typing import Any

import aiohttp
import websockets

from bench.common import LOT, NIFTY_CE, Account, Completions
from engine.replication.correlation import correlation_id


class _FollowerLine:
    """One follower account: its session (one keep-alive connection) and its body template."""

    def __init__(self, account: Account, rest_url: str) -> None:
        self.account = account
        self.url = rest_url.rstrip("/") + "/orders"
        headers = {
            "access-token": account.token,
            "client-id": account.client_id,
            "Content-type": "application/json",
            "Accept": "application/json",
        }
        self.session = aiohttp.ClientSession(
            headers=headers,
            connector=aiohttp.TCPConnector(limit=1),
            timeout=aiohttp.ClientTimeout(total=30),
        )
        self.warm_url = rest_url.rstrip("/") + "/fundlimit"

    async def warm(self) -> None:
        async with self.session.get(self.warm_url) as resp:
            await resp.read()

    async def post(self, body: bytes) -> int:
        async with self.session.post(self.url, data=body) as resp:
            await resp.read()
            return resp.status

    def body(self, cid: str, price: float) -> bytes:
        return json.dumps(
            {
                "transactionType": "BUY",
                "exchangeSegment": NIFTY_CE[0],
                "productType": "INTRADAY",
                "orderType": "LIMIT",
                "validity": "DAY",
                "securityId": NIFTY_CE[1],
                "quantity": LOT,
                "disclosedQuantity": 0,
                "price": price,
                "afterMarketOrder": False,
                "boProfitValue": None,
                "boStopLossValue": None,
                "triggerPrice": 0.0,
                "correlationId": cid,
                "dhanClientId": self.account.client_id,
            }
        ).encode()


class LeanCopier:
    """Open with :func:`lean_copier`; ``answered`` notes each leader order fully copied."""

    def __init__(
        self, lines: list[_FollowerLine], price: float, journal: sqlite3.Connection | None = None
    ) -> None:
        self._lines = lines
        self._price = price
        self._journal = journal
        self._seen: set[str] = set()
        self.answered = Completions()
        self.statuses: list[int] = []

    async def read_leader(self, ws: Any) -> None:
        async for frame in ws:
            message = json.loads(frame)
            data = message.get("Data") if isinstance(message, dict) else None
            if not isinstance(data, dict):
                continue
            order_id = str(data.get("OrderNo") or data.get("orderNo") or "")
            status = str(data.get("Status") or data.get("status") or "").upper()
            # Like the engine, act on the order once Dhan has it (PENDING), not in TRANSIT.
            if order_id and status == "PENDING" and order_id not in self._seen:
                self._seen.add(order_id)
                await self._copy(order_id)

    async def _copy(self, order_id: str) -> None:
        cids = [correlation_id(order_id, line.account.name, 0) for line in self._lines]
        if self._journal is not None:  # durable before anything is sent
            self._journal.execute("INSERT INTO sent VALUES (?, ?)", (order_id, json.dumps(cids)))
        posts = [
            line.post(line.body(cid, self._price))
            for line, cid in zip(self._lines, cids, strict=True)
        ]
        self.statuses += await asyncio.gather(*posts)
        self.answered.note(order_id)


def open_journal(path: str) -> sqlite3.Connection:
    """The durable lean copier's journal: WAL, ``synchronous=FULL``, each INSERT its own commit."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = FULL")
    db.execute("CREATE TABLE IF NOT EXISTS sent (leader_order_id TEXT, correlation_ids TEXT)")
    return db


@contextlib.asynccontextmanager
async def lean_copier(
    rest_url: str,
    ws_url: str,
    leader: Account,
    followers: Sequence[Account],
    price: float,
    journal: str | None = None,
) -> AsyncIterator[LeanCopier]:
    """A started lean copier: every follower connection warm, every order socket logged in
    (``1 + len(followers)`` sockets: wait for them at the simulator before placing).
    ``journal``: a SQLite file to write durably before each leader order's POSTs."""
    lines = [_FollowerLine(f, rest_url) for f in followers]
    tasks: list[asyncio.Task[None]] = []
    db = open_journal(journal) if journal else None
    try:
        await asyncio.gather(*(line.warm() for line in lines))
        copier = LeanCopier(lines, price, db)
        async with contextlib.AsyncExitStack() as stack:
            sockets = [
                await stack.enter_async_context(_order_socket(ws_url, a))
                for a in (leader, *followers)
            ]
            tasks.append(asyncio.create_task(copier.read_leader(sockets[0]), name="lean-leader"))
            tasks += [asyncio.create_task(_drain(ws)) for ws in sockets[1:]]
            try:
                yield copier
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        await asyncio.gather(*(line.session.close() for line in lines))
        if db is not None:
            db.close()


@contextlib.asynccontextmanager
async def _order_socket(ws_url: str, account: Account) -> AsyncIterator[Any]:
    async with websockets.connect(ws_url) as ws:
        login = {"LoginReq": {"MsgCode": 42, "ClientId": account.client_id, "Token": account.token}}
        await ws.send(json.dumps(login))
        yield ws


async def _drain(ws: Any) -> None:
    async for _ in ws:
        pass
