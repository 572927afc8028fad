"""The intents' journal: the file that makes an intent durable before its copy is sent.

Every copy waits for its intent to be on disk, so this write sits on every copy's path. A
SQLite commit of a fan-out's intents writes about thirteen pages (the rows, their indexes and
the mirrors: ~53 KB at 10 followers) and cost ~1 ms of CPU and ~1.6 ms in all; the journal
appends one record of a few KB and fdatasyncs it (~0.6 ms). The rows reach the database
behind it (``engine.store.write_line``), and whatever the database does not have when the
store next opens is put back from here (``engine.store.intent_writer``).

A record is a little-endian u32 length, the u32 CRC-32 of the payload, and the payload: JSON,
``[[id, intent row, mirror row or null], ...]``. A record cut short or damaged ends what is
read: it was never acknowledged (its fdatasync never returned), so its copies were never sent.

Plain file I/O, run only on the intents' own thread.
"""

from __future__ import annotations

import json
import logging
import os
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from engine.store.errors import StoreError
from engine.store.rows import mirror_row_completed

log = logging.getLogger(__name__)

Row = tuple[Any, ...]
_HEADER = struct.Struct("<II")  # payload length, CRC-32 of the payload


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One intent as journaled: its id (given before the database has the row), its row and
    the mirror row written with it."""

    intent_id: int
    intent: Row
    mirror: Row | None


def journal_path(database: str) -> str:
    """Beside the database, as SQLite's own ``-wal``: moved, copied or deleted with it."""
    return database + "-intents"


def encode(entries: Sequence[JournalEntry]) -> bytes:
    payload = json.dumps(
        [[e.intent_id, e.intent, e.mirror] for e in entries],
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode()
    return _HEADER.pack(len(payload), zlib.crc32(payload)) + payload


def decode(data: bytes) -> tuple[list[list[JournalEntry]], int]:
    """The records (each the entries of one append) that are whole and intact from the start,
    and how many bytes they take; reading stops at the first record cut short or damaged."""
    records: list[list[JournalEntry]] = []
    at = 0
    while at + _HEADER.size <= len(data):
        length, crc = _HEADER.unpack_from(data, at)
        payload = data[at + _HEADER.size : at + _HEADER.size + length]
        if len(payload) < length or zlib.crc32(payload) != crc:
            break
        try:
            record = [
                JournalEntry(
                    int(i),
                    tuple(intent),
                    None if mirror is None else mirror_row_completed(tuple(mirror)),
                )
                for i, intent, mirror in json.loads(payload)
            ]
        except (ValueError, TypeError):  # a CRC that matches nonsense: stop there as well
            break
        records.append(record)
        at += _HEADER.size + length
    return records, at


def read_entries(path: str) -> list[JournalEntry]:
    """The entries of the journal's whole records, read without touching the file (a look from
    outside the engine, such as ``copytrade check``, while it may be running); none when there
    is no journal. A record still being appended is not whole yet and is not read."""
    try:
        with open(path, "rb") as file:
            data = file.read()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise StoreError(f"cannot read the intents journal {path}: {exc.strerror}") from exc
    records, _ = decode(data)
    return [entry for record in records for entry in record]


class IntentJournal:
    """Open with ``IntentJournal.open(path)``: it reads what is there; ``append`` returns once
    the record is on disk."""

    def __init__(self, path: str, fd: int, entries: list[JournalEntry], size: int) -> None:
        self.path = path
        self._fd = fd
        self.entries = entries  # read at open: what the database may lack
        self._size = size  # the end of the last whole record: a failed append is cut back here
        self._broken = False  # a failed append could not be cut back: nothing more is taken

    @classmethod
    def open(cls, path: str) -> IntentJournal:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise StoreError(f"cannot open the intents journal {path}: {exc.strerror}") from exc
        try:
            data = _read_all(fd)
            records, size = decode(data)
            if size < len(data):
                # The last append was cut short (a crash inside it): never acknowledged.
                log.warning(
                    "intents journal %s: %d bytes after the last whole record ignored "
                    "(an append the process did not finish; nothing of it was sent)",
                    path,
                    len(data) - size,
                )
                os.ftruncate(fd, size)
            os.lseek(fd, size, os.SEEK_SET)
            _sync_directory(path)  # the file itself survives a power cut from now on
        except OSError as exc:
            os.close(fd)
            raise StoreError(f"cannot read the intents journal {path}: {exc.strerror}") from exc
        return cls(path, fd, [entry for record in records for entry in record], size)

    def append(self, entries: Sequence[JournalEntry]) -> None:
        """Write one record and fdatasync it: on return the entries survive a crash or a power
        cut. On failure nothing of the record is kept, and ``StoreError`` says why."""
        if self._broken:
            raise StoreError("the intents journal could not be repaired after a failed write")
        record = encode(entries)
        try:
            written = 0
            while written < len(record):
                written += os.write(self._fd, record[written:])
            os.fdatasync(self._fd)
        except OSError as exc:
            self._cut_back()
            raise StoreError(f"cannot write the intents journal: {exc.strerror}") from exc
        self._size += len(record)

    def reset(self) -> None:
        """Empty it (every entry is durably in the database)."""
        try:
            os.ftruncate(self._fd, 0)
            os.lseek(self._fd, 0, os.SEEK_SET)
            os.fsync(self._fd)
        except OSError as exc:
            raise StoreError(f"cannot empty the intents journal: {exc.strerror}") from exc
        self._size = 0
        self.entries = []

    @property
    def size(self) -> int:
        return self._size

    def close(self) -> None:
        os.close(self._fd)

    def _cut_back(self) -> None:
        try:
            os.ftruncate(self._fd, self._size)
            os.lseek(self._fd, self._size, os.SEEK_SET)
        except OSError:
            # Left with a partial record at its end: the next append would follow it and be
            # lost behind it at the next read. So no append is taken any more.
            log.exception("could not cut the intents journal back after a failed write")
            self._broken = True


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


def _sync_directory(path: str) -> None:
    fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
