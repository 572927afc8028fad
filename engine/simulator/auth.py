"""Dhan's token and static-IP endpoints, as the simulator answers them.

- ``POST /app/generateAccessToken?dhanClientId=&pin=&totp=`` (Dhan's auth host; dhanhq 2.3.0's
  ``DhanLogin.generate_token`` sends exactly this): a fresh token for an account set up with
  ``--totp``. The TOTP is checked with ``pyotp`` (RFC 6238, 30 s steps, one step of slack).
- ``GET /v2/RenewToken`` (headers ``access-token``, ``dhanClientId``): a fresh token for a
  working one; the old token keeps working until its own expiry.
- Both answer dhan-rs's ``TokenResponse`` shape: ``dhanClientId, dhanClientName,
  dhanClientUcc, givenPowerOfAttorney, accessToken, expiryTime`` ("YYYY-MM-DDTHH:MM:SS", IST).
- ``GET /v2/ip/getIP``: ``{primaryIP, secondaryIP, modifyDatePrimary, modifyDateSecondary}``,
  the dates being when each may next be modified (Dhan locks an IP for 7 days; the simulator
  reports that date but does not enforce it). ``POST /v2/ip/setIP`` / ``PUT /v2/ip/modifyIP``
  take ``{ip, ipFlag: PRIMARY|SECONDARY}`` and answer ``{status: "SUCCESS", message}``.

Minted tokens are JWT-shaped like Dhan's (``iss: dhan``, ``exp``, ``iat``, ``dhanClientId``)
with a random signature; they live in memory only and are never logged.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import json
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pyotp

from .errors import input_error
from .exchange import SimAccount

IP_LOCK = timedelta(days=7)
IP_FLAGS = ("PRIMARY", "SECONDARY")


@dataclass(frozen=True)
class TotpLogin:
    pin: str = field(repr=False)
    secret: str = field(repr=False)

    def verify(self, pin: str, code: str, at: datetime) -> bool:
        pin_ok = hmac.compare_digest(pin.encode(), self.pin.encode())
        code_ok = pyotp.TOTP(self.secret).verify(code, for_time=at, valid_window=1)
        return pin_ok and code_ok


def check_secret(secret: str) -> str:
    """A base32 TOTP secret, or ValueError with a message that does not repeat it."""
    cleaned = secret.replace(" ", "").upper()
    try:
        base64.b32decode(cleaned + "=" * (-len(cleaned) % 8), casefold=True)
    except (binascii.Error, ValueError):
        raise ValueError("the TOTP secret must be base32 (A-Z, 2-7)") from None
    if not cleaned:
        raise ValueError("the TOTP secret is empty")
    return cleaned


def unguessable_token() -> str:
    return secrets.token_urlsafe(32)


def _b64(data: dict[str, Any]) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def jwt_like_token(client_id: str, issued: datetime, expires: datetime) -> str:
    header = _b64({"typ": "JWT", "alg": "HS512"})
    payload = _b64(
        {
            "iss": "dhan",
            "partnerId": "",
            "exp": int(expires.timestamp()),
            "iat": int(issued.timestamp()),
            "tokenConsumerType": "SELF",
            "webhookUrl": "",
            "dhanClientId": client_id,
        }
    )
    return f"{header}.{payload}.{secrets.token_urlsafe(64)}"


def token_response(acct: SimAccount, token: str, expires: datetime) -> dict[str, Any]:
    return {
        "dhanClientId": acct.client_id,
        "dhanClientName": f"SIM USER {acct.client_id[-4:]}",
        "dhanClientUcc": f"SIM{acct.client_id[-6:]}",
        "givenPowerOfAttorney": True,
        "accessToken": token,
        "expiryTime": expires.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def ip_view(acct: SimAccount) -> dict[str, Any]:
    def next_change(flag: str) -> str:
        set_at = acct.ips_set_at.get(flag)
        return (set_at + IP_LOCK).strftime("%Y-%m-%d") if set_at else ""

    return {
        "primaryIP": acct.ips.get("PRIMARY", ""),
        "secondaryIP": acct.ips.get("SECONDARY", ""),
        "modifyDatePrimary": next_change("PRIMARY"),
        "modifyDateSecondary": next_change("SECONDARY"),
    }


def apply_ip(acct: SimAccount, body: Any, now: datetime, *, modify: bool) -> dict[str, Any]:
    """setIP (``modify=False``: the flag must be unset) or modifyIP (it must be set)."""
    if not isinstance(body, dict):
        raise input_error("Request body must be a JSON object")
    flag, ip = body.get("ipFlag"), body.get("ip")
    if flag not in IP_FLAGS:
        raise input_error(f"Invalid value for ipFlag: {flag!r} (expected PRIMARY or SECONDARY)")
    try:
        ipaddress.ip_address(str(ip))
    except ValueError:
        raise input_error(f"Invalid value for ip: {ip!r}") from None
    if modify and flag not in acct.ips:
        raise input_error(f"No {flag} IP is set; use setIP")
    if not modify and flag in acct.ips:
        raise input_error(f"A {flag} IP is already set; use modifyIP")
    acct.ips[str(flag)] = str(ip)
    acct.ips_set_at[str(flag)] = now
    word = "modified" if modify else "saved"
    return {"status": "SUCCESS", "message": f"{flag} IP {word} successfully"}
