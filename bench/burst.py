"""A burst past the rate limit: `python -m bench.burst [--orders 100] [--in-process]`.

The leader places N buy limits as fast as the simulator takes them. With Dhan's 10 order
requests per sliding second, the k-th follower request can be sent at floor((k-1)/10) s at the
earliest, so N orders need floor((N-1)/10) s plus one request's latency (the first order's,
measured in this run). Measured at the simulator: the leader's first PENDING alert -> the N-th
follower ``POST /v2/orders`` received. Prints it beside that minimum (target: within 5%), the
DH-904 answers (target 0) and whether every order was placed exactly once.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from bench.common import (
    LEADER,
    first_alerts,
    follower_accounts,
    order_posts,
    passive_price,
    place_leader_order,
    print_table,
    rate_limited,
    running_engine,
    simulator,
    where_sim_runs,
)
from engine.replication.correlation import correlation_id

PER_SECOND = 10


async def run(orders: int = 100, in_process: bool = False) -> dict[str, Any]:
    (follower,) = follower_accounts(1)
    async with (
        simulator([LEADER, follower], in_process=in_process) as sim,
        running_engine(sim, [follower]) as run,
    ):
        price = await passive_price(sim)
        t0 = time.monotonic()
        order_ids = [await place_leader_order(sim, price) for _ in range(orders)]
        placing_s = time.monotonic() - t0
        cid_of = {o: correlation_id(o, follower.name, 0) for o in order_ids}
        expected_s = (orders - 1) // PER_SECOND
        await run.probe.place_returned.wait_for(cid_of.values(), expected_s * 2 + 60)
        await run.engine.settle(timeout=30)
        alerts, requests = await sim.alerts(), await sim.requests()
        throttled = sum(v.throttled for v in run.engine.limiter_views())
        where = where_sim_runs(sim)

    alert_at = first_alerts(alerts, LEADER.client_id)
    posts = order_posts(requests, [follower.client_id])
    accepted = [p for p in posts if p["status"] == 200]
    cids = [str((p.get("json") or {}).get("correlationId", "")) for p in accepted]
    ours = set(cid_of.values())
    first_alert = min(alert_at[o] for o in order_ids)
    post_at = sorted(float(p["monotonic"]) for p in accepted if p["json"]["correlationId"] in ours)
    first_order_post = min(
        float(p["monotonic"])
        for p in accepted
        if p["json"]["correlationId"] == cid_of[order_ids[0]]
    )
    one_request_s = first_order_post - alert_at[order_ids[0]]
    actual_s = post_at[orders - 1] - first_alert if len(post_at) >= orders else float("nan")
    minimum_s = expected_s + one_request_s
    dh904 = rate_limited(requests)
    duplicates = len(cids) - len(set(cids))
    missing = len(ours - set(cids))

    print(f"bench.burst: {orders} leader orders placed in {placing_s * 1000:.0f} ms, 1 follower")
    print(where)
    print_table(
        ("", "seconds"),
        [
            ("first leader PENDING alert -> last follower POST", f"{actual_s:.3f}"),
            (
                f"theoretical minimum ({expected_s} s + one request: "
                f"{one_request_s * 1000:.1f} ms)",
                f"{minimum_s:.3f}",
            ),
        ],
    )
    over = actual_s / minimum_s
    print(
        f"ratio to the minimum: {over:.3f} "
        + ("(within 5%)" if over <= 1.05 else "(MISSES the 5% target)")
    )
    print(f"DH-904 / HTTP 429 answers: {dh904}" + ("" if dh904 == 0 else "  (target 0)"))
    print(f"engine rate-limiter waits: {throttled}")
    batches = [post_at[i : i + PER_SECOND] for i in range(0, len(post_at), PER_SECOND)]
    print(
        "each second's batch of follower POSTs (ms after the first alert, first..last): "
        + ", ".join(
            f"{(b[0] - first_alert) * 1000:.0f}..{(b[-1] - first_alert) * 1000:.0f}"
            for b in batches
        )
    )
    print(
        f"follower POST /v2/orders: {len(posts)} ({len(accepted)} accepted), distinct "
        f"correlationIds {len(set(cids))}, duplicates {duplicates}, missing {missing}"
        + (" -> every order placed exactly once" if not duplicates and not missing else "")
    )
    return {
        "orders": orders,
        "placing_s": placing_s,
        "actual_s": actual_s,
        "minimum_s": minimum_s,
        "ratio": over,
        "dh904": dh904,
        "posts": len(posts),
        "distinct": len(set(cids)),
        "duplicates": duplicates,
        "missing": missing,
        "throttled": throttled,
        "in_process": in_process,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.burst", description=__doc__)
    parser.add_argument("--orders", type=int, default=100)
    parser.add_argument(
        "--in-process", action="store_true", help="run the simulator in this process"
    )
    args = parser.parse_args(argv)
    asyncio.run(run(args.orders, args.in_process))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
