"""The control channel's contract: what a controllable engine offers and how it is asked.

One request per connection, one JSON object per line each way:

    -> {"v": 1, "command": "status"}
    -> {"v": 1, "command": "kill", "reason": "..."}
    -> {"v": 1, "command": "resume", "replace_open": true}
    -> {"v": 1, "command": "resync"}
    -> {"v": 1, "command": "uncopied"}
    -> {"v": 1, "command": "token_set", "account": "alpha", "token": "..."}
    <- {"ok": true, "result": {...}}
    <- {"ok": false, "error": "one line"}

Every answer goes through `engine.secrets.redact_json`, so even a mistake upstream cannot put a
registered token on the wire. A `token_set` request's token is registered as a secret the
moment it is read and held as a `SecretStr` (never in a repr, a log line or an answer).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from datetime import datetime
from enum import Enum, StrEnum
from typing import Any, Protocol, runtime_checkable

from pydantic import SecretStr

from engine.accounts.tokens import ReplaceOutcome
from engine.secrets import redact_json, register_secret
from engine.views import RecoveryReport, SyncPreview, SyncReport

__all__ = [
    "MAX_LINE_BYTES",
    "PROTOCOL_VERSION",
    "Command",
    "ControlRefused",
    "ControlledEngine",
    "ProtocolError",
    "Request",
    "ResumeReport",
    "TokenSetting",
    "UncopiedOrder",
    "decode_request",
    "encode_error",
    "encode_request",
    "encode_result",
    "to_wire",
]

PROTOCOL_VERSION = 1
MAX_LINE_BYTES = 64 * 1024  # a request is a few dozen bytes; anything near this is not ours
MAX_REASON_CHARS = 200


class Command(StrEnum):
    STATUS = "status"
    KILL = "kill"
    RESUME = "resume"
    RESYNC = "resync"
    UNCOPIED = "uncopied"
    TOKEN_SET = "token_set"  # a new access token for one account, used at once
    SYNC_PREVIEW = "sync_preview"  # the orders a position sync would place (none placed)
    SYNC_APPLY = "sync_apply"  # place them: the trader confirmed (`copytrade sync --yes`)
    UNFREEZE = "unfreeze"  # the trader clears freezes: one account's ("engine"), or all


@dataclass(frozen=True, slots=True)
class UncopiedOrder:
    """An open leader order that some followers have no working copy of (cancelled by a
    kill, or placed while the engine was killed or frozen)."""

    leader_order_id: str
    symbol: str  # trading symbol, else the security id
    side: str  # BUY / SELL
    order_type: str  # LIMIT, MARKET, STOP_LOSS, STOP_LOSS_MARKET
    quantity: int  # the leader's remaining quantity
    price: float = 0.0
    trigger_price: float = 0.0
    followers: tuple[str, ...] = ()  # the followers without a working copy


@dataclass(frozen=True, slots=True)
class ResumeReport:
    state: str  # the engine's state after the resume, e.g. "ARMED"
    uncopied: tuple[UncopiedOrder, ...] = ()  # still without a copy after the resume
    replaced: tuple[str, ...] = ()  # leader order ids re-placed (resume with replace_open)
    message: str = ""  # one line for the trader, may be empty


class ControlRefused(Exception):
    """Raised by the engine to refuse a command with one line for the trader
    (e.g. "the engine is not killed"); the text goes back as the error as it is."""


class ControlledEngine(Protocol):
    """What the engine implements for the control channel (and the terminal alike)."""

    def status(self) -> Mapping[str, Any]:
        """A secret-free summary: at least "state"; anything JSON-able (enums, datetimes
        and dataclasses are converted). Scalars, nested mappings and lists of mappings
        render as a table in `copytrade status`."""
        ...

    async def kill(self, reason: str) -> None:
        """The trader's kill: nothing new is sent, every open copy is cancelled."""
        ...

    async def resume(self, replace_open: bool) -> ResumeReport:
        """Back from KILLED (or a freeze the trader clears); with `replace_open` the leader's
        open orders without a copy are placed again, else only listed."""
        ...

    async def resync(self) -> RecoveryReport:
        """Read the leader's book and converge every follower now."""
        ...

    async def uncopied_orders(self) -> list[UncopiedOrder]:
        """The leader's open orders that have no working copy in some follower."""
        ...


@runtime_checkable
class TokenSetting(Protocol):
    """An engine that can take a new access token while it runs (`copytrade token set`)."""

    async def set_token(self, account: str, token: SecretStr) -> ReplaceOutcome:
        """Checked with Dhan first; refused: the old token stays. Never echoes the token."""
        ...


@runtime_checkable
class FreezeClearing(Protocol):
    """An engine whose freezes the trader can clear (`copytrade unfreeze`)."""

    async def clear_freeze(self, account: str | None) -> str:
        """Clear the freezes of `account` ("" the engine's, None all) after a resync; one
        line saying what happened."""
        ...


