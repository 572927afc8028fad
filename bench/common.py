"""Shared plumbing for the replication benchmarks (`bench.latency`, `bench.burst`,
`bench.followers`): a Dhan simulator (a subprocess by default, so the engine's CPU is its own;
or in this process), the real engine wired to it, engine-side probes, matching of the
simulator's records, percentiles and tables.

Every latency is measured at the simulator, on one clock (``time.monotonic``, which is
CLOCK_MONOTONIC and so the same in both processes): from the moment the simulator sent the
leader's order alert to the moment it received the follower's ``POST /v2/orders``. The engine's
probes (event listener, timed broker) only split that span into stages.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import re
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import psutil

from engine.config import Settings, load_settings
from engine.dhan.errors import BrokerResult
from engine.domain import OrderParams
from engine.engine import Broker, Engine, default_broker_factory
from engine.events import EngineEvent, FollowerOrderChanged, LeaderOrderSeen, RecoveryCompleted
from engine.simulator.server import DhanSimulator

for _var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
    os.environ.pop(_var, None)
os.environ["NO_PROXY"] = "127.0.0.1,localhost"

NIFTY_CE = ("NSE_FNO", "48211")  # lot 65
LOT = 65
FUNDS = 1_000_000_000.0  # enough margin for hundreds of resting orders per account


@dataclass(frozen=True)
class Account:
    name: str
    client_id: str
    token: str


LEADER = Account("leader", "1000000001", "tok-bench-leader")


def follower_accounts(n: int) -> list[Account]:
    return [Account(f"f{i:03d}", str(2_000_000_000 + i), f"tok-bench-f{i:03d}") for i in range(n)]


# --- figures --------------------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def summary(values: Sequence[float]) -> dict[str, float]:
    """n, p50, p90, p99, max of a list of milliseconds."""
    return {
        "n": float(len(values)),
        "p50": percentile(values, 50),
        "p90": percentile(values, 90),
        "p99": percentile(values, 99),
        "max": max(values) if values else math.nan,
    }


def ratio(a: float, b: float) -> float:
    return a / b if b else math.nan


def print_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    """Right-aligned columns; floats with 1 decimal unless already formatted."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    print("  ".join(h.rjust(w) for h, w in zip(headers, widths, strict=True)))
    for row in cells:
        print("  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)))


def _cell(value: object) -> str:
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.1f}"
    return str(value)


# --- the simulator ----------------------------------------------------------------------------


class SimHandle:
    """What a benchmark needs of the simulator, wherever it runs."""

    in_process: bool
    rest_url: str
    ws_url: str

    async def add_account(self, account: Account) -> None:
        raise NotImplementedError

    async def place(self, client_id: str, **fields: Any) -> str:
        """A manual (web) order in that account; returns the order id."""
        raise NotImplementedError

    async def requests(self, since: int = 0) -> list[dict[str, Any]]:
        raise NotImplementedError

    async def alerts(self, since: int = 0) -> list[dict[str, Any]]:
        raise NotImplementedError

    async def state(self) -> dict[str, Any]:
        raise NotImplementedError

    def cpu_seconds(self) -> float | None:
        """The simulator process's CPU time (None when it shares this process)."""
        return None

    def rss_bytes(self) -> int | None:
        return None

    async def close(self) -> None:
        raise NotImplementedError

    async def ltp(self, segment: str, security_id: str) -> float:
        for item in (await self.state())["prices"]:
            if item["exchangeSegment"] == segment and item["securityId"] == security_id:
                return float(item["ltp"])
        raise KeyError((segment, security_id))

    async def sockets(self) -> int:
        return sum(int(a["sockets"]) for a in (await self.state())["accounts"])

    async def wait_sockets(self, count: int, timeout: float = 60.0) -> None:
        """Until `count` order sockets are logged in (a login has no acknowledgement)."""
        deadline = time.monotonic() + timeout
        while (have := await self.sockets()) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{have} of {count} order sockets connected")
            await asyncio.sleep(0.05)


