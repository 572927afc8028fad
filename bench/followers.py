"""Fan-out: `python -m bench.followers [--counts 1,10,50,200] [--orders 5] [--rounds 3]
[--in-process] [--exclusive] [--front engine|headless|terminal]`.

One leader, N followers (each its own account and token on one simulator). For each N, in each
round, a fresh simulator and engine; the leader places a few buy limits one at a time (each
waits for every follower copy). Measured at the simulator: the leader's PENDING alert sent ->
the first and the LAST follower ``POST /v2/orders`` received; medians over the orders of every
round, beside N=1. Also the
engine process's CPU (time.process_time, all threads) and RSS (psutil) per N, and the
simulator's CPU when it runs apart (the default: a subprocess, so its CPU is not the engine's).
When the last follower takes more than 2x the single-follower time, the engine-side stage
breakdown of the last-served copies shows which stage grows with N.

For both copiers the last copy is split into the first copy and the pace of the others
(last = first + (N-1) x pace): the first is what every copy waits for before any is on the
wire (for the engine: both leader updates, every follower's decision and the one durable
commit), the pace is set by the slower of the copier's sends and the simulator's answers.
The engine's first-served copy is also shown stage by stage.

Each round also runs the lean copier (bench.lean) on the same simulator after the engine stops:
the leader's socket read and one aiohttp POST per follower on warm keep-alive connections, nothing
else. One line per N gives ``N=200 engine/lean last copy 1.32x``, beside both CPU per copy.
Then the durable lean copier: the same, after one fsync'd SQLite row per leader order (the
least a copier that never places twice could do), to show what durability itself costs.

The simulator stands for Dhan's servers: it is pinned to a CPU of its own
(``bench.common.pin_simulator``), so it never pre-empts the copier it measures. With
``--exclusive`` the copiers (engine and lean alike) are kept off that CPU too
(``bench.common.confine_copier``): on loopback an answer from the simulator wakes the copier
beside it, which Dhan across a network cannot do. On a 2-CPU machine that leaves the copier one.

``--front`` runs the engine as a trader would (``bench.common.FRONTS``): alone (the default,
what the figures above mean), under ``copytrade run --headless`` with its JSON-lines log
written to a file, or under the terminal app, which renders on the engine's own loop (the
``last max`` column then shows a copy held back by a repaint).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import (
    FRONTS,
    LEADER,
    STAGES,
    TERMINAL_SIZE,
    Account,
    SimHandle,
    first_alerts,
    first_posts,
    follower_accounts,
    mib,
    passive_price,
    place_leader_order,
    print_stages,
    print_table,
    process_rss,
    running_engine,
    simulator,
    stage_times,
    summary,
    where_sim_runs,
    where_store_is,
)
from bench.lean import lean_copier
from engine.replication.correlation import correlation_id

FRONT_WORDS = {
    "engine": "alone",
    "headless": "as `copytrade run --headless` (its JSON-lines log to a file)",
    "terminal": "by the terminal app (Textual, headless, {}x{}), on its own thread".format(
        *TERMINAL_SIZE
    ),
    "terminal-same-loop": "by the terminal app (Textual, headless, {}x{}), on its loop".format(
        *TERMINAL_SIZE
    ),
}
SETTLE_S = 0.3  # after each order's last copy: follower alerts come back and are handled
# Rounds per N: engine, lean and durable lean copy in turn, each round on a fresh simulator.
# A single round compared two phases seconds apart, and the machine moved in between: the
# same code gave 0.97x to 1.86x at N=10.
ROUNDS = 3


@dataclass
class _Samples:
    """What the rounds of one N measured, pooled."""

    firsts: list[float] = field(default_factory=list)
    lasts: list[float] = field(default_factory=list)
    medians: list[float] = field(default_factory=list)
    lean_firsts: list[float] = field(default_factory=list)
    lean_lasts: list[float] = field(default_factory=list)
    durable_lasts: list[float] = field(default_factory=list)
    round_ratios: list[float] = field(default_factory=list)  # engine/lean last, per round
    stages_all: dict[str, list[float]] = field(default_factory=dict)
    stages_first: dict[str, list[float]] = field(default_factory=dict)
    stages_last: dict[str, list[float]] = field(default_factory=dict)
    cpu_s: float = 0.0
    wall_s: float = 0.0
    sim_cpu_s: float | None = 0.0
    lean_cpu_s: float = 0.0
    startup: list[tuple[float, float]] = field(default_factory=list)  # (wall s, CPU s)
    rss: int = 0
    sim_rss: int | None = None
    where: str = ""


async def one_count(
    n: int,
    orders: int,
    in_process: bool,
    exclusive: bool,
    rounds: int = ROUNDS,
    front: str = "engine",
) -> dict[str, Any]:
    """``rounds`` rounds, each a fresh simulator: the engine copies ``orders`` leader orders,
    then the lean copier and the durable one as many. The machine drifts (other tenants, its
    clock speed) over the seconds a round takes; in rounds, each copier meets every phase of
    it, and the medians are over every order of every round."""
    samples = _Samples()
    for _ in range(rounds):
        await _one_round(n, orders, in_process, exclusive, samples, front)
    return {
        "n": n,
        "orders": orders * rounds,
        "rounds": rounds,
        "first_ms": statistics.median(samples.firsts),
        "median_ms": statistics.median(samples.medians),
        "last_ms": statistics.median(samples.lasts),
        "last_max_ms": max(samples.lasts),
        "cpu_s": samples.cpu_s,
        "cpu_ms_per_copy": samples.cpu_s * 1000 / (orders * rounds * n),
        "wall_s": samples.wall_s,
        "sim_cpu_s": samples.sim_cpu_s,
        "rss_mib": mib(samples.rss),
        "sim_rss_mib": mib(samples.sim_rss),
        "startup_s": statistics.median(w for w, _ in samples.startup),
        "startup_cpu_s": statistics.median(c for _, c in samples.startup),
        "stages_all": samples.stages_all,
        "stages_first": samples.stages_first,
        "stages_last": samples.stages_last,
        "where": samples.where,
        "lean_last_ms": statistics.median(samples.lean_lasts),
        "lean_first_ms": statistics.median(samples.lean_firsts),
        "durable_lean_last_ms": statistics.median(samples.durable_lasts),
        "lean_cpu_ms_per_copy": samples.lean_cpu_s * 1000 / (orders * rounds * n),
        "round_ratios": samples.round_ratios,
    }


async def _one_round(
    n: int, orders: int, in_process: bool, exclusive: bool, out: _Samples, front: str
) -> None:
    followers = follower_accounts(n)
    async with simulator([LEADER, *followers], in_process=in_process, exclusive=exclusive) as sim:
        async with running_engine(sim, followers, front=front) as run:
            price = await passive_price(sim)
            cpu0, wall0, sim_cpu0 = time.process_time(), time.monotonic(), sim.cpu_seconds()
            order_ids: list[str] = []
            for _ in range(orders):
                order_id = await place_leader_order(sim, price)
                order_ids.append(order_id)
                cids = [correlation_id(order_id, f.name, 0) for f in followers]
                await run.probe.place_returned.wait_for(cids, 60 + n)
                await asyncio.sleep(SETTLE_S)
            await run.on_engine(lambda: run.engine.settle(timeout=60))
            out.cpu_s += time.process_time() - cpu0
            out.wall_s += time.monotonic() - wall0
            sim_cpu1 = sim.cpu_seconds()
            if sim_cpu0 is None or sim_cpu1 is None or out.sim_cpu_s is None:
                out.sim_cpu_s = None
            else:
                out.sim_cpu_s += sim_cpu1 - sim_cpu0
            out.rss = max(out.rss, process_rss())
            sim_rss = sim.rss_bytes()
            if sim_rss is not None:
                out.sim_rss = max(out.sim_rss or 0, sim_rss)
            out.where = where_sim_runs(sim)
            out.startup.append((run.startup_s, run.startup_cpu_s))
            probe = run.probe
        # The same simulator, the engine stopped: the lean copier's turn, then the durable one.
        lean_ids, lean_cpu_s = await lean_phase(sim, followers, orders, price)
        out.lean_cpu_s += lean_cpu_s
        with tempfile.TemporaryDirectory(prefix="copytrade-lean-") as tmp:
            durable_ids, _ = await lean_phase(
                sim, followers, orders, price, journal=str(Path(tmp) / "lean.db")
            )
        alerts, requests = await sim.alerts(), await sim.requests()

    alert_at = first_alerts(alerts, LEADER.client_id)
    post_at = first_posts(requests)
    lean_lasts = [_copy_ms(alert_at, post_at, o, followers, max) for o in lean_ids]
    out.lean_lasts += lean_lasts
    out.lean_firsts += [_copy_ms(alert_at, post_at, o, followers, min) for o in lean_ids]
    out.durable_lasts += [_copy_ms(alert_at, post_at, o, followers, max) for o in durable_ids]
    lasts: list[float] = []
    first_pairs, last_pairs = [], []
    all_pairs = []
    for order_id in order_ids:
        pairs = [(order_id, f.name, correlation_id(order_id, f.name, 0)) for f in followers]
        all_pairs += pairs
        times = sorted((post_at[cid], (o, name, cid)) for o, name, cid in pairs)
        start = alert_at[order_id]
        out.firsts.append((times[0][0] - start) * 1000)
        lasts.append((times[-1][0] - start) * 1000)
        out.medians.append((statistics.median(t for t, _ in times) - start) * 1000)
        first_pairs.append(times[0][1])
        last_pairs.append(times[-1][1])
    out.lasts += lasts
    out.round_ratios.append(statistics.median(lasts) / statistics.median(lean_lasts))
    for pooled, pairs_of in (
        (out.stages_all, all_pairs),
        (out.stages_first, first_pairs),
        (out.stages_last, last_pairs),
    ):
        for name, values in stage_times(probe, alert_at, post_at, pairs_of).items():
            pooled.setdefault(name, []).extend(values)


async def lean_phase(
    sim: SimHandle, followers: list[Account], orders: int, price: float, journal: str | None = None
) -> tuple[list[str], float]:
    """The lean copier (bench.lean) copies `orders` leader orders; their ids and its CPU.
    With a `journal`, the durable lean copier."""
    deadline = time.monotonic() + 30
    while await sim.sockets():  # the engine's sockets close first: count only the lean's
        if time.monotonic() > deadline:
            raise TimeoutError("the engine's order sockets are still open")
        await asyncio.sleep(0.05)
    async with lean_copier(sim.rest_url, sim.ws_url, LEADER, followers, price, journal) as lean:
        await sim.wait_sockets(1 + len(followers))
        cpu0 = time.process_time()
        order_ids: list[str] = []
        for _ in range(orders):
            order_id = await place_leader_order(sim, price)
            order_ids.append(order_id)
            await lean.answered.wait_for([order_id], 60 + len(followers))
            await asyncio.sleep(SETTLE_S)
        cpu_s = time.process_time() - cpu0
    if any(status != 200 for status in lean.statuses):
        raise RuntimeError(f"the lean copier was refused: {sorted(set(lean.statuses))}")
    return order_ids, cpu_s


def _copy_ms(
    alert_at: dict[str, float],
    post_at: dict[str, float],
    order_id: str,
    followers: list[Account],
    which: Callable[[Iterable[float]], float],
) -> float:
    """The leader's alert -> the first (``min``) or last (``max``) copy's POST received, ms."""
    at = which(post_at[correlation_id(order_id, f.name, 0)] for f in followers)
    return (at - alert_at[order_id]) * 1000


def _pace_ms(first_ms: float, last_ms: float, n: int) -> float | None:
    """What each copy after the first added to the last copy's time, ms."""
    return (last_ms - first_ms) / (n - 1) if n > 1 else None