@runtime_checkable
class PositionSyncing(Protocol):
    """An engine that can sync followers to their target positions (`copytrade sync`)."""

    async def sync_preview(self) -> SyncPreview:
        """Per follower and instrument, the order that would bring it to its target."""
        ...

    async def sync_apply(self, preview: SyncPreview) -> SyncReport:
        """Place a confirmed preview's orders, each checked again first."""
        ...


class ProtocolError(Exception):
    """A request that cannot be understood; the message is the one error line."""


@dataclass(frozen=True, slots=True)
class Request:
    command: Command
    reason: str = ""
    replace_open: bool = False
    account: str = ""  # token_set: whose token; unfreeze: whose freezes ("" all)
    token: SecretStr | None = field(default=None, repr=False)  # token_set: the new token


MAX_ACCOUNT_CHARS = 64


def decode_request(line: bytes) -> Request:
    try:
        body = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ProtocolError("request is not a JSON line") from None
    if not isinstance(body, dict):
        raise ProtocolError("request must be a JSON object")
    version = body.get("v", PROTOCOL_VERSION)
    if type(version) is not int or version != PROTOCOL_VERSION:
        raise ProtocolError(
            f"unsupported protocol version {repr(version)[:20]}"
            f" (this engine speaks {PROTOCOL_VERSION})"
        )
    raw_command = body.get("command")
    try:
        command = Command(str(raw_command)) if isinstance(raw_command, str) else None
    except ValueError:
        command = None
    if command is None:
        known = ", ".join(c.value for c in Command)
        shown = raw_command if isinstance(raw_command, str) else type(raw_command).__name__
        raise ProtocolError(f"unknown command {shown[:40]!r} (known: {known})")
    reason = body.get("reason", "")
    if not isinstance(reason, str):
        raise ProtocolError("reason must be text")
    replace_open = body.get("replace_open", False)
    if not isinstance(replace_open, bool):
        raise ProtocolError("replace_open must be true or false")
    # One line, bounded: the reason lands in alerts and logs.
    reason = " ".join(reason.split())[:MAX_REASON_CHARS]
    if command is Command.TOKEN_SET:
        account, token = _token_fields(body)
        return Request(command=command, account=account, token=token)
    if command is Command.UNFREEZE:
        account = body.get("account", "")
        if not isinstance(account, str) or len(account) > MAX_ACCOUNT_CHARS:
            raise ProtocolError("unfreeze: account must be a name (or empty for all)")
        return Request(command=command, account=account.strip())
    return Request(command=command, reason=reason, replace_open=replace_open)


def _token_fields(body: dict[str, Any]) -> tuple[str, SecretStr]:
    raw_token = body.get("token")
    if isinstance(raw_token, str):
        register_secret(raw_token.strip())  # before anything could log the request
    account = body.get("account")
    if not isinstance(account, str) or not account.strip():
        raise ProtocolError("token_set needs the account's name")
    account = account.strip()
    if len(account) > MAX_ACCOUNT_CHARS or not account.isprintable():
        raise ProtocolError("token_set: that is not an account name")
    if not isinstance(raw_token, str) or not raw_token.strip():
        raise ProtocolError("token_set needs the new token (it was empty)")
    return account, SecretStr(raw_token.strip())


def encode_request(request: Request) -> bytes:
    body: dict[str, Any] = {"v": PROTOCOL_VERSION, "command": request.command.value}
    if request.command is Command.KILL:
        body["reason"] = request.reason
    if request.command is Command.RESUME:
        body["replace_open"] = request.replace_open
    if request.command is Command.UNFREEZE:
        body["account"] = request.account
    if request.command is Command.TOKEN_SET:
        body["account"] = request.account
        token = request.token.get_secret_value() if request.token is not None else ""
        # Not through _line: redact() would mask the token this request exists to carry.
        text = json.dumps({**body, "token": token}, separators=(",", ":"), ensure_ascii=False)
        return (text + "\n").encode("utf-8")
    return _line(body)


def to_wire(value: Any) -> Any:
    """A JSON-ready form of enums, datetimes, dataclasses, mappings and sequences."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_wire(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, Mapping):
        return {str(k): to_wire(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_wire(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None  # JSON has no NaN or infinity
    if value is None or isinstance(value, (str, int, bool)):
        return value
    return str(value)


def encode_result(result: Any) -> bytes:
    return _line({"ok": True, "result": to_wire(result)})


def encode_error(message: str) -> bytes:
    first_line = message.strip().splitlines()[0] if message.strip() else "error"
    return _line({"ok": False, "error": first_line})


def _line(body: Mapping[str, Any]) -> bytes:
    return (redact_json(body, _json) + "\n").encode("utf-8")


def _json(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
