"""The intents' journal: an intent is durable once its record is on disk, whatever the database
then does. A record cut short is never read back (it was never acknowledged); what the database
lost is put back, with its mirror row, when the store opens; what it cannot take yet is written
before its next write, and nothing written after an intent lands before it."""

from __future__ import annotations

import asyncio
import errno
import os
import sqlite3
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from engine.domain import MirrorState
from engine.records import Intent
from engine.store import Store, WriteBatch, intent_writer
from engine.store.errors import StoreError
from engine.store.intent_journal import IntentJournal, JournalEntry, decode, encode, journal_path
from engine.store.rows import MIRROR_COLUMN_COUNT
from tests.store_helpers import get_mirror, intent, mirror, run_until_killed


def entry(n: int) -> JournalEntry:
    return JournalEntry(n, (f"f{n}", "L1", "PLACE", f"C{n}", None, "", "PENDING", "", "t", n), None)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await Store.open(tmp_path / "copytrade.db")
    yield s
    await s.close()


def journal_records(tmp_path: Path) -> list[list[int]]:
    records, _ = decode(Path(journal_path(str(tmp_path / "copytrade.db"))).read_bytes())
    return [[e.intent_id for e in r] for r in records]


# --- the file ----------------------------------------------------------------------------------


def test_records_read_back_as_written_and_stop_at_the_first_damaged_one() -> None:
    first, second = encode([entry(1), entry(2)]), encode([entry(3)])
    records, size = decode(first + second)
    assert [[e.intent_id for e in r] for r in records] == [[1, 2], [3]]
    assert records[0][0] == entry(1)  # rows come back as the tuples they were
    assert size == len(first + second)
    for cut in (1, 7, 8, len(second) - 1):  # an append cut short anywhere: never acknowledged
        records, size = decode(first + second[:cut])
        assert ([[e.intent_id for e in r] for r in records], size) == ([[1, 2]], len(first))
    damaged = bytearray(first + second)
    damaged[len(first) + 12] ^= 0xFF
    assert decode(bytes(damaged))[1] == len(first)


def test_an_append_cut_short_is_dropped_when_the_journal_opens(tmp_path: Path) -> None:
    path = str(tmp_path / "j")
    Path(path).write_bytes(encode([entry(1)]) + encode([entry(2)])[:-3])
    journal = IntentJournal.open(path)
    try:
        assert [e.intent_id for e in journal.entries] == [1]
        journal.append([entry(3)])  # after the last whole record, not after the torn bytes
    finally:
        journal.close()
    assert [[e.intent_id for e in r] for r in decode(Path(path).read_bytes())[0]] == [[1], [3]]


def test_a_failed_append_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = str(tmp_path / "j")
    journal = IntentJournal.open(path)
    try:
        journal.append([entry(1)])

        def full(fd: int) -> None:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        monkeypatch.setattr(os, "fdatasync", full)
        with pytest.raises(StoreError, match="No space left"):
            journal.append([entry(2)])
        monkeypatch.undo()
        journal.append([entry(3)])
    finally:
        journal.close()
    assert [[e.intent_id for e in r] for r in decode(Path(path).read_bytes())[0]] == [[1], [3]]


# --- through the store -------------------------------------------------------------------------