class InProcessSim(SimHandle):
    in_process = True

    def __init__(self, sim: DhanSimulator) -> None:
        self.sim = sim
        self.rest_url, self.ws_url = sim.rest_url, sim.ws_url

    async def add_account(self, account: Account) -> None:
        self.sim.add_account(account.client_id, account.token, FUNDS)

    async def place(self, client_id: str, **fields: Any) -> str:
        return self.sim.place_manual_order(client_id, **fields)

    async def requests(self, since: int = 0) -> list[dict[str, Any]]:
        return self.sim.requests[since:]

    async def alerts(self, since: int = 0) -> list[dict[str, Any]]:
        return self.sim.alerts_sent[since:]

    async def state(self) -> dict[str, Any]:
        return self.sim.state()

    async def close(self) -> None:
        await self.sim.stop()


class SubprocessSim(SimHandle):
    """``python -m engine.simulator --port 0`` driven over its control API (/sim/...)."""

    in_process = False
    pinned = ""  # how the simulator and this process share the CPUs ("" not pinned)
    restore_affinity: Callable[[], None] | None = None  # undoes confine_copier at close

    def __init__(self, proc: asyncio.subprocess.Process, rest_url: str, ws_url: str) -> None:
        self.proc = proc
        self.rest_url, self.ws_url = rest_url, ws_url
        self.control = rest_url.removesuffix("/v2") + "/sim"
        self._ps = psutil.Process(proc.pid)
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))

    @classmethod
    async def start(cls, accounts: Sequence[Account], *, exclusive: bool = False) -> SubprocessSim:
        args = [sys.executable, "-m", "engine.simulator", "--host", "127.0.0.1", "--port", "0"]
        args += ["--profile", os.environ.get("TEST_SIM_PROFILE", "") or "live"]
        args += ["--funds", str(FUNDS)]
        for a in accounts:
            args += ["--account", f"{a.client_id}:{a.token}"]
        proc = await asyncio.create_subprocess_exec(*args, stdout=asyncio.subprocess.PIPE)
        assert proc.stdout is not None
        try:
            line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
            found = re.search(r"REST (http://\S+)\s+order socket (ws://\S+)", line)
            if found is None:
                raise RuntimeError(f"simulator did not start: {line!r}")
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise
        sim = cls(proc, found.group(1), found.group(2))
        sim.pinned = pin_simulator(proc.pid)
        if exclusive and sim.pinned:
            sim.restore_affinity = confine_copier(proc.pid)
            sim.pinned += "; this process (the copier) kept off it"
        return sim

    async def _call(self, method: str, path: str, body: Any = None) -> Any:
        async with self._http.request(method, self.control + path, json=body) as resp:
            data = await resp.json(content_type=None)
            if resp.status != 200:
                raise RuntimeError(f"simulator {method} {path}: {resp.status} {data}")
            return data

    async def add_account(self, account: Account) -> None:
        body = {"clientId": account.client_id, "token": account.token, "funds": FUNDS}
        await self._call("POST", "/accounts", body)

    async def place(self, client_id: str, **fields: Any) -> str:
        return str((await self._call("POST", f"/accounts/{client_id}/orders", fields))["orderId"])

    async def requests(self, since: int = 0) -> list[dict[str, Any]]:
        return list((await self._call("GET", f"/requests?since={since}"))["items"])

    async def alerts(self, since: int = 0) -> list[dict[str, Any]]:
        return list((await self._call("GET", f"/alerts?since={since}"))["items"])

    async def state(self) -> dict[str, Any]:
        return dict(await self._call("GET", "/state"))

    def cpu_seconds(self) -> float | None:
        t = self._ps.cpu_times()
        return float(t.user + t.system)

    def rss_bytes(self) -> int | None:
        return int(self._ps.memory_info().rss)

    async def close(self) -> None:
        await self._http.close()
        if self.restore_affinity is not None:
            self.restore_affinity()
        if self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


