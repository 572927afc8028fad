"""Soak: a random but reproducible leader session with faults, judged by `bench.convergence`.

    python -m bench.soak --seed 42 --minutes 30

The simulator runs in this process (so faults and the leader's trading are direct calls); the
engine runs in its own process (`bench.engine_proc`), so a restart is a real SIGKILL. The
session is a series of rounds: ~`--round-s` seconds of leader trading (every order type,
edits, cancels, partial fills through limited liquidity, price moves) with random faults
(socket drops, stalls, duplicated and reordered alerts, HTTP 5xx/429, resets, timeouts before
and after the exchange accepted, engine SIGKILL + restart, now and then a kill + resume), then
a quiet phase in which the followers must converge; the time that takes is one sample of
``reconverge_p95_s``. It prints ONE JSON line and exits 1 when anything was lost, duplicated,
mismatched or sent while KILLED. Time is compressed, so Dhan's hourly and daily order-API
budgets are scaled up (simulator and engine alike); 10/s and 250/min stay Dhan's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.convergence import (
    CallLog,
    FollowerSpec,
    Report,
    Snapshot,
    check,
    engine_state_from_db,
    lots_from_sim_state,
    mirrors_from_db,
    wait_converged,
)
from bench.engine_proc import EngineProcess
from engine.simulator.errors import SimError
from engine.simulator.server import DhanSimulator

LEADER = ("1000000001", "tok-soak-leader")
FOLLOWERS = [
    FollowerSpec("alpha", "1000000002", 1.0),
    FollowerSpec("beta", "1000000003", 2.0),
]
TOKENS = {"alpha": "tok-soak-alpha", "beta": "tok-soak-beta"}
INSTRUMENTS = [("NSE_FNO", "48211", 65), ("NSE_FNO", "48215", 65), ("NSE_EQ", "2885", 1)]
OPEN = ("PENDING", "PART_TRADED", "TRANSIT")
SCALED_PER_HOUR = 100_000
SCALED_PER_DAY = 1_000_000


def tick(price: float, size: float = 0.05) -> float:
    return round(max(round(price / size), 1) * size, 2)


class RandomLeader:
    """The leader trading by hand on Dhan's web, driven by a seeded random.Random."""

    def __init__(
        self,
        sim: DhanSimulator,
        rng: random.Random,
        client_id: str = LEADER[0],
        product: str = "INTRADAY",
    ):
        self.sim = sim
        self.rng = rng
        self.client_id = client_id
        self.product = product  # of every order placed (MARGIN: positions that may carry)
        self.actions: Counter[str] = Counter()

    def open_orders(self) -> list[dict[str, Any]]:
        return [o for o in self.sim.orders(self.client_id) if o["orderStatus"] in OPEN]

    def step(self) -> None:
        r = self.rng.random()
        opened = self.open_orders()
        try:
            if r < 0.38 or not opened:
                self.place()
            elif r < 0.68:
                self.modify(self.rng.choice(opened))
            elif r < 0.80:
                self.sim.cancel_manual_order(self.client_id, self.rng.choice(opened)["orderId"])
                self.actions["cancel"] += 1
            elif r < 0.95:
                self.move_price()
            else:
                self.liquidity()
        except SimError:
            self.actions["refused"] += 1  # e.g. a modify racing a fill: fine, try again later

    def place(self, kind: str | None = None) -> str:
        seg, sec, lot = self.rng.choice(INSTRUMENTS)
        ltp = self.sim.price(seg, sec)
        side = self.rng.choice(("BUY", "SELL"))
        sign = 1 if side == "BUY" else -1
        kind = (
            kind
            or self.rng.choices(
                ("LIMIT", "MARKET", "STOP_LOSS", "STOP_LOSS_MARKET"), (60, 8, 16, 16)
            )[0]
        )
        qty = lot * self.rng.randint(1, 4)
        fields: dict[str, Any] = {"validity": "DAY"}
        if kind == "LIMIT":
            marketable = self.rng.random() < 0.2
            off = self.rng.uniform(0.002, 0.01) if marketable else -self.rng.uniform(0.01, 0.05)
            fields["price"] = tick(ltp * (1 + sign * off))
            if self.rng.random() < 0.05:
                fields["validity"] = "IOC"
        elif kind in ("STOP_LOSS", "STOP_LOSS_MARKET"):
            trigger = tick(ltp * (1 + sign * self.rng.uniform(0.004, 0.02)))
            fields["triggerPrice"] = trigger
            fields["price"] = tick(trigger * (1 + sign * 0.005)) if kind == "STOP_LOSS" else 0.0
        else:
            fields["price"] = 0.0
        order_id = self.sim.place_manual_order(
            self.client_id,
            transactionType=side,
            exchangeSegment=seg,
            securityId=sec,
            quantity=qty,
            orderType=kind,
            productType=self.product,
            **fields,
        )
        self.actions[f"place_{kind}"] += 1
        return order_id

    def modify(self, order: dict[str, Any]) -> None:
        seg, sec = order["exchangeSegment"], order["securityId"]
        lot = next(lot for s, i, lot in INSTRUMENTS if (s, i) == (seg, sec))
        ltp = self.sim.price(seg, sec)
        sign = 1 if order["transactionType"] == "BUY" else -1
        what = self.rng.choice(("price", "quantity", "both"))
        fields: dict[str, Any] = {}
        kind = order["orderType"]
        if what in ("price", "both"):
            if kind == "LIMIT":
                fields["price"] = tick(ltp * (1 - sign * self.rng.uniform(0.005, 0.05)))
            elif kind in ("STOP_LOSS", "STOP_LOSS_MARKET"):
                trigger = tick(ltp * (1 + sign * self.rng.uniform(0.004, 0.02)))
                fields["triggerPrice"] = trigger
                if kind == "STOP_LOSS":
                    fields["price"] = tick(trigger * (1 + sign * 0.005))
        if what in ("quantity", "both"):
            filled = int(order.get("filledQty") or 0)
            fields["quantity"] = max(
                filled + lot, int(order["quantity"]) + lot * self.rng.choice((-1, 1))
            )
        if fields:
            self.sim.modify_manual_order(self.client_id, order["orderId"], **fields)
            self.actions["modify"] += 1

    def move_price(self) -> None:
        seg, sec, _ = self.rng.choice(INSTRUMENTS)
        ltp = self.sim.price(seg, sec)
        self.sim.set_price(seg, sec, tick(ltp * (1 + self.rng.uniform(-0.012, 0.012))))
        self.actions["price_move"] += 1

    def liquidity(self) -> None:
        seg, sec, lot = self.rng.choice(INSTRUMENTS)
        qty = None if self.rng.random() < 0.4 else lot * self.rng.randint(1, 3)
        self.sim.set_liquidity(seg, sec, qty)
        self.actions["liquidity"] += 1


