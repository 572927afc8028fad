"""The JSON-lines recorder for ``copytrade run --record``: what it writes and what it never does."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from engine.clock import IST
from engine.dhan.order_stream import login_message
from engine.dhan.recorder import JsonlRecorder, Redactor
from engine.secrets import register_secret

LEADER = "1100001111"
FOLLOWER = "2200002222"
JWT = ".".join(["eyJhbGciOiJIUzUxMiJ9", "eyJkaGFuQ2xpZW50SWQiOiIxIn0", "c2lnbmF0dXJlLXNpZw"])


def _lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_client_ids_become_stable_placeholders() -> None:
    redactor = Redactor([LEADER, FOLLOWER])
    assert redactor.text(f"{FOLLOWER} then {LEADER} then {FOLLOWER}") == (
        "CLIENT-2 then CLIENT-1 then CLIENT-2"
    )
    assert redactor.value({"dhanClientId": int(LEADER), "n": 5}) == {
        "dhanClientId": "CLIENT-1",
        "n": 5,
    }


def test_secrets_are_masked_by_key_by_pattern_and_by_registration() -> None:
    registered = "tok-registered-7781"
    register_secret(registered)
    redactor = Redactor([LEADER])
    value = redactor.value(
        {
            "accessToken": "abc",
            "pin": "1234",
            "totp": "654321",
            "nested": [{"Token": "xyz"}, f"Bearer {JWT}", f"see {registered}"],
            "kept": "plain",
        }
    )
    assert value == {
        "accessToken": "***",
        "pin": "***",
        "totp": "***",
        "nested": [{"Token": "***"}, "Bearer ***", "see ***"],
        "kept": "plain",
    }
    assert redactor.text("/app/generateAccessToken?dhanClientId=1100001111&pin=1234&totp=99") == (
        "/app/generateAccessToken?dhanClientId=CLIENT-1&pin=***&totp=***"
    )
    assert redactor.text('{"access-token": "raw-token-text"}') == '{"access-token": "***"}'


def test_files_and_line_format(tmp_path: Path) -> None:
    at = IST.localize(datetime(2026, 12, 1, 9, 15, 0))
    recorder = JsonlRecorder(tmp_path / "rec", [LEADER, FOLLOWER], now=lambda: at)
    frame = json.dumps({"Type": "order_alert", "Data": {"ClientId": LEADER, "OrderNo": "1"}})
    recorder.frame("leader", frame)
    recorder.rest(
        "f1",
        "POST",
        "/v2/orders",
        json.dumps({"dhanClientId": FOLLOWER, "quantity": 1}).encode(),
        {"status": 200, "body": {"orderId": "9", "orderStatus": "TRANSIT"}},
    )
    recorder.rest("f1", "GET", "/v2/orders", None, {"status": 502, "body": "<html>bad</html>"})
    recorder.close()
    recorder.frame("leader", "after close: dropped")
    socket_lines = _lines(tmp_path / "rec" / "socket.jsonl")
    assert socket_lines == [
        {
            "at": "2026-12-01T09:15:00+05:30",
            "account": "leader",
            "frame": frame.replace(LEADER, "CLIENT-1"),
        }
    ]
    rest_lines = _lines(tmp_path / "rec" / "rest.jsonl")
    assert rest_lines[0]["request"] == {"dhanClientId": "CLIENT-2", "quantity": 1}
    assert rest_lines[0]["response"] == {
        "status": 200,
        "body": {"orderId": "9", "orderStatus": "TRANSIT"},
    }
    assert rest_lines[1]["request"] is None
    assert rest_lines[1]["response"] == {"status": 502, "body": "<html>bad</html>"}
    text = (tmp_path / "rec" / "rest.jsonl").read_text()
    assert LEADER not in text and FOLLOWER not in text


def test_a_login_frame_given_by_mistake_loses_its_token(tmp_path: Path) -> None:
    token = "tok-login-SECRET-55"
    recorder = JsonlRecorder(tmp_path, [LEADER])
    recorder.frame("leader", login_message(LEADER, token))
    recorder.close()
    text = (tmp_path / "socket.jsonl").read_text()
    assert token not in text and LEADER not in text
    recorded = str(_lines(tmp_path / "socket.jsonl")[0]["frame"])
    assert json.loads(recorded)["LoginReq"]["Token"] == "***"


def test_appends_across_runs(tmp_path: Path) -> None:
    for n in range(2):
        recorder = JsonlRecorder(tmp_path, [])
        recorder.frame("leader", f"frame {n}")
        recorder.close()
    assert [x["frame"] for x in _lines(tmp_path / "socket.jsonl")] == ["frame 0", "frame 1"]
