"""Deterministic correlationIds for follower orders.

A follower order's correlationId is derived from (leader order id, follower, generation), so after
a crash or an ambiguous timeout the engine can ask Dhan ``GET /orders/external/{correlationId}``
instead of placing again. ``generation`` is bumped only when the engine deliberately places a
fresh copy of the same leader order (e.g. after the first copy was rejected).

Format: ``CPY-`` + 16 base32 characters of a SHA-256 + ``-<generation>``; at most 25 characters
of ``[A-Za-z0-9_-]`` (the stricter of the limits reported for Dhan's correlationId). The prefix
also tells the engine's orders apart from the trader's manual ones. It lives with the
replicator, which derives it, rather than in ``engine.dhan``: it is our own scheme within Dhan's
limits, and pure.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re

__all__ = [
    "MAX_GENERATION",
    "PREFIX",
    "correlation_generation",
    "correlation_id",
    "is_engine_correlation_id",
]

PREFIX = "CPY-"
_HASH_CHARS = 16
MAX_GENERATION = 9999  # keeps the id within 25 characters
_PATTERN = re.compile(r"^CPY-[A-Z2-7]{16}-(0|[1-9][0-9]{0,3})$")


@functools.lru_cache(maxsize=8192)  # asked for again by every decision on the same copy
def correlation_id(leader_order_id: str, follower: str, generation: int = 0) -> str:
    if not leader_order_id:
        raise ValueError("leader_order_id is empty")
    if not follower:
        raise ValueError("follower is empty")
    if not 0 <= generation <= MAX_GENERATION:
        raise ValueError(f"generation must be within 0..{MAX_GENERATION}, got {generation}")
    material = "\x1f".join((leader_order_id, follower, str(generation))).encode("utf-8")
    digest = hashlib.sha256(material).digest()
    # 16 base32 characters are the first 10 bytes (8 characters per 5 bytes).
    token = base64.b32encode(digest[: _HASH_CHARS * 5 // 8]).decode("ascii")
    return f"{PREFIX}{token}-{generation}"


def is_engine_correlation_id(cid: str | None) -> bool:
    return bool(cid) and _PATTERN.match(cid or "") is not None


def correlation_generation(cid: str) -> int | None:
    """The generation of one of our ids, or None when the id is not ours."""
    match = _PATTERN.match(cid)
    return int(match.group(1)) if match else None