def pin_simulator(sim_pid: int) -> str:
    """The simulator on a CPU of its own: it stands in for Dhan, whose servers never take a
    CPU from the copier.

    Left to the scheduler on a small machine, the simulator, woken by each request on
    loopback, is run on the sender's CPU and pre-empts it mid-fan-out (~1 ms a request, seen
    on 2 CPUs) while the other CPU idles. The copier (engine or lean) is left free: confined
    to the other CPUs, the engine's SQLite threads could not run beside its event loop.
    "" when the machine has a single CPU or cannot pin."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if len(cpus) < 2:
        return ""
    sim_cpu = cpus[-1]
    try:
        os.sched_setaffinity(sim_pid, {sim_cpu})
    except OSError:
        return ""
    return f"simulator pinned to CPU {sim_cpu}"


def confine_copier(sim_pid: int) -> Callable[[], None]:
    """Every thread of this process (the copier) on the CPUs the simulator does not use, so
    that the simulator's CPU is its own both ways; returns what undoes it.

    On loopback each answer from the simulator wakes the copier on the simulator's CPU (the
    kernel places a woken task beside its waker), where the two then take turns while another
    CPU may idle; across a network to Dhan that cannot happen. On a 2-CPU machine this leaves
    the copier (engine or lean) a single CPU, its helper threads included."""
    before = os.sched_getaffinity(0)
    others = before - os.sched_getaffinity(sim_pid)
    threads = [int(tid) for tid in os.listdir("/proc/self/task")]
    for tid in threads:
        with contextlib.suppress(OSError):  # a thread that just ended
            os.sched_setaffinity(tid, others)

    def restore() -> None:
        for tid in os.listdir("/proc/self/task"):
            with contextlib.suppress(OSError):
                os.sched_setaffinity(int(tid), before)

    return restore


@contextlib.asynccontextmanager
async def simulator(
    accounts: Sequence[Account], *, in_process: bool = False, exclusive: bool = False
) -> AsyncIterator[SimHandle]:
    """A fresh simulator on 127.0.0.1 (any free port) holding `accounts`."""
    handle: SimHandle
    if in_process:
        sim = DhanSimulator(
            accounts={a.client_id: a.token for a in accounts},
            funds=FUNDS,
            profile=os.environ.get("TEST_SIM_PROFILE", "") or "live",
        )
        await sim.start(host="127.0.0.1", port=0)
        handle = InProcessSim(sim)
    else:
        handle = await SubprocessSim.start(accounts, exclusive=exclusive)
    try:
        yield handle
    finally:
        await handle.close()


def where_sim_runs(sim: SimHandle) -> str:
    if sim.in_process:
        return (
            "simulator: IN THIS PROCESS (its CPU is counted as the engine's; it shares the "
            "engine's event loop)"
        )
    pinned = sim.pinned if isinstance(sim, SubprocessSim) else ""
    return "simulator: separate process (python -m engine.simulator), controlled over /sim/..." + (
        f"; {pinned}" if pinned else ""
    )


def where_store_is() -> str:
    """Where the engine's store (and the durable lean copier's journal) is written: the
    figures depend on the disk's flush (an intent is on disk before its copy is sent)."""
    directory = os.path.realpath(tempfile.gettempdir())
    mounts = [(p.mountpoint, p.fstype) for p in psutil.disk_partitions(all=True)]
    fstype = filesystem_of(directory, mounts)
    note = (
        "in memory: nothing durable, so this shows the engine without the disk's flush"
        if fstype in ("tmpfs", "ramfs")
        else "TMPDIR=/dev/shm shows the same without the disk's flush"
    )
    return f"engine store: {directory} ({fstype}); {note}"


def filesystem_of(directory: str, mounts: Iterable[tuple[str, str]]) -> str:
    """The type of the filesystem holding ``directory``, of (mount point, type) pairs: the
    innermost mount point containing it; "?" when none does."""
    fstype, best = "?", ""
    for mount, kind in mounts:
        inside = directory == mount or directory.startswith(mount.rstrip("/") + "/")
        if inside and len(mount) >= len(best):
            best, fstype = mount, kind
    return fstype


# --- the leader's orders -----------------------------------------------------------------------


def tick(price: float, size: float = 0.05) -> float:
    return round(round(price / size) * size, 2)


async def passive_price(sim: SimHandle) -> float:
    """A buy limit well under the market: it rests PENDING, nothing fills."""
    return tick(await sim.ltp(*NIFTY_CE) * 0.8)


