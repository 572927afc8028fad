"""Engine-added latency: `python -m bench.latency [--orders 200] [--seed 1] [--in-process]`.

The leader places N buy limits one at a time, a random 100-200 ms apart: never 11 in a second,
so the engine's rate limiter never holds one back (its count of waits is printed; with 50-150 ms
gaps, 10/s on average, it does bind now and then and the tail measures the limiter).

For each order, on the simulator's clock: its first PENDING alert sent to the leader's socket
-> the follower's ``POST /v2/orders`` received. Measured twice, each against a fresh simulator:
(a) the real engine with one follower; (b) a bare relay, the least a copier can do: read the
leader's order socket with ``websockets`` and, on each PENDING alert, call the dhanhq SDK's
``place_order`` in a thread. Prints p50/p90/p99/max of both and engine/bare for p50 and p99
(target: within 2x), then where the engine's time goes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
from dataclasses import dataclass
from typing import Any

import websockets
from dhanhq import DhanContext, dhanhq

from bench.common import (
    LEADER,
    Account,
    SimHandle,
    first_alerts,
    first_posts,
    follower_accounts,
    passive_price,
    place_leader_order,
    print_stages,
    print_table,
    ratio,
    running_engine,
    simulator,
    stage_times,
    summary,
    where_sim_runs,
    where_store_is,
)
from bench.common import Completions as _Completions
from engine.replication.correlation import correlation_id

WARMUP = 3  # first orders (new TCP connections, thread start-up), placed but not counted
PLACE_TIMEOUT = 60.0
GAP_S = (0.10, 0.20)


@dataclass
class Run:
    latencies_ms: list[float]
    stages: dict[str, list[float]] | None = None
    where: str = ""
    throttled: int = 0


async def trickle(sim: SimHandle, count: int, rng: random.Random) -> list[str]:
    """`count` leader orders, one at a time, 100-200 ms apart."""
    price = await passive_price(sim)
    order_ids = []
    for _ in range(count):
        order_ids.append(await place_leader_order(sim, price))
        await asyncio.sleep(rng.uniform(GAP_S[0], GAP_S[1]))
    return order_ids


async def measured(
    sim: SimHandle, order_ids: list[str], cid_of: dict[str, str]
) -> tuple[list[float], dict[str, float], dict[str, float]]:
    alert_at = first_alerts(await sim.alerts(), LEADER.client_id)
    post_at = first_posts(await sim.requests())
    missing = [o for o in order_ids if o not in alert_at or cid_of[o] not in post_at]
    if missing:
        raise RuntimeError(f"{len(missing)} orders were never copied: {missing[:5]}")
    lat = [(post_at[cid_of[o]] - alert_at[o]) * 1000.0 for o in order_ids]
    return lat, alert_at, post_at


async def engine_run(orders: int, rng: random.Random, in_process: bool) -> Run:
    (follower,) = follower_accounts(1)
    async with (
        simulator([LEADER, follower], in_process=in_process) as sim,
        running_engine(sim, [follower]) as run,
    ):
        order_ids = await trickle(sim, WARMUP + orders, rng)
        cid_of = {o: correlation_id(o, follower.name, 0) for o in order_ids}
        await run.probe.place_returned.wait_for(cid_of.values(), PLACE_TIMEOUT)
        counted = order_ids[WARMUP:]
        lat, alert_at, post_at = await measured(sim, counted, cid_of)
        stages = stage_times(
            run.probe, alert_at, post_at, [(o, follower.name, cid_of[o]) for o in counted]
        )
        throttled = sum(v.throttled for v in run.engine.limiter_views())
        return Run(lat, stages, where_sim_runs(sim), throttled)


# --- the bare relay -------------------------------------------------------------------------

_SEGMENT = {("NSE", "E"): "NSE_EQ", ("NSE", "D"): "NSE_FNO", ("BSE", "E"): "BSE_EQ"}
_SIDE = {"B": "BUY", "S": "SELL"}
_TYPE = {"LMT": "LIMIT", "MKT": "MARKET", "SL": "STOP_LOSS", "SLM": "STOP_LOSS_MARKET"}
_PRODUCT = {"I": "INTRADAY", "C": "CNC", "M": "MARGIN"}


def bare_tag(order_no: str) -> str:
    return f"BARE-{order_no}"


async def bare_relay(
    sim: SimHandle, follower: Account, placed: _Completions, ready: asyncio.Event
) -> None:
    """Leader socket -> on PENDING -> dhanhq place_order in a thread. Nothing else."""
    ctx = DhanContext(follower.client_id, follower.token)
    ctx.dhan_http.base_url = sim.rest_url
    sdk = dhanhq(ctx)
    calls: set[asyncio.Task[Any]] = set()

    def place(d: dict[str, Any]) -> None:
        sdk.place_order(
            security_id=d["securityid"],
            exchange_segment=_SEGMENT[(d["exchange"], d["segment"])],
            transaction_type=_SIDE[d["txntype"]],
            quantity=d["quantity"],
            order_type=_TYPE[d["ordertype"]],
            product_type=_PRODUCT[d["product"]],
            price=d["price"],
            tag=bare_tag(str(d["orderno"])),
        )
        placed.note(bare_tag(str(d["orderno"])))

    login = {
        "LoginReq": {"MsgCode": 42, "ClientId": LEADER.client_id, "Token": LEADER.token},
        "UserType": "SELF",
    }
    async with websockets.connect(sim.ws_url, ping_interval=None, proxy=None) as ws:
        await ws.send(json.dumps(login))
        ready.set()
        async for frame in ws:
            message = json.loads(frame)
            if message.get("Type") != "order_alert":
                continue
            data = {k.lower(): v for k, v in message["Data"].items()}
            if str(data.get("status", "")).upper() == "PENDING":
                task = asyncio.create_task(asyncio.to_thread(place, data))
                calls.add(task)
                task.add_done_callback(calls.discard)


async def bare_run(orders: int, rng: random.Random, in_process: bool) -> Run:
    (follower,) = follower_accounts(1)
    async with simulator([LEADER, follower], in_process=in_process) as sim:
        placed, ready = _Completions(), asyncio.Event()
        relay = asyncio.create_task(bare_relay(sim, follower, placed, ready))
        try:
            await asyncio.wait_for(ready.wait(), 10)
            await sim.wait_sockets(1)
            order_ids = await trickle(sim, WARMUP + orders, rng)
            cid_of = {o: bare_tag(o) for o in order_ids}
            await placed.wait_for(cid_of.values(), PLACE_TIMEOUT)
            lat, _, _ = await measured(sim, order_ids[WARMUP:], cid_of)
            return Run(lat, None, where_sim_runs(sim))
        finally:
            relay.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await relay


async def run(orders: int = 200, seed: int = 1, in_process: bool = False) -> dict[str, Any]:
    rng = random.Random(seed)
    print(
        f"bench.latency: {orders} leader orders per run, {GAP_S[0] * 1000:.0f}-"
        f"{GAP_S[1] * 1000:.0f} ms apart, {WARMUP} warm-up orders not counted"
    )
    eng = await engine_run(orders, rng, in_process)
    bare = await bare_run(orders, rng, in_process)
    print(eng.where)
    print(where_store_is())
    print("leader PENDING alert sent -> follower POST /v2/orders received (ms, simulator clock)")
    s_eng, s_bare = summary(eng.latencies_ms), summary(bare.latencies_ms)
    keys = ("p50", "p90", "p99", "max")
    print_table(
        ("", "n", *keys),
        [
            ("engine (1 follower)", int(s_eng["n"]), *(s_eng[k] for k in keys)),
            ("bare relay", int(s_bare["n"]), *(s_bare[k] for k in keys)),
        ],
    )
    r50, r99 = ratio(s_eng["p50"], s_bare["p50"]), ratio(s_eng["p99"], s_bare["p99"])
    verdict = "within 2x" if max(r50, r99) <= 2.0 else "MISSES the 2x target"
    print(f"engine/bare: p50 {r50:.2f}x, p99 {r99:.2f}x ({verdict})")
    print(f"engine rate-limiter waits: {eng.throttled} (0 = the limiter never held an order)")
    assert eng.stages is not None
    print("where the engine's time goes (engine-side probes, same orders):")
    print_stages(eng.stages)
    return {
        "engine": s_eng,
        "bare": s_bare,
        "ratio_p50": r50,
        "ratio_p99": r99,
        "stages": {k: summary(v) for k, v in eng.stages.items()},
        "throttled": eng.throttled,
        "in_process": in_process,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.latency", description=__doc__)
    parser.add_argument("--orders", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--in-process", action="store_true", help="run the simulator in this process"
    )
    args = parser.parse_args(argv)
    asyncio.run(run(args.orders, args.seed, args.in_process))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