@dataclass
class Soak:
    seed: int
    minutes: float
    round_s: float = 40.0
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="soak-")))
    faults: Counter[str] = field(default_factory=Counter)
    samples: list[float] = field(default_factory=list)
    restarts: int = 0
    kills: int = 0
    verbose: bool = False
    product: str = "INTRADAY"

    def env(self, sim: DhanSimulator) -> dict[str, str]:
        followers = [
            {
                "name": f.name,
                "client_id": f.client_id,
                "access_token": TOKENS[f.name],
                "sizing": {"kind": "multiplier", "multiplier": f.multiplier},
            }
            for f in FOLLOWERS
        ]
        return {
            "COPYTRADE_LEADER__CLIENT_ID": LEADER[0],
            "COPYTRADE_LEADER__ACCESS_TOKEN": LEADER[1],
            "COPYTRADE_FOLLOWERS": json.dumps(followers),
            "COPYTRADE_DHAN__REST_URL": sim.rest_url,
            "COPYTRADE_DHAN__ORDER_WS_URL": sim.ws_url,
            "COPYTRADE_DHAN__TIMEOUT_S": "2",
            "COPYTRADE_INSTRUMENTS_URL": sim.scrip_master_detailed_url,
            "COPYTRADE_DB_PATH": str(self.workdir / "engine.db"),
            "COPYTRADE_ENFORCE_MARKET_HOURS": "false",
            "COPYTRADE_RECONCILE_INTERVAL_S": "10",
            "COPYTRADE_LEADER_IDLE_TIMEOUT_S": "3",
            "COPYTRADE_CIRCUIT_COOLDOWN_S": "2",
            "COPYTRADE_LOG_LEVEL": "WARNING",
            "COPYTRADE_LIMITER__PER_HOUR": str(SCALED_PER_HOUR),
            "COPYTRADE_LIMITER__PER_DAY": str(SCALED_PER_DAY),
        }

    def snapshot(self, sim: DhanSimulator, calls: CallLog) -> Snapshot:
        db = self.workdir / "engine.db"
        return Snapshot(
            leader_orders=sim.orders(LEADER[0]),
            follower_orders={f.name: sim.orders(f.client_id) for f in FOLLOWERS},
            placements={f.name: sim.placements(f.client_id) for f in FOLLOWERS},
            mirrors=mirrors_from_db(db),
            calls=calls,
            engine_killed=engine_state_from_db(db) == "KILLED",
        )

    def log(self, *args: object) -> None:
        if self.verbose:
            print(f"[{time.strftime('%H:%M:%S')}]", *args, file=sys.stderr, flush=True)

    async def inject(self, rng: random.Random, sim: DhanSimulator, eng: EngineProcess) -> None:
        f = sim.faults
        kind = rng.choices(
            (
                "drop", "stall", "duplicate", "reorder", "http500", "http429", "reset",
                "reset_after", "timeout", "timeout_after", "restart", "kill_resume",
            ),
            (14, 8, 10, 10, 10, 6, 8, 8, 6, 8, 6, 2),
        )[0]  # fmt: skip
        self.faults[kind] += 1
        self.log("fault", kind)
        mutations = rng.choice(("POST /v2/orders", "PUT /v2/orders", "DELETE /v2/orders", None))
        if kind == "drop":
            f.drop_sockets(LEADER[0])
        elif kind == "stall":
            f.pause_delivery(LEADER[0])
            await asyncio.sleep(rng.uniform(1.0, 4.0))
            f.resume_delivery(LEADER[0])
        elif kind == "duplicate":
            f.duplicate_next_alerts(rng.randint(2, 10))
        elif kind == "reorder":
            f.reorder_next_alerts(rng.randint(2, 10))
        elif kind in ("http500", "http429"):
            status = 500 if kind == "http500" else 429
            f.fail_next(
                rng.randint(1, 4),
                status=rng.choice((500, 502, 503)) if status == 500 else 429,
                match=mutations,
            )
        elif kind in ("reset", "reset_after"):
            f.reset_next(rng.randint(1, 3), after_accept=kind == "reset_after", match=mutations)
        elif kind in ("timeout", "timeout_after"):
            f.delay_next(
                rng.randint(1, 2),
                3.0,
                after_accept=kind == "timeout_after",
                match=mutations or "POST /v2/orders",
            )
        elif kind == "restart":
            await asyncio.sleep(rng.uniform(0.0, 0.5))
            await eng.sigkill()
            self.restarts += 1
            await asyncio.sleep(rng.uniform(0.2, 1.5))
            await eng.start()
        elif kind == "kill_resume":
            await eng.command("kill soak")
            self.kills += 1
            await asyncio.sleep(rng.uniform(1.0, 3.0))
            await eng.command("resume")

    async def run(self) -> dict[str, Any]:
        rng = random.Random(self.seed)
        accounts = {LEADER[0]: LEADER[1]}
        accounts.update({f.client_id: TOKENS[f.name] for f in FOLLOWERS})
        # Time is compressed: an hour of trading happens in minutes, so Dhan's hourly and daily
        # order-API budgets (1000/h, 7000/day) are scaled up on both sides; the per-second and
        # per-minute limits stay Dhan's (10/s, 250/min).
        limits = ((1.0, 10), (60.0, 250), (3600.0, SCALED_PER_HOUR), (86400.0, SCALED_PER_DAY))
        sim = DhanSimulator(
            accounts=accounts,
            funds=1e11,
            seed=self.seed,
            order_limits=limits,
            profile=os.environ.get("TEST_SIM_PROFILE", "") or "live",
        )
        await sim.start(host="127.0.0.1", port=0)
        leader = RandomLeader(sim, rng, product=self.product)
        call_path = self.workdir / "calls.jsonl"
        eng = EngineProcess(self.env(sim), call_path, self.workdir / "engine.stderr")
        lots = lots_from_sim_state(sim.state()["prices"])
        report = Report()
        deadline = time.monotonic() + self.minutes * 60
        try:
            await eng.start()
            rounds = 0
            while True:
                rounds += 1
                left = deadline - time.monotonic()
                if left <= 20 and rounds > 1:
                    break
                active = min(self.round_s, max(left - 15.0, 8.0))
                end = time.monotonic() + active
                next_fault = time.monotonic() + rng.uniform(1.0, 4.0)
                while time.monotonic() < end:
                    leader.step()
                    if time.monotonic() >= next_fault:
                        await self.inject(rng, sim, eng)
                        next_fault = time.monotonic() + rng.uniform(1.5, 5.0)
                    await asyncio.sleep(rng.expovariate(1 / 0.25))
                sim.faults.clear()
                if not eng.alive:
                    await eng.start()
                calls = CallLog.read(call_path)

                async def snap() -> Snapshot:
                    return self.snapshot(sim, CallLog.read(call_path))

                rep = await wait_converged(snap, FOLLOWERS, lots, timeout=90, interval=0.5)
                self.log("round", rounds, rep.summary())
                if rep.reconverge_s is not None:
                    self.samples.append(rep.reconverge_s)
                if not rep.ok:
                    report = rep
                    break
                report = rep
                del calls
            await eng.stop()
            final = check(self.snapshot(sim, CallLog.read(call_path)), FOLLOWERS, lots)
            if report.ok:
                report = final
            requests = sim.requests
            out: dict[str, Any] = {
                "orders": report.orders,
                "lost": report.lost,
                "duplicates": report.duplicates,
                "mismatched": report.mismatched,
                "sent_while_killed": report.sent_while_killed,
                "reconverge_p95_s": _p95(self.samples),
                "dh904": sum(1 for r in requests if r.get("error_code") == "DH-904"),
                "seed": self.seed,
                "minutes": self.minutes,
                "order_api_limits": "10/s, 250/min real; hour/day scaled (compressed time)",
                "rounds": rounds,
                "follower_orders": sum(len(sim.orders(f.client_id)) for f in FOLLOWERS),
                "engine_restarts": self.restarts,
                "kill_resume": self.kills,
                "faults": dict(sorted(self.faults.items())),
                "leader_actions": dict(sorted(leader.actions.items())),
                "explained": report.explained,
                "reconverge_max_s": max(self.samples) if self.samples else None,
            }
            if report.problems:
                out["problems"] = report.problems[:20]
                out["workdir"] = str(self.workdir)
            return out
        finally:
            with contextlib.suppress(Exception):
                await eng.stop()
            await sim.stop()


def _p95(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)], 3)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--minutes", type=float, default=2.0)
    parser.add_argument("--round-s", type=float, default=40.0)
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument(
        "--product",
        choices=("INTRADAY", "MARGIN"),
        default="INTRADAY",
        help="of the leader's orders (MARGIN: the followers' carried holdings are tracked)",
    )
    args = parser.parse_args(argv)
    soak = Soak(
        args.seed, args.minutes, round_s=args.round_s, verbose=args.verbose, product=args.product
    )
    out = asyncio.run(soak.run())
    print(json.dumps(out), flush=True)
    bad = out["lost"] or out["duplicates"] or out["mismatched"] or out["sent_while_killed"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
