"""Checks for the secrets an account may be given: its PIN and its TOTP secret.

Light on purpose (no network code): the settings validate with these while loading.
Messages never quote the value.
"""

from __future__ import annotations

import binascii
import re

import pyotp

__all__ = ["normalise_totp_secret", "pin_problem", "totp_secret_problem"]

_PIN = re.compile(r"\d{4,8}")


def normalise_totp_secret(secret: str | None) -> str | None:
    """Authenticator apps show the secret in groups, some in lower case: one upper-case run."""
    if secret is None:
        return None
    return "".join(secret.split()).replace("-", "").upper() or None


def totp_secret_problem(secret: str) -> str | None:
    """Why ``secret`` cannot make TOTP codes, or None when it can."""
    try:
        pyotp.TOTP(secret).at(0)
    except binascii.Error:
        return "is not valid base32 (letters A-Z and digits 2-7)"
    except (ValueError, TypeError):
        return "is too short for a TOTP secret (Dhan's are 32 characters of base32)"
    return None


def pin_problem(pin: str) -> str | None:
    """Why ``pin`` cannot be a Dhan PIN, or None."""
    return None if _PIN.fullmatch(pin) else "must be the Dhan PIN: 4 to 8 digits"
