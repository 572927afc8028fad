"""Every leader order reaches every follower, with every parameter, exactly once."""

from __future__ import annotations

import pytest

from engine.domain import MirrorState
from engine.replication.correlation import correlation_id
from tests.e2e.conftest import NIFTY_CE, RELIANCE, World

pytestmark = pytest.mark.e2e


async def test_limit_order_is_copied_to_both_followers_with_their_sizing(world: World) -> None:
    leader_id = world.place(price=200.0, qty=130, disclosedQuantity=65)
    alpha = (await world.follower_order("alpha"))[0]
    beta = (await world.follower_order("beta"))[0]
    assert alpha["quantity"] == 130 and beta["quantity"] == 260
    for o in (alpha, beta):
        assert o["transactionType"] == "BUY"
        assert o["orderType"] == "LIMIT"
        assert o["productType"] == "INTRADAY"
        assert o["validity"] == "DAY"
        assert o["price"] == 200.0
        assert o["securityId"] == "48211" and o["exchangeSegment"] == "NSE_FNO"
    assert alpha["disclosedQuantity"] == 65
    assert alpha["correlationId"] == correlation_id(leader_id, "alpha", 0)
    await world.settle()
    assert len(world.posts("alpha")) == 1 and len(world.posts("beta")) == 1


@pytest.mark.parametrize(
    ("order_type", "extra", "expect_type"),
    [
        (
            "STOP_LOSS",
            {"price": 150.0, "triggerPrice": 151.0, "transactionType": "SELL"},
            "STOP_LOSS",
        ),
        ("LIMIT", {"price": 230.0, "validity": "IOC"}, "LIMIT"),
    ],
)
async def test_order_types_and_validity_are_copied(
    world: World, order_type: str, extra: dict[str, object], expect_type: str
) -> None:
    side = str(extra.pop("transactionType", "BUY"))
    world.place(side=side, order_type=order_type, **extra)  # type: ignore[arg-type]
    order = (await world.follower_order("alpha"))[0]
    assert order["orderType"] == expect_type
    if "triggerPrice" in extra:
        assert order["triggerPrice"] == extra["triggerPrice"]
        assert order["price"] == extra["price"]
    if extra.get("validity") == "IOC":
        assert order["validity"] == "IOC"


async def test_stop_loss_market_goes_out_as_protected_stop_loss_limit(world: World) -> None:
    leader_id = world.place(side="SELL", order_type="STOP_LOSS_MARKET", triggerPrice=180.0)
    order = (await world.follower_order("alpha"))[0]
    assert order["orderType"] == "STOP_LOSS"
    assert order["triggerPrice"] == 180.0
    assert order["price"] == pytest.approx(178.2)  # 1% below the trigger for a sell
    timeline = await world.eng.timeline(leader_id)
    assert any("STOP_LOSS_MARKET sent as STOP_LOSS" in e.text for e in timeline)


async def test_amo_is_copied_as_amo(world: World) -> None:
    world.place(key=RELIANCE, qty=10, price=1500.0, afterMarketOrder=True, amoTime="OPEN")
    order = (await world.follower_order("alpha"))[0]
    assert order["afterMarketOrder"] is True


@pytest.mark.parametrize(
    ("change", "field", "expected"),
    [
        ({"price": 205.0}, "price", 205.0),
        ({"quantity": 195}, "quantity", 195),
        ({"orderType": "STOP_LOSS", "triggerPrice": 199.0}, "triggerPrice", 199.0),
        ({"disclosedQuantity": 65, "quantity": 195}, "disclosedQuantity", 65),
    ],
)
async def test_modifications_are_copied(
    world: World, change: dict[str, object], field: str, expected: object
) -> None:
    leader_id = world.place(price=200.0)
    await world.follower_order("alpha")
    await world.settle()
    world.modify(leader_id, **change)
    await world.until(lambda: world.orders("alpha")[0][field] == expected, what=f"alpha {field}")
    beta_expected = expected * 2 if field in ("quantity", "disclosedQuantity") else expected  # type: ignore[operator]
    await world.until(lambda: world.orders("beta")[0][field] == beta_expected, what=f"beta {field}")
    await world.settle()
    mirror = world.eng.mirror("alpha", leader_id)
    assert mirror is not None and mirror.modifications == 1


async def test_cancel_pending_and_partly_filled(world: World) -> None:
    pending = world.place(price=200.0)
    await world.follower_order("alpha")
    world.cancel(pending)
    await world.until(lambda: world.orders("alpha")[0]["orderStatus"] == "CANCELLED", what="cancel")
    # Partly filled: thin liquidity fills one lot of each marketable order on entry, then the
    # leader cancels the rest.
    world.sim.set_liquidity(*NIFTY_CE, 65)
    ltp = world.sim.price(*NIFTY_CE)
    partly = world.place(qty=195, price=ltp + 1)
    await world.until(
        lambda: len(world.orders("alpha")) == 2 and world.orders("alpha")[1]["filledQty"] == 65,
        what="alpha partly filled",
    )
    await world.settle()
    world.cancel(partly)
    await world.until(
        lambda: world.orders("alpha")[1]["orderStatus"] == "CANCELLED", what="cancel 2"
    )
    alpha = world.orders("alpha")[1]
    assert alpha["filledQty"] == 65
    mirror = world.eng.mirror("alpha", partly)
    assert mirror is not None and mirror.state is MirrorState.DONE


async def test_leader_rejected_before_placement_places_nothing(world: World) -> None:
    world.sim.add_account("1000000001", "tok-leader-e2e", funds=1.0)  # the leader is broke now
    world.place(key=RELIANCE, qty=100, price=1500.0)
    await world.until(lambda: world.orders("leader")[-1]["orderStatus"] == "REJECTED")
    await world.settle()
    assert world.orders("alpha") == [] and world.orders("beta") == []


async def test_fills_record_follower_price_slippage_and_latency(world: World) -> None:
    ltp = world.sim.price(*NIFTY_CE)
    leader_id = world.place(price=ltp - 2)
    await world.follower_order("alpha")
    await world.settle()
    world.sim.set_price(*NIFTY_CE, ltp - 2)
    await world.until(
        lambda: (m := world.eng.mirror("alpha", leader_id)) is not None and m.filled_qty == 65,
        what="alpha fill",
    )
    mirror = world.eng.mirror("alpha", leader_id)
    assert mirror is not None
    assert mirror.avg_price == pytest.approx(ltp - 2)
    assert mirror.slippage == pytest.approx(0.0)
    assert mirror.latency_ms is not None and mirror.latency_ms > 0
    assert world.eng.stats().latency_p50_ms is not None


async def test_follower_rejection_is_recorded_with_dhans_reason(make_world) -> None:  # type: ignore[no-untyped-def]
    world = await make_world()
    world.sim.add_account("1000000003", "tok-beta-e2e", funds=1000.0)  # beta cannot afford it
    leader_id = world.place(key=RELIANCE, qty=10, price=1500.0)
    await world.until(
        lambda: (
            (m := world.eng.mirror("beta", leader_id)) is not None
            and m.broker_status is not None
            and m.broker_status.value == "REJECTED"
        ),
        what="beta rejected",
    )
    mirror = world.eng.mirror("beta", leader_id)
    assert mirror is not None and "Insufficient" in mirror.reason
    assert any(
        getattr(e, "alert", None) and e.alert.code == "FOLLOWER_REJECTED" for e in world.events
    )