def _fmt(value: float | None, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


async def run(
    counts: tuple[int, ...] = (1, 10, 50, 200),
    orders: int = 5,
    in_process: bool = False,
    exclusive: bool = False,
    rounds: int = ROUNDS,
    front: str = "engine",
) -> dict[str, Any]:
    print(
        f"bench.followers: 1 leader -> N followers, {rounds} rounds of {orders} leader orders "
        f"per N and copier; the engine run {FRONT_WORDS[front]}"
    )
    results = [await one_count(n, orders, in_process, exclusive, rounds, front) for n in counts]
    print(results[0]["where"])
    print(where_store_is())
    single = next((r["last_ms"] for r in results if r["n"] == 1), None)
    print(
        "leader PENDING alert sent -> follower POST /v2/orders received (ms, medians over orders)"
    )
    print_table(
        ("N", "first", "median", "LAST", "last max", "last/N=1", "ms/follower"),
        [
            (
                r["n"],
                r["first_ms"],
                r["median_ms"],
                r["last_ms"],
                r["last_max_ms"],
                _fmt(r["last_ms"] / single if single else None),
                _fmt((r["last_ms"] - single) / (r["n"] - 1) if single and r["n"] > 1 else None),
            )
            for r in results
        ],
    )
    print("the engine beside the lean copier (bench.lean: socket read -> aiohttp POSTs only)")
    print("and the durable lean copier (the same, after one fsync'd SQLite row per leader order)")
    print_table(
        (
            "N",
            "engine LAST",
            "lean LAST",
            "durable lean LAST",
            "engine CPU ms/copy",
            "lean CPU ms/copy",
        ),
        [
            (
                r["n"],
                r["last_ms"],
                r["lean_last_ms"],
                r["durable_lean_last_ms"],
                _fmt(r["cpu_ms_per_copy"]),
                _fmt(r["lean_cpu_ms_per_copy"]),
            )
            for r in results
        ],
    )
    for r in results:
        # The durable lean copier is the floor of any copier that never places twice: its
        # ratio to the lean one is what one fsync'd row costs before the first byte.
        each = " ".join(f"{x:.2f}x" for x in r["round_ratios"])
        print(
            f"N={r['n']} engine/lean last copy {r['last_ms'] / r['lean_last_ms']:.2f}x"
            f" (engine/durable lean {r['last_ms'] / r['durable_lean_last_ms']:.2f}x;"
            f" durable lean/lean {r['durable_lean_last_ms'] / r['lean_last_ms']:.2f}x;"
            f" each round alone: {each})"
        )
    # The last copy = the first + (N - 1) x the pace at which the others follow it. The first
    # is what every copy pays before any is on the wire (for the engine: both leader updates,
    # every follower's decision, the durable commit); the pace is set by the slower of the
    # copier's sends and the simulator's answers.
    print("the last copy = the first copy + (N-1) x the pace of the others (ms, medians)")
    print_table(
        ("N", "engine first", "engine pace", "lean first", "lean pace"),
        [
            (
                r["n"],
                r["first_ms"],
                _fmt(_pace_ms(r["first_ms"], r["last_ms"], r["n"])),
                r["lean_first_ms"],
                _fmt(_pace_ms(r["lean_first_ms"], r["lean_last_ms"], r["n"])),
            )
            for r in results
        ],
    )
    print("where the engine's time goes: the FIRST-served copy of each order, p50 ms per stage")
    print_table(
        ("N", *(name for name, _ in STAGES)),
        [
            (r["n"], *(summary(r["stages_first"][name])["p50"] for name, _ in STAGES))
            for r in results
        ],
    )
    print("where the engine's time goes: the LAST-served copy of each order, p50 ms per stage")
    print_table(
        ("N", *(name for name, _ in STAGES)),
        [
            (r["n"], *(summary(r["stages_last"][name])["p50"] for name, _ in STAGES))
            for r in results
        ],
    )
    print("cost per N (orders phases of every round; engine = this process, all threads)")
    print_table(
        (
            "N",
            "engine CPU s",
            "CPU ms/copy",
            "sim CPU s",
            "engine RSS MiB",
            "sim RSS MiB",
            "startup s",
            "startup CPU s",
        ),
        [
            (
                r["n"],
                _fmt(r["cpu_s"]),
                _fmt(r["cpu_ms_per_copy"]),
                _fmt(r["sim_cpu_s"]),
                r["rss_mib"],
                r["sim_rss_mib"],
                _fmt(r["startup_s"]),
                _fmt(r["startup_cpu_s"]),
            )
            for r in results
        ],
    )
    biggest = results[-1]
    scaling = biggest["last_ms"] / single if single else None
    one = next((r for r in results if r["n"] == 1), None)
    if scaling is not None and one is not None:
        # Beside the lean copier's own growth: Dhan (here one simulator) takes a fan-out's
        # requests one after another, so no copier's last copy stays near its single one.
        lean_scaling = biggest["lean_last_ms"] / one["lean_last_ms"]
        print(
            f"N={biggest['n']}: last copy at {scaling:.1f}x the single-follower time "
            f"(the lean copier's at {lean_scaling:.1f}x its own)"
        )
    if scaling is not None and scaling > 2.0:
        for r in results[1:]:
            per = (r["last_ms"] - single) / (r["n"] - 1) if single else float("nan")
            print(f"  N={r['n']}: +{per:.2f} ms per extra follower")
        print(f"N={biggest['n']}, the LAST-served copy of each order, stage by stage:")
        print_stages(biggest["stages_last"])
        print(f"N={biggest['n']}, every copy, stage by stage:")
        print_stages(biggest["stages_all"])
        worst = max(STAGES, key=lambda s: summary(biggest["stages_last"][s[0]])["p50"])
        print(f"dominant stage for the last copy: {worst[0]} ({worst[1]})")
    return {
        "counts": [
            {k: v for k, v in r.items() if not k.startswith("stages") and k != "where"}
            for r in results
        ],
        "single_ms": single,
        "scaling": scaling,
        "stages_last": {k: summary(v) for k, v in biggest["stages_last"].items()},
        "in_process": in_process,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.followers", description=__doc__)
    parser.add_argument("--counts", default="1,10,50,200", help="comma-separated N")
    parser.add_argument(
        "--orders", type=int, default=5, help="leader orders per N, copier and round"
    )
    parser.add_argument(
        "--rounds", type=int, default=ROUNDS, help="rounds per N (each a fresh simulator)"
    )
    parser.add_argument(
        "--in-process", action="store_true", help="run the simulator in this process"
    )
    parser.add_argument(
        "--exclusive",
        action="store_true",
        help="keep the copiers off the simulator's CPU too (bench.common.confine_copier)",
    )
    parser.add_argument(
        "--front",
        choices=FRONTS,
        default="engine",
        help="what runs the engine: the engine alone (default), `copytrade run --headless`"
        " with its JSON-lines log, or the terminal app (Textual, headless)",
    )
    args = parser.parse_args(argv)
    counts = tuple(int(c) for c in args.counts.split(",") if c.strip())
    asyncio.run(run(counts, args.orders, args.in_process, args.exclusive, args.rounds, args.front))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
