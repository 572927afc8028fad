"""JSON by TypeAdapter: the same text as the program wrote before, rows it wrote still load,
no secret in it, and the headless log's lines."""

from __future__ import annotations

import dataclasses
import io
import json
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from engine import secrets
from engine.domain import (
    Alert,
    AmoTime,
    ConnectionState,
    EngineState,
    MirrorState,
    OrderParams,
    OrderSnapshot,
    OrderStatus,
    Severity,
)
from engine.events import (
    AlertRaised,
    ConnectionChanged,
    EngineEvent,
    EngineStateChanged,
    FollowerOrderChanged,
    LeaderOrderSeen,
    LimiterChanged,
    RecoveryCompleted,
    StatsUpdated,
)
from engine.headless import JsonLinesLog, event_to_json
from engine.store.serialization import from_json, to_json, to_jsonable
from engine.views import (
    EngineStats,
    FollowerOrderView,
    LimiterView,
    LimitWindow,
    RecoveryReport,
)
from tests.store_helpers import T0, V4_PARAMS, V4_SNAPSHOT, params, snapshot

TOKEN = "test-access-token-SERIAL-5551234"


@pytest.fixture
def token() -> Iterator[str]:
    secrets.register_secret(TOKEN)
    yield TOKEN
    secrets.clear_secrets()


def test_rows_written_by_the_previous_codec_load() -> None:
    snap = from_json(OrderSnapshot, V4_SNAPSHOT)
    assert snap == snapshot(
        reason='₹ remark "q"',
        updated_at=datetime(2026, 11, 23, 3, 45, 1, tzinfo=UTC),
        amo_time=AmoTime.OPEN_30,
        is_option=True,
    )
    assert snap.updated_at is not None and snap.updated_at.utcoffset() == timedelta(0)
    assert snap.created_at is not None
    assert snap.created_at.tzinfo.zone == "Asia/Kolkata"  # type: ignore[union-attr]
    p = from_json(OrderParams, V4_PARAMS)
    assert p == params(notes=("MARKET sent as LIMIT",), amo=True, amo_time=AmoTime.PRE_OPEN)


def test_the_text_written_is_what_the_previous_codec_wrote() -> None:
    p = params(notes=("MARKET sent as LIMIT",), amo=True, amo_time=AmoTime.PRE_OPEN)
    assert to_json(p) == V4_PARAMS
    snap = snapshot(reason='₹ remark "q"', amo_time=AmoTime.OPEN_30, is_option=True)
    assert to_json(snap) == V4_SNAPSHOT.replace("2026-11-23T03:45:01+00:00", T0.isoformat())


def test_values_are_checked_when_read() -> None:
    broken = V4_PARAMS.replace('"quantity":75', '"quantity":"many"')
    with pytest.raises(ValueError, match="quantity"):
        from_json(OrderParams, broken)


def test_no_secret_in_the_json(token: str) -> None:
    jwt = "eyJhbGciOiJIUzUxMiJ9.eyJjbGllbnQiOiIxMDAwMDAwMDAxIn0.c2lnbmF0dXJlc2ln"
    text = to_json(snapshot(reason=f"token {token} jwt {jwt}"))
    assert token not in text and jwt not in text
    assert json.loads(text)["reason"] == "token *** jwt ***"
    assert token not in to_json(params(notes=(token,)))


def test_a_pin_that_is_also_a_number_an_id_or_part_of_a_date_reads_back_whole() -> None:
    """A trader's PIN is a few digits, and so are quantities, prices, security ids, order ids
    and the parts of a date: each is kept, and the record reads back; text still hides it."""
    for pin in ("4821", "2026"):
        secrets.register_secret(pin)
    try:
        snap = snapshot(
            "1000004821",
            quantity=4821,
            price=4821.0,
            security_id="4821",
            reason="refused for pin 4821",
            updated_at=datetime(2026, 12, 2, 4, 45, 3, 482150, tzinfo=UTC),
        )
        assert from_json(OrderSnapshot, to_json(snap)) == snap.with_changes(
            reason="refused for pin ***"
        )
        p = params(quantity=4821, price=4821.0, security_id="4821", notes=("pin 4821",))
        back = from_json(OrderParams, to_json(p))
        assert back == dataclasses.replace(p, notes=("pin ***",))
    finally:
        secrets.clear_secrets()


def test_a_headless_log_line_stays_json_when_a_pin_is_also_a_quantity() -> None:
    secrets.register_secret("4821")
    try:
        seen = LeaderOrderSeen(T0, snapshot("1000004821", quantity=4821, reason="pin 4821"), True)
        line = json.loads(event_to_json(seen))
        assert line["snapshot"]["quantity"] == 4821
        assert line["snapshot"]["order_id"] == "1000004821"
        assert line["snapshot"]["reason"] == "pin ***"
    finally:
        secrets.clear_secrets()


def every_event() -> list[EngineEvent]:
    view = FollowerOrderView(
        "alice", "L1", "CPY-1", MirrorState.LIVE, broker_status=OrderStatus.TRADED, updated_at=T0
    )
    return [
        LeaderOrderSeen(T0, snapshot(), is_new=True),
        FollowerOrderChanged(T0, view),
        LimiterChanged(T0, LimiterView("alice", (LimitWindow("second", 10, 3),), throttled=2)),
        AlertRaised(T0, Alert("X", Severity.ERROR, "m", T0, "alice")),
        ConnectionChanged(T0, "leader", ConnectionState.CONNECTED, "ok"),
        EngineStateChanged(T0, EngineState.KILLED, "K pressed"),
        RecoveryCompleted(T0, RecoveryReport("startup", 3, 1, ("one",), 0.25)),
        StatsUpdated(T0, EngineStats(replicated=4, latency_p50_ms=2.5, last_leader_event_at=T0)),
    ]


def test_every_event_is_one_json_line_without_warnings() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # pydantic warns when a value does not fit its type
        lines = [event_to_json(e) for e in every_event()]
    bodies = [json.loads(line) for line in lines]
    assert [b["event"] for b in bodies] == [type(e).__name__ for e in every_event()]
    assert all("\n" not in line for line in lines)
    assert all(list(b) == sorted(b) for b in bodies)
    assert bodies[2] == {
        "at": "2026-11-23T09:15:00.123456+05:30",
        "event": "LimiterChanged",
        "view": {
            "account": "alice",
            "windows": [{"name": "second", "limit": 10, "used": 3}],
            "queue_depth": 0,
            "throttled": 2,
            "dh904": 0,
        },
    }
    assert bodies[1]["view"]["broker_status"] == "TRADED"
    assert bodies[4]["state"] == ConnectionState.CONNECTED.value
    assert bodies[6]["report"]["discrepancies"] == ["one"]
    assert bodies[0]["snapshot"] == to_jsonable(snapshot())


def test_the_headless_log_masks_secrets_and_throttles_gauges(token: str) -> None:
    out = io.StringIO()
    now = [100.0]
    log = JsonLinesLog(out, lambda: now[0])
    log(EngineStateChanged(T0, EngineState.KILLED, f"token {token}"))
    gauge = LimiterChanged(T0, LimiterView("alice", ()))
    log(gauge)
    log(gauge)  # within a second: dropped
    now[0] += 1.5
    log(gauge)
    lines = out.getvalue().splitlines()
    assert [json.loads(line)["event"] for line in lines] == [
        "EngineStateChanged",
        "LimiterChanged",
        "LimiterChanged",
    ]
    assert token not in out.getvalue()
    assert json.loads(lines[0])["reason"] == "token ***"
