"""The convergence checker judges copies through the positions they build (position-true
sizing): a follower beyond or short of its target is a mismatch; a copy the position did not
need is not."""

from __future__ import annotations

from typing import Any

from bench.convergence import CallLog, FollowerSpec, MirrorInfo, Snapshot, check
from engine.replication.correlation import correlation_id

LOTS = {("NSE_FNO", "48211"): 65}
HALF = [FollowerSpec("half", "2", 0.5)]


def order(oid: str, side: str, qty: int, filled: int, status: str, **more: Any) -> dict[str, Any]:
    return {
        "orderId": oid,
        "transactionType": side,
        "exchangeSegment": "NSE_FNO",
        "securityId": "48211",
        "productType": "INTRADAY",
        "orderType": "MARKET",
        "validity": "DAY",
        "quantity": qty,
        "filledQty": filled,
        "orderStatus": status,
        "price": 0,
        "triggerPrice": 0,
        **more,
    }


def copy(leader_id: str, fid: str, side: str, qty: int) -> dict[str, Any]:
    cid = correlation_id(leader_id, "half", 0)
    return order(fid, side, qty, qty, "TRADED", correlationId=cid, orderType="LIMIT")


def snapshot(copies: list[dict[str, Any]], mirrors: dict[tuple[str, str], MirrorInfo]) -> Snapshot:
    leader = [
        order("1", "BUY", 65, 65, "TRADED"),
        order("2", "BUY", 65, 65, "TRADED"),
        order("3", "SELL", 130, 130, "TRADED"),
    ]
    return Snapshot(leader, {"half": copies}, mirrors, CallLog())


def test_half_follower_with_skipped_entry_and_one_lot_exit_is_converged() -> None:
    skipped = MirrorInfo("SKIPPED", "target +0 → +0 (leader +65), this order's step 0")
    report = check(
        snapshot(
            [copy("2", "f1", "BUY", 65), copy("3", "f2", "SELL", 65)], {("half", "1"): skipped}
        ),
        HALF,
        LOTS,
    )
    assert report.ok, report.summary()
    assert not report.explained  # a skip the position needed is judged, not excused


def test_half_follower_sold_short_on_the_exit_is_a_mismatch() -> None:
    skipped = MirrorInfo("SKIPPED", "target +0 → +0 (leader +65), this order's step 0")
    report = check(
        snapshot(
            [copy("2", "f1", "BUY", 65), copy("3", "f2", "SELL", 130)], {("half", "1"): skipped}
        ),
        HALF,
        LOTS,
    )
    assert report.mismatched == 1 and "heading -65" in report.problems[0]


def test_the_slices_of_one_copy_are_one_placement_and_two_placements_are_a_duplicate() -> None:
    """Dhan's /orders/slicing gives every slice the request's correlationId."""
    cid = correlation_id("3", "half", 0)
    slices = [
        order("f2", "SELL", 39, 39, "TRADED", correlationId=cid, orderType="LIMIT"),
        order("f3", "SELL", 26, 26, "TRADED", correlationId=cid, orderType="LIMIT"),
    ]
    books = [copy("2", "f1", "BUY", 65), *slices]
    skipped = {("half", "1"): MirrorInfo("SKIPPED", "target +0 → +0 (leader +65), step 0")}
    sliced = snapshot(books, skipped)
    sliced.placements = {"half": {"f2": "f2", "f3": "f2"}}
    report = check(sliced, HALF, LOTS)
    assert report.ok, report.summary()
    twice = snapshot(books, skipped)
    twice.placements = {"half": {"f2": "f2", "f3": "f3"}}  # two requests, one correlationId
    report = check(twice, HALF, LOTS)
    assert report.duplicates == 1
    assert f"half has 2 placements with correlationId {cid}" in report.problems[0]
