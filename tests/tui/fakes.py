"""A fake engine for the terminal: implements EngineHandle, records commands, publishes events."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from engine.clock import IST
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
    AlertRaised,
    ConnectionChanged,
    EngineEvent,
    EngineStateChanged,
    EventBus,
    FollowerOrderChanged,
    LeaderOrderSeen,
    LimiterChanged,
    StatsUpdated,
)
from engine.views import (
    EngineStats,
    FollowerOrderView,
    KillPreview,
    LimiterView,
    LimitWindow,
    RecoveryReport,
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

    async def resume(self) -> None:
        self.calls.append(("resume", None))
        self.engine_state = EngineState.ARMED
        self.publish(EngineStateChanged(at=T0, state=EngineState.ARMED, reason="resumed"))

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
