"""Read models: what a front end renders (rows, gauges, reports), built by the engine.

Immutable, secret-free snapshots; a view holds them, never the engine's live records.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from engine.domain import MirrorState


@dataclass(frozen=True, slots=True)
class FollowerOrderView:
    """One follower's copy of one leader order, as a UI row shows it."""

    follower: str
    leader_order_id: str
    correlation_id: str
    mirror_state: MirrorState
    follower_order_id: str = ""
    broker_status: str = ""  # Dhan's status word once known
    quantity: int = 0  # sized quantity
    filled_qty: int = 0
    avg_price: float = 0.0
    slippage: float | None = None  # per unit, signed so that positive = worse than the leader
    latency_ms: float | None = None  # leader snapshot seen -> follower placement acknowledged
    modifications: int = 0
    reason: str = ""
    symbol: str = ""
    updated_at: datetime | None = None
    by_hand: bool = False  # changed by hand at Dhan: the engine no longer modifies it
    detached: bool = False  # taken over by the trader: the engine leaves it alone


@dataclass(frozen=True, slots=True)
class LimitWindow:
    name: str  # "second", "minute", "hour", "day"
    limit: int
    used: int

    @property
    def remaining(self) -> int:
        return max(self.limit - self.used, 0)


@dataclass(frozen=True, slots=True)
class LimiterView:
    account: str  # follower name, or "leader"
    windows: tuple[LimitWindow, ...]
    queue_depth: int = 0
    throttled: int = 0  # times a request had to wait for a token
    dh904: int = 0  # rate-limit refusals from Dhan


@dataclass(frozen=True, slots=True)
class EngineStats:
    replicated: int = 0
    failed: int = 0
    latency_p50_ms: float | None = None
    latency_p99_ms: float | None = None
    mean_slippage: float | None = None
    disconnects: int = 0
    last_leader_event_at: datetime | None = None

    @property
    def success_rate(self) -> float | None:
        total = self.replicated + self.failed
        return None if total == 0 else self.replicated / total


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    trigger: str  # "reconnect", "manual", "periodic", "startup"
    leader_orders_checked: int
    actions_taken: int
    discrepancies: tuple[str, ...] = ()
    duration_s: float = 0.0
    read_ok: bool = True  # False: the leader's order book could not be read (nothing done)


@dataclass(frozen=True, slots=True)
class KillPreview:
    """What pulling the kill switch would do now, for the confirmation dialog."""

    open_follower_orders: int
    accounts: int
    queued_actions: int


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    at: datetime
    kind: str  # "leader", "intent", "broker", "fill", "alert"
    follower: str | None
    text: str


# --- the cockpit: accounts, positions, copies in step, previews ------------------------------


class AccountState(StrEnum):
    """An account's trading state as the trader reads it."""

    STARTING = "STARTING"
    ARMED = "ARMED"  # copying
    FROZEN = "FROZEN"  # automatic safety: nothing new opened, copies at Dhan stay
    KILLED = "KILLED"  # the trader's kill: everything cancelled, nothing sent
    DRAINING = "DRAINING"  # disabled in the settings: open copies follow exits, nothing new
    STOPPED = "STOPPED"  # this follower alone stopped (loss limit, refused token...)


