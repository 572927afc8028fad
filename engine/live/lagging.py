"""Lagging copies: the leader's order is filled (or ended with fills) and a follower's copy
still has quantity to fill (a thin market; a stop-loss that gapped through its protection
band). After the follower's `lagging_after_s`, its `lagging_policy` decides:

- ``alert`` (default): one alert naming the copy, its price, the market and the leader's fill;
- ``chase``: modify the copy to a protected marketable limit (the market, at most
  `max_slippage_pct` beyond it, on the instrument's tick), at most `max_chases` times, each
  after another `lagging_after_s`; then the alert;
- ``cancel``: cancel what is left of the copy (and say so).

A protective stop whose leader already exited is the same case (the leader's stop filled).
A copy that expired at the close while its leader was filled raises an alert too.

The scan runs on the injected clock. The actions go through the follower's dispatcher like
every other decision: `decision` offers the executor the policy's action for a copy, and
`keep_chased` stops the replicator from moving a chased copy back to the leader's price.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from engine.clock import Clock
from engine.domain import OrderParams, OrderSnapshot, OrderStatus, OrderType, Severity, Side
from engine.instruments import InstrumentBook
from engine.live.accounts import Accounts, FollowerRuntime
from engine.live.book import ReplicationBook
from engine.live.notifier import Notifier
from engine.records import MirrorRecord
from engine.replication.api_rules import round_to_tick
from engine.replication.replicator import Cancel, Decision, Modify, NoAction

SCAN_INTERVAL_S = 1.0
_PRICE_FIELDS = ("price", "trigger_price", "order_type")


@dataclass
class _Lag:
    since: float  # monotonic: first seen lagging
    last_step: float  # monotonic: since when the next step is counted
    alerted: bool = False
    chases: int = 0
    chase: OrderParams | None = None  # the protected limit the copy is being moved to
    cancel: bool = False


class Lagging:
    def __init__(
        self,
        clock: Clock,
        accounts: Accounts,
        book: ReplicationBook,
        instruments: InstrumentBook,
        notifier: Notifier,
    ) -> None:
        self._clock = clock
        self._accounts = accounts
        self._book = book
        self._instruments = instruments
        self._notifier = notifier
        self._lags: dict[tuple[str, str], _Lag] = {}
        self._expired_said: set[tuple[str, str]] = set()

    async def run(self) -> None:
        while True:
            await self._clock.sleep(SCAN_INTERVAL_S)
            self.scan()

    # --- the scan ------------------------------------------------------------------------------

    def scan(self) -> None:
        now = self._clock.monotonic()
        seen: set[tuple[str, str]] = set()
        for f in self._accounts.all():
            for mirror in self._book.open_copies(f.name):
                leader = self._book.leader(mirror.leader_order_id)
                if leader is None or not _lagging(leader, mirror):
                    continue
                key = (f.name, mirror.leader_order_id)
                seen.add(key)
                lag = self._lags.setdefault(key, _Lag(now, now))
                if now - lag.last_step >= f.settings.lagging_after_s:
                    self._step(f, leader, mirror, lag, now)
        for key in [k for k in self._lags if k not in seen]:
            del self._lags[key]  # filled, cancelled, or no longer behind
        self._expired_copies()

    def _step(
        self,
        f: FollowerRuntime,
        leader: OrderSnapshot,
        mirror: MirrorRecord,
        lag: _Lag,
        now: float,
    ) -> None:
        policy = f.settings.lagging_policy
        if policy == "cancel" and not lag.cancel:
            lag.cancel = True
            self._say(f, leader, mirror, lag, now, "cancelled by the lagging policy")
            f.dispatcher.mark(leader.order_id, urgent=True)
            return
        if policy == "chase" and lag.chases < f.settings.max_chases:
            chase = self._chase_params(f, leader, mirror)
            if chase is not None:
                lag.chase = chase
                lag.chases += 1
                lag.last_step = now
                self._notifier.journal(
                    "lagging",
                    f"{f.name} chases its copy {mirror.follower_order_id} to {chase.price:g} "
                    f"({lag.chases} of {f.settings.max_chases})",
                    f.name,
                    leader.order_id,
                )
                f.dispatcher.mark(leader.order_id)
                return
        if not lag.alerted:
            lag.alerted = True
            detail = (
                f"chased {lag.chases} time(s), still unfilled"
                if policy == "chase"
                else "left working (COPYTRADE lagging_policy=alert)"
            )
            self._say(f, leader, mirror, lag, now, detail)

    def _say(
        self,
        f: FollowerRuntime,
        leader: OrderSnapshot,
        mirror: MirrorRecord,
        lag: _Lag,
        now: float,
        detail: str,
    ) -> None:
        assert mirror.params is not None
        market = self._book.last_price(leader.segment, leader.security_id)
        params = mirror.params
        price = f"{params.order_type.value} {params.price:g}" + (
            f" trigger {params.trigger_price:g}" if params.trigger_price else ""
        )
        self._notifier.alert(
            "COPY_LAGGING",
            Severity.WARNING,
            f"{f.name}: copy {mirror.follower_order_id} ({params.side.value} "
            f"{params.quantity - mirror.filled_qty} of {params.quantity} "
            f"{leader.trading_symbol or leader.security_id} at {price}) is unfilled "
            f"{now - lag.since:.0f}s after the leader's order was filled at "
            f"{leader.avg_price:g}; market {market if market is not None else 'unknown'}; "
            f"{detail}",
            f.name,
            leader.order_id,
        )

    def _chase_params(
        self, f: FollowerRuntime, leader: OrderSnapshot, mirror: MirrorRecord
    ) -> OrderParams | None:
        """A limit at the market plus at most max_slippage_pct, on the instrument's tick; None
        when the market price is unknown."""
        assert mirror.params is not None
        market = self._book.last_price(leader.segment, leader.security_id)
        if market is None or market <= 0:
            return None
        params = mirror.params
        band = f.settings.max_slippage_pct / 100
        raw = market * (1 + band) if params.side is Side.BUY else market * (1 - band)
        tick = self._instruments.tick_size(leader.segment, leader.security_id)
        # Round toward the market: the limit never goes past the band.
        price = round_to_tick(raw, tick, Side.SELL if params.side is Side.BUY else Side.BUY)
        return replace(params, order_type=OrderType.LIMIT, price=price, trigger_price=0.0)

    def _expired_copies(self) -> None:
        for mirror in self._book.mirrors():
            if mirror.broker_status is not OrderStatus.EXPIRED or mirror.params is None:
                continue
            key = (mirror.follower, mirror.leader_order_id)
            if key in self._expired_said:
                continue
            leader = self._book.leader(mirror.leader_order_id)
            if leader is None or leader.filled_qty <= 0:
                continue
            self._expired_said.add(key)
            self._notifier.alert(
                "COPY_EXPIRED_LEADER_FILLED",
                Severity.WARNING,
                f"{mirror.follower}: copy {mirror.follower_order_id} expired at the close with "
                f"{mirror.total_filled} filled while the leader's order filled "
                f"{leader.filled_qty}: the follower is off the leader's position",
                mirror.follower,
                mirror.leader_order_id,
            )

    # --- what the executor asks ------------------------------------------------------------------

    def decision(self, f: FollowerRuntime, mirror: MirrorRecord | None) -> Decision | None:
        """The policy's action for this copy, while it is still to be done."""
        if mirror is None or not mirror.is_open_at_broker or not mirror.follower_order_id:
            return None
        lag = self._lags.get((f.name, mirror.leader_order_id))
        if lag is None or mirror.params is None:
            return None
        if lag.cancel:
            return Cancel(
                mirror.follower_order_id,
                f"lagging: the leader was filled {f.settings.lagging_after_s:g}s+ ago and this "
                "copy was not (lagging_policy=cancel)",
            )
        if lag.chase is not None:
            wanted = replace(mirror.params, **{n: getattr(lag.chase, n) for n in _PRICE_FIELDS})
            changed = tuple(
                n for n in _PRICE_FIELDS if getattr(wanted, n) != getattr(mirror.params, n)
            )
            if changed:
                return Modify(mirror.follower_order_id, wanted, changed)
        return None

    def keep_chased(
        self, f: FollowerRuntime, mirror: MirrorRecord | None, decision: Decision
    ) -> Decision:
        """A chased copy keeps its chased price: the replicator would move it back to the
        leader's (which the market left)."""
        if mirror is None or not isinstance(decision, Modify) or mirror.params is None:
            return decision
        lag = self._lags.get((f.name, mirror.leader_order_id))
        if lag is None or lag.chase is None:
            return decision
        wanted = replace(decision.params, **{n: getattr(lag.chase, n) for n in _PRICE_FIELDS})
        changed = tuple(
            n
            for n in ("quantity", "disclosed_qty", *_PRICE_FIELDS)
            if getattr(wanted, n) != getattr(mirror.params, n)
        )
        if not changed:
            return NoAction("chased copy: keeps its protected limit")
        return Modify(decision.follower_order_id, wanted, changed)


def _lagging(leader: OrderSnapshot, mirror: MirrorRecord) -> bool:
    """The leader is done filling (filled, or ended with fills) and the copy is not."""
    done = leader.status is OrderStatus.TRADED or (
        leader.status.is_terminal and leader.filled_qty > 0
    )
    return (
        done
        and mirror.params is not None
        and bool(mirror.follower_order_id)
        and mirror.params.quantity > mirror.filled_qty
    )
