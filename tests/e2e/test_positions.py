"""Positions follow the leader, never beyond it (issue 10): the attach point, position-true
sizing, and configuration changes across restarts, with the real dhanhq SDK against the
simulator."""

from __future__ import annotations

import asyncio
import contextlib
import io
from typing import Any

import pytest

from engine.domain import Severity
from tests.e2e.conftest import ALPHA, BETA, LEADER, NIFTY_CE, RELIANCE, World, WorldFactory

pytestmark = pytest.mark.e2e

ACCOUNT = {"leader": LEADER[0], "alpha": ALPHA[0], "beta": BETA[0]}
LOT = 65  # NIFTY_CE

# Dhan stamps orders in whole seconds: orders meant to be before an attach point are placed
# more than a second before the engine starts.
BEFORE_ATTACH_S = 2.1


def follower(name: str, **rules: Any) -> dict[str, Any]:
    cid, token = {"alpha": ALPHA, "beta": BETA}[name]
    return {"name": name, "client_id": cid, "access_token": token, **rules}


def net(world: World, who: str, key: tuple[str, str] = NIFTY_CE) -> int:
    return sum(
        int(p["netQty"])
        for p in world.sim.positions(ACCOUNT[who])
        if p["exchangeSegment"] == key[0] and str(p["securityId"]) == key[1]
    )


def alert_texts(world: World, code: str) -> list[str]:
    return [a.message for a in world.eng.recent_alerts() if a.code == code]


def market(world: World, side: str, qty: int, key: tuple[str, str] = NIFTY_CE) -> str:
    return world.place(key=key, side=side, qty=qty, order_type="MARKET")


async def filled(world: World, who: str, expected: int, key: tuple[str, str] = NIFTY_CE) -> None:
    await world.until(lambda: net(world, who, key) == expected, 8, f"{who} net {expected}")


async def test_first_start_copies_open_orders_only_not_history_or_held_positions(
    make_world: WorldFactory,
) -> None:
    world = await make_world(start=False)
    ltp = world.sim.price(*RELIANCE)
    market(world, "BUY", 4, RELIANCE)  # a round trip, flat before the engine starts
    market(world, "SELL", 4, RELIANCE)
    market(world, "BUY", 10, RELIANCE)  # a position the leader holds at the attach point
    resting = world.place(key=RELIANCE, side="BUY", qty=5, price=round(ltp * 0.9, 1))
    await asyncio.sleep(BEFORE_ATTACH_S)
    await world.start_engine()
    await world.settle()
    # The open order is copied (x1 and x2); nothing of the history, nothing of the position.
    alpha, beta = world.orders("alpha"), world.orders("beta")
    assert [(o["transactionType"], o["quantity"]) for o in alpha] == [("BUY", 5)]
    assert [(o["transactionType"], o["quantity"]) for o in beta] == [("BUY", 10)]
    history = alert_texts(world, "HISTORY_NOT_TRADED")
    assert len(history) == 2  # one summary per follower, not one per order
    assert "3 leader order(s)" in history[0]
    attached = alert_texts(world, "FOLLOWER_ATTACHED")
    assert any("the leader already holds 2885 +10" in t for t in attached)
    # The leader exits what he held before the attach point: nobody sells what it never had.
    market(world, "SELL", 10, RELIANCE)
    await world.until(lambda: net(world, "leader", RELIANCE) == 0, 5, "leader flat")
    await asyncio.sleep(0.3)
    await world.settle()
    assert net(world, "alpha", RELIANCE) == 0 and net(world, "beta", RELIANCE) == 0
    assert all(o["transactionType"] == "BUY" for o in world.orders("alpha") + world.orders("beta"))
    # The open order still follows the leader: cancelled with it.
    world.cancel(resting)
    await world.until(
        lambda: all(o["orderStatus"] == "CANCELLED" for o in world.orders("alpha")),
        8,
        "copy cancelled",
    )


