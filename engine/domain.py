"""The engine's own vocabulary: typed orders and enums, free of any wire dialect.

Dhan speaks two dialects (socket short codes, REST full names); the codec in ``engine.dhan``
turns both into these types, and everything downstream of it speaks only these.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum


class Side(StrEnum):
    BUY = "BUY"
    SELL = "SELL"


class OrderType(StrEnum):
    LIMIT = "LIMIT"
    MARKET = "MARKET"
    STOP_LOSS = "STOP_LOSS"
    STOP_LOSS_MARKET = "STOP_LOSS_MARKET"


class Product(StrEnum):
    CNC = "CNC"
    INTRADAY = "INTRADAY"
    MARGIN = "MARGIN"
    MTF = "MTF"
    CO = "CO"
    BO = "BO"


class Validity(StrEnum):
    DAY = "DAY"
    IOC = "IOC"


class Segment(StrEnum):
    IDX_I = "IDX_I"
    NSE_EQ = "NSE_EQ"
    NSE_FNO = "NSE_FNO"
    NSE_CURRENCY = "NSE_CURRENCY"
    BSE_EQ = "BSE_EQ"
    MCX_COMM = "MCX_COMM"
    BSE_CURRENCY = "BSE_CURRENCY"
    BSE_FNO = "BSE_FNO"


class OrderStatus(StrEnum):
    TRANSIT = "TRANSIT"
    PENDING = "PENDING"
    PART_TRADED = "PART_TRADED"
    TRADED = "TRADED"
    CANCELLED = "CANCELLED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"
    # Super orders only; treated as terminal / open respectively.
    CLOSED = "CLOSED"
    TRIGGERED = "TRIGGERED"

    @property
    def is_open(self) -> bool:
        return self in _OPEN_STATUSES

    @property
    def is_terminal(self) -> bool:
        return not self.is_open


_OPEN_STATUSES = frozenset(
    {OrderStatus.TRANSIT, OrderStatus.PENDING, OrderStatus.PART_TRADED, OrderStatus.TRIGGERED}
)


class AmoTime(StrEnum):
    PRE_OPEN = "PRE_OPEN"
    OPEN = "OPEN"
    OPEN_30 = "OPEN_30"
    OPEN_60 = "OPEN_60"


class SnapshotSource(StrEnum):
    """Where a leader snapshot came from; all sources feed the same replicator."""

    STREAM = "stream"
    ORDER_BOOK = "order_book"
    STORE = "store"


@dataclass(frozen=True, slots=True)
class OrderSnapshot:
    """The latest known state of one Dhan order, whichever dialect it arrived in.

    Used for the leader's orders (input of the replicator) and for follower orders read back
    from the broker (their fills and status).
    """

    order_id: str
    client_id: str
    status: OrderStatus
    side: Side
    order_type: OrderType
    product: Product
    validity: Validity
    segment: Segment
    security_id: str
    quantity: int
    filled_qty: int = 0
    price: float = 0.0
    trigger_price: float = 0.0
    disclosed_qty: int = 0
    avg_price: float = 0.0
    trading_symbol: str = ""
    correlation_id: str = ""
    amo: bool = False
    amo_time: AmoTime | None = None
    leg: str = ""  # "", or ENTRY_LEG / STOP_LOSS_LEG / TARGET_LEG for BO/CO/super legs
    parent_order_id: str = ""  # entry-leg order number for BO/CO/super legs
    is_super_order: bool = False
    lot_size: int = 0  # 0: unknown
    reason: str = ""  # rejection reason or Dhan's remark
    ref_ltp: float = 0.0  # the instrument's last price when Dhan sent this update (socket only)
    # Dhan's own word on the instrument (socket OptType CE/PE or XX, Instrument OPTIDX...;
    # REST drvOptionType CALL/PUT); None when this update did not say.
    is_option: bool | None = None
    created_at: datetime | None = None  # IST, tz-aware
    updated_at: datetime | None = None  # IST, tz-aware
    source: SnapshotSource = SnapshotSource.STREAM

    @property
    def remaining_qty(self) -> int:
        return max(self.quantity - self.filled_qty, 0)

    @property
    def is_open(self) -> bool:
        return self.status.is_open

    def with_changes(self, **changes: object) -> OrderSnapshot:
        return replace(self, **changes)  # type: ignore[arg-type]

    def progress_key(self) -> tuple[int, int, float]:
        """Orders snapshots of one order by how far the order has progressed.

        Dhan's socket may deliver alerts twice or out of order; a snapshot whose key is lower
        than the one already known is stale. Terminal beats open, more filled beats less, and
        a later update time beats an earlier one.
        """
        terminal = 1 if self.status.is_terminal else 0
        ts = self.updated_at.timestamp() if self.updated_at else 0.0
        return (terminal, self.filled_qty, ts)


@dataclass(frozen=True, slots=True)
class Instrument:
    segment: Segment
    security_id: str
    symbol: str
    lot_size: int
    tick_size: float = 0.05
    is_option: bool = False


@dataclass(frozen=True, slots=True)
class OrderParams:
    """What the engine asks a broker to place or change: every order parameter Dhan takes."""

    side: Side
    order_type: OrderType
    product: Product
    validity: Validity
    segment: Segment
    security_id: str
    quantity: int
    price: float = 0.0
    trigger_price: float = 0.0
    disclosed_qty: int = 0
    amo: bool = False
    amo_time: AmoTime | None = None
    correlation_id: str = ""
    notes: tuple[str, ...] = field(default=())  # e.g. "MARKET sent as LIMIT with MPP 1%"


# --- states and alerts ---------------------------------------------------------------


class Severity(StrEnum):
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"
    CRITICAL = "CRITICAL"


class EngineState(StrEnum):
    STARTING = "STARTING"
    ARMED = "ARMED"
    FROZEN = "FROZEN"  # automatic safety: nothing new opened, every resting copy kept
    KILLED = "KILLED"
    STOPPED = "STOPPED"


class FreezeCause(StrEnum):
    """Why the engine or one follower is frozen (automatic safety; only the trader kills)."""

    TOKEN_REFUSED = "TOKEN_REFUSED"  # clears itself once a token works again
    LEADER_DARK = "LEADER_DARK"  # clears itself once the leader's feed is back
    CIRCUIT_OPEN = "CIRCUIT_OPEN"  # clears itself once the broker answers again
    LOSS_LIMIT = "LOSS_LIMIT"  # only the trader clears it
    DUPLICATE_ENGINE = "DUPLICATE_ENGINE"  # only the trader clears it
    INVALID_IP = "INVALID_IP"  # only the trader clears it (after fixing the whitelist)

    @property
    def clears_itself(self) -> bool:
        return self in (
            FreezeCause.TOKEN_REFUSED,
            FreezeCause.LEADER_DARK,
            FreezeCause.CIRCUIT_OPEN,
        )


class ConnectionState(StrEnum):
    CONNECTING = "CONNECTING"
    CONNECTED = "CONNECTED"
    DISCONNECTED = "DISCONNECTED"
    STALLED = "STALLED"  # open but silent past the idle watchdog


class MirrorState(StrEnum):
    """Where the engine is with one follower's copy of one leader order."""

    PLACING = "PLACING"  # intent written, placement not yet acknowledged
    LIVE = "LIVE"  # acknowledged by the broker; see broker_status
    DONE = "DONE"  # terminal at the broker (filled, cancelled, rejected, expired)
    REPLACING = "REPLACING"  # cancelled to re-place the rest under a new correlationId
    SKIPPED = "SKIPPED"  # never placed, and `reason` says why
    FAILED = "FAILED"  # the broker refused or the engine gave up; `reason` says why


@dataclass(frozen=True, slots=True)
class Alert:
    code: str  # stable machine code, e.g. "SIZED_TO_ZERO", "FOLLOWER_REJECTED"
    severity: Severity
    message: str  # one clear human sentence; never contains a secret
    at: datetime
    follower: str | None = None
    leader_order_id: str | None = None
    count: int = 1  # how many identical alerts this one stands for (dedup)

    @property
    def dedup_key(self) -> tuple[str, str | None, str | None, str]:
        return (self.code, self.follower, self.leader_order_id, self.message)
