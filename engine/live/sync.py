"""Position sync: the trader's explicit, previewed way to bring followers to their targets
(issue 10). Positions the leader held at a follower's attach point are never copied on their
own; a sync counts them in the follower's target (sized by its rule now), takes what the
follower's account holds as its position, and shows per follower and instrument the order
that would bring it to the target. Nothing is placed until the trader confirms; then each
order is checked again against the positions read at that moment, and goes out through the
engine's usual path (intent first, its own correlationId, followed to its fill).
"""

from __future__ import annotations

from engine.clock import Clock
from engine.dhan.errors import BrokerError
from engine.domain import OrderSnapshot, OrderStatus, OrderType, Side, Validity
from engine.live.accounts import Accounts, FollowerRuntime
from engine.live.arming import Arming
from engine.live.book import ReplicationBook
from engine.live.position_records import SyncPlan
from engine.live.positions import Positions
from engine.replication.targets import PositionKey
from engine.secrets import redact
from engine.views import SyncOrderView, SyncPreview, SyncReport


class PositionSync:
    def __init__(
        self,
        clock: Clock,
        leader_client_id: str,
        accounts: Accounts,
        arming: Arming,
        book: ReplicationBook,
        positions: Positions,
    ) -> None:
        self._clock = clock
        self._leader_client_id = leader_client_id
        self._accounts = accounts
        self._arming = arming
        self._book = book
        self._positions = positions

    async def preview(self) -> SyncPreview:
        plans, notes, symbols = await self._plans()
        return SyncPreview(tuple(_view(p, symbols) for p in plans), tuple(notes))

    async def apply(self, preview: SyncPreview) -> SyncReport:
        """Place the previewed orders that still hold; one line for each that does not."""
        if not self._arming.armed:
            return SyncReport(0, (), "engine not armed: nothing was placed")
        plans, notes, _ = await self._plans()
        now = {
            (p.follower, p.key.segment.value, p.key.security_id, p.key.product.value): p
            for p in plans
        }
        placed = 0
        refused: list[str] = list(notes)
        for order in preview.orders:
            plan = now.get((order.follower, order.segment, order.security_id, order.product))
            wanted = f"{order.follower} {order.side} {order.quantity} {order.symbol}"
            if plan is None:
                refused.append(f"{wanted}: no longer needed (already at its target)")
                continue
            side = "BUY" if plan.step > 0 else "SELL"
            if side != order.side or abs(plan.step) != order.quantity:
                refused.append(
                    f"{wanted}: changed since the preview (now {side} {abs(plan.step)}); "
                    "preview again"
                )
                continue
            f = self._accounts.followers.get(order.follower)
            if f is None or not f.settings.enabled:
                refused.append(f"{wanted}: follower not copying")
                continue
            self._place(f, plan)
            placed += 1
        message = f"{placed} sync order(s) sent" + (f", {len(refused)} not" if refused else "")
        return SyncReport(placed, tuple(refused), message)

    def _place(self, f: FollowerRuntime, plan: SyncPlan) -> None:
        sync = self._positions.commit_sync(plan)
        key = plan.key
        qty = abs(plan.step)
        now = self._clock.now()
        snap = OrderSnapshot(
            order_id=sync.order_id,
            client_id=self._leader_client_id,
            status=OrderStatus.TRADED,  # a step to take now, as a catch-up of a filled order
            side=Side.BUY if plan.step > 0 else Side.SELL,
            order_type=OrderType.MARKET,
            product=key.product,
            validity=Validity.DAY,
            segment=key.segment,
            security_id=key.security_id,
            quantity=qty,
            filled_qty=qty,
            avg_price=self._book.last_price(key.segment, key.security_id) or 0.0,
            trading_symbol=f"position sync of {f.name}",
            created_at=now,
            updated_at=now,
        )
        self._book.put_leader(snap)
        f.dispatcher.mark(sync.order_id)

    async def _plans(self) -> tuple[list[SyncPlan], list[str], dict[PositionKey, str]]:
        plans: list[SyncPlan] = []
        notes: list[str] = []
        symbols: dict[PositionKey, str] = {}
        for f in self._accounts.all():
            if not f.settings.enabled:
                continue
            attach = self._positions.attach_point(f.name)
            keys = {ledger.key for ledger in self._positions.ledgers(f.name)}
            if attach is not None:
                keys |= {k for k, n in attach.leader_net.items() if n}
            if not keys:
                continue
            try:
                held = await f.broker.positions()
            except BrokerError as exc:
                notes.append(f"{f.name}: positions unreadable ({redact(str(exc))}); left out")
                continue
            self._positions.positions_read(f, held)
            nets: dict[PositionKey, int] = {}
            for p in held:
                k = PositionKey(p.segment, p.security_id, p.product)
                nets[k] = nets.get(k, 0) + p.net_qty
                symbols[k] = p.symbol
            for key in sorted(keys, key=lambda k: (k.segment.value, k.security_id)):
                plan = self._positions.plan_sync(f, key, nets.get(key, 0))
                if plan.step:
                    plans.append(plan)
        return plans, notes, symbols


def _view(plan: SyncPlan, symbols: dict[PositionKey, str]) -> SyncOrderView:
    key = plan.key
    return SyncOrderView(
        follower=plan.follower,
        segment=key.segment.value,
        security_id=key.security_id,
        symbol=symbols.get(key, key.security_id),
        product=key.product.value,
        side="BUY" if plan.step > 0 else "SELL",
        quantity=abs(plan.step),
        net=plan.net,
        target=plan.target,
    )