async def test_copy_existing_none_leaves_open_orders_alone(make_world: WorldFactory) -> None:
    world = await make_world(start=False, copy_existing="none")
    ltp = world.sim.price(*RELIANCE)
    world.place(key=RELIANCE, side="BUY", qty=5, price=round(ltp * 0.9, 1))
    await asyncio.sleep(BEFORE_ATTACH_S)
    await world.start_engine()
    await world.settle()
    assert world.orders("alpha") == [] and world.orders("beta") == []
    assert alert_texts(world, "EXISTING_NOT_COPIED")
    world.place(key=RELIANCE, side="BUY", qty=3, price=round(ltp * 0.9, 1))  # after attach
    await world.follower_order("alpha")
    assert world.orders("alpha")[0]["quantity"] == 3


async def test_follower_added_mid_day_does_not_copy_the_leaders_earlier_position(
    make_world: WorldFactory,
) -> None:
    world = await make_world(followers=[follower("alpha")])
    market(world, "BUY", LOT)
    await filled(world, "alpha", LOT)
    await world.settle()
    await world.stop_engine()
    await asyncio.sleep(BEFORE_ATTACH_S)
    world.followers = [
        follower("alpha"),
        follower("beta", sizing={"kind": "multiplier", "multiplier": 2}),
    ]
    await world.start_engine()
    await world.settle()
    assert world.orders("beta") == []
    market(world, "SELL", LOT)
    await filled(world, "alpha", 0)
    await world.settle()
    assert world.orders("beta") == [] and net(world, "beta") == 0


async def test_half_size_follower_carries_remainders_and_never_goes_short(
    make_world: WorldFactory,
) -> None:
    half = follower("alpha", sizing={"kind": "multiplier", "multiplier": 0.5})
    world = await make_world(followers=[half])
    market(world, "BUY", LOT)  # 0.5 lot: nothing yet
    await world.until(lambda: net(world, "leader") == LOT, 5, "leader long 1 lot")
    await world.settle()
    assert world.orders("alpha") == []
    market(world, "BUY", LOT)  # the leader holds 2 lots: the follower's 1 lot is due now
    await filled(world, "alpha", LOT)
    market(world, "SELL", 2 * LOT)  # the exit: sells what the follower holds, no more
    await filled(world, "alpha", 0)
    await world.settle()
    sells = [o for o in world.orders("alpha") if o["transactionType"] == "SELL"]
    assert [o["quantity"] for o in sells] == [LOT]


async def test_fixed_lots_follower_trims_its_share_and_exits_with_the_leader(
    make_world: WorldFactory,
) -> None:
    fixed = follower("alpha", sizing={"kind": "fixed_lots", "lots": 2})
    world = await make_world(followers=[fixed])
    market(world, "BUY", 5 * LOT)
    await filled(world, "alpha", 2 * LOT)
    market(world, "SELL", LOT)  # the leader trims 1 of 5 lots: keep ceil(2 x 4/5) = 2 lots
    await world.until(lambda: net(world, "leader") == 4 * LOT, 5, "leader trimmed")
    await asyncio.sleep(0.3)
    await world.settle()
    assert net(world, "alpha") == 2 * LOT
    market(world, "SELL", 2 * LOT)  # 4 -> 2 lots: half of the position goes, 1 of 2 lots
    await filled(world, "alpha", LOT)
    market(world, "SELL", 2 * LOT)  # flat
    await filled(world, "alpha", 0)


async def test_raised_multiplier_applies_to_later_orders_only(make_world: WorldFactory) -> None:
    world = await make_world(followers=[follower("alpha")])
    market(world, "BUY", LOT)
    await filled(world, "alpha", LOT)
    await world.settle()
    await world.stop_engine()
    world.followers = [follower("alpha", sizing={"kind": "multiplier", "multiplier": 2})]
    await world.start_engine()
    await world.settle()
    await asyncio.sleep(0.3)
    assert len(world.orders("alpha")) == 1  # no top-up for what the leader filled before
    changed = alert_texts(world, "SIZING_CHANGED")
    assert changed and "never tops up" in changed[0]
    market(world, "BUY", LOT)  # a later order: sized x2
    await filled(world, "alpha", 3 * LOT)
    market(world, "SELL", 2 * LOT)  # the leader flat: so is the follower
    await filled(world, "alpha", 0)


