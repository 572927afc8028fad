"""The schema: versioned forward migrations, applied in order when the store opens.

``MIGRATIONS[i]`` brings a database from version i to version i + 1, each in its own
transaction, so a database left by any earlier version of the program opens and is brought up
to date; one from a newer program is refused rather than misread.
"""

from __future__ import annotations

from collections.abc import Sequence

import aiosqlite

from engine.store.connection import transaction
from engine.store.errors import StoreError
from engine.store.positions import MIGRATION as POSITIONS_MIGRATION

# MIGRATIONS[i] brings a database from version i to version i + 1. Append, never edit.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # v1: replication state.
    (
        """CREATE TABLE leader_orders (
            order_id       TEXT PRIMARY KEY,
            client_id      TEXT NOT NULL,
            status         TEXT NOT NULL,
            segment        TEXT NOT NULL,
            security_id    TEXT NOT NULL,
            correlation_id TEXT NOT NULL DEFAULT '',
            quantity       INTEGER NOT NULL,
            filled_qty     INTEGER NOT NULL,
            updated_at     TEXT,
            snapshot       TEXT NOT NULL,
            stored_at      TEXT NOT NULL
        )""",
        """CREATE TABLE mirrors (
            follower          TEXT NOT NULL,
            leader_order_id   TEXT NOT NULL,
            correlation_id    TEXT NOT NULL,
            state             TEXT NOT NULL,
            generation        INTEGER NOT NULL DEFAULT 0,
            follower_order_id TEXT NOT NULL DEFAULT '',
            broker_status     TEXT,
            params            TEXT,
            filled_qty        INTEGER NOT NULL DEFAULT 0,
            avg_price         REAL NOT NULL DEFAULT 0,
            modifications     INTEGER NOT NULL DEFAULT 0,
            reason            TEXT NOT NULL DEFAULT '',
            symbol            TEXT NOT NULL DEFAULT '',
            leader_seen_mono  REAL,
            latency_ms        REAL,
            slippage          REAL,
            updated_at        TEXT,
            PRIMARY KEY (follower, leader_order_id)
        )""",
        "CREATE INDEX mirrors_by_leader ON mirrors (leader_order_id)",
        "CREATE INDEX mirrors_by_correlation ON mirrors (correlation_id)",
        """CREATE TABLE intents (
            id                INTEGER PRIMARY KEY AUTOINCREMENT,
            follower          TEXT NOT NULL,
            leader_order_id   TEXT NOT NULL,
            kind              TEXT NOT NULL,
            correlation_id    TEXT NOT NULL,
            params            TEXT,
            follower_order_id TEXT NOT NULL DEFAULT '',
            outcome           TEXT NOT NULL,
            detail            TEXT NOT NULL DEFAULT '',
            created_at        TEXT NOT NULL,
            completed_at      TEXT,
            seq               INTEGER NOT NULL DEFAULT 0
        )""",
        "CREATE INDEX intents_by_leader ON intents (leader_order_id)",
        """CREATE INDEX intents_unfinished ON intents (id)
            WHERE outcome IN ('PENDING', 'AMBIGUOUS')""",
        """CREATE TABLE engine_state (
            id         INTEGER PRIMARY KEY CHECK (id = 1),
            state      TEXT NOT NULL,
            reason     TEXT NOT NULL DEFAULT '',
            updated_at TEXT NOT NULL
        )""",
    ),
    # v2: what the trader inspects afterwards.
    (
        """CREATE TABLE journal (
            id              INTEGER PRIMARY KEY AUTOINCREMENT,
            at              TEXT NOT NULL,
            kind            TEXT NOT NULL,
            follower        TEXT,
            leader_order_id TEXT,
            text            TEXT NOT NULL,
            seq             INTEGER NOT NULL DEFAULT 0
        )""",
        "CREATE INDEX journal_by_leader ON journal (leader_order_id)",
        """CREATE TABLE alerts (
            id              INTEGER PRIMARY KEY AUTOINCREMENT,
            at              TEXT NOT NULL,
            code            TEXT NOT NULL,
            severity        TEXT NOT NULL,
            message         TEXT NOT NULL,
            follower        TEXT,
            leader_order_id TEXT,
            count           INTEGER NOT NULL DEFAULT 1
        )""",
        """CREATE TABLE malformed_messages (
            id    INTEGER PRIMARY KEY AUTOINCREMENT,
            at    TEXT NOT NULL,
            raw   TEXT NOT NULL,
            error TEXT NOT NULL
        )""",
    ),
    # v3: fills of earlier generations of a copy that was cancelled and re-placed.
    ("ALTER TABLE mirrors ADD COLUMN prior_filled INTEGER NOT NULL DEFAULT 0",),
    # v4: why a skipped copy was skipped (some skips are reconsidered, one is not).
    ("ALTER TABLE mirrors ADD COLUMN skip_code TEXT NOT NULL DEFAULT ''",),
    # v5: safety: freezes (engine "" or one follower, per cause) and copies managed by hand.
    (
        """CREATE TABLE freezes (
            account TEXT NOT NULL,
            cause   TEXT NOT NULL,
            reason  TEXT NOT NULL DEFAULT '',
            since   TEXT NOT NULL,
            PRIMARY KEY (account, cause)
        )""",
        """CREATE TABLE hand_managed (
            follower        TEXT NOT NULL,
            leader_order_id TEXT NOT NULL,
            detached        INTEGER NOT NULL DEFAULT 0,
            reason          TEXT NOT NULL DEFAULT '',
            since           TEXT NOT NULL,
            PRIMARY KEY (follower, leader_order_id)
        )""",
    ),
    # v6: follower attach points and position ledgers (position-true sizing, issue 10).
    POSITIONS_MIGRATION,
    # v7: the orders of a copy placed in slices (above the freeze quantity), as JSON.
    ("ALTER TABLE mirrors ADD COLUMN slices TEXT NOT NULL DEFAULT ''",),
    # v8: a modification Dhan refused, not asked again (the copy stays open and followed).
    ("ALTER TABLE mirrors ADD COLUMN refused_params TEXT",),
)

SCHEMA_VERSION = len(MIGRATIONS)

_VERSION_TABLE = """CREATE TABLE IF NOT EXISTS schema_version (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL
)"""


async def migrate(
    db: aiosqlite.Connection, migrations: Sequence[Sequence[str]] = MIGRATIONS
) -> int:
    """Apply the missing migrations, each in its own transaction; returns the version."""
    await db.execute(_VERSION_TABLE)
    while True:
        async with transaction(db):
            rows = await db.execute_fetchall("SELECT version FROM schema_version WHERE id = 1")
            version = next((int(r[0]) for r in rows), 0)
            if version > len(migrations):
                raise StoreError(
                    f"the database is at schema version {version}, newer than this program"
                    f" knows ({len(migrations)}); upgrade the program"
                )
            if version == len(migrations):
                return version
            for statement in migrations[version]:
                await db.execute(statement)
            await db.execute(
                "INSERT INTO schema_version (id, version) VALUES (1, ?)"
                " ON CONFLICT (id) DO UPDATE SET version = excluded.version",
                (version + 1,),
            )
