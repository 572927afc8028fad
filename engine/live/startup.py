"""Start-up: what the store remembers (engine state, leader orders, copies, what was sent),
the accounts opened, and the remembered state shown before anything new arrives."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Iterable
from datetime import datetime, timedelta

from engine.clock import Clock
from engine.config import Settings
from engine.dhan.codec import InstrumentHint
from engine.dhan.order_stream import OrderStream
from engine.dhan.recorder import Recorder
from engine.domain import ConnectionState, EngineState, OrderSnapshot, Severity
from engine.events import EngineEvent, EngineStateChanged, FollowerOrderChanged, LeaderOrderSeen
from engine.instruments import InstrumentBook
from engine.live.accounts import (
    LEADER,
    Accounts,
    Broker,
    BrokerFactory,
    FollowerRuntime,
    build_follower,
)
from engine.live.arming import Arming
from engine.live.book import ReplicationBook
from engine.live.notifier import Notifier
from engine.live.tasks import TaskSet
from engine.store import Store
from engine.transitions import restored


async def restore(
    store: Store, book: ReplicationBook, arming: Arming, instruments: InstrumentBook
) -> None:
    """KILLED survives a restart; anything else starts ARMED."""
    persisted = await store.get_engine_state()
    killed = persisted is not None and persisted[0] is EngineState.KILLED
    arming.state = EngineState.KILLED if killed else EngineState.ARMED
    if persisted is None or persisted[0] is not arming.state:
        await store.set_engine_state(arming.state, "started")
    for snap in await store.leader_orders():
        book.restore_leader(snap)
        instruments.learn_lot_size(snap.segment, snap.security_id, snap.lot_size)
    for rec in await store.mirrors():
        book.restore_mirror(restored(rec))


def open_accounts(
    s: Settings,
    clock: Clock,
    broker_factory: BrokerFactory,
    accounts: Accounts,
    work: Callable[[FollowerRuntime, str], Awaitable[None]],
    guard: Callable[[str, Broker], Broker] | None = None,
    drained: Collection[str] = (),
) -> None:
    """Every account's broker, with its keeper's token (accounts.keepers) and, given a
    `guard`, watched for token and IP refusals."""
    leader = broker_factory(
        LEADER,
        s.leader.client_id,
        accounts.token_for(LEADER, s.leader.access_token),
        s.dhan.rest_url,
        s.dhan.timeout_s,
    )
    accounts.leader_broker = leader if guard is None else guard(LEADER, leader)
    for fs in s.followers:
        # A disabled follower with copies still open is drained: it keeps following the
        # leader's cancels and exits of them, and nothing new is placed (DecisionContext).
        if fs.enabled or fs.name in drained:
            accounts.followers[fs.name] = build_follower(
                fs,
                s,
                clock,
                broker_factory,
                work,
                token=accounts.token_for(fs.name, fs.access_token),
                guard=guard,
            )


async def preload_limiters(
    store: Store, accounts: Accounts, clock: Clock, unanswered_s: float
) -> None:
    """What the previous process sent still counts against Dhan's order-API budgets."""
    now = clock.now()
    for name, times in (await store.intent_times(now - timedelta(days=1))).items():
        if name in accounts.followers:
            accounts.followers[name].limiter.preload(request_ages(times, now, unanswered_s))


def request_ages(
    times: Iterable[tuple[datetime, datetime | None]], now: datetime, unanswered_s: float
) -> list[float]:
    """How long ago each earlier request stopped counting as in flight, as the limiter counts
    its own: from its answer (Dhan's window holds it from its arrival, which is before), or,
    never answered, from when the send would have timed out (``unanswered_s`` after it was
    written). Counted from when its intent was written, a request sent just before a restart
    freed its slot a round trip early, and a burst right after met DH-904 (a soak: 2 of 1,995
    requests, at the 250-a-minute edge)."""
    ages: list[float] = []
    for written, answered in times:
        done = answered if answered is not None else written + timedelta(seconds=unanswered_s)
        ages.append(max((now - done).total_seconds(), 0.0))
    return ages


def publish_restored(
    clock: Clock,
    publish: Callable[[EngineEvent], None],
    book: ReplicationBook,
    arming: Arming,
    notifier: Notifier,
) -> None:
    """A restart mid-session: show what the store remembers before anything new arrives."""
    publish(EngineStateChanged(clock.now(), arming.state, "started"))
    now = clock.now()
    for snap in sorted(book.leader_orders(), key=lambda s: s.created_at or now):
        publish(LeaderOrderSeen(now, snap, is_new=False))
    for rec in book.mirrors():
        publish(FollowerOrderChanged(now, rec.to_view()))
    if arming.state is EngineState.KILLED:
        notifier.alert(
            "STILL_KILLED",
            Severity.CRITICAL,
            "Engine restarted KILLED: nothing is copied until you resume",
        )


StreamSnapshots = Callable[[OrderSnapshot], Awaitable[None]]


def open_streams(
    s: Settings,
    clock: Clock,
    accounts: Accounts,
    tasks: TaskSet,
    *,
    follower_streams: bool,
    on_leader_snapshot: StreamSnapshots,
    on_leader_connected: Callable[[], Awaitable[None]],
    follower_handler: Callable[[str], StreamSnapshots],
    on_state: Callable[[str, ConnectionState, str], None],
    on_malformed: Callable[[str, str, str], None],
    on_instrument: Callable[[InstrumentHint], None] | None = None,
    recorder: Recorder | None = None,
    follower_hold: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Every follower's dispatcher and order stream, then the leader's stream (whose first
    connection runs the startup recovery). ``on_instrument``: what each order alert says of
    its instrument (lot, tick, option type), where the scrip master is silent."""

    def build(
        account: str,
        client_id: str,
        token: str,
        on_snapshot: StreamSnapshots,
        on_connected: Callable[[], Awaitable[None]] | None,
        source_ip: str | None = None,
        hold: Callable[[], Awaitable[None]] | None = None,
    ) -> OrderStream:
        return OrderStream(
            account=account,
            client_id=client_id,
            access_token=token,
            source_ip=source_ip,
            url=s.dhan.order_ws_url,
            on_snapshot=on_snapshot,
            on_state=lambda state, detail: on_state(account, state, detail),
            on_connected=on_connected,
            on_malformed=lambda raw, err: on_malformed(account, raw, err),
            clock=clock,
            idle_timeout_s=s.leader_idle_timeout_s,
            on_instrument=on_instrument,
            recorder=recorder,
            hold=hold,
        )

    for f in accounts.all():
        f.dispatcher.start()
        if follower_streams:
            token = accounts.token_for(f.name, f.settings.access_token)
            f.stream = build(
                f.name,
                f.settings.client_id,
                token,
                follower_handler(f.name),
                None,
                f.settings.source_ip,
                follower_hold,
            )
            tasks.spawn(f.stream.run(), f"stream-{f.name}")
    leader_token = accounts.token_for(LEADER, s.leader.access_token)
    leader_stream = build(
        LEADER,
        s.leader.client_id,
        leader_token,
        on_leader_snapshot,
        on_leader_connected,
        s.leader.source_ip,
    )
    accounts.leader_stream = leader_stream
    tasks.spawn(leader_stream.run(), "stream-leader")
