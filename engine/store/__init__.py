"""Durable storage in SQLite: leader orders, follower copies, intents, journal, alerts.

The engine uses ``Store`` (the façade) and hands it ``WriteBatch``es; the rest of the package is
its parts, one job each:

- ``connection``: one SQLite connection through aiosqlite (PRAGMAs, its lock, transactions);
- ``schema``: the versioned migrations;
- ``serialization``: JSON by pydantic's TypeAdapter (also the headless log's), redacted;
- ``rows``: records to rows and back;
- ``writes``: the write transactions and ``WriteBatch``;
- ``write_line``: writes in call order across both connections, group commit of intents;
- ``reads`` and ``timeline``: the read side.
"""

from engine.store.errors import StoreError
from engine.store.facade import Store
from engine.store.schema import MIGRATIONS, SCHEMA_VERSION
from engine.store.serialization import format_datetime, parse_datetime
from engine.store.writes import WriteBatch

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "Store",
    "StoreError",
    "WriteBatch",
    "format_datetime",
    "parse_datetime",
]
