"""The one error the store raises of its own (SQLite's errors pass through unchanged)."""

from __future__ import annotations


class StoreError(Exception):
    pass