async def test_disabled_follower_is_drained(make_world: WorldFactory) -> None:
    world = await make_world(followers=[follower("alpha"), follower("beta")])
    ltp = world.sim.price(*NIFTY_CE)
    resting = world.place(side="BUY", qty=LOT, price=round(ltp * 0.9, 1))
    await world.follower_order("alpha")
    await world.settle()
    await world.stop_engine()
    world.followers = [follower("alpha", enabled=False), follower("beta")]
    await world.start_engine()
    world.place(side="BUY", qty=LOT, price=round(ltp * 0.9, 1))  # nothing new for alpha
    await world.follower_order("beta", 2)
    await world.settle()
    assert len(world.orders("alpha")) == 1
    world.cancel(resting)  # the open copy still follows the leader's cancel
    await world.until(
        lambda: world.orders("alpha")[0]["orderStatus"] == "CANCELLED", 8, "drained cancel"
    )


async def test_removed_follower_with_open_copies_is_a_critical_alert(
    make_world: WorldFactory,
) -> None:
    from engine.check import check_orphaned_copies

    world = await make_world()
    ltp = world.sim.price(*NIFTY_CE)
    world.place(side="BUY", qty=LOT, price=round(ltp * 0.9, 1))
    await world.follower_order("alpha")
    await world.follower_order("beta")
    await world.settle()
    await world.stop_engine()
    world.followers = [follower("alpha")]
    await world.start_engine()
    orphans = [a for a in world.eng.recent_alerts() if a.code == "ORPHANED_COPIES"]
    assert len(orphans) == 1 and orphans[0].severity is Severity.CRITICAL
    beta_order = world.orders("beta")[0]["orderId"]
    assert f"beta: copy {beta_order}" in orphans[0].message
    rows = check_orphaned_copies(world.eng.settings)
    assert [r.verdict.value for r in rows] == ["FAIL"] and beta_order in rows[0].detail


@pytest.mark.parametrize("amo_time", ["OPEN", "OPEN_30", "OPEN_60"])
async def test_amo_time_is_copied_from_the_socket_path(world: World, amo_time: str) -> None:
    world.place(key=RELIANCE, qty=10, price=1500.0, afterMarketOrder=True, amoTime=amo_time)
    copy = (await world.follower_order("alpha"))[0]
    assert copy["afterMarketOrder"] is True and copy["amoTime"] == amo_time
    await world.settle()
    assert len(world.posts("alpha")) == 1


@pytest.mark.parametrize("amo_time", ["OPEN_30", "OPEN_60"])
async def test_amo_time_is_copied_from_the_order_book_path(
    make_world: WorldFactory, amo_time: str
) -> None:
    world = await make_world(start=False)
    world.place(key=RELIANCE, qty=10, price=1500.0, afterMarketOrder=True, amoTime=amo_time)
    await world.start_engine()  # open at the attach point: read from the order book, copied
    copy = (await world.follower_order("alpha"))[0]
    assert copy["afterMarketOrder"] is True and copy["amoTime"] == amo_time


async def test_pre_open_amo_is_not_copied_at_another_time(world: World) -> None:
    leader_id = world.place(
        key=RELIANCE, qty=10, price=1500.0, afterMarketOrder=True, amoTime="PRE_OPEN"
    )
    await world.until(
        lambda: any(a.code == "UNSUPPORTED_ORDER" for a in world.eng.recent_alerts()), 5, "alert"
    )
    await world.settle()
    assert world.orders("alpha") == [] and world.orders("beta") == []
    texts = [a.message for a in world.eng.recent_alerts() if a.code == "UNSUPPORTED_ORDER"]
    assert leader_id in texts[0] and "PRE_OPEN" in texts[0]


