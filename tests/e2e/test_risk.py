"""Risk controls and Dhan's 2026 rules, end to end against the simulator."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from datetime import datetime
from functools import partial
from pathlib import Path

import pytest
from rich.console import Console

from engine.check import collect, run_check
from engine.clock import IST, ManualClock
from engine.domain import EngineState, MirrorState
from engine.engine import Engine
from engine.events import AlertRaised
from engine.simulator.server import DhanSimulator
from tests.e2e.conftest import (
    ALPHA,
    BETA,
    LEADER,
    NIFTY_CE,
    World,
    WorldFactory,
    make_settings,
)

pytestmark = pytest.mark.e2e


def alerts(world: World, code: str) -> list[AlertRaised]:
    return [e for e in world.events if isinstance(e, AlertRaised) and e.alert.code == code]


def mutating(world: World, who_cid: str, since: int = 0) -> list[dict[str, object]]:
    return [
        r
        for r in world.sim.requests[since:]
        if r["client_id"] == who_cid
        and r["method"] in ("POST", "PUT")
        and str(r["path"]).startswith("/v2/orders")
    ]


def alpha_working_at(world: World, price: float) -> bool:
    return [o["price"] for o in world.orders("alpha") if o["orderStatus"] == "PENDING"] == [price]


async def test_forty_leader_edits_end_in_the_final_state_within_25_modifications(
    make_world: WorldFactory,
) -> None:
    # A leader modification reaches the engine as an alert, or (a dialect that sends none for
    # a modification) through the leader poll: read fast here so 40 edits take seconds.
    world = await make_world(leader_poll_s="0.2")
    leader_id = world.place(price=150.0)
    await world.follower_order("alpha")
    await world.settle()
    for i in range(40):
        price = 150.0 + (i + 1) * 0.5
        world.modify(leader_id, price=price)
        # Each edit copied before the next, so the 25-modification budget is surely reached.
        await world.until(partial(alpha_working_at, world, price), what=f"alpha at {price}")
    final = 170.0
    await world.until(
        lambda: (
            [o["price"] for o in world.orders("alpha") if o["orderStatus"] == "PENDING"] == [final]
        ),
        timeout=20,
        what="alpha at the leader's final price",
    )
    await world.settle()
    puts = Counter(
        str(r["path"]).rsplit("/", 1)[-1]
        for r in world.sim.requests
        if r["client_id"] == ALPHA[0] and r["method"] == "PUT"
    )
    assert puts and max(puts.values()) <= 25
    assert not [
        r
        for r in world.sim.requests
        if r.get("error_code") == "DH-906" and r["client_id"] == ALPHA[0]
    ]
    open_alpha = [o for o in world.orders("alpha") if o["orderStatus"] == "PENDING"]
    assert len(open_alpha) == 1 and open_alpha[0]["quantity"] == 65
    mirror = world.eng.mirror("alpha", leader_id)
    assert mirror is not None and mirror.generation >= 1  # cancelled and re-placed at least once
    assert (
        sum(
            1
            for r in world.sim.requests
            if r["client_id"] == ALPHA[0] and r["method"] == "POST" and r["status"] == 200
        )
        == mirror.generation + 1
    )
    timeline = await world.eng.timeline(leader_id)
    assert any("modification budget used" in e.text for e in timeline)


async def test_pre_trade_limits_block_with_the_rule_and_numbers(make_world: WorldFactory) -> None:
    world = await make_world(
        followers=[
            {
                "name": "alpha",
                "client_id": ALPHA[0],
                "access_token": "tok-alpha-e2e",
                "risk": {"max_order_value": 10000, "max_lots": 1},
            },
        ]
    )
    leader_id = world.place(price=200.0, qty=130)
    await world.until(lambda: world.eng.mirror("alpha", leader_id) is not None, what="decision")
    mirror = world.eng.mirror("alpha", leader_id)
    assert mirror is not None and mirror.state is MirrorState.SKIPPED
    assert "max_" in mirror.reason
    assert world.orders("alpha") == []
    assert alerts(world, "RISK_LIMIT")


async def test_price_band_refuses_only_a_price_that_crosses_the_market(
    make_world: WorldFactory,
) -> None:
    world = await make_world(
        followers=[
            {
                "name": "alpha",
                "client_id": ALPHA[0],
                "access_token": "tok-alpha-e2e",
                "risk": {"price_band_pct": 5},
            },
        ]
    )
    ltp = world.sim.price(*NIFTY_CE)
    far_below = round(ltp * 0.7, 1)
    world.place(price=far_below)  # a bid 30% below the market only rests: copied
    # a protective stop 30% below the market: copied (as a STOP_LOSS with a limit)
    world.place(side="SELL", order_type="STOP_LOSS_MARKET", triggerPrice=far_below)
    copies = await world.follower_order("alpha", count=2)
    assert sorted(o["orderType"] for o in copies) == ["LIMIT", "STOP_LOSS"]
    await world.settle()
    assert not alerts(world, "RISK_BLOCKED")
    fat = world.place(price=round(ltp * 1.5, 1))  # a bid 50% above would buy at any price
    await world.until(lambda: world.eng.mirror("alpha", fat) is not None, what="decision")
    mirror = world.eng.mirror("alpha", fat)
    assert mirror is not None and mirror.state is MirrorState.SKIPPED
    assert "price_band_pct" in mirror.reason
    assert len(world.orders("alpha")) == 2


async def test_loss_limit_breached_mid_burst_freezes_the_follower_and_nothing_is_sent_after(
    make_world: WorldFactory,
) -> None:
    world = await make_world(
        followers=[
            {
                "name": "alpha",
                "client_id": ALPHA[0],
                "access_token": "tok-alpha-e2e",
                "risk": {"daily_loss_limit": 1000},
            },
            {"name": "beta", "client_id": BETA[0], "access_token": "tok-beta-e2e"},
        ],
        risk_check_interval_s="0.1",
    )
    ltp = world.sim.price(*NIFTY_CE)
    world.place(price=ltp + 1, qty=650)  # fills at once: alpha long 650
    await world.until(
        lambda: bool(world.orders("alpha")) and world.orders("alpha")[0]["filledQty"] == 650,
        what="alpha filled",
    )
    for i in range(15):
        world.place(price=ltp - 30 - i * 0.5)
    world.sim.set_price(*NIFTY_CE, ltp - 5)  # 650 x -5 = -3250: past the 1000 limit
    await world.until(lambda: bool(alerts(world, "FOLLOWER_FROZEN")), timeout=10, what="freeze")
    breach_at = len(world.sim.requests)
    resting = [o["orderId"] for o in world.orders("alpha") if o["orderStatus"] == "PENDING"]
    await asyncio.sleep(0.5)
    await world.settle()
    assert not [r for r in mutating(world, ALPHA[0], breach_at) if r["method"] == "POST"]
    # Frozen, not killed: the copies already resting at Dhan stay where they are.
    still = {o["orderId"] for o in world.orders("alpha") if o["orderStatus"] == "PENDING"}
    assert set(resting) <= still
    assert world.eng.state is EngineState.ARMED
    assert "loss limit" in world.eng.follower_stop_reason("alpha")
    # beta, without a loss limit, keeps copying.
    assert len(world.orders("beta")) == 16


async def test_loss_limit_can_freeze_the_whole_engine(make_world: WorldFactory) -> None:
    world = await make_world(
        followers=[
            {
                "name": "alpha",
                "client_id": ALPHA[0],
                "access_token": "tok-alpha-e2e",
                "risk": {"daily_loss_limit": 100, "on_loss_breach": "kill_engine"},
            }
        ],
        risk_check_interval_s="0.1",
    )
    ltp = world.sim.price(*NIFTY_CE)
    world.place(price=ltp + 1, qty=65)
    await world.until(
        lambda: bool(world.orders("alpha")) and world.orders("alpha")[0]["filledQty"] == 65
    )
    world.sim.set_price(*NIFTY_CE, ltp - 10)
    await world.until(lambda: world.eng.state is EngineState.FROZEN, timeout=10, what="frozen")


async def test_follower_that_fails_everything_opens_its_circuit(make_world: WorldFactory) -> None:
    world = await make_world(circuit_threshold="3", circuit_cooldown_s="60")
    world.sim.faults.fail_next(50, status=500, match="POST /v2/orders")
    for i in range(6):
        world.place(price=180.0 - i)
    await world.until(
        lambda: len(alerts(world, "CIRCUIT_OPEN")) == 2, timeout=15, what="both circuits open"
    )
    count = len(world.posts("alpha")) + len(world.posts("beta"))
    await asyncio.sleep(1.0)
    # While open, the followers' placements are held back (no hammering of a failing API).
    assert len(world.posts("alpha")) + len(world.posts("beta")) == count
    assert "pausing this follower" in alerts(world, "CIRCUIT_OPEN")[0].alert.message


async def test_follower_token_expired_mid_session_freezes_that_follower(world: World) -> None:
    world.place(price=200.0)
    await world.follower_order("beta")
    world.sim.faults.expire_token(BETA[0])
    world.place(price=199.0)
    await world.until(
        lambda: bool(alerts(world, "FOLLOWER_FROZEN")), timeout=10, what="beta frozen"
    )
    assert "token" in alerts(world, "FOLLOWER_FROZEN")[0].alert.message
    await world.follower_order("alpha", 2)  # alpha is unaffected


async def test_leader_token_expired_freezes_the_engine_and_keeps_the_copies(
    world: World,
) -> None:
    world.place(price=200.0)
    await world.follower_order("alpha")
    world.sim.faults.expire_token(LEADER[0])
    await world.until(lambda: world.eng.state is EngineState.FROZEN, timeout=15, what="freeze")
    await world.settle()
    assert all(o["orderStatus"] == "PENDING" for o in world.orders("alpha"))


async def test_leader_dark_while_market_open_freezes(sim, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(
        sim, tmp_path / "dark.db", None, leader_dark_kill_after_s="0.5", risk_check_interval_s="0.1"
    )
    dead = settings.dhan.model_copy(update={"order_ws_url": "ws://127.0.0.1:9/"})
    engine = Engine(settings.model_copy(update={"dhan": dead}))
    task = asyncio.create_task(engine.run())
    try:
        await asyncio.wait_for(engine.wait_started(), 10)
        for _ in range(100):
            if engine.state is EngineState.FROZEN:
                break
            await asyncio.sleep(0.05)
        assert engine.state is EngineState.FROZEN
    finally:
        await engine.stop()
        await asyncio.wait_for(task, 15)


async def test_position_drift_is_reported_with_numbers_on_r(world: World) -> None:
    ltp = world.sim.price(*NIFTY_CE)
    world.place(price=ltp + 1, qty=65)
    await world.until(
        lambda: bool(world.orders("alpha")) and world.orders("alpha")[0]["filledQty"] == 65
    )
    # The trader buys more in alpha by hand: alpha now holds 130 where the leader implies 65.
    world.sim.place_manual_order(
        ALPHA[0],
        transactionType="BUY",
        exchangeSegment="NSE_FNO",
        securityId="48211",
        quantity=65,
        orderType="MARKET",
        productType="INTRADAY",
    )
    report = await world.eng.resync()
    drift = [d for d in report.discrepancies if "alpha" in d and "drift" in d]
    assert drift and "net 130" in drift[0] and "implies 65" in drift[0]
    assert alerts(world, "POSITION_DRIFT")


# --- copytrade check ------------------------------------------------------------------------


def _clock_at(day: str, hh: int = 9) -> ManualClock:
    return ManualClock(IST.localize(datetime.fromisoformat(f"{day} {hh:02d}:00:00")))


async def test_check_passes_against_the_simulator(sim: DhanSimulator, tmp_path: Path) -> None:
    settings = make_settings(sim, tmp_path / "c.db", enforce_market_hours="true")
    console = Console(record=True, width=140)
    code = await run_check(settings, clock=_clock_at("2026-11-23"), console=console)
    text = console.export_text()
    assert code == 0, text
    assert "all checks passed" in text and "tok-" not in text


async def test_check_fails_for_a_bad_token_a_killed_account_and_a_holiday(
    sim: DhanSimulator, tmp_path: Path
) -> None:
    sim.faults.expire_token(ALPHA[0])
    sim.exchange.set_kill_switch(BETA[0], True)
    settings = make_settings(sim, tmp_path / "c.db", enforce_market_hours="true")
    results = await collect(settings, _clock_at("2026-11-24"))  # Guru Nanak Jayanti
    failed = {(r.account, r.check) for r in results if r.verdict.value == "FAIL"}
    assert ("alpha", "token") in failed
    assert ("beta", "kill switch") in failed
    assert ("market", "NSE_FNO") in failed
    console = Console(record=True, width=140)
    assert await run_check(settings, clock=_clock_at("2026-11-24"), console=console) == 1
    assert "tok-" not in console.export_text()


def test_followers_json_in_env_example_is_valid() -> None:
    text = Path(".env.example").read_text()
    line = next(x for x in text.splitlines() if x.startswith("COPYTRADE_FOLLOWERS="))
    assert isinstance(json.loads(line.split("=", 1)[1].strip("'")), list)
