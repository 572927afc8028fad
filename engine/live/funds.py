"""Funds: the leader's and followers' capital, for capital-ratio sizing."""

from __future__ import annotations

import logging

from engine.clock import Clock
from engine.dhan.broker import Funds
from engine.dhan.errors import BrokerError
from engine.domain import Severity
from engine.live.accounts import Accounts, FollowerRuntime
from engine.live.notifier import Notifier
from engine.replication.sizing import CapitalRatioCache
from engine.secrets import redact

log = logging.getLogger(__name__)


class FundsWatcher:
    def __init__(self, clock: Clock, accounts: Accounts, notifier: Notifier) -> None:
        self._clock = clock
        self._accounts = accounts
        self._notifier = notifier
        self.capital = CapitalRatioCache()

    def ratio(self, f: FollowerRuntime) -> float | None:
        return self.capital.ratio(f.name, self._clock.monotonic(), f.refresh_s)

    def is_stale(self, f: FollowerRuntime) -> bool:
        return f.rules.sizing.kind == "capital_ratio" and self.capital.is_stale(
            f.name, self._clock.monotonic(), f.refresh_s
        )

    def forget(self, follower: str) -> None:
        """Read this follower's capital afresh before its next sizing."""
        self.capital.forget(follower)

    async def run(self) -> None:
        wanted = [f for f in self._accounts.all() if f.rules.sizing.kind == "capital_ratio"]
        if not wanted:
            return
        interval = min(f.refresh_s for f in wanted)
        while True:
            try:
                await self.refresh(wanted)
            except Exception:  # unexpected: logged, and the loop lives on
                log.exception("funds refresh failed")
            await self._clock.sleep(interval / 2)

    async def refresh(self, wanted: list[FollowerRuntime]) -> None:
        now = self._clock.monotonic()
        try:
            leader_funds = await self._accounts.leader().fund_limits()
            self.capital.set_leader(_capital_of(leader_funds), now)
        except BrokerError as exc:
            self._notifier.alert(
                "FUNDS_UNAVAILABLE",
                Severity.WARNING,
                f"Leader fund limits unavailable: {redact(str(exc))}",
            )
            return
        for f in wanted:
            try:
                funds = await f.broker.fund_limits()
                self.capital.set_follower(f.name, _capital_of(funds), now)
            except BrokerError as exc:
                self._notifier.alert(
                    "FUNDS_UNAVAILABLE",
                    Severity.WARNING,
                    f"{f.name}: fund limits unavailable: {redact(str(exc))}",
                    f.name,
                )


def _capital_of(funds: Funds) -> float:
    """An account's capital for sizing: its start-of-day limit, which does not move as the
    day's own orders block margin (the available balance would shrink each follower's ratio
    with every order it places), else the available balance."""
    return funds.sod_limit if funds.sod_limit > 0 else funds.available
