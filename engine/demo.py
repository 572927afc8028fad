"""The demo: our Dhan simulator in-process, a scripted leader trading an options session, and
the real engine copying it into two followers with different sizing. No credentials, no network.

`DemoSession` is an `EngineHandle`: the terminal (or the headless log) drives it exactly as it
drives the engine with real accounts; only the Dhan it talks to is ours.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from engine.config import Settings, load_settings
from engine.control.protocol import ResumeReport, UncopiedOrder
from engine.domain import EngineState
from engine.engine import Engine
from engine.events import EngineEvent
from engine.simulator.server import DhanSimulator
from engine.views import (
    AccountView,
    CopyStepView,
    FollowerOrderView,
    KillPreview,
    LimiterView,
    PositionsView,
    RecoveryReport,
    SyncPreview,
    SyncReport,
    TimelineEntry,
)

LEADER_ID, LEADER_TOKEN = "1100000001", "demo-leader-token"
ALPHA_ID, ALPHA_TOKEN = "1100000002", "demo-alpha-token"
BETA_ID, BETA_TOKEN = "1100000003", "demo-beta-token"
BETA_RENEWED_TOKEN = "demo-beta-token-renewed"

NIFTY_CE = ("NSE_FNO", "48211")  # NIFTY 26000 CE, lot 65
NIFTY_PE = ("NSE_FNO", "48212")
NIFTY_26100_CE = ("NSE_FNO", "48215")
BANKNIFTY_PE = ("NSE_FNO", "52875")  # lot 30
RELIANCE = ("NSE_EQ", "2885")


def demo_settings(
    db_path: Path, rest_url: str = "http://127.0.0.1:1/v2", ws_url: str = "ws://127.0.0.1:1/"
) -> Settings:
    followers = [
        # alpha trades twice the leader's size; a big cash order exceeds its funds (a rejection).
        # A copy the thin market leaves behind its filled leader is chased after 4 s.
        {
            "name": "alpha",
            "client_id": ALPHA_ID,
            "access_token": ALPHA_TOKEN,
            "sizing": {"kind": "multiplier", "multiplier": 2},
            "lagging_policy": "chase",
            "lagging_after_s": 4,
            "max_chases": 2,
        },
        # beta sizes by capital: half the leader's funds, so half the leader's lots.
        {
            "name": "beta",
            "client_id": BETA_ID,
            "access_token": BETA_TOKEN,
            "sizing": {"kind": "capital_ratio", "refresh_s": 30},
            "filters": {"segments": ["NSE_FNO", "NSE_EQ"]},
        },
    ]
    return load_settings(
        env_file=None,
        environ={
            "COPYTRADE_LEADER__CLIENT_ID": LEADER_ID,
            "COPYTRADE_LEADER__ACCESS_TOKEN": LEADER_TOKEN,
            "COPYTRADE_FOLLOWERS": json.dumps(followers),
            "COPYTRADE_DHAN__REST_URL": rest_url,
            "COPYTRADE_DHAN__ORDER_WS_URL": ws_url,
            "COPYTRADE_DB_PATH": str(db_path),
            "COPYTRADE_ENFORCE_MARKET_HOURS": "false",
            "COPYTRADE_RECONCILE_INTERVAL_S": "20",
            "COPYTRADE_LEADER_IDLE_TIMEOUT_S": "30",
        },
    )


class ScriptedLeader:
    """A leader trading a realistic F&O morning, step by step, then again with new prices.

    Every step is something a copier must get right: limit orders, price chases, fills,
    stop-losses, cancels, partial fills, a burst past the rate limit, a socket drop with
    orders placed while it is down, a follower rejection, and a stop-loss-market order.
    """

    def __init__(self, sim: DhanSimulator, seed: int, speed: float = 1.0) -> None:
        self.sim = sim
        self.rng = random.Random(seed)
        self.speed = speed
        self.rounds = 0

    async def pause(self, seconds: float) -> None:
        await asyncio.sleep(seconds / self.speed)

    def place(
        self,
        key: tuple[str, str],
        side: str,
        qty: int,
        order_type: str = "LIMIT",
        price: float = 0.0,
        **extra: Any,
    ) -> str:
        return self.sim.place_manual_order(
            LEADER_ID,
            transactionType=side,
            exchangeSegment=key[0],
            securityId=key[1],
            quantity=qty,
            orderType=order_type,
            price=price,
            productType=extra.pop("productType", "INTRADAY" if key[0] != "NSE_EQ" else "CNC"),
            **extra,
        )

    def tick(self, key: tuple[str, str], price: float) -> float:
        price = max(round(round(price / 0.05) * 0.05, 2), 0.05)
        self.sim.set_price(key[0], key[1], price)
        return price

    def status(self, order_id: str) -> str:
        """The leader's order status at the simulator ("" when not found)."""
        for order in self.sim.orders(LEADER_ID):
            if order.get("orderId") == order_id:
                return str(order.get("orderStatus", ""))
        return ""

    def ltp(self, key: tuple[str, str]) -> float:
        return self.sim.price(key[0], key[1])

    def hold_before_start(self) -> None:
        """A position the leader already holds when the engine starts (bought earlier that
        day): history, never copied, so the followers are off target until a position sync."""
        self.place(BANKNIFTY_PE, "BUY", 60, order_type="MARKET")

    async def drift(self) -> None:
        """A random walk of option prices, so resting orders fill now and then."""
        keys = (NIFTY_PE, NIFTY_26100_CE)
        while True:
            for key in keys:
                ltp = self.ltp(key)
                self.tick(key, ltp * (1 + self.rng.uniform(-0.004, 0.004)))
            await self.pause(0.5)

    async def run(self) -> None:
        drift = asyncio.create_task(self.drift())
        try:
            while True:
                await self.session_round()
                self.rounds += 1
        finally:
            drift.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await drift

    async def session_round(self) -> None:
        await self.pause(2)
        # 1. A buy limit just under the market, then chased up twice, then filled.
        ce = self.ltp(NIFTY_CE)
        buy = self.place(NIFTY_CE, "BUY", 130, price=round(ce - 1.5, 1))
        await self.pause(2)
        self.sim.modify_manual_order(LEADER_ID, buy, price=round(ce - 0.5, 1))
        await self.pause(1.5)
        self.sim.modify_manual_order(LEADER_ID, buy, price=round(ce, 1), quantity=195)
        await self.pause(1)
        self.tick(NIFTY_CE, ce - 0.6)  # the market comes down to the order: filled
        await self.pause(2)
        # 2. A protective stop-loss for the position, later moved up (trailing).
        ce = self.ltp(NIFTY_CE)
        stop = self.place(
            NIFTY_CE,
            "SELL",
            195,
            order_type="STOP_LOSS",
            price=round(ce - 12, 1),
            triggerPrice=round(ce - 11, 1),
        )
        await self.pause(2.5)
        self.sim.modify_manual_order(
            LEADER_ID, stop, price=round(ce - 6, 1), triggerPrice=round(ce - 5, 1)
        )
        await self.pause(2)
        # 3. A put bid far from the market, then cancelled.
        pe = self.ltp(BANKNIFTY_PE)
        bid = self.place(BANKNIFTY_PE, "BUY", 60, price=round(pe * 0.9, 1), disclosedQuantity=30)
        await self.pause(2.5)
        self.sim.cancel_manual_order(LEADER_ID, bid)
        await self.pause(1.5)
        # 4. Thin liquidity: a bigger order fills a lot at a time.
        self.sim.set_liquidity(*NIFTY_PE, 65)
        pe = self.ltp(NIFTY_PE)
        thin = self.place(NIFTY_PE, "BUY", 325, price=round(pe + 0.5, 1))
        for _ in range(4):
            await self.pause(1)
            self.tick(NIFTY_PE, self.ltp(NIFTY_PE) - 0.05)
            if self.status(thin) == "TRADED":
                break
        # The leader is filled; the market then runs away from the followers' bigger copies,
        # which lag behind it: alpha's are chased (its lagging policy), beta's alerted.
        self.tick(NIFTY_PE, self.ltp(NIFTY_PE) + 2.0)
        await self.pause(6)  # the lag in view: alpha's copy chased after 4 s, beta's waits
        # 5. A burst of 14 orders in under a second: each follower meets Dhan's 10/s.
        ce2 = self.ltp(NIFTY_26100_CE)
        burst = [
            self.place(NIFTY_26100_CE, "BUY", 130, price=round(ce2 * 0.8 - i * 0.5, 1))
            for i in range(14)
        ]
        await self.pause(4)
        for order_id in burst:
            self.sim.cancel_manual_order(LEADER_ID, order_id)
        await self.pause(3)
        # 6. The leader's socket drops; orders placed, modified and cancelled meanwhile are
        #    recovered from the order book on reconnect.
        self.sim.faults.drop_sockets(LEADER_ID)
        pe = self.ltp(NIFTY_PE)
        missed = self.place(NIFTY_PE, "SELL", 130, price=round(pe * 1.3, 1))
        gone = self.place(NIFTY_PE, "SELL", 130, price=round(pe * 1.4, 1))
        self.sim.modify_manual_order(LEADER_ID, missed, price=round(pe * 1.25, 1))
        self.sim.cancel_manual_order(LEADER_ID, gone)
        await self.pause(4)
        self.sim.cancel_manual_order(LEADER_ID, missed)
        await self.pause(1.5)
        self.sim.set_liquidity(*NIFTY_PE, None)  # the thin market of step 4 is over
        # 7. A cash order too big for alpha's funds: Dhan rejects alpha's copy.
        rel = self.ltp(RELIANCE)
        self.place(RELIANCE, "BUY", 400, price=round(rel * 0.97, 1))
        await self.pause(3)
        # 8. A stop-loss-market exit: Dhan refuses SL-M from the API, so the copies go out
        #    as stop-loss limits with a protection band (see the order's timeline).
        pe = self.ltp(NIFTY_PE)
        self.place(
            NIFTY_PE, "SELL", 325, order_type="STOP_LOSS_MARKET", triggerPrice=round(pe * 0.9, 1)
        )
        await self.pause(3)
        # 9. Square off the option with a market order.
        self.place(NIFTY_CE, "SELL", 195, order_type="MARKET")
        await self.pause(2)
        self.sim.cancel_manual_order(LEADER_ID, stop)
        await self.pause(3)


