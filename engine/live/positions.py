"""Positions: every follower's position ledgers (engine.replication.targets) kept live, the
follower's attach point, and both kept in the store.

- **Attach point.** The first time the engine runs a follower (a new database, a new follower,
  a follower re-enabled) it records when, and the leader's net positions then. Leader orders
  that ended before it are history: never traded (one summary alert per follower). Orders
  open at it are copied by `copy_existing` (the fills they had are history). Orders placed
  after it that ended while the engine was down are caught up only within
  `catch_up_max_age_s` and `catch_up_max_move_pct` of the leader's fill; beyond, one alert
  lists them.
- **Ledgers.** Each leader order the follower copies is a leg of the ledger of its instrument
  and product, sized with the terms in force when it arrived. The leader's side is recorded
  as snapshots arrive (in the order seen: the target is a fold over them); the copies' side
  is read from the book's copy records before each decision. When anything in a ledger
  changes, every copy in it that may still act is decided again, earliest first.
- **Sync plans.** What a position sync would place, on the same numbers as the drift check
  and the positions pane (targets.sync_step / position_drift over the ledger as it is now).

Its records are in engine.live.position_records, their stored text in
engine.live.position_codec, the alerts that sum up many orders in engine.live.position_notes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import date, timedelta
from enum import Enum

from engine.clock import Clock
from engine.config import FollowerSettings, Settings
from engine.dhan.broker_answers import Position
from engine.dhan.errors import BrokerError
from engine.domain import MirrorState, OrderSnapshot, Product, Segment, Severity, Side
from engine.instruments import InstrumentBook
from engine.live.account_holdings import CARRIED_IN_POSITIONS, AccountHoldings
from engine.live.accounts import Accounts, FollowerRuntime
from engine.live.book import ReplicationBook
from engine.live.funds import FundsWatcher
from engine.live.notifier import Notifier
from engine.live.position_codec import (
    attach_from,
    attach_row,
    ledger_from_json,
    ledger_to_json,
    sizing_text,
    syncs_from,
)
from engine.live.position_notes import EXISTING, HISTORY, LATE, PositionNotes, describe
from engine.live.position_records import (
    SYNC_PREFIX,
    AttachPoint,
    LedgerId,
    SyncOrder,
    SyncPlan,
)
from engine.replication.day_end import (
    INTRADAY_ONLY,
    ClosingDay,
    ended_before,
    held_open,
    leader_ended,
    squared_off_with_their_day,
)
from engine.replication.position_drift import drifts, position_drift, sync_step
from engine.replication.replicator import POSITION_CANCEL, FollowerRules
from engine.replication.rules import CopyFilters, MultiplierSizing, OrderSizeBounds
from engine.replication.targets import (
    Leg,
    PositionKey,
    PositionLedger,
    SizingTerms,
    next_target,
    record_copy_progress,
    record_leader_progress,
    refresh_terms,
    register_leader_order,
)
from engine.secrets import redact
from engine.store import Store, format_datetime
from engine.store.positions import LedgerRow

log = logging.getLogger(__name__)

# Dhan's order times have whole seconds: an order stamped in the attach point's own second may
# have come after it, so only orders stamped before that second count as before it.
TIMESTAMP_RESOLUTION = timedelta(seconds=1)
FLUSH_DELAY_S = 0.05
SQUARED_OFF = "an intraday order of a day that has ended: Dhan squared its position off"


@dataclass(frozen=True, slots=True)
class Later:
    """Only the copies of orders that arrived after this one."""

    after: str


class _Scope(Enum):
    ALL = "all"  # every copy of the ledger
    LATER = "later"  # the copies of orders after the changed one


ALL = _Scope.ALL
LATER = _Scope.LATER
Peers = _Scope | Later


class Positions:
    def __init__(
        self,
        settings: Settings,
        clock: Clock,
        accounts: Accounts,
        book: ReplicationBook,
        instruments: InstrumentBook,
        funds: FundsWatcher,
        notifier: Notifier,
        closing_day: ClosingDay | None = None,
    ) -> None:
        self._settings = settings
        # When an order's day ends (the market calendar's): intraday positions end with it.
        self._closing_day = closing_day
        self._clock = clock
        self._accounts = accounts
        self._book = book
        self._instruments = instruments
        self._funds = funds
        self._notifier = notifier
        self._attach: dict[str, AttachPoint] = {}
        self._ledgers: dict[LedgerId, PositionLedger] = {}
        self._key_of: dict[tuple[str, str], PositionKey] = {}  # (follower, leader id)
        self._untracked: dict[tuple[str, str], str] = {}  # why a leader order is not traded
        self._dirty: set[LedgerId] = set()
        self._dirty_attach: set[str] = set()
        self._dropped: list[str] = []
        self._enabled: dict[str, bool] = {}
        self._sizing_text: dict[str, str] = {}
        self._notes = PositionNotes(notifier)
        self._store: Store | None = None
        self._flush_wanted = asyncio.Event()
        self._syncs: dict[str, SyncOrder] = {}
        # The follower's own orders (not our copies) in intraday positions: what each has
        # filled (follower, order id) and their signed net per position.
        self._own_filled: dict[tuple[str, str], int] = {}
        self._own_net: dict[LedgerId, int] = {}
        # What each follower account holds in its carried (MARGIN) positions, from Dhan's
        # positions and the fills seen since: what its own trades left of our copies' holding.
        self._holdings = AccountHoldings()
        # Copies changed since their ledger last took them (follower -> leader order ids),
        # and the ledgers read in full once: a decision then looks only at what changed,
        # not at every copy of the day.
        self._changed_copies: dict[str, set[str]] = {}
        self._reconciled: set[LedgerId] = set()
        book.watch_copies(self._copy_changed)

    # --- start: attach points and ledgers from the store -------------------------------------

    async def load(self, store: Store) -> None:
        """What the store remembers; a new attach point for every follower run for the first
        time (or re-enabled); an alert for a follower whose sizing changed since last run."""
        self._store = store
        stored = {row.follower: row for row in await store.attach_points()}
        fresh: list[FollowerSettings] = []
        for fs in self._settings.followers:
            row = stored.get(fs.name)
            sizing = sizing_text(fs)
            self._sizing_text[fs.name] = sizing
            self._enabled[fs.name] = fs.enabled
            if row is None or (fs.enabled and not row.enabled):
                if fs.enabled:
                    fresh.append(fs)
                    if row is not None:
                        self._dropped.append(fs.name)  # re-enabled: starts again from now
                continue
            self._attach[fs.name] = attach_from(row)
            for sync in syncs_from(row):
                self._syncs[sync.order_id] = sync
            if row.enabled != fs.enabled:
                self._dirty_attach.add(fs.name)
            if row.sizing != sizing:
                self._dirty_attach.add(fs.name)
                self._notifier.alert(
                    "SIZING_CHANGED",
                    Severity.WARNING,
                    f"{fs.name}: sizing changed since the last run; it applies to leader "
                    "orders from now on, and never tops up what the leader filled before",
                    fs.name,
                )
        dropped = set(self._dropped)
        for follower, segment, security, product, body, _ in await store.position_ledgers():
            if follower in dropped or follower not in self._attach:
                continue
            key = PositionKey(Segment(segment), security, Product(product))
            ledger = ledger_from_json(key, body)
            self._ledgers[(follower, key)] = ledger
            for leg in ledger.legs:
                self._key_of[(follower, leg.leader_order_id)] = key
        if fresh:
            await self._attach_now(fresh)
        self._alert_orphans()
        await self.flush()

    def _alert_orphans(self) -> None:
        """A follower removed from the configuration while copies of it are still open:
        nothing follows the leader for them any more (the engine no longer has its token)."""
        configured = {fs.name for fs in self._settings.followers}
        orphans = [m for m in self._book.open_copies() if m.follower not in configured]
        if not orphans:
            return
        lines = "; ".join(
            f"{m.follower}: copy {m.follower_order_id or '(placing)'} of leader order "
            f"{m.leader_order_id}" + (f" ({m.symbol})" if m.symbol else "")
            for m in orphans
        )
        self._notifier.alert(
            "ORPHANED_COPIES",
            Severity.CRITICAL,
            f"{len(orphans)} open copy(ies) belong to followers no longer configured; nothing "
            f"follows the leader for them: cancel or manage them in Dhan: {lines}",
        )

    async def _attach_now(self, followers: list[FollowerSettings]) -> None:
        now = self._clock.now()
        derived = False
        leader_net: dict[PositionKey, int] = {}
        try:
            for p in await self._accounts.leader().positions():
                if p.net_qty:
                    key = PositionKey(p.segment, p.security_id, p.product)
                    leader_net[key] = leader_net.get(key, 0) + p.net_qty
        except BrokerError as exc:
            derived = True
            self._notifier.alert(
                "ATTACH_POSITIONS_UNREAD",
                Severity.WARNING,
                "The leader's positions could not be read at the attach point "
                f"({redact(str(exc))}); today's filled orders stand in for them "
                "(a position carried overnight is not known)",
            )
        for fs in followers:
            self._attach[fs.name] = AttachPoint(now, dict(leader_net), derived)
            self._dirty_attach.add(fs.name)
            held = ", ".join(f"{k.security_id} {n:+d}" for k, n in leader_net.items())
            self._notifier.alert(
                "FOLLOWER_ATTACHED",
                Severity.INFO,
                f"{fs.name} starts copying now: leader orders that ended earlier are not "
                "traded; "
                + (
                    "open ones are copied"
                    if self._settings.copy_existing == "open_orders"
                    else "open ones are not copied (COPYTRADE_COPY_EXISTING=none)"
                )
                + (
                    f"; the leader already holds {held}, not copied (use copytrade sync)"
                    if held
                    else ""
                ),
                fs.name,
            )

    def attach_point(self, follower: str) -> AttachPoint | None:
        return self._attach.get(follower)

    # --- the leader's side -------------------------------------------------------------------

    def on_leader(self, snap: OrderSnapshot) -> None:
        """A leader snapshot entered the book: every follower's ledger takes its progress
        (in the order seen), and the other copies of a changed ledger are decided again."""
        for f in self._accounts.all():
            changed = self._track(f, snap)
            if changed is not None:
                self._mark_peers(f, PositionKey.of(snap), snap.order_id, changed)

    def _track(self, f: FollowerRuntime, snap: OrderSnapshot) -> Peers | None:
        """Which other copies of the follower's ledger the change concerns (None: none)."""
        order_key = (f.name, snap.order_id)
        if order_key in self._untracked:
            return None
        if snap.order_id.startswith(SYNC_PREFIX):
            self._untracked[order_key] = "an order of a position sync, not a leader order"
            return None
        key = self._key_of.get(order_key)
        if key is not None:
            lid = (f.name, key)
            before = self._ledgers[lid]
            after = record_leader_progress(
                before,
                leader_order_id=snap.order_id,
                quantity=snap.quantity,
                filled=snap.filled_qty,
                is_open=snap.is_open,
            )
            if not self._put(lid, before, after):
                return None
            # A fill moves the target (every copy); a new quantity or an end only what the
            # copies of later orders project through this one.
            return ALL if after.fills != before.fills else LATER
        attach = self._attach.get(f.name)
        if attach is None:  # a follower that load() did not see: attached from now
            attach = AttachPoint(self._clock.now(), {}, derived=True)
            self._attach[f.name] = attach
            self._dirty_attach.add(f.name)
        verdict = self._classify(f, snap, attach)
        if isinstance(verdict, str):
            self._untracked[order_key] = verdict
            return None
        key = PositionKey.of(snap)
        lid = (f.name, key)
        before = self._ledgers.get(lid) or PositionLedger(
            key, leader_at_attach=attach.leader_net.get(key, 0)
        )
        after = register_leader_order(
            before,
            leader_order_id=snap.order_id,
            side=snap.side,
            quantity=snap.quantity,
            filled=snap.filled_qty,
            is_open=snap.is_open,
            terms=self._terms(f, snap),
            baseline_filled=verdict,
        )
        self._key_of[order_key] = key
        self._copy_changed(f.name, snap.order_id)  # a copy of it may already exist
        self._put(lid, before, after)
        # A new order is sized after every earlier one: unfilled, it changes none of them.
        return ALL if after.fills != before.fills else None

    def _classify(self, f: FollowerRuntime, snap: OrderSnapshot, attach: AttachPoint) -> int | str:
        """The fills before the attach point (0 for an order placed after it), or why the
        order is not traded for this follower."""
        if self._squared_off(snap):
            return SQUARED_OFF
        cut = attach.at - TIMESTAMP_RESOLUTION
        started = snap.created_at or snap.updated_at
        mirror = self._book.mirror(f.name, snap.order_id)
        if mirror is not None and mirror.params is not None:
            return 0  # already copied (a ledger written before its copy was lost)
        if started is not None and started < cut:
            if snap.status.is_terminal:
                if attach.derived and snap.filled_qty:
                    self._add_to_attach(f.name, snap)
                if snap.filled_qty:
                    self._notes.note(f.name, HISTORY, describe(snap))
                return "history: ended before the follower's attach point"
            if self._settings.copy_existing == "none":
                self._notes.note(f.name, EXISTING, describe(snap))
                return "open at the attach point (COPYTRADE_COPY_EXISTING=none)"
            if attach.derived and snap.filled_qty:
                self._add_to_attach(f.name, snap)
            return snap.filled_qty
        if snap.order_id in attach.refused:
            return "not caught up: it ended while the engine was away, beyond the bound"
        if snap.status.is_terminal and snap.filled_qty > 0:
            ended = snap.updated_at or self._clock.now()
            age = (self._clock.now() - ended).total_seconds()
            if age > self._settings.catch_up_max_age_s:
                self._notes.note(f.name, LATE, f"{describe(snap)} (ended {age:.0f}s ago)")
                self._refuse(f.name, attach, snap.order_id)
                return f"ended {age:.0f}s ago while the engine was away: too late to catch up"
            market = snap.ref_ltp
            if market > 0 and snap.avg_price > 0:
                move = abs(market - snap.avg_price) / snap.avg_price * 100
                if move > self._settings.catch_up_max_move_pct:
                    self._notes.note(f.name, LATE, f"{describe(snap)} (market moved {move:.1f}%)")
                    self._refuse(f.name, attach, snap.order_id)
                    return f"the market moved {move:.1f}% from the leader's fill: not caught up"
        return 0

    def _refuse(self, follower: str, attach: AttachPoint, order_id: str) -> None:
        attach.refused.add(order_id)
        self._dirty_attach.add(follower)

    def _add_to_attach(self, follower: str, snap: OrderSnapshot) -> None:
        """Derived attach (positions unreadable): the leader's history fills make his net."""
        key = PositionKey.of(snap)
        signed = snap.filled_qty if snap.side is Side.BUY else -snap.filled_qty
        attach = self._attach[follower]
        attach.leader_net[key] = attach.leader_net.get(key, 0) + signed
        self._dirty_attach.add(follower)
        lid = (follower, key)
        ledger = self._ledgers.get(lid)
        if ledger is not None and not ledger.fills:
            self._put(lid, ledger, replace(ledger, leader_at_attach=attach.leader_net[key]))

    def _terms(self, f: FollowerRuntime, snap: OrderSnapshot) -> SizingTerms:
        lot = self._instruments.lot_size(snap.segment, snap.security_id) or snap.lot_size
        return SizingTerms(
            rule=f.rules.sizing,
            bounds=f.rules.bounds,
            lot_size=lot,
            capital_ratio=self._funds.ratio(f),
        )

    # --- before a decision: the copies' side -------------------------------------------------

    def untracked_reason(self, follower: str, leader_order_id: str) -> str:
        return self._untracked.get((follower, leader_order_id), "")

    def ledger_for(self, f: FollowerRuntime, leader: OrderSnapshot) -> PositionLedger | None:
        """The follower's ledger holding this leader order, with its copies' progress as the
        book has them now; None when the order is not traded for this follower."""
        order_key = (f.name, leader.order_id)
        if order_key not in self._key_of and order_key not in self._untracked:
            self._track(f, leader)  # restored from the store without its ledger
        key = self._key_of.get(order_key)
        if key is None:
            return None
        lid = (f.name, key)
        before = self._ledgers[lid]
        after, scope = self._with_copy_progress(f.name, before, self._changed_in(lid))
        after = self._with_sync_fills(f.name, after)
        after = self._with_own_trades(f.name, after)
        this = after.leg(leader.order_id)
        if this is not None and this.terms.capital_ratio is None:
            ratio = self._funds.ratio(f)
            if ratio is not None:  # fund limits arrived after the order did
                after = refresh_terms(
                    after, this.leader_order_id, replace(this.terms, capital_ratio=ratio)
                )
        if after.follower_at_attach != before.follower_at_attach:
            scope = ALL
        if self._put(lid, before, after):
            self._mark_peers(f, key, leader.order_id, scope or ALL)
        return after

    def _copy_changed(self, follower: str, leader_order_id: str) -> None:
        self._changed_copies.setdefault(follower, set()).add(leader_order_id)

    def _changed_in(self, lid: LedgerId) -> list[Leg] | None:
        """The legs of the ledger whose copies changed since it last took them, in ledger
        order (taken now); None: read every leg (the ledger's first read)."""
        follower, key = lid
        pending = self._changed_copies.get(follower, set())
        mine = [i for i in pending if self._key_of.get((follower, i)) == key]
        # An order in no ledger yet is added again when a ledger takes it (see _track).
        pending.difference_update([i for i in pending if (follower, i) not in self._key_of])
        pending.difference_update(mine)
        if lid not in self._reconciled:
            self._reconciled.add(lid)
            return None
        ledger = self._ledgers[lid]
        legs = [leg for leg in map(ledger.leg, mine) if leg is not None]
        return sorted(legs, key=lambda leg: ledger.shape.where[leg.leader_order_id])

    def _with_copy_progress(
        self, follower: str, before: PositionLedger, legs: list[Leg] | None = None
    ) -> tuple[PositionLedger, Peers | None]:
        """The ledger with its copies' fills and working quantities as the book has them now
        (of `legs` only, when given: the ones whose copies changed), and which copies the
        change concerns."""
        after = before
        scope: Peers | None = None
        for leg in before.legs if legs is None else legs:
            mirror = self._book.mirror(follower, leg.leader_order_id)
            filled = mirror.total_filled if mirror is not None else 0
            working = 0
            if mirror is not None and mirror.is_open_at_broker and mirror.params is not None:
                working = max(mirror.params.quantity - mirror.filled_qty, 0)
            if filled != leg.copy_filled or working != leg.copy_working:
                after = record_copy_progress(
                    after, leader_order_id=leg.leader_order_id, filled=filled, working=working
                )
                # A copy's fill moves the follower (every copy); what it works only the
                # copies of later orders, which are sized after it.
                if filled != leg.copy_filled:
                    scope = ALL
                elif scope is None:
                    scope = Later(leg.leader_order_id)
        return after, scope

    # --- position sync ------------------------------------------------------------------------

    def plan_sync(self, f: FollowerRuntime, key: PositionKey, net: int) -> SyncPlan:
        """What a sync would do to this follower's position: its target counting the
        leader's position at the attach point (sized by the follower's rule now), the
        account's holdings taken as the follower's, and the order between the two."""
        attach = self._attach.get(f.name)
        ledger = self._ledgers.get((f.name, key)) or PositionLedger(
            key, leader_at_attach=attach.leader_net.get(key, 0) if attach else 0
        )
        ledger, _ = self._with_copy_progress(f.name, ledger)
        ledger = self._with_sync_fills(f.name, ledger)
        synced = replace(
            ledger, follower_at_attach=ledger.follower_at_attach + net - ledger.follower_net
        )
        if ledger.leader_at_attach and not ledger.target_at_attach:
            lot = self._instruments.lot_size(key.segment, key.security_id)
            terms = SizingTerms(f.rules.sizing, f.rules.bounds, lot, self._funds.ratio(f))
            start, _ = next_target(0, 0, ledger.leader_at_attach, terms)
            synced = replace(synced, target_at_attach=start)
        # The rule (targets.sync_step): the follower's net to its target, less only what
        # copies left behind by their filled leaders still work toward it; resting stops and
        # exits that follow the leader's own working orders count nothing; never past the
        # target, never across flat.
        drift = position_drift(synced)
        return SyncPlan(
            f.name,
            key,
            net,
            drift.target,
            sync_step(synced),
            synced,
            drift,
            ledger.follower_net,
            drift.target - ledger.target,
        )

    def commit_sync(self, plan: SyncPlan) -> SyncOrder:
        """The trader confirmed: the ledger takes the synced target and holdings, and the
        order that goes out gets its id."""
        lid = (plan.follower, plan.key)
        existing = self._ledgers.get(lid)
        before = existing or plan.synced
        held_before = (
            self._with_sync_fills(plan.follower, existing).follower_at_attach if existing else 0
        )
        adopted = plan.synced.follower_at_attach - held_before
        order_id = f"{SYNC_PREFIX}{plan.follower}-{len(self._syncs) + 1}"
        while order_id in self._syncs:
            order_id += "x"
        side = Side.BUY if plan.step > 0 else Side.SELL
        self._syncs[order_id] = SyncOrder(order_id, plan.follower, plan.key, adopted, side)
        self._put(lid, before, plan.synced)
        self._dirty_attach.add(plan.follower)  # the syncs are kept with the attach point
        return self._syncs[order_id]

    def sync_rules(self, f: FollowerRuntime, leader: OrderSnapshot) -> FollowerRules | None:
        """A sync order's copy is sized 1:1 (its quantity is the step itself) and goes to its
        own follower only; None for every other order."""
        sync = self._syncs.get(leader.order_id)
        if sync is None or sync.follower != f.name:
            return None
        lid = (f.name, sync.key)
        before = self._ledgers.get(lid)
        if before is not None and self._put(lid, before, self._with_sync_fills(f.name, before)):
            self._mark_peers(f, sync.key, leader.order_id, ALL)
        return replace(
            f.rules, sizing=MultiplierSizing(), bounds=OrderSizeBounds(), filters=CopyFilters()
        )

    def _with_sync_fills(self, follower: str, ledger: PositionLedger) -> PositionLedger:
        """The follower's holdings from syncs: what each adopted, plus what its order filled."""
        syncs = [s for s in self._syncs.values() if s.follower == follower and s.key == ledger.key]
        if not syncs:
            return ledger
        held = 0
        for sync in syncs:
            mirror = self._book.mirror(follower, sync.order_id)
            filled = mirror.total_filled if mirror is not None else 0
            held += sync.adopted + (filled if sync.side is Side.BUY else -filled)
        if held == ledger.follower_at_attach:
            return ledger
        return replace(ledger, follower_at_attach=held)

    def _with_own_trades(self, follower: str, ledger: PositionLedger) -> PositionLedger:
        key = ledger.key
        held = (
            self._holdings.account_net(follower, key)
            if key.product in CARRIED_IN_POSITIONS
            else None
        )
        if held is not None:
            # What the account holds beyond our copies: its own trades of any day, and what
            # it held before the attach point.
            own = held - ledger.follower_net
        else:
            # Intraday, or a carried position before a read of Dhan's positions counted the
            # fills seen: the own trades the account's stream showed. (Taken as closing what
            # our copies hold: a sale of what it carried of its own may leave a copy behind,
            # alerted, rather than the account short.)
            own = self._own_net.get((follower, key), 0)
            if ledger.follower_at_attach:
                own = 0  # a sync adopted what the account held outside our copies then
        return ledger if own == ledger.follower_own else replace(ledger, follower_own=own)

    def account_order(self, f: FollowerRuntime, snap: OrderSnapshot) -> None:
        """Any order in the follower's account, a copy or its own, as Dhan shows it now: the
        fills of a carried position count toward what the account holds."""
        if snap.product in CARRIED_IN_POSITIONS:  # (the rest: one comparison per alert)
            self._holdings.order_seen(f.name, snap, self._clock.now().date())

    def positions_read(self, f: FollowerRuntime, held: list[Position]) -> None:
        """Dhan's positions of the follower's account, just read: what the account holds in
        each carried position becomes known from a read that counts the fills seen (engine.
        live.account_holdings), and the copies of a position whose holding became known or
        changed are decided again (an exit copy resting beyond it is cut down)."""
        wanted = [k for f_name, k in self._ledgers if f_name == f.name]
        today = self._clock.now().date()
        for key in self._holdings.positions_read(f.name, held, wanted, today):
            if (f.name, key) in self._ledgers:
                self._mark_peers(f, key, "", ALL)

    def holdings_unconfirmed(self) -> bool:
        """A read of a follower's positions did not count the fills seen: read again soon."""
        return self._holdings.unconfirmed()

    def own_order(self, f: FollowerRuntime, snap: OrderSnapshot) -> None:
        """An order in the follower's account that is not one of our copies (placed by hand,
        or Dhan's square-off). Whatever it closed of the holding our copies built is not held
        any more, so no exit copied from the leader may close it again (it would turn the
        account to the other side): the ledger's `follower_own` counts it, and the copies of
        that position are decided again (a resting exit larger than what is held is cut down
        or cancelled). Its fills are counted here; in a carried position the account's
        holding, once known, comes from Dhan's positions and the fills since (see
        `positions_read`). A delivery position (CNC, MTF) is left alone: what the account
        carried is in its holdings, and Dhan refuses a sale beyond them."""
        intraday = snap.product in INTRADAY_ONLY
        if not (intraday or snap.product in CARRIED_IN_POSITIONS) or self._squared_off(snap):
            return
        order_key = (f.name, snap.order_id)
        before = self._own_filled.get(order_key, 0)
        if snap.filled_qty <= before:
            return  # nothing new filled (a repeat, or an update behind one taken)
        self._own_filled[order_key] = snap.filled_qty
        key = PositionKey.of(snap)
        lid = (f.name, key)
        delta = snap.filled_qty - before
        self._own_net[lid] = self._own_net.get(lid, 0) + (
            delta if snap.side is Side.BUY else -delta
        )
        ledger = self._ledgers.get(lid)
        if ledger is None or not ledger.legs:
            return
        self._mark_peers(f, key, "", ALL)
        if not ledger.follower_net:
            return  # our copies hold nothing in it: nothing of theirs was closed
        account = None if intraday else self._holdings.account_net(f.name, key)
        counted = (
            f"its own trades {self._own_net[lid]:+d}"
            if account is None
            else f"the account holds {account:+d}"
        )
        self._notifier.alert(
            "FOLLOWER_OWN_TRADE",
            Severity.WARNING,
            f"{f.name}: its own order {snap.order_id} ({snap.side.value} {snap.filled_qty} "
            f"{snap.trading_symbol or snap.security_id} {snap.product.value}, not a copy) "
            f"filled; our copies' exits in it now close only what the account still holds "
            f"(copies {ledger.follower_net:+d}, {counted})",
            f.name,
        )

    def _put(self, lid: LedgerId, before: PositionLedger, after: PositionLedger) -> bool:
        if after == before and lid in self._ledgers:
            return False
        self._ledgers[lid] = after
        self._dirty.add(lid)
        self._flush_wanted.set()
        return True

    def _mark_peers(
        self, f: FollowerRuntime, key: PositionKey, changed_id: str, scope: Peers
    ) -> None:
        """Decide again, earliest first, the other copies of the ledger the change concerns
        that may still act."""
        ledger = self._ledgers.get((f.name, key))
        if ledger is None:
            return
        after_id = changed_id if scope is LATER else scope.after if isinstance(scope, Later) else ""
        reached = not after_id
        for leg in ledger.legs:
            if leg.leader_order_id == after_id:
                reached = True
                continue
            if not reached or leg.leader_order_id == changed_id:
                continue
            if leg.leader_open or leg.copy_working or self._may_be_due(f.name, leg):
                f.dispatcher.mark(leg.leader_order_id)

    def _may_be_due(self, follower: str, leg: Leg) -> bool:
        """A filled leader order whose copy the position did not need until now (sized to
        zero, or cancelled by the engine as not needed): a later change may make it due."""
        if not leg.leader_filled:
            return False
        mirror = self._book.mirror(follower, leg.leader_order_id)
        return (
            mirror is None
            or mirror.state is MirrorState.SKIPPED
            or (mirror.state is MirrorState.DONE and mirror.reason.startswith(POSITION_CANCEL))
        )

    # --- the day's end ---------------------------------------------------------------------------

    def _squared_off(self, snap: OrderSnapshot) -> bool:
        """An intraday leader order of a day that has ended: whatever position it made was
        squared off at its close (a ledger that held it started again from flat)."""
        if snap.product not in INTRADAY_ONLY or self._closing_day is None:
            return False
        return leader_ended(self._closing_day, snap, self._clock.now().date()) is not None

    def square_off_ended(self) -> list[str]:
        """Every intraday position whose day has ended (engine.replication.day_end): Dhan
        squared it off before the close, the leader's and the follower's alike, so its ledger
        starts again from flat, and its orders are never traded again. Held on, the next day's
        copies would be sized against a holding neither account has (a fixed-lots follower's
        share of the leader's next sale taken as a trim of it). One line for each position
        that was not flat in the ledger."""
        closing_day = self._closing_day
        if closing_day is None:
            return []
        today = self._clock.now().date()
        lines: list[str] = []
        for lid, ledger in list(self._ledgers.items()):
            follower, key = lid
            if ledger.key.product not in INTRADAY_ONLY:
                continue
            syncs = [s for s in self._syncs.values() if s.follower == follower and s.key == key]
            parts = self._day_parts(follower, ledger, syncs, closing_day, today)
            if not squared_off_with_their_day(key.product, parts):
                continue
            before, _ = self._with_copy_progress(follower, ledger)
            before = self._with_sync_fills(follower, before)
            if before.leader_net or before.follower_net:
                lines.append(
                    f"{follower} {key.security_id} {key.product.value}: leader "
                    f"{before.leader_net:+d}, follower {before.follower_net:+d}"
                )
            for leg in ledger.legs:
                order_key = (follower, leg.leader_order_id)
                self._key_of.pop(order_key, None)
                self._untracked[order_key] = SQUARED_OFF
            self._changed_copies.get(follower, set()).difference_update(
                leg.leader_order_id for leg in ledger.legs
            )
            for sync in syncs:
                del self._syncs[sync.order_id]
            attach = self._attach.get(follower)
            if attach is not None:
                attach.leader_net.pop(key, None)
            self._dirty_attach.add(follower)
            self._reconciled.discard(lid)
            self._own_net.pop(lid, None)
            self._put(lid, ledger, PositionLedger(key))
        self._forget_ended_attach_holdings(closing_day, today)
        return lines

    def _forget_ended_attach_holdings(self, closing_day: ClosingDay, today: date) -> None:
        """What the leader held intraday at an attach point whose day has ended, in a position
        no ledger has taken yet: squared off too, so a ledger the leader's next order starts
        there starts from flat (a ledger that took it was rolled above)."""
        for follower, attach in self._attach.items():
            stale = [
                key
                for key in attach.leader_net
                if key.product in INTRADAY_ONLY
                and (follower, key) not in self._ledgers
                and ended_before(closing_day, key.segment, attach.at, today) is not None
            ]
            for key in stale:
                del attach.leader_net[key]
            if stale:
                self._dirty_attach.add(follower)

    def _day_parts(
        self,
        follower: str,
        ledger: PositionLedger,
        syncs: list[SyncOrder],
        closing_day: ClosingDay,
        today: date,
    ) -> Iterator[tuple[bool, date | None]]:
        """What the position is made of: whether each part still works at Dhan, and the day
        of the close that ended it (see `squared_off_with_their_day`). The latest order first,
        and lazily: a position traded today is told from its last order alone (this runs
        before every reconcile, over every ledger)."""
        for leg in reversed(ledger.legs):
            leader = self._book.leader(leg.leader_order_id)
            copy = self._book.mirror(follower, leg.leader_order_id)
            if leader is None or leader.is_open or (copy is not None and held_open(copy)):
                yield True, None
                return
            yield False, leader_ended(closing_day, leader, today)
        segment = ledger.key.segment
        if ledger.leader_at_attach or ledger.target_at_attach:
            attach = self._attach.get(follower)
            held_since = None if attach is None else attach.at
            yield False, ended_before(closing_day, segment, held_since, today)
        for sync in syncs:
            copy = self._book.mirror(follower, sync.order_id)
            when = None if copy is None else copy.updated_at
            yield (
                copy is not None and held_open(copy),
                ended_before(closing_day, segment, when, today),
            )

    # --- read-outs -----------------------------------------------------------------------------

    def ledgers(self, follower: str | None = None) -> list[PositionLedger]:
        return [
            ledger
            for (name, _), ledger in self._ledgers.items()
            if follower is None or name == follower
        ]

    def ledger(self, follower: str, key: PositionKey) -> PositionLedger | None:
        return self._ledgers.get((follower, key))

    def drift_lines(self) -> list[str]:
        """Each follower's positions off their targets, saying what working orders will close
        and what nothing will."""
        lines: list[str] = []
        for name in sorted({n for n, _ in self._ledgers}):
            for d in drifts(self.ledgers(name)):
                lines.append(f"{name} {d.describe()}")
        return lines

    # --- persistence ---------------------------------------------------------------------------

    async def run(self) -> None:
        """The flusher: one task for the engine's life."""
        while True:
            await self._flush_wanted.wait()
            await asyncio.sleep(FLUSH_DELAY_S)
            self._flush_wanted.clear()
            try:
                await asyncio.shield(self.flush())
            except Exception:  # kept dirty and retried; the store alert is raised elsewhere
                log.exception("position ledgers not stored")
                await asyncio.sleep(1.0)

    async def flush(self) -> None:
        if self._store is None:
            return
        dirty, self._dirty = self._dirty, set()
        attach_names, self._dirty_attach = self._dirty_attach, set()
        dropped, self._dropped = self._dropped, []
        if not dirty and not attach_names and not dropped:
            return
        now = format_datetime(self._clock.now())
        ledgers: list[LedgerRow] = [
            (
                name,
                key.segment.value,
                key.security_id,
                key.product.value,
                ledger_to_json(self._ledgers[(name, key)]),
                now,
            )
            for name, key in dirty
        ]
        attach = [
            attach_row(
                name,
                self._attach[name],
                self._enabled.get(name, True),
                self._sizing_text.get(name, ""),
                [x for x in self._syncs.values() if x.follower == name],
            )
            for name in attach_names
            if name in self._attach
        ]
        try:
            await self._store.save_positions(attach, ledgers, dropped)
        except BaseException:
            self._dirty |= dirty
            self._dirty_attach |= attach_names
            self._dropped[:0] = dropped
            raise
