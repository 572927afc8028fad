"""The convergence checker shared by the chaos tests (tests/chaos) and the soak (bench.soak).

It judges the engine only by what is at the broker (the simulator's order books and request
log), what the engine recorded for each copy (its mirror rows: a skip or failure reason is an
explanation, never a silent loss) and a log of the engine's broker calls and state changes
(`CallLog`, written by a thin broker wrapper, in this process or in an engine subprocess).

For every leader order L and follower F (sized by an integer-ish multiplier):

- lost: L needed a copy (it is open, or something of it filled) and F has no order with any of
  L's correlationIds, and the engine gave no reason (SKIPPED / FAILED / cancelled by a kill).
- duplicates: two placements at F with one correlationId (one (L, F, generation)), or more
  than one open copy of L at F at once. The slices of one /orders/slicing call are one
  placement: Dhan gives every slice the request's correlationId.
- mismatched: F's open copy is not what L's order implies (order type, price, trigger,
  validity, side), or F's copy is still open while L ended without filling (cancelled /
  rejected / expired), or any copy is open while the engine is KILLED; or, per position
  (segment, security, product), F is not where the leader's position takes it (below).
- positions (sizing is position-true: each copy is the step between F's targets, so a copy's
  quantity is judged through the position it builds, not order by order): with a multiplier
  m the target for a leader net L is sign(L) x whole lots of |L| x m. What F holds plus what
  its open copies still work (its heading H) must lie between the targets of the leader's
  lowest and highest reachable nets (L less every open sell's remainder, L plus every open
  buy's), widened only by the fills of copies whose leader's order has not filled (the
  market took a copy resting at the leader's price first, at most the sized rest of that
  order; the engine reports such drift and never trades it). When the leader has no open
  order, F's heading must be exactly the target. A position whose copies the engine explained
  otherwise (filtered, risk, failed, killed) is counted as explained, not judged.
- sent_while_killed: a place or modify the engine started while KILLED (a cancel is fine).

Everything here is plain data in, a `Report` out; `wait_converged` polls a snapshot function.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.replication.correlation import correlation_id

OPEN = frozenset({"TRANSIT", "PENDING", "PART_TRADED", "TRIGGERED"})
MAX_GENERATIONS = 8
PRICE_EPS = 1e-6


@dataclass(frozen=True)
class FollowerSpec:
    name: str
    client_id: str
    multiplier: float = 1.0


@dataclass(frozen=True)
class MirrorInfo:
    state: str
    reason: str = ""


@dataclass
class CallLog:
    """What the engine started at the broker, and when its state changed (monotonic times)."""

    calls: list[dict[str, Any]] = field(default_factory=list)  # t, account, kind, cid, order_id
    states: list[tuple[float, str]] = field(default_factory=list)  # t, ARMED / KILLED / ...
    path: Path | None = None  # when set, every entry is also appended here (subprocess use)

    def call(self, account: str, kind: str, cid: str = "", order_id: str = "") -> None:
        entry = {
            "t": time.monotonic(),
            "account": account,
            "kind": kind,
            "cid": cid,
            "order_id": order_id,
        }
        self.calls.append(entry)
        self._append({"call": entry})

    def state(self, state: str, t: float | None = None) -> None:
        at = time.monotonic() if t is None else t
        self.states.append((at, state))
        self._append({"state": state, "t": at})

    def _append(self, obj: dict[str, Any]) -> None:
        if self.path is not None:
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(obj) + "\n")
                fh.flush()

    @classmethod
    def read(cls, path: Path) -> CallLog:
        log = cls()
        if not path.exists():
            return log
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                obj = json.loads(line)
            except ValueError:
                continue  # a line cut short by SIGKILL
            if "call" in obj:
                log.calls.append(obj["call"])
            elif "state" in obj:
                log.states.append((float(obj["t"]), str(obj["state"])))
        return log

    def merged(self, other: CallLog) -> CallLog:
        out = CallLog(self.calls + other.calls, sorted(self.states + other.states))
        out.calls.sort(key=lambda c: c["t"])
        return out

    def killed_windows(self) -> list[tuple[float, float]]:
        """(from, to) spans while the engine was KILLED; an open span ends at +inf. A restart
        that comes back KILLED logs KILLED again, so the span simply continues."""
        spans: list[tuple[float, float]] = []
        start: float | None = None
        for t, state in sorted(self.states):
            if state == "KILLED" and start is None:
                start = t
            elif state == "ARMED" and start is not None:
                spans.append((start, t))
                start = None
        if start is not None:
            spans.append((start, float("inf")))
        return spans


@dataclass
class Snapshot:
    """Everything the checker looks at, taken at one moment."""

    leader_orders: list[dict[str, Any]]
    follower_orders: dict[str, list[dict[str, Any]]]  # follower name -> REST order dicts
    mirrors: dict[
        tuple[str, str], MirrorInfo
    ]  # (follower, leader order id) -> what the engine says
    calls: CallLog
    engine_killed: bool = False
    # follower name -> order id -> the request that made it (the simulator's record); an
    # order not in it is a placement of its own
    placements: dict[str, dict[str, str]] = field(default_factory=dict)


@dataclass
class Report:
    orders: int = 0
    lost: int = 0
    duplicates: int = 0
    mismatched: int = 0
    sent_while_killed: int = 0
    explained: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    reconverge_s: float | None = None

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicates or self.mismatched or self.sent_while_killed)

    def as_dict(self) -> dict[str, Any]:
        return {
            "orders": self.orders,
            "lost": self.lost,
            "duplicates": self.duplicates,
            "mismatched": self.mismatched,
            "sent_while_killed": self.sent_while_killed,
            "explained": dict(self.explained),
            "reconverge_s": self.reconverge_s,
        }

    def summary(self) -> str:
        head = json.dumps(self.as_dict())
        return head + "".join(f"\n  - {p}" for p in self.problems[:40])


def _qty_lots(qty: int, lot: int, multiplier: float) -> int:
    lot = max(lot, 1)
    return int((qty // lot) * multiplier + 1e-9) * lot


def _explanation(info: MirrorInfo | None) -> str | None:
    if info is None:
        return None
    if info.state in ("SKIPPED", "FAILED"):
        return f"{info.state}: {info.reason.split(':')[0][:40]}"
    if info.reason.startswith("engine killed"):
        return "cancelled by the kill switch"
    return None


def _sized_by_position(info: MirrorInfo | None) -> bool:
    """A copy skipped because the follower's position did not need it: the position check
    judges whether that was right."""
    return info is not None and info.state == "SKIPPED" and info.reason.startswith("target ")


def check(
    snap: Snapshot,
    followers: Sequence[FollowerSpec],
    lot_sizes: Mapping[tuple[str, str], int],
) -> Report:
    rep = Report(orders=len(snap.leader_orders))
    explained: Counter[str] = Counter()
    windows = snap.calls.killed_windows()
    # Copies the engine cancelled while KILLED (its own record of why may be lost to a crash).
    killed_cancels = {
        str(c["order_id"])
        for c in snap.calls.calls
        if c["kind"] == "cancel" and any(a <= c["t"] < b for a, b in windows)
    }
    for f in followers:
        orders = snap.follower_orders.get(f.name, [])
        copies_of: dict[str, list[dict[str, Any]]] = {}
        judged: dict[str, bool] = {}  # leader order id -> its copies are the engine's to judge
        by_cid: dict[str, list[dict[str, Any]]] = {}
        for o in orders:
            by_cid.setdefault(str(o.get("correlationId") or ""), []).append(o)
        placement = snap.placements.get(f.name, {})
        for cid, group in by_cid.items():
            made_by = {placement.get(str(o["orderId"]), str(o["orderId"])) for o in group}
            if cid and len(made_by) > 1:
                rep.duplicates += len(made_by) - 1
                rep.problems.append(
                    f"duplicate: {f.name} has {len(made_by)} placements with correlationId {cid}"
                )
        for lo in snap.leader_orders:
            lid = str(lo["orderId"])
            copies = [
                o
                for g in range(MAX_GENERATIONS)
                for o in by_cid.get(correlation_id(lid, f.name, g), [])
            ]
            info = snap.mirrors.get((f.name, lid))
            by_position = _sized_by_position(info)
            why = None if by_position else _explanation(info)
            if why is None and any(str(o["orderId"]) in killed_cancels for o in copies):
                why = "cancelled by the kill switch"
            copies_of[lid] = copies
            judged[lid] = why is None
            n = len(rep.problems)
            _check_pair(
                rep, f, lo, copies, placement, why, by_position, snap.engine_killed, explained
            )
            if info is not None:
                for i in range(n, len(rep.problems)):
                    rep.problems[i] += f" [engine: {info.state} {info.reason[:60]}]"
        _check_positions(
            rep,
            f,
            snap.leader_orders,
            copies_of,
            judged,
            lot_sizes,
            explained,
        )
    # Sent while KILLED: a place or modify started inside a KILLED span.
    follower_names = {f.name for f in followers}
    for c in snap.calls.calls:
        if c["kind"] not in ("place", "modify") or c["account"] not in follower_names:
            continue
        if any(a <= c["t"] < b for a, b in windows):
            rep.sent_while_killed += 1
            rep.problems.append(f"sent while killed: {c['account']} {c['kind']} {c['cid']}")
    rep.explained = dict(explained)
    return rep


def _check_pair(
    rep: Report,
    f: FollowerSpec,
    lo: dict[str, Any],
    copies: list[dict[str, Any]],
    placement: Mapping[str, str],
    why: str | None,
    by_position: bool,
    killed: bool,
    explained: Counter[str],
) -> None:
    lid = str(lo["orderId"])
    status = str(lo["orderStatus"])
    filled = int(lo.get("filledQty") or 0)
    leader_open = status in OPEN and status != "TRANSIT"
    needs_copy = leader_open or filled > 0
    open_copies = [o for o in copies if o["orderStatus"] in OPEN]
    tag = f"{f.name} leader {lid} ({status} {filled}/{lo['quantity']} {lo['orderType']})"
    if killed and open_copies:
        rep.mismatched += 1
        rep.problems.append(f"mismatch: {tag}: copy still open while the engine is KILLED")
        return
    open_placements = {placement.get(str(o["orderId"]), str(o["orderId"])) for o in open_copies}
    if len(open_placements) > 1:  # (the open slices of one copy are one copy)
        rep.duplicates += len(open_placements) - 1
        rep.problems.append(f"duplicate: {tag}: {len(open_placements)} open copies")
    if not copies:
        if needs_copy and not by_position:  # a skip by the position: the position judges it
            if why is not None:
                explained[why] += 1
            else:
                rep.lost += 1
                rep.problems.append(f"lost: {tag}: no copy and no reason")
        return
    if not leader_open:
        # The leader's order is over. A copy of an order that filled nothing is cancelled; a
        # copy of one that filled may work on for its step (judged with the position).
        if open_copies and why is None and filled == 0:
            rep.mismatched += 1
            rep.problems.append(f"mismatch: {tag}: copy {open_copies[0]['orderId']} still open")
        return
    if why is not None:
        explained[why] += 1
        return
    if not open_copies:
        return  # not needed by the position now: judged with the position
    o = open_copies[0]
    wrong = _param_diffs(lo, o)
    if wrong:
        rep.mismatched += 1
        rep.problems.append(f"mismatch: {tag}: copy {o['orderId']}: " + ", ".join(wrong))


PositionKey = tuple[str, str, str]  # segment, security id, product


def _key(o: Mapping[str, Any]) -> PositionKey:
    return (str(o["exchangeSegment"]), str(o["securityId"]), str(o.get("productType") or ""))


def _signed(o: Mapping[str, Any], qty: int) -> int:
    return qty if str(o["transactionType"]) == "BUY" else -qty


def _target(leader_net: int, lot: int, multiplier: float) -> int:
    size = _qty_lots(abs(leader_net), lot, multiplier)
    return size if leader_net >= 0 else -size


def _check_positions(
    rep: Report,
    f: FollowerSpec,
    leader_orders: Sequence[dict[str, Any]],
    copies_of: Mapping[str, list[dict[str, Any]]],
    judged: Mapping[str, bool],
    lot_sizes: Mapping[tuple[str, str], int],
    explained: Counter[str],
) -> None:
    """F's position in each instrument and product against the leader's (see the module
    docstring). `copies_of` maps a leader order id to F's orders under its correlationIds."""
    by_key: dict[PositionKey, list[dict[str, Any]]] = {}
    for lo in leader_orders:
        by_key.setdefault(_key(lo), []).append(lo)
    for key, orders in by_key.items():
        lot = lot_sizes.get((key[0], key[1]), 1)
        if not all(judged.get(str(lo["orderId"]), True) for lo in orders):
            explained["position not judged: a copy explained otherwise"] += 1
            continue
        leader_net = low = high = 0
        held = working = ahead = 0
        for lo in orders:
            status = str(lo["orderStatus"])
            filled = int(lo.get("filledQty") or 0)
            leader_net += _signed(lo, filled)
            if status in OPEN and status != "TRANSIT":
                rest = _signed(lo, max(int(lo["quantity"]) - filled, 0))
                low += min(rest, 0)
                high += max(rest, 0)
            copies = copies_of.get(str(lo["orderId"]), [])
            copy_filled = sum(int(o.get("filledQty") or 0) for o in copies)
            held += _signed(lo, copy_filled)
            for o in copies:
                if o["orderStatus"] in OPEN:
                    left = int(o["quantity"]) - int(o.get("filledQty") or 0)
                    working += _signed(o, max(left, 0))
            # A copy resting at its leader's price may fill before the leader's order does (or
            # the leader's order may end without those fills): at most its leader's unfilled
            # rest, sized (rounded up to a lot). A fully filled leader order allows nothing.
            rest_sized = -(-int((int(lo["quantity"]) - filled) * f.multiplier) // lot) * lot
            ahead += min(copy_filled, max(rest_sized, 0))
        lowest = _target(leader_net + low, lot, f.multiplier)
        highest = _target(leader_net + high, lot, f.multiplier)
        heading = held + working
        tag = f"{f.name} position {'/'.join(key)}"
        if not (lowest - ahead <= heading <= highest + ahead):
            rep.mismatched += 1
            rep.problems.append(
                f"mismatch: {tag}: holds {held:+d}, working {working:+d}, heading "
                f"{heading:+d}; the leader's net {leader_net:+d} (reaching {leader_net + low:+d}"
                f"..{leader_net + high:+d}) gives targets {lowest:+d}..{highest:+d}"
                + (f" (+/-{ahead} filled ahead of the leader)" if ahead else "")
            )


def _param_diffs(lo: Mapping[str, Any], o: Mapping[str, Any]) -> list[str]:
    """The follower's open order against the leader's open order, after Dhan's API rules
    (an API STOP_LOSS_MARKET goes as STOP_LOSS with a protective limit; MARKET as LIMIT)."""
    wrong: list[str] = []
    lt, ft = str(lo["orderType"]), str(o["orderType"])
    expected_type = {"STOP_LOSS_MARKET": "STOP_LOSS", "MARKET": "LIMIT"}.get(lt, lt)
    if ft != expected_type:
        wrong.append(f"type {ft} != {expected_type}")
    if str(lo["validity"]) != str(o["validity"]):
        wrong.append(f"validity {o['validity']} != {lo['validity']}")
    if str(lo["transactionType"]) != str(o["transactionType"]):
        wrong.append("side differs")
    lp, fp = float(lo.get("price") or 0), float(o.get("price") or 0)
    ltrig, ftrig = float(lo.get("triggerPrice") or 0), float(o.get("triggerPrice") or 0)
    if lt in ("LIMIT", "STOP_LOSS") and abs(lp - fp) > PRICE_EPS:
        wrong.append(f"price {fp} != {lp}")
    if lt in ("STOP_LOSS", "STOP_LOSS_MARKET") and abs(ltrig - ftrig) > PRICE_EPS:
        wrong.append(f"trigger {ftrig} != {ltrig}")
    if lt == "STOP_LOSS_MARKET":
        buy = str(lo["transactionType"]) == "BUY"
        if (buy and fp < ftrig - PRICE_EPS) or (not buy and fp > ftrig + PRICE_EPS):
            wrong.append(f"protective limit {fp} on the wrong side of trigger {ftrig}")
    return wrong


# --- snapshots ------------------------------------------------------------------------------


def mirrors_from_db(db: Path) -> dict[tuple[str, str], MirrorInfo]:
    """The engine's mirror rows, read-only (works while the engine runs, or after it died)."""
    if not db.exists():
        return {}
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        rows = conn.execute("SELECT follower, leader_order_id, state, reason FROM mirrors")
        return {(r[0], r[1]): MirrorInfo(r[2], r[3] or "") for r in rows}
    finally:
        conn.close()


def engine_state_from_db(db: Path) -> str | None:
    if not db.exists():
        return None
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        row = conn.execute("SELECT state FROM engine_state WHERE id = 1").fetchone()
        return None if row is None else str(row[0])
    finally:
        conn.close()


SnapshotFn = Callable[[], Awaitable[Snapshot]]


async def wait_converged(
    snapshot: SnapshotFn,
    followers: Sequence[FollowerSpec],
    lot_sizes: Mapping[tuple[str, str], int],
    *,
    timeout: float = 30.0,
    interval: float = 0.25,
    stable: float = 0.6,
) -> Report:
    """Poll until the check passes and stays passing for `stable` seconds (or time runs out);
    the report carries the time to the first passing check of that stable run."""
    started = time.monotonic()
    first_ok: float | None = None
    rep = check(await snapshot(), followers, lot_sizes)
    while True:
        now = time.monotonic()
        if rep.ok:
            first_ok = now if first_ok is None else first_ok
            if now - first_ok >= stable:
                break
        else:
            first_ok = None
        if now - started > timeout:
            break
        await asyncio.sleep(interval)
        rep = check(await snapshot(), followers, lot_sizes)
    rep.reconverge_s = None if first_ok is None else round(first_ok - started, 3)
    return rep


def lots_from_sim_state(prices: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], int]:
    return {(str(p["exchangeSegment"]), str(p["securityId"])): int(p["lotSize"]) for p in prices}
