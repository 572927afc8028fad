"""Position drift: each follower's net positions against its target (the leader's position
through its sizing rule, from its position ledgers), for every sizing kind. Alerts only;
never trades to fix it (a drift may be the trader's own manual work in that account).

Each line says what working copies will close as they fill and what nothing will, and how
much of the account's position did not come from our copies (manual trades, or positions
held before the follower's attach point)."""

from __future__ import annotations

from engine.dhan.errors import BrokerError
from engine.domain import Severity
from engine.instruments import InstrumentBook
from engine.live.accounts import Accounts
from engine.live.funds import FundsWatcher
from engine.live.notifier import Notifier
from engine.live.positions import Positions
from engine.replication.targets import PositionKey
from engine.secrets import redact


class DriftCheck:
    def __init__(
        self,
        accounts: Accounts,
        instruments: InstrumentBook,
        funds: FundsWatcher,
        notifier: Notifier,
        positions: Positions | None = None,
    ) -> None:
        self._accounts = accounts
        self._instruments = instruments
        self._funds = funds
        self._notifier = notifier
        self._positions = positions

    def use_positions(self, positions: Positions) -> None:
        self._positions = positions

    async def check(self) -> list[str]:
        if self._positions is None:
            return []
        lines: list[tuple[str, bool]] = []  # (text, something nothing will close)
        for f in self._accounts.all():
            ledgers = self._positions.ledgers(f.name)
            if not ledgers:
                continue
            try:
                held = await f.broker.positions()
            except BrokerError as exc:
                lines.append((f"{f.name}: positions unavailable ({redact(str(exc))})", True))
                continue
            self._positions.positions_read(f, held)
            actual: dict[PositionKey, int] = {}
            symbols: dict[PositionKey, str] = {}
            for p in held:
                key = PositionKey(p.segment, p.security_id, p.product)
                actual[key] = actual.get(key, 0) + p.net_qty
                symbols[key] = p.symbol
            for ledger in ledgers:
                # The sync plan's numbers: the positions pane and a sync preview show these.
                net = actual.get(ledger.key, 0)
                plan = self._positions.plan_sync(f, ledger.key, net)
                d = plan.drift
                outside = net - plan.from_copies  # not from our copies
                if d.in_line and outside == 0:
                    continue
                key = ledger.key
                text = (
                    f"{f.name} {key.segment.value} {symbols.get(key, key.security_id)} "
                    f"{key.product.value}: net {net}, leader {d.leader_net} implies {d.target} "
                    f"(drift {net - d.target:+d})"
                )
                if d.closing_by_working:
                    text += f"; {d.closing_by_working} will close as working copies fill"
                if d.uncovered:
                    text += f"; {d.uncovered} that no working order will close"
                if d.working_away:
                    text += f"; {d.working_away} in working copies would widen it"
                if outside:
                    text += (
                        f"; {outside:+d} not from copies (manual trades, or held before "
                        "the attach point)"
                    )
                if plan.unsynced_share:
                    text += (
                        f"; {plan.unsynced_share:+d} of the target is the leader's position "
                        "from before the attach point (copytrade sync copies it)"
                    )
                # The leader's position from before the attach point is not copied unless
                # the trader syncs: that alone is information, not a warning.
                unclosed = d.uncovered > abs(plan.unsynced_share) or d.working_away or outside
                lines.append((text, bool(unclosed)))
        for text, unclosed in lines:
            self._notifier.alert(
                "POSITION_DRIFT", Severity.WARNING if unclosed else Severity.INFO, text
            )
        return [text for text, _ in lines]
