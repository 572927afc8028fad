"""Fan-out of one leader order: every follower's intent is durable before any copy is sent.

The intents of one leader event share one journal record (engine.store.intent_journal); a
broker call for any follower happens only once all of them are on disk. Seen from outside: a
wrapping broker reads the intents' journal file at the moment each ``place`` is called.
"""

from __future__ import annotations

from pathlib import Path
from typing import cast

from engine.dhan.errors import BrokerResult
from engine.domain import OrderParams
from engine.engine import Broker, default_broker_factory
from engine.store.intent_journal import decode, journal_path
from tests.e2e.conftest import ALPHA, BETA, WorldFactory


class CommittedAtSend:
    """A follower's broker that notes, at each ``place``, which intents of that copy's leader
    order the journal on disk already holds."""

    def __init__(self, inner: Broker, db: Path, seen: dict[str, set[str]]) -> None:
        self._inner = inner
        self._journal = Path(journal_path(str(db)))
        self._seen = seen

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)

    async def place(self, params: OrderParams) -> BrokerResult:
        cid = params.correlation_id or ""
        records, _ = decode(self._journal.read_bytes())  # read at the moment of the send
        rows = [e.intent for record in records for e in record]  # (follower, leader, kind, cid..)
        leader_ids = [row[1] for row in rows if row[3] == cid]
        self._seen[cid] = {
            row[0] for row in rows if leader_ids and row[1] == leader_ids[0] and row[2] == "PLACE"
        }
        return await self._inner.place(params)


async def test_every_followers_intent_is_committed_before_the_first_copy_is_sent(
    make_world: WorldFactory, tmp_path: Path
) -> None:
    seen: dict[str, set[str]] = {}
    db = tmp_path / "engine.db"

    def factory(account: str, cid: str, tok: str, url: str, timeout: float) -> Broker:
        inner = default_broker_factory(account, cid, tok, url, timeout)
        return inner if account == "leader" else cast(Broker, CommittedAtSend(inner, db, seen))

    world = await make_world(
        followers=[
            {"name": "alpha", "client_id": ALPHA[0], "access_token": ALPHA[1]},
            {"name": "beta", "client_id": BETA[0], "access_token": BETA[1]},
        ],
        broker_factory=factory,
    )
    for price in (200.0, 201.0, 202.0):
        world.place(price=price)
    await world.follower_order("alpha", 3)
    await world.follower_order("beta", 3)
    await world.settle()
    assert len(seen) == 6
    # At every send, both followers' intents for that leader order were already on disk.
    assert all(followers == {"alpha", "beta"} for followers in seen.values()), seen