CRUDE = ("MCX_COMM", "458305")  # lot 100, tick 1.0


async def test_mcx_protected_price_is_on_the_instruments_real_tick(world: World) -> None:
    world.place(
        key=CRUDE,
        side="SELL",
        qty=100,
        order_type="STOP_LOSS_MARKET",
        triggerPrice=5790.0,
        productType="INTRADAY",
    )
    copy = (await world.follower_order("alpha"))[0]
    assert copy["orderType"] == "STOP_LOSS" and copy["orderStatus"] == "PENDING"
    assert copy["triggerPrice"] == 5790.0
    assert copy["price"] == 5732.0  # 1% below 5790 is 5732.1: on crude's 1.0 tick, 5732


async def test_orders_ended_while_away_are_caught_up_only_within_the_bound(
    make_world: WorldFactory,
) -> None:
    world = await make_world(followers=[follower("alpha")], catch_up_max_age_s="1")
    await world.stop_engine()
    market(world, "BUY", LOT)  # placed after the attach point, filled while the engine is away
    await asyncio.sleep(BEFORE_ATTACH_S)
    await world.start_engine()
    await world.settle()
    assert world.orders("alpha") == []
    late = alert_texts(world, "CATCH_UP_REFUSED")
    assert len(late) == 1 and "beyond the catch-up bound" in late[0]
    await world.stop_engine()
    world.extra = {}  # the default bound (300 s): a fill missed a moment ago is caught up
    market(world, "BUY", LOT)
    await world.start_engine()
    await filled(world, "alpha", LOT)


async def test_position_sync_is_previewed_then_placed_and_followed(
    make_world: WorldFactory,
) -> None:
    world = await make_world(start=False)
    market(world, "BUY", 10, RELIANCE)  # held before the attach point: not copied by itself
    await asyncio.sleep(BEFORE_ATTACH_S)
    await world.start_engine()
    await world.settle()
    preview = await world.eng.sync_preview()
    assert sorted((o.follower, o.side, o.quantity, o.net, o.target) for o in preview.orders) == [
        ("alpha", "BUY", 10, 0, 10),
        ("beta", "BUY", 20, 0, 20),
    ]
    await asyncio.sleep(0.3)
    assert world.orders("alpha") == [] and world.orders("beta") == []  # a preview places none
    report = await world.eng.sync_apply(preview)
    assert report.placed == 2 and not report.refused, report
    await filled(world, "alpha", 10, RELIANCE)
    await filled(world, "beta", 20, RELIANCE)
    assert (await world.eng.sync_preview()).orders == ()  # at the target: nothing left to do
    again = await world.eng.sync_apply(preview)  # a stale preview is not placed twice
    assert again.placed == 0 and "no longer needed" in again.refused[0]
    market(world, "SELL", 10, RELIANCE)  # the leader exits: the synced followers follow
    await filled(world, "alpha", 0, RELIANCE)
    await filled(world, "beta", 0, RELIANCE)


async def test_copytrade_sync_dry_run_then_yes(make_world: WorldFactory) -> None:
    from tui.cli import main

    world = await make_world(start=False)
    market(world, "BUY", 10, RELIANCE)
    await asyncio.sleep(BEFORE_ATTACH_S)
    await world.start_engine()
    await world.settle()
    db = str(world.db)

    def run(*args: str) -> tuple[int, str]:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = main(["sync", *args, "--db-path", db])
        return code, out.getvalue()

    code, text = await asyncio.to_thread(run, "--dry-run")
    assert code == 0 and "nothing sent" in text and "copytrade sync --yes" in text
    assert "alpha" in text and "beta" in text
    await asyncio.sleep(0.3)
    assert world.orders("alpha") == []
    code, text = await asyncio.to_thread(run, "--yes")
    assert code == 0 and "2 sync order(s) sent" in text, text
    await filled(world, "alpha", 10, RELIANCE)
    await filled(world, "beta", 20, RELIANCE)
    code, text = await asyncio.to_thread(run, "--dry-run")
    assert "nothing to sync" in text
