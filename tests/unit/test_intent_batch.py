"""The intents of one leader event, recorded together, share one commit: each gets its own id,
its row and its mirror, whatever the batch's size (several INSERT statements past 500)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from engine.records import Intent
from engine.secrets import clear_secrets, register_secret
from engine.store import Store
from engine.store.rows import params_json
from tests.store_helpers import get_intent, get_mirror, intent, mirror, params


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await Store.open(tmp_path / "copytrade.db")
    yield s
    await s.close()


@pytest.mark.parametrize("followers", [2, 200, 1201])
async def test_a_fan_out_gets_one_id_per_intent_and_its_mirror(
    store: Store, followers: int
) -> None:
    names = [f"f{i:04d}" for i in range(followers)]
    stored = await asyncio.gather(*(store.record_intent(intent(n), mirror(n)) for n in names))
    assert [i.follower for i in stored] == names
    assert len({i.id for i in stored}) == followers
    for record in (stored[0], stored[followers // 2], stored[-1]):
        assert await get_intent(store, record.id) == record
        found = await get_mirror(store, record.follower, "L1")
        assert found is not None and found.correlation_id == record.correlation_id
    assert sorted(await store.unfinished_intents(), key=lambda i: i.id) == sorted(
        stored, key=lambda i: i.id
    )


async def test_a_refused_row_fails_alone_in_a_large_batch(store: Store) -> None:
    bad = mirror("f0007")
    object.__setattr__(bad, "follower", None)  # its mirror upsert is refused (NOT NULL)
    names = [f"f{i:04d}" for i in range(30)]
    results = await asyncio.gather(
        *(store.record_intent(intent(n), bad if n == "f0007" else mirror(n)) for n in names),
        return_exceptions=True,
    )
    refused = [n for n, r in zip(names, results, strict=True) if not isinstance(r, Intent)]
    assert refused == ["f0007"]
    assert len(await store.unfinished_intents()) == 29


def test_params_text_is_made_once_but_never_outlives_a_new_secret() -> None:
    clear_secrets()
    try:
        p = dataclasses.replace(params(), correlation_id="CPY-SECRETLOOKING-0")
        first = params_json(p)
        assert params_json(dataclasses.replace(p)) is first  # equal params: the same text
        assert "CPY-SECRETLOOKING-0" in first
        register_secret("SECRETLOOKING")
        assert "SECRETLOOKING" not in params_json(p)
    finally:
        clear_secrets()


async def test_the_intents_connection_never_pays_for_a_checkpoint(store: Store) -> None:
    """The intents' rows follow their copies' sends; copying the WAL into the database is left
    to the store's other connection. Their commit need not be fsynced: the journal is."""
    pragmas = await store._intent_writer.run(
        lambda db: [
            db.execute(f"PRAGMA {name}").fetchone()[0]
            for name in ("wal_autocheckpoint", "synchronous", "journal_mode")
        ]
    )
    assert pragmas == [0, 1, "wal"]  # 1: NORMAL
