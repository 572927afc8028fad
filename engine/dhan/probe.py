"""``copytrade probe``: ask one real account, harmlessly, how its Dhan answers the questions no
source settles (shared/dhan-api-facts.md §8b's last paragraph, §9), and write the answers as a
simulator profile (plain JSON with the keys of ``engine.simulator.profile.SimProfile``; this
module does not import the simulator) plus the redacted exchanges that back them.

Harmless means: reads; lookups of an order id and a correlation id that cannot exist; and,
only with ``--with-order``, one LIMIT BUY of quantity 1 at a price the user gives (far from the
market, so it cannot fill), modified once (still far) and cancelled at once.

What is probed, and the profile key it answers:
- ``unknown_order_id``: ``GET /orders/{id that cannot exist}``.
- ``unknown_correlation_id``: ``GET /orders/external/{id that cannot exist}``.
- ``order_by_id_shape``: ``GET /orders/{an order of today's book}`` (a list or an object).
- with an order: ``socket_keys`` and ``socket_status_case`` (the alerts' raw frames),
  ``modify_alert`` (does the modification bring its own alert?), ``cancel_response``.
Not probed (no harmless request settles them; the profile keeps the live defaults):
PART_TRADED on the socket, API SL-M, the MPP band, the invalid-IP code, token validity.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from engine.dhan.broker import DhanBroker
from engine.dhan.errors import BrokerError, ResultKind
from engine.dhan.order_stream import OrderStream
from engine.dhan.recorder import JsonlRecorder, Recorder
from engine.domain import (
    OrderParams,
    OrderSnapshot,
    OrderType,
    Product,
    Segment,
    Side,
    Validity,
)

ALERT_WAIT_S = 3.0
PROFILE_FILE = "probe-profile.json"
REPORT_FILE = "probe-report.json"


@dataclass(frozen=True)
class ProbeOrder:
    """The one far-from-market order of ``--with-order``: ``SEGMENT:SECURITY_ID:PRICE``."""

    segment: Segment
    security_id: str
    price: float

    @classmethod
    def parse(cls, text: str) -> ProbeOrder:
        parts = text.split(":")
        if len(parts) != 3:
            raise ValueError("expected SEGMENT:SECURITY_ID:PRICE, e.g. NSE_EQ:2885:100")
        try:
            segment = Segment(parts[0].strip().upper())
        except ValueError:
            raise ValueError(f"unknown exchange segment {parts[0]!r}") from None
        try:
            price = float(parts[2])
        except ValueError:
            raise ValueError(f"price {parts[2]!r} is not a number") from None
        if price <= 0 or not parts[1].strip():
            raise ValueError("a security id and a positive price are needed")
        return cls(segment, parts[1].strip(), price)


def plan(order: ProbeOrder | None) -> list[str]:
    """What the probe will do, said before it does anything."""
    steps = [
        "read today's order book (GET /v2/orders)",
        "look up an order id that cannot exist (GET /v2/orders/{id})",
        "look up a correlation id that cannot exist (GET /v2/orders/external/{id})",
        "read one order of today's book, if there is one (GET /v2/orders/{id})",
    ]
    if order is not None:
        steps += [
            "open the order-update socket of this account",
            f"PLACE one LIMIT BUY of quantity 1 of {order.segment.value} {order.security_id} "
            f"at {order.price:g} (far from the market, so it cannot fill)",
            f"modify it once to {_lower_price(order.price):g}, then CANCEL it at once",
        ]
    steps.append("write the answers (a simulator profile) and the redacted exchanges")
    return steps


class _Capture:
    """A recorder that keeps the last REST answer and every frame, and passes all on."""

    def __init__(self, inner: Recorder | None) -> None:
        self._inner = inner
        self.last: tuple[str, str, dict[str, Any]] | None = None
        self.last_delete: dict[str, Any] = {}
        self.frames: list[str] = []

    def rest(
        self, account: str, method: str, path: str, request_body: object, response: object
    ) -> None:
        self.last = (method, path, response if isinstance(response, dict) else {})
        if method == "DELETE":
            self.last_delete = self.last[2]
        if self._inner is not None:
            self._inner.rest(account, method, path, request_body, response)

    def frame(self, account: str, text: str) -> None:
        self.frames.append(text)
        if self._inner is not None:
            self._inner.frame(account, text)


@dataclass
class ProbeResult:
    profile: dict[str, object] = field(default_factory=dict)  # SimProfile keys only
    notes: list[str] = field(default_factory=list)


def _error_answer(response: dict[str, Any]) -> str | None:
    """dh905_400 / dh907_404 from an HTTP answer; None for anything else."""
    status = response.get("status")
    body = response.get("body")
    code = body.get("errorCode") if isinstance(body, dict) else None
    if status == 400 and code == "DH-905":
        return "dh905_400"
    if status == 404 and code == "DH-907":
        return "dh907_404"
    return None


async def _read(
    capture: _Capture, call: Callable[[], Awaitable[object]]
) -> tuple[object, dict[str, Any]]:
    capture.last = None
    try:
        value: object = await call()
    except BrokerError as exc:
        value = exc
    return value, (capture.last[2] if capture.last else {})


async def run_probe(
    broker: DhanBroker,
    capture: _Capture,
    *,
    order: ProbeOrder | None = None,
    ws_url: str = "",
    client_id: str = "",
    token: str = "",
) -> ProbeResult:
    result = ProbeResult()
    book, _ = await _read(capture, broker.order_book)
    impossible = "9" + secrets.token_hex(4).translate(str.maketrans("abcdef", "123456"))
    _, answer = await _read(capture, lambda: broker.order_by_id(impossible))
    _settle(result, "unknown_order_id", _error_answer(answer), answer)
    _, answer = await _read(capture, lambda: broker.order_by_correlation(f"probe-{impossible}"))
    body = answer.get("body")
    lookup = _error_answer(answer)
    if lookup is None and answer.get("status") == 200:
        if body == []:
            lookup = "empty_list_200"
        elif body in ("", None, {}):
            lookup = "empty_200"
    _settle(result, "unknown_correlation_id", lookup, answer)
    if isinstance(book, list) and book:
        await _read_shape(broker, capture, result, book[0].order_id)
    if order is not None:
        await _order_round_trip(broker, capture, result, order, ws_url, client_id, token)
    return result


async def _read_shape(
    broker: DhanBroker, capture: _Capture, result: ProbeResult, order_id: str
) -> None:
    _, answer = await _read(capture, lambda: broker.order_by_id(order_id))
    body = answer.get("body")
    shape = "list" if isinstance(body, list) else "object" if isinstance(body, dict) else None
    _settle(result, "order_by_id_shape", shape, answer)


def _settle(result: ProbeResult, key: str, value: str | None, answer: dict[str, Any]) -> None:
    if value is not None:
        result.profile[key] = value
        return
    shown = json.dumps(answer)[:200]
    result.notes.append(f"{key}: an answer no profile value describes: {shown}")


async def _order_round_trip(
    broker: DhanBroker,
    capture: _Capture,
    result: ProbeResult,
    order: ProbeOrder,
    ws_url: str,
    client_id: str,
    token: str,
) -> None:
    seen: list[OrderSnapshot] = []
    connected = asyncio.Event()
    changed = asyncio.Event()

    async def on_snapshot(snap: OrderSnapshot) -> None:
        seen.append(snap)
        changed.set()

    async def on_connected() -> None:
        connected.set()

    stream = OrderStream(
        account="probe",
        client_id=client_id,
        access_token=token,
        url=ws_url,
        on_snapshot=on_snapshot,
        on_state=lambda state, detail: None,
        on_connected=on_connected,
        recorder=capture,
    )
    task = asyncio.create_task(stream.run())
    try:
        await asyncio.wait_for(connected.wait(), 10)
        await _place_modify_cancel(broker, capture, result, order, seen, changed)
    except TimeoutError:
        result.notes.append("the order socket did not log in within 10 s; socket not probed")
    finally:
        await stream.stop()
        task.cancel()


async def _wait_for(
    changed: asyncio.Event, seen: list[OrderSnapshot], test: Callable[[OrderSnapshot], bool]
) -> OrderSnapshot | None:
    deadline = asyncio.get_running_loop().time() + ALERT_WAIT_S
    while True:
        match = next((s for s in seen if test(s)), None)
        left = deadline - asyncio.get_running_loop().time()
        if match is not None or left <= 0:
            return match
        changed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(changed.wait(), left)


async def _place_modify_cancel(
    broker: DhanBroker,
    capture: _Capture,
    result: ProbeResult,
    order: ProbeOrder,
    seen: list[OrderSnapshot],
    changed: asyncio.Event,
) -> None:
    cid = f"probe-{secrets.token_hex(6)}"
    params = OrderParams(
        side=Side.BUY,
        order_type=OrderType.LIMIT,
        product=Product.CNC if order.segment is Segment.NSE_EQ else Product.INTRADAY,
        validity=Validity.DAY,
        segment=order.segment,
        security_id=order.security_id,
        quantity=1,
        price=order.price,
        correlation_id=cid,
    )
    placed = await broker.place(params)
    if not placed.order_id:
        result.notes.append(f"the probe order was not placed: {placed.error_code} {placed.message}")
        return
    order_id = placed.order_id
    try:
        first = await _wait_for(changed, seen, lambda s: s.order_id == order_id)
        frames = [f for f in capture.frames if order_id in f]
        if first is None or not frames:
            result.notes.append("no alert for the probe order within 3 s; socket not probed")
        else:
            _socket_dialect(result, frames[-1])
        new_price = _lower_price(order.price)
        modified = await broker.modify(order_id, _with_price(params, new_price))
        if modified.kind is ResultKind.OK and first is not None:
            alert = await _wait_for(
                changed, seen, lambda s: s.order_id == order_id and s.price == new_price
            )
            result.profile["modify_alert"] = alert is not None
        else:
            result.notes.append(f"modify not probed: {modified.error_code} {modified.message}")
    finally:
        capture.last_delete = {}
        cancelled = await broker.cancel(order_id)
        _cancel_answer(result, capture, cancelled.kind.value)


def _cancel_answer(result: ProbeResult, capture: _Capture, outcome: str) -> None:
    # The DELETE's own answer (the broker may read the order back after it).
    answer = capture.last_delete
    status, body = answer.get("status"), answer.get("body")
    if status == 202 and body in ("", None):
        result.profile["cancel_response"] = "empty_202"
    elif status == 200 and isinstance(body, dict):
        result.profile["cancel_response"] = "json_200"
    else:
        result.notes.append(f"cancel answered {status} ({outcome}); not a known form")


def _lower_price(price: float) -> float:
    """About 1% lower, in whole rupees (a multiple of every segment's tick)."""
    return float(max(1, int(price * 0.99)))


def _with_price(params: OrderParams, price: float) -> OrderParams:
    return replace(params, price=price)


def _socket_dialect(result: ProbeResult, frame: str) -> None:
    try:
        data = json.loads(frame).get("Data") or {}
    except (ValueError, AttributeError):
        result.notes.append("an order alert that is not JSON; socket not probed")
        return
    if "orderNo" in data:
        result.profile["socket_keys"] = "camel"
    elif "OrderNo" in data:
        result.profile["socket_keys"] = "pascal"
    status = str(data.get("status", data.get("Status", "")))
    if status.isupper():
        result.profile["socket_status_case"] = "upper"
    elif status[:1].isupper():
        result.profile["socket_status_case"] = "title"


async def probe_account(
    *,
    client_id: str,
    token: str,
    rest_url: str,
    ws_url: str,
    out_dir: Path,
    order: ProbeOrder | None = None,
    timeout_s: float = 10.0,
) -> tuple[Path, ProbeResult]:
    """Run the probe; write ``probe-profile.json`` (a simulator profile), ``probe-report.json``
    (the profile, what could not be settled and why) and the redacted exchanges
    (``rest.jsonl``, ``socket.jsonl``) into ``out_dir``. Returns the profile's path."""
    recorder = JsonlRecorder(out_dir, [client_id])
    capture = _Capture(recorder)
    broker = DhanBroker(client_id, token, rest_url, timeout_s=timeout_s, recorder=capture)
    try:
        result = await run_probe(
            broker, capture, order=order, ws_url=ws_url, client_id=client_id, token=token
        )
    finally:
        await broker.close()
        recorder.close()
    profile_path = out_dir / PROFILE_FILE
    profile_path.write_text(json.dumps(result.profile, indent=2) + "\n", encoding="utf-8")
    report = {"profile": result.profile, "not_settled": result.notes}
    text = recorder.redactor.text(json.dumps(report, indent=2))
    (out_dir / REPORT_FILE).write_text(text + "\n", encoding="utf-8")
    return profile_path, result
