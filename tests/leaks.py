"""Is a secret in this text? The one check every canary test uses.

A secret made only of digits (a PIN) counts as leaked only as a standalone number: a 4-digit
PIN such as "9173" is found by plain substring search inside any timestamp or price
("5665.169917321"), which says nothing about a leak; nor does a decimal number whose whole
part it is (a monotonic clock 9173 s after boot records "9173.096..."). Every other secret
(tokens, TOTP secrets) is searched for as plain text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable


def _standalone(secret: str) -> str:
    return rf"(?<![\d.]){re.escape(secret)}(?!\.?\d)"


def secret_in(secret: str, text: str) -> bool:
    if secret.isdigit():
        return re.search(_standalone(secret), text) is not None
    return secret in text


def secret_in_bytes(secret: str, data: bytes) -> bool:
    if secret.isdigit():
        return re.search(_standalone(secret).encode(), data) is not None
    return secret.encode() in data


def leaked_secrets(secrets: Iterable[str], text: str) -> list[str]:
    """The secrets found in ``text`` (the test's failure message should not print them)."""
    return [secret for secret in secrets if secret_in(secret, text)]