async def place_leader_order(sim: SimHandle, price: float) -> str:
    return await sim.place(
        LEADER.client_id,
        transactionType="BUY",
        exchangeSegment=NIFTY_CE[0],
        securityId=NIFTY_CE[1],
        quantity=LOT,
        orderType="LIMIT",
        price=price,
        productType="INTRADAY",
    )


# --- matching the simulator's records ------------------------------------------------------------


def first_alerts(
    alerts: Iterable[dict[str, Any]], client_id: str, status: str = "PENDING"
) -> dict[str, float]:
    """order number -> when the first alert with that status was sent to that account."""
    seen: dict[str, float] = {}
    for a in alerts:
        if a["client_id"] == client_id and str(a["status"]).upper() == status:
            seen.setdefault(str(a["order_no"]), float(a["monotonic"]))
    return seen


def order_posts(
    requests: Iterable[dict[str, Any]], client_ids: Iterable[str] | None = None
) -> list[dict[str, Any]]:
    """Every POST /v2/orders received (accepted or not), optionally of some accounts only."""
    wanted = None if client_ids is None else set(client_ids)
    return [
        r
        for r in requests
        if r["method"] == "POST"
        and r["path"] == "/v2/orders"
        and (wanted is None or r["client_id"] in wanted)
    ]


def first_posts(requests: Iterable[dict[str, Any]]) -> dict[str, float]:
    """correlationId -> when the first POST /v2/orders carrying it was received."""
    seen: dict[str, float] = {}
    for r in order_posts(requests):
        cid = (r.get("json") or {}).get("correlationId")
        if cid:
            seen.setdefault(str(cid), float(r["monotonic"]))
    return seen


def rate_limited(requests: Iterable[dict[str, Any]]) -> int:
    """Answers DH-904 / HTTP 429."""
    return sum(1 for r in requests if r.get("error_code") == "DH-904" or r.get("status") == 429)


# --- engine-side probes ---------------------------------------------------------------------------


class Completions:
    """First time (monotonic) per key, and a way to wait for a set of keys. Noted from any
    thread (an engine on a thread of its own); waited for on the loop that made it."""

    def __init__(self) -> None:
        self.at: dict[str, float] = {}
        self.count: dict[str, int] = {}
        self._changed = asyncio.Event()
        self._loop = asyncio.get_running_loop()

    def note(self, key: str) -> None:
        self.at.setdefault(key, time.monotonic())
        self.count[key] = self.count.get(key, 0) + 1
        set_event(self._loop, self._changed)

    async def wait_for(self, keys: Iterable[str], timeout: float) -> None:
        want = set(keys)
        async with asyncio.timeout(timeout):
            while not want <= self.at.keys():
                self._changed.clear()
                await self._changed.wait()


def set_event(loop: asyncio.AbstractEventLoop, event: asyncio.Event) -> None:
    """``event.set()`` on `loop`, from its own thread or another one."""
    try:
        same = asyncio.get_running_loop() is loop
    except RuntimeError:
        same = False
    if same:
        event.set()
    else:
        loop.call_soon_threadsafe(event.set)


class _TimedBroker:
    """The real broker, with the moments `place` was called and returned noted."""

    def __init__(self, inner: Broker, probe: Probe) -> None:
        self._inner = inner
        self._probe = probe

    async def place(self, params: OrderParams) -> BrokerResult:
        cid = params.correlation_id or ""
        self._probe.place_called.note(cid)
        try:
            return await self._inner.place(params)
        finally:
            self._probe.place_returned.note(cid)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