class DemoSession:
    """Simulator + scripted leader + engine, behind the engine's own face."""

    def __init__(
        self, seed: int = 7, *, speed: float = 1.0, db_path: Path | None = None, script: bool = True
    ) -> None:
        self.seed = seed
        self._tmp = None if db_path else tempfile.TemporaryDirectory(prefix="copytrade-demo-")
        path = db_path or Path(self._tmp.name) / "demo.db"  # type: ignore[union-attr]
        self.sim = DhanSimulator(
            accounts={LEADER_ID: LEADER_TOKEN, ALPHA_ID: ALPHA_TOKEN, BETA_ID: BETA_TOKEN},
            seed=seed,
        )
        self.sim.add_account(ALPHA_ID, ALPHA_TOKEN, funds=1_000_000.0)
        self.sim.add_account(BETA_ID, BETA_TOKEN, funds=500_000.0)
        # No instrument book given: the engine loads Dhan's scrip master as the simulator
        # serves it (pointed there in run(), once the simulator has its port).
        self.engine = Engine(demo_settings(path))
        self.leader = ScriptedLeader(self.sim, seed, speed)
        self._script = script

    # EngineHandle: everything but run/stop delegates to the engine.
    @property
    def state(self) -> EngineState:
        return self.engine.state

    def subscribe(self, listener: Callable[[EngineEvent], None]) -> Callable[[], None]:
        return self.engine.subscribe(listener)

    async def run(self) -> None:
        await self.sim.start(host="127.0.0.1", port=0)
        scripts: list[asyncio.Task[None]] = []
        try:
            self.engine.configure_endpoints(
                self.sim.rest_url, self.sim.ws_url, self.sim.scrip_master_detailed_url
            )
            if self._script:
                self.leader.hold_before_start()
                await asyncio.sleep(1.1)  # Dhan's times have whole seconds: before the attach
            engine_task = asyncio.create_task(self.engine.run(), name="demo-engine")
            await asyncio.wait(
                {engine_task, asyncio.ensure_future(self.engine.wait_started())},
                return_when=asyncio.FIRST_COMPLETED,
            )
            if self._script and not engine_task.done():
                scripts.append(asyncio.create_task(self.leader.run(), name="demo-leader"))
                scripts.append(asyncio.create_task(self.token_story(), name="demo-token"))
            await engine_task
        finally:
            for script in scripts:
                script.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await script
            await self.sim.stop()
            if self._tmp is not None:
                self._tmp.cleanup()

    async def token_story(self) -> None:
        """Beta's token expires mid-session (beta freezes: nothing new opened, its resting
        copies kept); 16 s later the trader pastes a new one (the T key), and it copies again."""
        speed = self.leader.speed
        await asyncio.sleep(24 / speed)
        self.sim.expire_token(BETA_ID)
        await asyncio.sleep(16 / speed)
        self.sim.renew_token(BETA_ID, BETA_RENEWED_TOKEN)
        await self.engine.set_token("beta", SecretStr(BETA_RENEWED_TOKEN))

    async def stop(self) -> None:
        await self.engine.stop()

    async def kill(self, reason: str) -> None:
        await self.engine.kill(reason)

    async def resume(self, replace_open: bool = False) -> ResumeReport | None:
        return await self.engine.resume(replace_open)

    async def resync(self) -> RecoveryReport:
        return await self.engine.resync()

    def kill_preview(self) -> KillPreview:
        return self.engine.kill_preview()

    def in_flight(self) -> int:
        return self.engine.in_flight()

    async def timeline(self, leader_order_id: str) -> list[TimelineEntry]:
        return await self.engine.timeline(leader_order_id)

    def follower_views(self) -> list[FollowerOrderView]:
        return self.engine.follower_views()

    def limiter_views(self) -> list[LimiterView]:
        return self.engine.limiter_views()

    def market_label(self) -> str:
        return "demo market (simulator, always open)"

    def account_views(self) -> list[AccountView]:
        return self.engine.account_views()

    def positions_view(self) -> PositionsView:
        return self.engine.positions_view()

    def copy_steps(self) -> list[CopyStepView]:
        return self.engine.copy_steps()

    async def uncopied_orders(self) -> list[UncopiedOrder]:
        return await self.engine.uncopied_orders()

    async def sync_preview(self) -> SyncPreview:
        return await self.engine.sync_preview()

    async def sync_positions(self, preview: SyncPreview) -> SyncReport:
        return await self.engine.sync_positions(preview)

    async def clear_freeze(self, account: str) -> str:
        return await self.engine.clear_freeze(account)

    async def replace_token(self, account: str, token: SecretStr) -> str:
        return await self.engine.replace_token(account, token)
