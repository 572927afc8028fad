""".env.example's sample follower copies an index option and its protective stop-loss with no
instruments file (options_only knows an option from the order alert; the price band refuses
only prices that would cross the market), end to end with the real dhanhq SDK."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from engine.config import load_settings
from engine.engine import Engine
from engine.events import RecoveryCompleted
from engine.simulator.server import DhanSimulator
from tests.e2e.conftest import NIFTY_CE

pytestmark = pytest.mark.e2e

EXAMPLE = Path(__file__).resolve().parents[2] / ".env.example"


async def until_true(predicate: object, timeout: float, what: str) -> None:
    assert callable(predicate)
    for _ in range(int(timeout / 0.05)):
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def test_the_sample_follower_copies_an_index_option_and_its_stop_loss(
    sim: DhanSimulator, tmp_path: Path
) -> None:
    example = load_settings(env_file=EXAMPLE, environ={})
    half = example.followers[0]
    assert half.filters.options_only and half.risk.price_band_pct == 5
    assert example.instruments_file is None
    leader_id = example.leader.client_id
    assert example.leader.access_token is not None and half.access_token is not None
    sim.add_account(leader_id, example.leader.access_token.get_secret_value())
    for f in example.followers:
        assert f.access_token is not None
        sim.add_account(f.client_id, f.access_token.get_secret_value())
    # Only what must differ to run here: the simulator's addresses, a database, paper hours.
    settings = load_settings(
        env_file=EXAMPLE,
        environ={
            "COPYTRADE_DHAN__REST_URL": sim.rest_url,
            "COPYTRADE_DHAN__ORDER_WS_URL": sim.ws_url,
            "COPYTRADE_DB_PATH": str(tmp_path / "sample.db"),
            "COPYTRADE_ENFORCE_MARKET_HOURS": "false",
        },
    )
    engine = Engine(settings)  # no instrument book, no instruments file
    recovered = asyncio.Event()
    engine.subscribe(lambda e: recovered.set() if isinstance(e, RecoveryCompleted) else None)
    task = asyncio.create_task(engine.run())
    try:
        await asyncio.wait_for(engine.wait_started(), 10)
        await asyncio.wait_for(recovered.wait(), 10)  # the leader's feed is up
        ltp = sim.price(*NIFTY_CE)
        # Two lots bought intraday (marketable: fills at once), then a stop-loss far below.
        sim.place_manual_order(
            leader_id,
            transactionType="BUY",
            exchangeSegment=NIFTY_CE[0],
            securityId=NIFTY_CE[1],
            quantity=130,
            orderType="LIMIT",
            price=ltp + 1,
            productType="INTRADAY",
        )
        await until_true(
            lambda: any(o["filledQty"] == 65 for o in sim.orders(half.client_id)), 10, "entry"
        )
        stop_trigger = round(ltp * 0.8, 1)  # 20% away: far outside the 5% band, and fine
        sim.place_manual_order(
            leader_id,
            transactionType="SELL",
            exchangeSegment=NIFTY_CE[0],
            securityId=NIFTY_CE[1],
            quantity=130,
            orderType="STOP_LOSS",
            price=stop_trigger - 1,
            triggerPrice=stop_trigger,
            productType="INTRADAY",
        )

        def stop_copied() -> bool:
            return any(
                o["orderType"] == "STOP_LOSS" and o["orderStatus"] == "PENDING"
                for o in sim.orders(half.client_id)
            )

        await until_true(stop_copied, 10, "the stop-loss copy")
        [stop] = [o for o in sim.orders(half.client_id) if o["orderType"] == "STOP_LOSS"]
        assert (stop["transactionType"], stop["quantity"]) == ("SELL", 65)  # half of 2 lots
        assert stop["triggerPrice"] == stop_trigger
        skipped = [m for m in engine.mirrors() if m.follower == half.name and m.reason]
        assert not [m for m in skipped if m.state.value == "SKIPPED"], skipped
        # The one-lot follower copies the same two orders, one lot each.
        one = example.followers[1]
        assert sorted(o["quantity"] for o in sim.orders(one.client_id)) == [65, 65]
    finally:
        await engine.stop()
        await asyncio.wait_for(task, 15)
