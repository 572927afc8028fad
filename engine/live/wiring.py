"""Wiring: builds the engine's live parts (one per job) over the state they share, in the order
their dependencies need. `engine.engine.Engine` holds what this returns; it builds them again
when its endpoints change (each part keeps the settings it was given).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from engine.clock import Clock
from engine.config import Settings
from engine.dispatch.send_line import SendLine
from engine.events import EngineEvent
from engine.instruments import InstrumentBook
from engine.live.accounts import Accounts
from engine.live.answers import AnswerHandling
from engine.live.arming import Arming
from engine.live.book import ReplicationBook
from engine.live.cockpit import Cockpit
from engine.live.collector import CollectionPause
from engine.live.day_end import DayEnd
from engine.live.drift import DriftCheck
from engine.live.executor import Executor
from engine.live.follower_feed import FollowerFeed
from engine.live.funds import FundsWatcher
from engine.live.lagging import Lagging
from engine.live.leader_feed import LeaderFeed
from engine.live.notifier import Notifier
from engine.live.orders import OrderActions
from engine.live.positions import Positions
from engine.live.recovery import Recovery
from engine.live.resolution import Resolver
from engine.live.stats import Stats
from engine.live.supervision import Supervisor
from engine.live.sync import PositionSync
from engine.live.tasks import TaskSet
from engine.live.tokens import AccountTokens
from engine.live.write_behind import WriteBehind
from engine.market_hours import MarketCalendar
from engine.views import RecoveryReport

__all__ = ["LiveParts", "SharedState", "wire_live_parts"]


@dataclass(frozen=True, slots=True)
class SharedState:
    """What every live part works over; it outlives a rewiring."""

    clock: Clock
    accounts: Accounts
    arming: Arming
    book: ReplicationBook
    instruments: InstrumentBook
    calendar: MarketCalendar
    publish: Callable[[EngineEvent], None]
    notifier: Notifier
    writes: WriteBehind
    tasks: TaskSet
    stats: Stats


@dataclass(frozen=True, slots=True)
class LiveParts:
    """The engine's live parts, one per job (see engine/live/)."""

    funds: FundsWatcher
    positions: Positions
    lagging: Lagging
    sync: PositionSync
    drift: DriftCheck
    cockpit: Cockpit
    supervisor: Supervisor
    tokens: AccountTokens
    leader_feed: LeaderFeed
    follower_feed: FollowerFeed
    resolver: Resolver
    answers: AnswerHandling
    executor: Executor
    recovery: Recovery
    day_end: DayEnd
    send_line: SendLine
    gc_pause: CollectionPause


def wire_live_parts(
    s: Settings,
    shared: SharedState,
    recover: Callable[[str], Awaitable[RecoveryReport]],
) -> LiveParts:
    """Build every live part; `recover` is the engine's own resync (the supervisor calls it)."""
    clock, accounts, book, notifier = shared.clock, shared.accounts, shared.book, shared.notifier
    arming, instruments, calendar = shared.arming, shared.instruments, shared.calendar
    writes, tasks, stats = shared.writes, shared.tasks, shared.stats
    funds = FundsWatcher(clock, accounts, notifier)
    positions = Positions(
        s, clock, accounts, book, instruments, funds, notifier, closing_day=calendar.closing_day
    )
    lagging = Lagging(clock, accounts, book, instruments, notifier)
    sync = PositionSync(clock, s.leader.client_id, accounts, arming, book, positions)
    drift = DriftCheck(accounts, instruments, funds, notifier, positions=positions)
    cockpit = Cockpit(
        s,
        clock,
        accounts,
        book,
        arming,
        instruments,
        funds,
        shared.publish,
        positions=positions,
    )
    supervisor = Supervisor(
        s,
        clock,
        accounts,
        book,
        arming,
        calendar,
        writes,
        notifier,
        tasks,
        drift.check,
    )
    tokens = AccountTokens(s, clock, accounts, notifier, tasks, supervisor.freeze)
    cockpit.keepers = accounts.keepers  # filled in when the keepers start
    gc_pause = CollectionPause()
    leader_feed = LeaderFeed(
        s.leader.client_id,
        clock,
        accounts,
        book,
        instruments,
        notifier,
        stats,
        tasks,
        on_leader=positions.on_leader,
        gc_pause=gc_pause,
    )
    follower_feed = FollowerFeed(
        clock,
        accounts,
        book,
        arming,
        notifier,
        stats,
        on_own_order=positions.own_order,
        on_account_order=positions.account_order,
    )
    day_end = DayEnd(clock, calendar, book, leader_feed, positions, notifier)
    resolver = Resolver(
        clock,
        accounts,
        book,
        follower_feed,
        writes,
        notifier,
        tasks,
        send_timeout_s=s.dhan.timeout_s,
    )
    answers = AnswerHandling(clock, notifier, tasks, tokens.order_token_refused)
    send_line = SendLine()
    orders = OrderActions(
        clock,
        book,
        arming,
        instruments,
        writes,
        notifier,
        answers,
        resolver,
        follower_feed,
        stats,
        send_line,
        gc_pause,
    )
    executor = Executor(
        s,
        clock,
        book,
        arming,
        instruments,
        calendar,
        funds,
        notifier,
        answers,
        orders,
        positions=positions,
        lagging=lagging,
    )
    recovery = Recovery(
        clock,
        accounts,
        book,
        leader_feed,
        follower_feed,
        executor,
        notifier,
        drift.check,
        day_end.settle,
    )
    supervisor.wire_recovery(recover, recovery.requeue)
    return LiveParts(
        funds=funds,
        positions=positions,
        lagging=lagging,
        sync=sync,
        drift=drift,
        cockpit=cockpit,
        supervisor=supervisor,
        tokens=tokens,
        leader_feed=leader_feed,
        follower_feed=follower_feed,
        resolver=resolver,
        answers=answers,
        executor=executor,
        recovery=recovery,
        day_end=day_end,
        send_line=send_line,
        gc_pause=gc_pause,
    )