async def test_a_failed_journal_write_refuses_the_intents_and_the_next_ones_go_through(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fdatasync", full)
    results = await asyncio.gather(
        store.record_intent(intent("alice"), mirror("alice")),
        store.record_intent(intent("bob"), mirror("bob")),
        return_exceptions=True,
    )
    assert all(isinstance(r, StoreError) for r in results)  # not durable: not sent
    monkeypatch.undo()
    ok = await store.record_intent(intent("carol"), mirror("carol"))
    assert await store.unfinished_intents() == [ok]
    assert journal_records(tmp_path) == [[ok.id]]
    assert [m.follower for m in await store.mirrors()] == ["carol"]


async def test_an_intent_the_database_would_refuse_is_never_journaled(
    store: Store, tmp_path: Path
) -> None:
    bad = mirror("bad")
    object.__setattr__(bad, "follower", None)
    results = await asyncio.gather(
        store.record_intent(intent("alice"), mirror("alice")),
        store.record_intent(intent("bad"), bad),
        return_exceptions=True,
    )
    assert isinstance(results[1], sqlite3.IntegrityError)
    assert "mirrors.follower" in str(results[1])
    assert isinstance(results[0], Intent)
    assert journal_records(tmp_path) == [[results[0].id]]


async def test_what_the_database_lost_is_put_back_with_its_mirror(tmp_path: Path) -> None:
    """As after a power cut that took the last commits of the database but not the journal,
    which was fdatasynced before the copies were sent."""
    path = tmp_path / "copytrade.db"
    async with await Store.open(path) as s:
        kept = await s.record_intent(intent("alice"), mirror("alice"))
        lost = await asyncio.gather(
            s.record_intent(intent("bob"), mirror("bob")),
            s.record_intent(intent("carol"), mirror("carol")),
        )
    with sqlite3.connect(path) as raw:
        raw.execute("DELETE FROM intents WHERE follower != 'alice'")
        raw.execute("DELETE FROM mirrors WHERE follower != 'alice'")
    async with await Store.open(path) as s:
        assert await s.unfinished_intents() == [kept, *lost]
        assert await get_mirror(s, "bob", "L1") == mirror("bob")
        later = await s.record_intent(intent("dave"), mirror("dave"))
        assert later.id > max(i.id for i in lost)  # an id is never given twice
        assert journal_records(tmp_path) == [[later.id]]  # emptied once put back


def _rewrite_as_the_previous_version(journal: Path) -> None:
    """Its mirror rows without the column added last (``refused_params``)."""
    records, _ = decode(journal.read_bytes())
    older = [
        JournalEntry(e.intent_id, e.intent, None if e.mirror is None else e.mirror[:-1])
        for record in records
        for e in record
    ]
    assert older
    assert all(e.mirror is None or len(e.mirror) == MIRROR_COLUMN_COUNT - 1 for e in older)
    journal.write_bytes(encode(older))


async def test_a_journal_the_previous_version_wrote_is_put_back(tmp_path: Path) -> None:
    """Its mirror rows lack the columns added since (an upgrade right after a power cut)."""
    path = tmp_path / "copytrade.db"
    async with await Store.open(path) as s:
        await s.record_intent(intent("alice"), mirror("alice"))
        lost = await s.record_intent(intent("bob"), mirror("bob"))
    _rewrite_as_the_previous_version(Path(journal_path(str(path))))
    with sqlite3.connect(path) as raw:
        raw.execute("DELETE FROM intents WHERE follower = 'bob'")
        raw.execute("DELETE FROM mirrors WHERE follower = 'bob'")
    async with await Store.open(path) as s:
        assert lost in await s.unfinished_intents()
        assert await get_mirror(s, "bob", "L1") == mirror("bob")


async def test_an_intent_the_database_had_is_left_as_the_database_has_it(
    tmp_path: Path,
) -> None:
    path = tmp_path / "copytrade.db"
    async with await Store.open(path) as s:
        stored = await s.record_intent(intent(), mirror(state=MirrorState.PLACING))
        live = mirror(state=MirrorState.LIVE, follower_order_id="F1")
        await s.write_batch(WriteBatch(mirrors=[live]))
    async with await Store.open(path) as s:
        assert await s.unfinished_intents() == [stored]
        assert await get_mirror(s, "alice", "L1") == live  # not the older row of the journal


async def test_a_locked_database_then_free_keeps_the_order_of_the_writes(
    store: Store, tmp_path: Path
) -> None:
    """Another process holds the database's write lock past the intents' busy timeout."""
    await store._intent_writer.run(lambda db: db.execute("PRAGMA busy_timeout = 50").fetchall())
    locker = sqlite3.connect(tmp_path / "copytrade.db", isolation_level=None)
    try:
        locker.execute("BEGIN IMMEDIATE")
        stored = await store.record_intent(intent(), mirror(state=MirrorState.PLACING))
        assert journal_records(tmp_path) == [[stored.id]]  # durable: its copy may be sent
        await store.written()
        assert store._line.unstored == 1
        live = mirror(state=MirrorState.LIVE, follower_order_id="F1")
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            await store.write_batch(WriteBatch(mirrors=[live]))  # never before the intent's rows
        locker.execute("ROLLBACK")
    finally:
        locker.close()
    await store.write_batch(WriteBatch(mirrors=[live]))
    assert store._line.unstored == 0
    assert await store.unfinished_intents() == [stored]
    assert await get_mirror(store, "alice", "L1") == live


async def test_the_journal_is_emptied_once_the_database_durably_has_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(intent_writer, "COMPACT_AT_BYTES", 1)  # at every chance
    path = tmp_path / "copytrade.db"
    async with await Store.open(path) as s:
        first = await s.record_intent(intent("alice"), mirror("alice"))
        await s.written()
        assert journal_records(tmp_path) == []
        second = await s.record_intent(intent("bob"), mirror("bob"))
        assert journal_records(tmp_path) == [[second.id]]
    async with await Store.open(path) as s:
        assert await s.unfinished_intents() == [first, second]


CRASH_SCRIPT = textwrap.dedent(
    """
    import asyncio, os, signal, sys
    from engine.records import Intent, IntentKind
    from engine.store import Store

    async def main():
        store = await Store.open(sys.argv[1])
        await asyncio.gather(*(
            store.record_intent(Intent(f"f{n}", "L1", IntentKind.PLACE, f"C{n}", None))
            for n in range(5)
        ))
        os.kill(os.getpid(), signal.SIGKILL)  # the copies would be sent now; rows not written

    asyncio.run(main())
    """
)


def test_intents_journaled_survive_a_kill_9_before_their_rows_are_written(
    tmp_path: Path,
) -> None:
    path = tmp_path / "crash.db"
    run_until_killed(CRASH_SCRIPT, path)
    with sqlite3.connect(path) as raw:
        assert raw.execute("SELECT count(*) FROM intents").fetchone()[0] == 0

    async def check() -> None:
        async with await Store.open(path) as s:
            pending = await s.unfinished_intents()
            assert sorted(i.follower for i in pending) == [f"f{n}" for n in range(5)]

    asyncio.run(check())


async def test_a_journal_that_cannot_be_opened_stops_the_store_with_one_line(
    tmp_path: Path,
) -> None:
    path = tmp_path / "copytrade.db"
    os.mkdir(journal_path(str(path)))  # not a file: nothing could be journaled
    with pytest.raises(StoreError, match=r"cannot open the intents journal .*: Is a directory"):
        await Store.open(path)