@dataclass(frozen=True, slots=True)
class AccountView:
    """One account's state, token, address and rate use; no secret, ever."""

    account: str  # "leader" or a follower's name
    state: AccountState
    why: str = ""  # the reason for FROZEN / KILLED / STOPPED / DRAINING
    is_leader: bool = False
    open_copies: int = 0
    hand_managed: int = 0  # copies changed by hand at Dhan, no longer modified by the engine
    token_left_s: float | None = None  # None: expiry unknown
    token_renewal: str = ""  # how it renews, in words ("mints from PIN+TOTP", ...)
    token_status: str = ""  # VALID, EXPIRED, REFUSED, NONE; "" when not known
    source_ip: str = ""  # "" = the machine's default address
    windows: tuple[LimitWindow, ...] = ()
    queue_depth: int = 0
    throttled: int = 0  # requests that had to wait for the rate limiter
    dhan_rate_refusals: int = 0  # Dhan's own rate-limit refusals (DH-904 / 805)

    def signature(self) -> tuple[object, ...]:
        """What a redraw shows of the account (token time to the minute): two views with the
        same signature look the same, so the engine publishes and the pane redraws only on a
        change of it."""
        left = None if self.token_left_s is None else int(self.token_left_s // 60)
        return (
            self.state,
            self.why,
            self.open_copies,
            self.hand_managed,
            left,
            self.token_renewal,
            self.token_status,
            self.source_ip,
            tuple((w.name, w.limit, w.used) for w in self.windows),
            self.queue_depth,
            self.throttled,
            self.dhan_rate_refusals,
        )


@dataclass(frozen=True, slots=True)
class FollowerPositionView:
    """A follower's holding in one instrument, against the target the leader's implies."""

    follower: str
    net: int
    target: int
    working: int = 0  # net quantity its working copies would still add (signed)
    avg_price: float = 0.0
    realized_pnl: float = 0.0
    unrealized_pnl: float = 0.0

    @property
    def difference(self) -> int:
        return self.net - self.target

    @property
    def closed_by_working_orders(self) -> bool:
        """The difference is one the follower's working copies will close when they fill."""
        return self.difference != 0 and self.net + self.working == self.target


@dataclass(frozen=True, slots=True)
class PositionView:
    """One instrument (and product): the leader's net and each follower's against its target."""

    segment: str
    security_id: str
    symbol: str
    product: str
    leader_net: int
    leader_avg_price: float = 0.0
    leader_realized_pnl: float = 0.0
    leader_unrealized_pnl: float = 0.0
    followers: tuple[FollowerPositionView, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.segment}:{self.security_id}:{self.product}"


@dataclass(frozen=True, slots=True)
class AccountPnl:
    account: str
    realized: float
    unrealized: float

    @property
    def total(self) -> float:
        return self.realized + self.unrealized


@dataclass(frozen=True, slots=True)
class PositionsView:
    """Every account's positions, read from Dhan at `read_at` (refreshed on a timer)."""

    read_at: datetime | None
    positions: tuple[PositionView, ...] = ()
    totals: tuple[AccountPnl, ...] = ()
    unavailable: tuple[str, ...] = ()  # one line per account whose positions could not be read


@dataclass(frozen=True, slots=True)
class LaggingCopy:
    follower: str
    behind_s: float  # since the leader was filled and this copy was not
    filled: int
    quantity: int


@dataclass(frozen=True, slots=True)
class CopyStepView:
    """How many of one leader order's copies are in step with it ("2/2", "1/2 behind 14 s")."""

    leader_order_id: str
    copies: int  # copies expected (followers the order is copied to)
    in_step: int
    lagging: tuple[LaggingCopy, ...] = ()
    failed: int = 0

    @property
    def label(self) -> str:
        text = f"{self.in_step}/{self.copies}"
        if self.lagging:
            text += f" behind {max(c.behind_s for c in self.lagging):.0f} s"
        elif self.failed:
            text += " failed"
        return text


@dataclass(frozen=True, slots=True)
class SyncOrderView:
    """One order a position sync would place: bring `follower` from `net` to `target`."""

    follower: str
    segment: str
    security_id: str
    symbol: str
    product: str
    side: str  # BUY / SELL
    quantity: int
    net: int
    target: int


@dataclass(frozen=True, slots=True)
class SyncPreview:
    orders: tuple[SyncOrderView, ...] = ()
    notes: tuple[str, ...] = ()  # accounts not read, instruments left out and why


@dataclass(frozen=True, slots=True)
class SyncReport:
    placed: int
    refused: tuple[str, ...] = ()  # one line per order not placed
    message: str = ""
