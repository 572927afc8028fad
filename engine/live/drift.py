"""Position drift: each follower's net positions against what the leader's imply. Alerts
only; never trades to fix it (a drift may be the trader's own manual work in that account)."""

from __future__ import annotations

from engine.dhan.errors import BrokerError
from engine.domain import Severity
from engine.instruments import InstrumentBook
from engine.live.accounts import Accounts
from engine.live.funds import FundsWatcher
from engine.live.notifier import Notifier
from engine.replication.sizing import size_order
from engine.secrets import redact


class DriftCheck:
    def __init__(
        self,
        accounts: Accounts,
        instruments: InstrumentBook,
        funds: FundsWatcher,
        notifier: Notifier,
    ) -> None:
        self._accounts = accounts
        self._instruments = instruments
        self._funds = funds
        self._notifier = notifier

    async def check(self) -> list[str]:
        try:
            leader_positions = await self._accounts.leader().positions()
        except BrokerError as exc:
            return [f"leader positions unavailable: {redact(str(exc))}"]
        leader_net = {(p.segment, p.security_id): p.net_qty for p in leader_positions}
        drifts: list[str] = []
        for f in self._accounts.all():
            if f.rules.sizing.kind == "fixed_lots":
                continue  # a fixed size per order implies no position ratio
            try:
                mine = {(p.segment, p.security_id): p for p in await f.broker.positions()}
            except BrokerError as exc:
                drifts.append(f"{f.name}: positions unavailable ({redact(str(exc))})")
                continue
            ratio = self._funds.ratio(f)
            for key in set(leader_net) | set(mine):
                seg, sec = key
                net = leader_net.get(key, 0)
                lot = self._instruments.lot_size(seg, sec) or 1
                sized = size_order(
                    f.rules.sizing,
                    f.rules.bounds,
                    leader_qty=abs(net),
                    lot_size=lot,
                    capital_ratio=ratio,
                ).quantity
                expected = sized if net >= 0 else -sized
                actual = mine[key].net_qty if key in mine else 0
                if actual != expected:
                    symbol = mine[key].symbol if key in mine else sec
                    drifts.append(
                        f"{f.name} {seg.value} {symbol}: net {actual}, leader {net} "
                        f"implies {expected} (drift {actual - expected:+d})"
                    )
        for text in drifts:
            self._notifier.alert("POSITION_DRIFT", Severity.WARNING, text)
        return drifts
