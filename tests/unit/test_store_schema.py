"""Databases left by earlier versions of the program open, migrate and read back."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import aiosqlite
import pytest

from engine.domain import AmoTime, EngineState, MirrorState
from engine.records import Intent, IntentKind, IntentOutcome
from engine.store import MIGRATIONS, SCHEMA_VERSION, Store
from engine.store.schema import migrate
from tests.store_helpers import (
    T0,
    V4_PARAMS,
    V4_SNAPSHOT,
    get_mirror,
    mirror,
    one_value,
    params,
    schema_version,
)


def make_database(path: Path, version: int) -> None:
    """What version ``version`` of the program left behind: its tables and a few rows, with
    JSON as its hand-written codec wrote it."""
    with sqlite3.connect(path) as raw:
        raw.execute("CREATE TABLE schema_version (id INTEGER PRIMARY KEY, version INTEGER)")
        for migration in MIGRATIONS[:version]:
            for statement in migration:
                raw.execute(statement)
        raw.execute("INSERT INTO schema_version VALUES (1, ?)", (version,))
        raw.execute("INSERT INTO engine_state VALUES (1, 'KILLED', 'old', ?)", (T0.isoformat(),))
        raw.execute(
            "INSERT INTO leader_orders VALUES ('L1', '1000000001', 'PENDING', 'NSE_FNO', '52175',"
            " '', 75, 0, '2026-11-23T03:45:01+00:00', ?, ?)",
            (V4_SNAPSHOT, T0.isoformat()),
        )
        raw.execute(
            "INSERT INTO mirrors (follower, leader_order_id, correlation_id, state, params,"
            " updated_at) VALUES ('alice', 'L1', 'CPY-alice-L1', 'PLACING', ?, ?)",
            (V4_PARAMS, T0.isoformat()),
        )
        raw.execute(
            "INSERT INTO intents (follower, leader_order_id, kind, correlation_id, params,"
            " outcome, created_at, seq) VALUES ('alice', 'L1', 'PLACE', 'CPY-alice-L1', ?,"
            " 'PENDING', ?, 1)",
            (V4_PARAMS, T0.isoformat()),
        )
        raw.execute(
            "INSERT INTO journal (at, kind, leader_order_id, text, seq)"
            " VALUES (?, 'leader', 'L1', 'seen', 2)",
            (T0.isoformat(),),
        )
    raw.close()


OLD_PARAMS = params(notes=("MARKET sent as LIMIT",), amo=True, amo_time=AmoTime.PRE_OPEN)


@pytest.mark.parametrize("version", [2, 3, 4, 7])
async def test_a_database_of_an_earlier_version_opens_and_reads(
    tmp_path: Path, version: int
) -> None:
    path = tmp_path / f"v{version}.db"
    make_database(path, version)
    async with await Store.open(path) as s:
        assert await schema_version(s) == SCHEMA_VERSION
        assert await s.get_engine_state() == (EngineState.KILLED, "old")
        [leader] = await s.leader_orders()
        assert leader.order_id == "L1" and leader.amo_time is AmoTime.OPEN_30
        assert await s.mirrors() == [
            mirror(params=OLD_PARAMS, prior_filled=0, skip_code="", state=MirrorState.PLACING)
        ]
        [pending] = await s.unfinished_intents()
        assert (pending.params, pending.outcome) == (OLD_PARAMS, IntentOutcome.PENDING)
        assert [e.kind for e in await s.timeline("L1")] == ["intent", "leader"]
        # And it takes new rows after the ones it inherited.
        later = await s.record_intent(Intent("bob", "L1", IntentKind.PLACE, "C2", None))
        assert later.id == pending.id + 1
        assert [e.text[:4] for e in await s.timeline("L1")][-1] == "PLAC"
        assert await get_mirror(s, "alice", "L1") is not None
    async with await Store.open(path) as s:  # reopening applies nothing twice
        assert await schema_version(s) == SCHEMA_VERSION


async def test_a_migration_added_later_applies_once_and_keeps_the_rows(tmp_path: Path) -> None:
    path = tmp_path / "v4.db"
    make_database(path, 4)
    later = (*MIGRATIONS, ("ALTER TABLE mirrors ADD COLUMN note TEXT NOT NULL DEFAULT 'x'",))
    async with aiosqlite.connect(path, isolation_level=None) as db:
        assert await migrate(db, later) == len(later)
        assert await migrate(db, later) == len(later)
        assert list(await db.execute_fetchall("SELECT follower, note FROM mirrors")) == [
            ("alice", "x")
        ]
        assert await one_value(db, "SELECT version FROM schema_version") == len(later)


async def test_a_failing_migration_leaves_the_database_at_its_version(tmp_path: Path) -> None:
    path = tmp_path / "v4.db"
    make_database(path, SCHEMA_VERSION)
    broken = (*MIGRATIONS, ("ALTER TABLE mirrors ADD COLUMN n INTEGER", "NOT SQL AT ALL"))
    async with aiosqlite.connect(path, isolation_level=None) as db:
        with pytest.raises(sqlite3.OperationalError):
            await migrate(db, broken)
        assert await one_value(db, "SELECT version FROM schema_version") == SCHEMA_VERSION
        columns = [r[1] for r in await db.execute_fetchall("PRAGMA table_info(mirrors)")]
        assert "n" not in columns  # the half-done migration was rolled back