@dataclass
class Probe:
    """Engine-side timestamps, to split alert -> POST into stages (medians, not the figure)."""

    leader_seen: dict[tuple[str, str], float] = field(default_factory=dict)
    placing: dict[tuple[str, str], float] = field(default_factory=dict)
    place_called: Completions = field(default_factory=Completions)
    place_returned: Completions = field(default_factory=Completions)
    recovered: asyncio.Event = field(default_factory=asyncio.Event)
    loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.get_running_loop)

    def on_event(self, event: EngineEvent) -> None:
        now = time.monotonic()
        if isinstance(event, LeaderOrderSeen):
            snap = event.snapshot
            self.leader_seen.setdefault((snap.order_id, snap.status.value), now)
        elif isinstance(event, FollowerOrderChanged):
            view = event.view
            if view.mirror_state.value == "PLACING":
                self.placing.setdefault((view.follower, view.leader_order_id), now)
        elif isinstance(event, RecoveryCompleted):
            set_event(self.loop, self.recovered)

    def broker_factory(
        self, account: str, client_id: str, token: str, rest_url: str, timeout_s: float
    ) -> Broker:
        inner = default_broker_factory(account, client_id, token, rest_url, timeout_s)
        if account == "leader":
            return inner
        return _TimedBroker(inner, self)


STAGES = (
    ("alert->ingest", "socket read + decode + the TRANSIT and PENDING updates"),
    ("ingest->placing", "decisions (of the copies decided before this one too)"),
    ("placing->call", "the intents' journal record (one fdatasync) + the send line"),
    ("call->POST", "dhanhq request + aiohttp + the simulator's queue"),
    ("POST->return", "simulator answer back to the engine"),
)


def stage_times(
    probe: Probe,
    alert_at: dict[str, float],
    post_at: dict[str, float],
    pairs: Iterable[tuple[str, str, str]],
) -> dict[str, list[float]]:
    """Per stage, the milliseconds of every (leader order id, follower name, correlationId)."""
    out: dict[str, list[float]] = {name: [] for name, _ in STAGES}
    for order_id, follower, cid in pairs:
        marks = (
            alert_at.get(order_id),
            probe.leader_seen.get((order_id, "PENDING")),
            probe.placing.get((follower, order_id)),
            probe.place_called.at.get(cid),
            post_at.get(cid),
            probe.place_returned.at.get(cid),
        )
        for i, (name, _) in enumerate(STAGES):
            a, b = marks[i], marks[i + 1]
            if a is not None and b is not None:
                out[name].append((b - a) * 1000.0)
    return out


def print_stages(stages: dict[str, list[float]]) -> None:
    print_table(
        ("stage", "what", "p50 ms", "p99 ms", "max ms"),
        [
            (name, what, *(summary(stages[name])[k] for k in ("p50", "p99", "max")))
            for name, what in STAGES
        ],
    )


# --- the engine ----------------------------------------------------------------------------------


def detailed_master_url(rest_url: str) -> str:
    """Dhan's detailed scrip master as the simulator serves it, beside its REST API (the
    engine loads its instruments from there, as from Dhan), wherever the simulator runs."""
    base = rest_url.rstrip("/").removesuffix("/v2")
    return f"{base}/api-data/api-scrip-master-detailed.csv"


def build_settings(
    sim: SimHandle, followers: Sequence[Account], db: Path, **extra: str
) -> Settings:
    env = {
        "COPYTRADE_LEADER__CLIENT_ID": LEADER.client_id,
        "COPYTRADE_LEADER__ACCESS_TOKEN": LEADER.token,
        "COPYTRADE_FOLLOWERS": json.dumps(
            [{"name": f.name, "client_id": f.client_id, "access_token": f.token} for f in followers]
        ),
        "COPYTRADE_DHAN__REST_URL": sim.rest_url,
        "COPYTRADE_DHAN__ORDER_WS_URL": sim.ws_url,
        "COPYTRADE_DHAN__TIMEOUT_S": "10",
        "COPYTRADE_INSTRUMENTS_URL": detailed_master_url(sim.rest_url),
        "COPYTRADE_DB_PATH": str(db),
        "COPYTRADE_ENFORCE_MARKET_HOURS": "false",
        "COPYTRADE_RECONCILE_INTERVAL_S": "3600",
        "COPYTRADE_LEADER_IDLE_TIMEOUT_S": "120",
        "COPYTRADE_LOG_LEVEL": "WARNING",
    }
    env.update({f"COPYTRADE_{k.upper()}": v for k, v in extra.items()})
    return load_settings(env_file=None, environ=env)


@dataclass
class EngineRun:
    engine: Engine
    probe: Probe
    startup_s: float
    startup_cpu_s: float
    # Awaits a coroutine of the engine's on its loop (another thread's, under the terminal).
    on_engine: Callable[[Callable[[], Coroutine[Any, Any, Any]]], Awaitable[Any]]


