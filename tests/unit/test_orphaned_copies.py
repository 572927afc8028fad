"""`copytrade check`'s orphaned copies (open copies of followers no longer configured) are read
from the database and from the intents' journal: after a crash between an intent's journal
record and its rows, the newest copies are only in the journal until the engine next opens the
store, and the check must see them as the engine would."""

from __future__ import annotations

from pathlib import Path

from engine.check import Verdict, check_orphaned_copies
from engine.config import load_settings
from engine.domain import MirrorState, OrderStatus
from engine.records import MirrorRecord
from engine.store import Store
from engine.store.intent_journal import IntentJournal, JournalEntry, journal_path
from engine.store.positions import orphaned_copies
from engine.store.rows import intent_row, mirror_row
from tests.store_helpers import T0, intent, mirror, save_mirror
from tests.unit.test_config import env


def journal_only(db: Path, intent_id: int, rec: MirrorRecord) -> None:
    """A journal record the database never took (the process died before its rows)."""
    journal = IntentJournal.open(journal_path(str(db)))
    try:
        row = intent_row(intent(rec.follower, rec.leader_order_id), T0, intent_id)
        journal.append([JournalEntry(intent_id, row, mirror_row(rec))])
    finally:
        journal.close()


async def test_a_copy_only_in_the_journal_is_an_orphan(tmp_path: Path) -> None:
    db = tmp_path / "copytrade.db"
    store = await Store.open(db)
    live = mirror("beta", "L1", state=MirrorState.LIVE, follower_order_id="B-1", symbol="NIFTY")
    await save_mirror(store, live)
    await store.close()
    journal_only(db, 900, mirror("gamma", "L2"))  # PLACING: maybe at Dhan already
    journal_only(db, 901, mirror("alpha", "L2"))  # a follower still configured: not an orphan

    assert orphaned_copies(db, {"alpha"}) == [
        "beta: copy B-1 of leader order L1 (NIFTY)",
        "gamma: copy (placing) of leader order L2",
    ]


async def test_the_journal_row_is_newer_only_when_the_database_lacks_its_intent(
    tmp_path: Path,
) -> None:
    db = tmp_path / "copytrade.db"
    store = await Store.open(db)
    placing = mirror("delta", "L3")
    await store.record_intent(intent("delta", "L3"), placing)  # journaled, then in the database
    done = placing.with_changes(
        state=MirrorState.DONE, follower_order_id="D-1", broker_status=OrderStatus.TRADED
    )
    await save_mirror(store, done)  # written after it: the database's row is the latest
    live = mirror("beta", "L1", state=MirrorState.LIVE, follower_order_id="B-1")
    await save_mirror(store, live)
    await store.close()
    # A later record the database never took: beta's copy was cancelled meanwhile.
    journal_only(db, 902, live.with_changes(state=MirrorState.DONE))

    assert orphaned_copies(db, set()) == []


async def test_a_journal_record_cut_short_is_not_read(tmp_path: Path) -> None:
    db = tmp_path / "copytrade.db"
    await (await Store.open(db)).close()
    journal_only(db, 903, mirror("gamma", "L2"))
    left = cut_journal_tail(db, 5)  # an append still being written (or cut by a crash)

    assert orphaned_copies(db, set()) == []
    assert journal_bytes(db) == left  # read only: the check never repairs the file


def cut_journal_tail(db: Path, count: int) -> bytes:
    path = Path(journal_path(str(db)))
    left = path.read_bytes()[:-count]
    path.write_bytes(left)
    return left


def journal_bytes(db: Path) -> bytes:
    return Path(journal_path(str(db))).read_bytes()


async def test_an_unreadable_journal_is_one_warning_of_the_check(tmp_path: Path) -> None:
    db = tmp_path / "copytrade.db"
    await (await Store.open(db)).close()
    journal_made_unreadable(db)
    settings = load_settings(env_file=None, environ={**env(), "COPYTRADE_DB_PATH": str(db)})

    [row] = check_orphaned_copies(settings)
    assert row.verdict is Verdict.WARN and "intents journal" in row.detail


def journal_made_unreadable(db: Path) -> None:
    path = Path(journal_path(str(db)))
    path.unlink()
    path.mkdir()  # not a file: it cannot be read
