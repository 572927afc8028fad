"""A fake engine for the terminal: implements EngineHandle, records commands, publishes events."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from pydantic import SecretStr

from engine.clock import IST
from engine.control.protocol import ResumeReport, UncopiedOrder
from engine.domain import (
    Alert,
    ConnectionState,
    EngineState,
    MirrorState,
    OrderSnapshot,
    OrderStatus,
    OrderType,
    Product,
    Segment,
    Severity,
    Side,
    Validity,
)
from engine.events import (
    AccountsChanged,
    AlertRaised,
    ConnectionChanged,
    CopyStepsChanged,
    EngineEvent,
    EngineStateChanged,
    EventBus,
    FollowerOrderChanged,
    LeaderOrderSeen,
    LimiterChanged,
    PositionsRead,
    StatsUpdated,
)
from engine.views import (
    AccountPnl,
    AccountState,
    AccountView,
    CopyStepView,
    EngineStats,
    FollowerOrderView,
    FollowerPositionView,
    KillPreview,
    LaggingCopy,
    LimiterView,
    LimitWindow,
    PositionsView,
    PositionView,
    RecoveryReport,
    SyncOrderView,
    SyncPreview,
    SyncReport,
    TimelineEntry,
)

T0 = IST.localize(datetime(2026, 11, 23, 10, 15, 0))


class FixedClock:
    """A time source for the status line that tests move by hand."""

    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class FakeEngine:
    bus: EventBus = field(default_factory=EventBus)
    engine_state: EngineState = EngineState.ARMED
    preview: KillPreview = field(default_factory=lambda: KillPreview(7, 2, 0))
    in_flight_count: int = 0
    report: RecoveryReport = field(
        default_factory=lambda: RecoveryReport("manual", 12, 3, ("follower-b: qty 5 != 10",), 0.4)
    )
    timelines: dict[str, list[TimelineEntry]] = field(default_factory=dict)
    initial_followers: list[FollowerOrderView] = field(default_factory=list)
    initial_limiters: list[LimiterView] = field(default_factory=list)
    market: str = "NSE open 09:15-15:30 IST"
    run_error: BaseException | None = None
    resync_gate: asyncio.Event | None = None  # when set, resync waits for it
    kill_gate: asyncio.Event | None = None  # when set, kill waits for it
    accounts: list[AccountView] = field(default_factory=list)
    positions: PositionsView = field(default_factory=lambda: PositionsView(read_at=None))
    steps: list[CopyStepView] = field(default_factory=list)
    uncopied: list[UncopiedOrder] = field(default_factory=list)
    preview_sync: SyncPreview = field(default_factory=SyncPreview)
    tokens_received: list[tuple[str, SecretStr]] = field(default_factory=list)
    calls: list[tuple[str, object]] = field(default_factory=list)
    _stopped: asyncio.Event = field(default_factory=asyncio.Event)

    # --- EngineHandle ----------------------------------------------------------------------

    @property
    def state(self) -> EngineState:
        return self.engine_state

    def subscribe(self, listener: Callable[[EngineEvent], None]) -> Callable[[], None]:
        self.calls.append(("subscribe", None))
        return self.bus.subscribe(listener)

    async def run(self) -> None:
        self.calls.append(("run", None))
        if self.run_error is not None:
            await asyncio.sleep(0)
            raise self.run_error
        await self._stopped.wait()

    async def stop(self) -> None:
        self.calls.append(("stop", None))
        self._stopped.set()

    async def kill(self, reason: str) -> None:
        self.calls.append(("kill", reason))
        if self.kill_gate is not None:
            await self.kill_gate.wait()
        self.engine_state = EngineState.KILLED
        self.publish(EngineStateChanged(at=T0, state=EngineState.KILLED, reason=reason))

    async def resume(self, replace_open: bool = False) -> ResumeReport | None:
        self.calls.append(("resume", replace_open))
        self.engine_state = EngineState.ARMED
        self.publish(EngineStateChanged(at=T0, state=EngineState.ARMED, reason="resumed"))
        replaced = tuple(o.leader_order_id for o in self.uncopied) if replace_open else ()
        left = () if replace_open else tuple(self.uncopied)
        return ResumeReport("ARMED", left, replaced)

    async def resync(self) -> RecoveryReport:
        self.calls.append(("resync", None))
        if self.resync_gate is not None:
            await self.resync_gate.wait()
        return self.report

    def kill_preview(self) -> KillPreview:
        return self.preview

    def in_flight(self) -> int:
        return self.in_flight_count

    async def timeline(self, leader_order_id: str) -> list[TimelineEntry]:
        self.calls.append(("timeline", leader_order_id))
        return self.timelines.get(leader_order_id, [])

    def follower_views(self) -> list[FollowerOrderView]:
        return list(self.initial_followers)

    def limiter_views(self) -> list[LimiterView]:
        return list(self.initial_limiters)

    def market_label(self) -> str:
        return self.market

    def account_views(self) -> list[AccountView]:
        return list(self.accounts)

    def positions_view(self) -> PositionsView:
        return self.positions

    def copy_steps(self) -> list[CopyStepView]:
        return list(self.steps)

    async def uncopied_orders(self) -> list[UncopiedOrder]:
        self.calls.append(("uncopied_orders", None))
        return list(self.uncopied)

    async def sync_preview(self) -> SyncPreview:
        self.calls.append(("sync_preview", None))
        return self.preview_sync

    async def sync_positions(self, preview: SyncPreview) -> SyncReport:
        self.calls.append(("sync_positions", preview))
        return SyncReport(len(preview.orders))

    async def clear_freeze(self, account: str) -> str:
        self.calls.append(("clear_freeze", account))
        self.accounts = [
            AccountView(v.account, AccountState.ARMED, "", v.is_leader, v.open_copies)
            if v.account == (account or "leader")
            else v
            for v in self.accounts
        ]
        return f"{account or 'the engine'}: freeze cleared"

    async def replace_token(self, account: str, token: SecretStr) -> str:
        self.calls.append(("replace_token", account))  # never the token itself
        self.tokens_received.append((account, token))
        return f"{account}: token replaced"

    # --- test helpers ----------------------------------------------------------------------

    def publish(self, event: EngineEvent) -> None:
        self.bus.publish(event)

    def count(self, command: str) -> int:
        return sum(1 for name, _ in self.calls if name == command)


# --- event builders -----------------------------------------------------------------------


def snapshot(
    order_id: str,
    *,
    symbol: str = "RELIANCE",
    status: OrderStatus = OrderStatus.PENDING,
    side: Side = Side.BUY,
    order_type: OrderType = OrderType.LIMIT,
    quantity: int = 10,
    filled: int = 0,
    price: float = 2450.5,
    trigger: float = 0.0,
    at: datetime = T0,
) -> OrderSnapshot:
    return OrderSnapshot(
        order_id=order_id,
        client_id="1000000001",
        status=status,
        side=side,
        order_type=order_type,
        product=Product.INTRADAY,
        validity=Validity.DAY,
        segment=Segment.NSE_EQ,
        security_id="2885",
        quantity=quantity,
        filled_qty=filled,
        price=price,
        trigger_price=trigger,
        trading_symbol=symbol,
        created_at=at,
        updated_at=at,
    )


def leader_seen(order_id: str, at: datetime = T0, **kw: object) -> LeaderOrderSeen:
    return LeaderOrderSeen(at=at, snapshot=snapshot(order_id, at=at, **kw), is_new=True)  # type: ignore[arg-type]


def follower_view(
    follower: str,
    leader_order_id: str,
    *,
    state: MirrorState = MirrorState.LIVE,
    broker_status: str = "PENDING",
    quantity: int = 5,
    filled: int = 0,
    avg: float = 0.0,
    slippage: float | None = None,
    latency: float | None = 180.0,
    reason: str = "",
    order_id: str = "",
) -> FollowerOrderView:
    return FollowerOrderView(
        follower=follower,
        leader_order_id=leader_order_id,
        correlation_id=f"ct-{leader_order_id}-{follower}",
        mirror_state=state,
        follower_order_id=order_id or f"F{leader_order_id}{follower[-1]}",
        broker_status=broker_status,
        quantity=quantity,
        filled_qty=filled,
        avg_price=avg,
        slippage=slippage,
        latency_ms=latency,
        reason=reason,
        symbol="RELIANCE",
        updated_at=T0,
    )


def follower_changed(follower: str, leader_order_id: str, **kw: object) -> FollowerOrderChanged:
    return FollowerOrderChanged(at=T0, view=follower_view(follower, leader_order_id, **kw))  # type: ignore[arg-type]


def limiter_view(
    account: str,
    used: tuple[int, int, int, int] = (0, 0, 0, 0),
    *,
    queue: int = 0,
    throttled: int = 0,
    dh904: int = 0,
) -> LimiterView:
    windows = tuple(
        LimitWindow(name, limit, u)
        for (name, limit), u in zip(
            (("second", 10), ("minute", 250), ("hour", 1000), ("day", 7000)), used, strict=True
        )
    )
    return LimiterView(account, windows, queue, throttled, dh904)


def limiter_changed(account: str, used: tuple[int, int, int, int], **kw: int) -> LimiterChanged:
    return LimiterChanged(at=T0, view=limiter_view(account, used, **kw))


def alert_raised(
    message: str,
    *,
    severity: Severity = Severity.WARNING,
    code: str = "TEST",
    follower: str | None = None,
    leader_order_id: str | None = None,
    count: int = 1,
    at: datetime = T0,
) -> AlertRaised:
    return AlertRaised(
        at=at,
        alert=Alert(code, severity, message, at, follower, leader_order_id, count),
    )


def stats_updated(**kw: object) -> StatsUpdated:
    return StatsUpdated(at=T0, stats=EngineStats(**kw))  # type: ignore[arg-type]


def connection(account: str, state: ConnectionState) -> ConnectionChanged:
    return ConnectionChanged(at=T0, account=account, state=state)


def sample_timeline(leader_order_id: str) -> list[TimelineEntry]:
    t = T0
    return [
        TimelineEntry(
            t, "leader", None, f"leader order {leader_order_id} PENDING BUY 10 @ 2450.50"
        ),
        TimelineEntry(
            t + timedelta(milliseconds=3), "intent", "follower-a", "place BUY 5 LIMIT 2450.50"
        ),
        TimelineEntry(
            t + timedelta(milliseconds=4), "intent", "follower-b", "place BUY 10 LIMIT 2450.50"
        ),
        TimelineEntry(
            t + timedelta(milliseconds=182),
            "broker",
            "follower-a",
            "placed: order 5211 PENDING (179 ms)",
        ),
        TimelineEntry(
            t + timedelta(milliseconds=240),
            "broker",
            "follower-b",
            "placed: order 7730 PENDING (236 ms)",
        ),
        TimelineEntry(t + timedelta(seconds=2), "leader", None, "leader TRADED 10/10 @ 2450.50"),
        TimelineEntry(
            t + timedelta(seconds=2, milliseconds=90), "fill", "follower-a", "TRADED 5/5 @ 2450.55"
        ),
        TimelineEntry(
            t + timedelta(seconds=2, milliseconds=130),
            "fill",
            "follower-b",
            "TRADED 10/10 @ 2450.60 (slippage +0.10)",
        ),
    ]


def populate(engine: FakeEngine) -> None:
    """A fixed, realistic screen: three leader orders, two followers, limits, alerts, stats."""
    engine.publish(connection("leader", ConnectionState.CONNECTED))
    engine.publish(connection("follower-a", ConnectionState.CONNECTED))
    engine.publish(connection("follower-b", ConnectionState.CONNECTED))
    engine.publish(
        leader_seen(
            "1125112300001",
            symbol="RELIANCE",
            status=OrderStatus.TRADED,
            filled=10,
            at=T0 - timedelta(minutes=5),
        )
    )
    engine.publish(
        leader_seen(
            "1125112300002",
            symbol="INFY",
            side=Side.SELL,
            status=OrderStatus.PART_TRADED,
            quantity=40,
            filled=15,
            price=1580.0,
            at=T0 - timedelta(minutes=3),
        )
    )
    engine.publish(
        leader_seen(
            "1125112300003",
            symbol="NIFTY25NOV24500CE",
            status=OrderStatus.REJECTED,
            order_type=OrderType.STOP_LOSS,
            quantity=75,
            price=112.5,
            trigger=110.0,
            at=T0 - timedelta(minutes=1),
        )
    )
    engine.publish(
        leader_seen(
            "1125112300004",
            symbol="TCS",
            status=OrderStatus.CANCELLED,
            order_type=OrderType.MARKET,
            quantity=3,
            price=0.0,
            at=T0 - timedelta(seconds=30),
        )
    )
    for follower, qty in (("follower-a", 5), ("follower-b", 10)):
        engine.publish(
            follower_changed(
                follower,
                "1125112300001",
                state=MirrorState.DONE,
                broker_status="TRADED",
                quantity=qty,
                filled=qty,
                avg=2450.55,
                slippage=0.05,
                latency=182.0 if follower == "follower-a" else 240.0,
            )
        )
    engine.publish(
        follower_changed(
            "follower-a",
            "1125112300002",
            broker_status="PART_TRADED",
            quantity=20,
            filled=5,
            avg=1580.1,
            slippage=0.1,
            latency=201.0,
        )
    )
    engine.publish(
        follower_changed(
            "follower-b",
            "1125112300002",
            state=MirrorState.FAILED,
            broker_status="REJECTED",
            quantity=40,
            latency=None,
            reason="RMS: insufficient margin",
        )
    )
    engine.publish(
        follower_changed(
            "follower-a",
            "1125112300003",
            state=MirrorState.SKIPPED,
            broker_status="",
            quantity=0,
            latency=None,
            reason="sized to zero (lot 75)",
            order_id="-",
        )
    )
    engine.publish(limiter_changed("leader", (0, 2, 10, 40)))
    engine.publish(limiter_changed("follower-a", (3, 41, 120, 380), queue=1, throttled=2))
    engine.publish(
        limiter_changed("follower-b", (9, 231, 870, 2100), queue=4, throttled=17, dh904=1)
    )
    engine.publish(
        alert_raised(
            "Order sized to zero for follower-a (lot size 75).",
            severity=Severity.INFO,
            code="SIZED_TO_ZERO",
            follower="follower-a",
            leader_order_id="1125112300003",
            at=T0 - timedelta(seconds=60),
        )
    )
    engine.publish(
        alert_raised(
            "Dhan rate limit hit (DH-904); backing off 1 s.",
            severity=Severity.WARNING,
            code="DH904",
            follower="follower-b",
            count=3,
            at=T0 - timedelta(seconds=40),
        )
    )
    engine.publish(
        alert_raised(
            "Follower order rejected: RMS: insufficient margin.",
            severity=Severity.ERROR,
            code="FOLLOWER_REJECTED",
            follower="follower-b",
            leader_order_id="1125112300002",
            at=T0 - timedelta(seconds=20),
        )
    )
    engine.publish(
        alert_raised(
            "Leader socket silent for 45 s; reconnecting.",
            severity=Severity.CRITICAL,
            code="LEADER_STALLED",
            at=T0 - timedelta(seconds=10),
        )
    )
    engine.publish(
        stats_updated(
            replicated=41,
            failed=1,
            latency_p50_ms=188.0,
            latency_p99_ms=612.0,
            mean_slippage=0.04,
            disconnects=1,
            last_leader_event_at=T0 - timedelta(seconds=3),
        )
    )


# --- the cockpit's views -------------------------------------------------------------------


def account_views(frozen: str = "") -> list[AccountView]:
    """The leader and two followers; `frozen` names a follower frozen by a refused token."""

    def windows(used: tuple[int, int, int, int]) -> tuple[LimitWindow, ...]:
        return tuple(
            LimitWindow(name, limit, u)
            for name, limit, u in zip(
                ("second", "minute", "hour", "day"), (10, 250, 1000, 7000), used, strict=True
            )
        )

    def state(name: str) -> tuple[AccountState, str]:
        if name == frozen:
            return AccountState.FROZEN, "Dhan refused the token (expired)"
        return AccountState.ARMED, ""

    a_state, a_why = state("follower-a")
    b_state, b_why = state("follower-b")
    return [
        AccountView(
            "leader",
            AccountState.ARMED,
            is_leader=True,
            token_left_s=20 * 3600 + 12 * 60,
            token_renewal="mints from PIN+TOTP",
            token_status="VALID",
        ),
        AccountView(
            "follower-a",
            a_state,
            a_why,
            open_copies=2,
            hand_managed=1,
            token_left_s=50 * 60,
            token_renewal="cannot renew: set a new token (copytrade token set)",
            token_status="VALID",
            source_ip="127.0.0.2",
            windows=windows((3, 41, 120, 380)),
            queue_depth=1,
            throttled=2,
        ),
        AccountView(
            "follower-b",
            b_state,
            b_why,
            open_copies=1,
            token_left_s=23 * 3600,
            token_renewal="renews via Dhan",
            token_status="VALID",
            source_ip="127.0.0.3",
            windows=windows((9, 231, 870, 2100)),
            queue_depth=4,
            throttled=17,
            dhan_rate_refusals=1,
        ),
    ]


def positions_view() -> PositionsView:
    return PositionsView(
        read_at=T0 - timedelta(seconds=4),
        positions=(
            PositionView(
                "NSE_EQ",
                "2885",
                "RELIANCE",
                "INTRADAY",
                10,
                2450.5,
                0.0,
                125.0,
                (
                    FollowerPositionView("follower-a", 5, 5, 0, 2450.55, 0.0, 62.25),
                    FollowerPositionView("follower-b", 0, 10, 10, 0.0, 0.0, 0.0),
                ),
            ),
            PositionView(
                "NSE_EQ",
                "1594",
                "INFY",
                "INTRADAY",
                -15,
                1580.0,
                210.0,
                -45.0,
                (
                    FollowerPositionView("follower-a", -5, -10, 0, 1580.1, 95.0, -15.0),
                    FollowerPositionView("follower-b", 0, -15, 0, 0.0, 0.0, 0.0),
                ),
            ),
        ),
        totals=(
            AccountPnl("leader", 210.0, 80.0),
            AccountPnl("follower-a", 95.0, 47.25),
            AccountPnl("follower-b", 0.0, 0.0),
        ),
    )


def copy_steps() -> list[CopyStepView]:
    return [
        CopyStepView("1125112300001", 2, 2),
        CopyStepView("1125112300002", 2, 0, (LaggingCopy("follower-a", 14.0, 5, 20),), failed=1),
    ]


def sync_preview() -> SyncPreview:
    return SyncPreview(
        (
            SyncOrderView("follower-a", "NSE_EQ", "1594", "INFY", "INTRADAY", "SELL", 5, -5, -10),
            SyncOrderView("follower-b", "NSE_EQ", "1594", "INFY", "INTRADAY", "SELL", 15, 0, -15),
        ),
        ("follower-c: positions unavailable (timeout)",),
    )


def uncopied() -> list[UncopiedOrder]:
    return [
        UncopiedOrder(
            "1125112300002", "INFY", "SELL", "LIMIT", 25, 1580.0, 0.0, ("follower-a", "follower-b")
        )
    ]


def populate_cockpit(engine: FakeEngine, frozen: str = "") -> None:
    """The cockpit panes: accounts, positions and copies in step, as events."""
    engine.publish(AccountsChanged(T0, tuple(account_views(frozen))))
    engine.publish(PositionsRead(T0, positions_view()))
    engine.publish(CopyStepsChanged(T0, tuple(copy_steps())))