# What runs the engine, as a trader would: the engine alone (what the other benches measure),
# under `copytrade run --headless` (its JSON-lines log written to a file), or under the
# terminal (the real app, Textual headless, at TERMINAL_SIZE, the engine on its own thread
# as `copytrade` runs it; "terminal-same-loop": on the screen's loop, as before).
FRONTS = ("engine", "headless", "terminal", "terminal-same-loop")
TERMINAL_SIZE = (160, 48)


@contextlib.asynccontextmanager
async def running_engine(
    sim: SimHandle,
    followers: Sequence[Account],
    *,
    startup_timeout: float = 120.0,
    front: str = "engine",
) -> AsyncIterator[EngineRun]:
    """The real engine (real dhanhq SDK, real SQLite store in a temp dir) against `sim`,
    started (under `front`, one of FRONTS), recovered, with every order socket logged in."""
    with tempfile.TemporaryDirectory(prefix="copytrade-bench-") as tmp:
        probe = Probe()
        settings = build_settings(sim, followers, Path(tmp) / "bench.db")
        engine = Engine(settings, broker_factory=probe.broker_factory)
        engine.subscribe(probe.on_event)
        t0, cpu0 = time.monotonic(), time.process_time()
        async with _engine_running(engine, front, Path(tmp)) as (task, on_engine):
            try:
                ready = asyncio.ensure_future(
                    _ready(engine, probe, sim, len(followers) + 1, on_engine)
                )
                done, _ = await asyncio.wait(
                    {task, ready}, timeout=startup_timeout, return_when=asyncio.FIRST_COMPLETED
                )
                if ready not in done:
                    ready.cancel()
                    if task in done:
                        task.result()  # raises the engine's startup error
                    raise TimeoutError("engine did not start and recover in time")
                ready.result()
                yield EngineRun(
                    engine,
                    probe,
                    time.monotonic() - t0,
                    time.process_time() - cpu0,
                    on_engine,
                )
            finally:
                await on_engine(engine.stop)
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(task, 30)


OnEngine = Callable[[Callable[[], Coroutine[Any, Any, Any]]], Awaitable[Any]]


async def _here(make: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    return await make()


@contextlib.asynccontextmanager
async def _engine_running(
    engine: Engine, front: str, tmp: Path
) -> AsyncIterator[tuple[asyncio.Task[Any], OnEngine]]:
    """The engine started under `front`: what ends when it stops (with its error), and how to
    await one of its coroutines on its loop."""
    if front == "engine":
        yield asyncio.create_task(engine.run(), name="bench-engine"), _here
    elif front == "headless":
        from engine.headless import run_headless

        with (tmp / "headless.jsonl").open("w", encoding="utf-8") as out:
            yield asyncio.create_task(run_headless(engine, out=out), name="bench-engine"), _here
    elif front in ("terminal", "terminal-same-loop"):
        from tui.app import CopyTradeApp
        from tui.engine_thread import EngineOnItsOwnThread

        threaded = EngineOnItsOwnThread(engine) if front == "terminal" else None
        app = CopyTradeApp(threaded or engine)  # (threaded: as tui.launch starts it)
        async with app.run_test(headless=True, size=TERMINAL_SIZE):
            # The app runs the engine in its worker (group "engine"), as it does for a trader.
            worker = next(w for w in app.workers if w.group == "engine")
            task = asyncio.create_task(worker.wait(), name="bench-engine")
            yield task, (threaded.on_engine_loop if threaded is not None else _here)
    else:
        raise ValueError(f"front must be one of {', '.join(FRONTS)}, not {front!r}")


async def _ready(
    engine: Engine, probe: Probe, sim: SimHandle, sockets: int, on_engine: OnEngine = _here
) -> None:
    await on_engine(engine.wait_started)
    await probe.recovered.wait()
    await sim.wait_sockets(sockets)


def process_rss() -> int:
    return int(psutil.Process().memory_info().rss)


def mib(n: int | None) -> float:
    return math.nan if n is None else n / 2**20
