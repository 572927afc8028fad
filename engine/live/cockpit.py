"""The cockpit's read models: every account's state, token and rate use, each leader order's
copies in step, and every account's positions against its target. Read-only: it looks at the
book, the accounts, the arming, the token keepers and Dhan's positions, and decides nothing.

Each follower's target and the part of its difference working copies will close are read
from its position ledgers (Positions.plan_sync): the same numbers as the sync preview and the
drift check, so the three never disagree.

Accounts and copy steps are rebuilt once a second and published only when they changed;
positions are read from Dhan on a slower timer (never per order event), so a flood of orders
costs the cockpit nothing extra.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from engine.accounts.tokens import TokenKeeper
from engine.clock import Clock
from engine.config import Settings
from engine.dhan.broker import Position
from engine.dhan.errors import BrokerError
from engine.domain import (
    EngineState,
    MirrorState,
    OrderSnapshot,
    OrderStatus,
    Product,
    Segment,
)
from engine.events import AccountsChanged, CopyStepsChanged, EngineEvent, PositionsRead
from engine.instruments import InstrumentBook
from engine.live.accounts import LEADER, Accounts, FollowerRuntime
from engine.live.arming import ENGINE_SCOPE, Arming
from engine.live.book import ReplicationBook
from engine.live.funds import FundsWatcher
from engine.live.positions import Positions
from engine.records import MirrorRecord
from engine.replication.targets import PositionKey as LedgerKey
from engine.secrets import redact
from engine.views import (
    AccountPnl,
    AccountState,
    AccountView,
    CopyStepView,
    FollowerPositionView,
    LaggingCopy,
    PositionsView,
    PositionView,
)

log = logging.getLogger(__name__)

ACCOUNTS_EVERY_S = 1.0
POSITIONS_EVERY_S = 7.0
# A read of a follower's positions that did not count the fills its order stream showed (one
# straddling a fill, or before the book was read at a start) is followed by one more this
# soon: exits are capped by what the account holds once a read agrees
# (engine.live.account_holdings).
CONFIRMING_READ_S = 1.0
STEP_HISTORY = 2000  # copy steps remembered for the newest leader orders

PositionKey = tuple[str, str, str]  # segment, security id, product


def _key(p: Position) -> PositionKey:
    return (p.segment.value, p.security_id, p.product.value)


def _avg(p: Position) -> float:
    if p.net_qty > 0:
        return p.buy_avg
    if p.net_qty < 0:
        return p.sell_avg
    return 0.0


@dataclass
class _Read:
    leader: dict[PositionKey, Position]
    followers: dict[str, dict[PositionKey, Position]]
    unavailable: list[str]


class Cockpit:
    def __init__(
        self,
        settings: Settings,
        clock: Clock,
        accounts: Accounts,
        book: ReplicationBook,
        arming: Arming,
        instruments: InstrumentBook,
        funds: FundsWatcher,
        publish: Callable[[EngineEvent], None],
        positions: Positions | None = None,
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._accounts = accounts
        self._book = book
        self._arming = arming
        self._instruments = instruments
        self._funds = funds
        self._publish = publish
        # The position ledgers: a follower's target and drift read from them are the very
        # numbers the sync preview and the drift check show.
        self._ledgers = positions
        self.keepers: Mapping[str, TokenKeeper] = {}
        self._accounts_shown: dict[str, AccountView] = {}
        self._steps_shown: dict[str, CopyStepView] = {}
        self._behind_since: dict[tuple[str, str], float] = {}
        self._positions = PositionsView(read_at=None)

    # --- accounts ---------------------------------------------------------------------------

    def account_views(self) -> list[AccountView]:
        views = [self._leader_view()]
        views.extend(self._follower_view(f) for f in self._accounts.all())
        views.extend(
            AccountView(fs.name, AccountState.DRAINING, "disabled in the settings")
            for fs in self._settings.followers
            if not fs.enabled and fs.name not in self._accounts.followers
        )
        return views

    def _engine_state(self) -> tuple[AccountState, str]:
        state = self._arming.state
        if state is EngineState.KILLED:
            return AccountState.KILLED, "killed by the trader"
        frozen = self._arming.frozen_reason(ENGINE_SCOPE)
        if state is EngineState.ARMED and frozen:
            return AccountState.FROZEN, frozen
        if state is EngineState.ARMED:
            return AccountState.ARMED, ""
        if state is EngineState.STOPPED:
            return AccountState.STOPPED, "the engine stopped"
        return AccountState.STARTING, ""

    def _token_facts(self, account: str) -> tuple[float | None, str, str]:
        keeper = self.keepers.get(account)
        if keeper is None:
            return None, "pasted token (not renewed)", ""
        left = keeper.time_left()
        return (
            None if left is None else left.total_seconds(),
            keeper.how_it_renews.value,
            keeper.status.value,
        )

    def _leader_view(self) -> AccountView:
        state, why = self._engine_state()
        left, renewal, status = self._token_facts(LEADER)
        return AccountView(
            LEADER,
            state,
            why,
            is_leader=True,
            token_left_s=left,
            token_renewal=renewal,
            token_status=status,
            source_ip=self._settings.leader.source_ip or "",
        )

    def _follower_view(self, f: FollowerRuntime) -> AccountView:
        state, why = self._engine_state()
        own_freeze = "; ".join(self._arming.freezes.get(f.name, {}).values())
        if state is not AccountState.KILLED:
            if f.killed_reason:
                state, why = AccountState.STOPPED, f.killed_reason
            elif own_freeze:
                state, why = AccountState.FROZEN, own_freeze
            elif not f.settings.enabled:
                state, why = AccountState.DRAINING, "disabled in the settings"
        limiter = f.limiter.view(f.dispatcher.queue_depth)
        copies = self._book.open_copies(f.name)
        left, renewal, status = self._token_facts(f.name)
        return AccountView(
            f.name,
            state,
            why,
            open_copies=len(copies),
            hand_managed=sum(1 for m in copies if m.by_hand),
            token_left_s=left,
            token_renewal=renewal,
            token_status=status,
            source_ip=f.settings.source_ip or "",
            windows=limiter.windows,
            queue_depth=limiter.queue_depth,
            throttled=limiter.throttled,
            dhan_rate_refusals=limiter.dh904,
        )

    def publish_accounts(self) -> None:
        changed = []
        for view in self.account_views():
            shown = self._accounts_shown.get(view.account)
            # the token's time left moves every second: compare it in whole minutes
            if shown is None or shown.signature() != view.signature():
                changed.append(view)
                self._accounts_shown[view.account] = view
        if changed:
            self._publish(AccountsChanged(self._clock.now(), tuple(changed)))

    # --- copies in step ---------------------------------------------------------------------

    def copy_steps(self) -> list[CopyStepView]:
        by_leader: dict[str, list[MirrorRecord]] = {}
        for m in self._book.mirrors():
            by_leader.setdefault(m.leader_order_id, []).append(m)
        now = self._clock.monotonic()
        steps = []
        behind_now: set[tuple[str, str]] = set()
        for leader in self._book.leader_orders()[-STEP_HISTORY:]:
            step = self._step(leader, by_leader.get(leader.order_id, []), now, behind_now)
            if step is not None:
                steps.append(step)
        for gone in set(self._behind_since) - behind_now:
            del self._behind_since[gone]
        return steps

    def _step(
        self,
        leader: OrderSnapshot,
        copies: list[MirrorRecord],
        now: float,
        behind_now: set[tuple[str, str]],
    ) -> CopyStepView | None:
        expected = [m for m in copies if m.state is not MirrorState.SKIPPED]
        if not expected:
            return None
        leader_filled = leader.filled_qty > 0 and leader.status.is_terminal
        in_step, failed = 0, 0
        lagging: list[LaggingCopy] = []
        for m in expected:
            quantity = m.params.quantity if m.params is not None else 0
            if m.state is MirrorState.FAILED:
                failed += 1
                continue
            if leader_filled and m.filled_qty < quantity and m.is_open_at_broker:
                key = (m.follower, leader.order_id)
                behind_now.add(key)
                since = self._behind_since.setdefault(key, now)
                lagging.append(LaggingCopy(m.follower, now - since, m.filled_qty, quantity))
                continue
            if leader.status is OrderStatus.CANCELLED and m.is_open_at_broker:
                continue  # the cancel has not reached this copy yet
            in_step += 1
        return CopyStepView(leader.order_id, len(expected), in_step, tuple(lagging), failed)

    def publish_steps(self) -> None:
        changed = []
        for step in self.copy_steps():
            shown = self._steps_shown.get(step.leader_order_id)
            if shown is None or shown.label != step.label:
                changed.append(step)
                self._steps_shown[step.leader_order_id] = step
        while len(self._steps_shown) > STEP_HISTORY:
            self._steps_shown.pop(next(iter(self._steps_shown)))
        if changed:
            self._publish(CopyStepsChanged(self._clock.now(), tuple(changed)))

    # --- positions --------------------------------------------------------------------------

    def positions_view(self) -> PositionsView:
        return self._positions

    async def read_positions(self) -> PositionsView:
        read = await self._read()
        rows: list[PositionView] = []
        for key in sorted(set(read.leader) | {k for m in read.followers.values() for k in m}):
            rows.append(self._position_row(key, read))
        totals = [_pnl(LEADER, read.leader.values())]
        totals.extend(_pnl(name, mine.values()) for name, mine in read.followers.items())
        self._positions = PositionsView(
            self._clock.now(), tuple(rows), tuple(totals), tuple(read.unavailable)
        )
        self._publish(PositionsRead(self._clock.now(), self._positions))
        return self._positions

    async def _read(self) -> _Read:
        read = _Read({}, {}, [])
        leader = self._accounts.leader_broker
        try:
            read.leader = {_key(p): p for p in await leader.positions()} if leader else {}
        except BrokerError as exc:
            read.unavailable.append(f"leader: positions unavailable ({redact(str(exc))})")
        for f in self._accounts.all():
            try:
                held = await f.broker.positions()
                read.followers[f.name] = {_key(p): p for p in held}
                if self._ledgers is not None:
                    self._ledgers.positions_read(f, held)
            except BrokerError as exc:
                read.unavailable.append(f"{f.name}: positions unavailable ({redact(str(exc))})")
        return read

    def _position_row(self, key: PositionKey, read: _Read) -> PositionView:
        segment, security_id, product = key
        leader = read.leader.get(key)
        leader_net = leader.net_qty if leader else 0
        symbol = leader.symbol if leader else ""
        followers: list[FollowerPositionView] = []
        for name, mine in read.followers.items():
            f = self._accounts.followers.get(name)
            p = mine.get(key)
            symbol = symbol or (p.symbol if p else "")
            net = p.net_qty if p else 0
            target, working = self._standing(f, key, net) if f else (net, 0)
            followers.append(
                FollowerPositionView(
                    name,
                    net,
                    target,
                    working,
                    _avg(p) if p else 0.0,
                    p.realized_pnl if p else 0.0,
                    p.unrealized_pnl if p else 0.0,
                )
            )
        return PositionView(
            segment,
            security_id,
            symbol or security_id,
            product,
            leader_net,
            _avg(leader) if leader else 0.0,
            leader.realized_pnl if leader else 0.0,
            leader.unrealized_pnl if leader else 0.0,
            tuple(followers),
        )

    def _standing(self, f: FollowerRuntime, key: PositionKey, net: int) -> tuple[int, int]:
        """(target, signed quantity working copies will still move it toward the target),
        from the follower's position ledger: the numbers of the sync preview and the drift
        check (targets.position_drift over the same ledger). Without ledgers (an engine not
        wired with them), the follower's net is shown as its own target."""
        if self._ledgers is None:
            return net, 0
        segment, security_id, product = key
        try:
            ledger_key = LedgerKey(Segment(segment), security_id, Product(product))
        except ValueError:  # an instrument kind the engine does not trade
            return net, 0
        plan = self._ledgers.plan_sync(f, ledger_key, net)
        need = plan.target - net
        toward = plan.drift.closing_by_working
        return plan.target, toward if need > 0 else -toward if need < 0 else 0

    # --- the loop ---------------------------------------------------------------------------

    async def run(self) -> None:
        last_positions: float | None = None
        confirming = False  # the last read was the quick one after an unconfirmed read
        while True:
            try:
                self.publish_accounts()
                self.publish_steps()
                now = self._clock.monotonic()
                every = POSITIONS_EVERY_S
                if (
                    not confirming
                    and self._ledgers is not None
                    and self._ledgers.holdings_unconfirmed()
                ):
                    every = CONFIRMING_READ_S
                if last_positions is None or now - last_positions >= every:
                    confirming = every == CONFIRMING_READ_S
                    last_positions = now
                    await self.read_positions()
            except Exception:  # a read model must never stop the engine; logged, next tick
                log.exception("cockpit refresh failed")
            await self._clock.sleep(ACCOUNTS_EVERY_S)


def _pnl(account: str, positions: Iterable[Position]) -> AccountPnl:
    realized = unrealized = 0.0
    for p in positions:
        realized += p.realized_pnl
        unrealized += p.unrealized_pnl
    return AccountPnl(account, realized, unrealized)
