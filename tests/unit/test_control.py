"""The control channel: a real server on a temporary socket, a fake engine behind it, the real
client and the real `copytrade status|kill|resume|resync` commands in subprocesses."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import stat
import sys
from collections.abc import AsyncIterator, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from engine import secrets
from engine.clock import IST
from engine.control import (
    Command,
    ControlClientError,
    ControlRefused,
    ControlServer,
    ControlSocketError,
    EngineNotRunning,
    EngineRefused,
    Request,
    ResumeReport,
    UncopiedOrder,
    send_command,
)
from engine.control.protocol import MAX_LINE_BYTES, encode_result
from engine.control.server import DEFAULT_KILL_REASON
from engine.paths import control_socket_path
from engine.secrets import clear_secrets, register_secret
from engine.views import RecoveryReport

ROOT = Path(__file__).resolve().parents[2]
# Built at run time: no token-shaped text in the repository.
CANARY = "tok-" + "canary" * 4

UNCOPIED = UncopiedOrder(
    leader_order_id="L-77",
    symbol="NIFTY 25NOV 24000 CE",
    side="BUY",
    order_type="STOP_LOSS",
    quantity=65,
    price=251.0,
    trigger_price=250.0,
    followers=("alpha", "beta"),
)


class FakeEngine:
    """Records what the channel asked; answers like the engine would."""

    def __init__(self) -> None:
        self.state = "ARMED"
        self.kills: list[str] = []
        self.resumes: list[bool] = []
        self.resyncs = 0
        self.refuse_resume = False
        self.crash_resync: Exception | None = None
        self.extra_status: dict[str, Any] = {}
        self.unfreezes: list[str | None] = []

    def status(self) -> Mapping[str, Any]:
        return {
            "state": self.state,
            "market": "NSE open 09:15-15:30 IST",
            "started_at": IST.localize(datetime(2026, 12, 1, 9, 0)),
            "followers": [
                {"name": "alpha", "state": "ARMED", "open_copies": 2, "frozen": False},
                {"name": "beta", "state": "FROZEN", "open_copies": 1, "frozen": True},
            ],
            "stats": {"replicated": 41, "latency_p50_ms": 12.5, "mean_slippage": float("nan")},
            **self.extra_status,
        }

    async def kill(self, reason: str) -> None:
        self.kills.append(reason)
        self.state = "KILLED"

    async def resume(self, replace_open: bool) -> ResumeReport:
        if self.refuse_resume:
            raise ControlRefused("the engine is not killed")
        self.resumes.append(replace_open)
        self.state = "ARMED"
        if replace_open:
            return ResumeReport(state="ARMED", replaced=("L-77",), message="1 order re-placed")
        return ResumeReport(state="ARMED", uncopied=(UNCOPIED,))

    async def resync(self) -> RecoveryReport:
        if self.crash_resync is not None:
            raise self.crash_resync
        self.resyncs += 1
        return RecoveryReport(
            trigger="manual",
            leader_orders_checked=12,
            actions_taken=3,
            discrepancies=("alpha: copy of L-5 was missing; placed",),
            duration_s=0.42,
        )

    async def uncopied_orders(self) -> list[UncopiedOrder]:
        return [UNCOPIED]

    async def clear_freeze(self, account: str | None) -> str:
        self.unfreezes.append(account)
        return "nothing is frozen" if account is None else f"{account or 'engine'}: cleared"


@pytest.fixture(autouse=True)
def _clean_secrets() -> Iterator[None]:
    clear_secrets()
    yield
    clear_secrets()


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "copytrade.db"


@pytest.fixture
async def server(engine: FakeEngine, db: Path) -> AsyncIterator[ControlServer]:
    async with ControlServer(engine, db, request_timeout_s=1.0) as served:
        yield served


async def ask(db: Path, request: Request) -> Any:
    # The client blocks; the server answers on this loop, so the client runs in a thread.
    return await asyncio.to_thread(send_command, db, request)


async def raw_exchange(path: Path, payload: bytes, *, close_write: bool = True) -> bytes:
    reader, writer = await asyncio.open_unix_connection(str(path))
    writer.write(payload)
    await writer.drain()
    if close_write and writer.can_write_eof():
        writer.write_eof()
    answer = await asyncio.wait_for(reader.read(), timeout=5)
    writer.close()
    await writer.wait_closed()
    return answer


# --- the socket -----------------------------------------------------------------------------


async def test_socket_is_beside_the_database_and_only_for_its_user(
    server: ControlServer, db: Path
) -> None:
    info = os.stat(server.path)
    assert server.path == control_socket_path(db) == db.with_name("copytrade.db.sock")
    assert stat.S_ISSOCK(info.st_mode)
    assert stat.S_IMODE(info.st_mode) == 0o600
    assert info.st_uid == os.getuid()


async def test_close_removes_the_socket_and_then_nobody_answers(
    engine: FakeEngine, db: Path
) -> None:
    server = ControlServer(engine, db)
    await server.start()
    assert (await ask(db, Request(Command.STATUS)))["state"] == "ARMED"
    await server.close()
    assert not server.path.exists()
    with pytest.raises(EngineNotRunning) as nobody:
        await ask(db, Request(Command.STATUS))
    assert str(nobody.value) == f"no engine is running for {db}"


async def test_a_stale_socket_left_by_a_dead_engine_is_replaced(
    engine: FakeEngine, db: Path
) -> None:
    path = control_socket_path(db)
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # bound and never listening: what a kill -9 leaves behind
    with pytest.raises(EngineNotRunning):
        await ask(db, Request(Command.STATUS))
    async with ControlServer(engine, db):
        assert (await ask(db, Request(Command.STATUS)))["state"] == "ARMED"


async def test_a_live_socket_is_never_taken_over(server: ControlServer, db: Path) -> None:
    with pytest.raises(ControlSocketError, match="another engine already answers on"):
        await ControlServer(FakeEngine(), db).start()
    assert (await ask(db, Request(Command.STATUS)))["state"] == "ARMED"  # the first still serves


async def test_a_file_in_the_sockets_place_is_refused(engine: FakeEngine, db: Path) -> None:
    control_socket_path(db).write_text("not a socket")
    with pytest.raises(ControlSocketError, match="exists and is not a control socket"):
        await ControlServer(engine, db).start()


async def test_a_long_database_path_serves_on_the_short_fallback(
    engine: FakeEngine, tmp_path: Path, runtime_dir: Path
) -> None:
    deep = tmp_path / ("d" * 70) / ("e" * 70) / "copytrade.db"
    async with ControlServer(engine, deep) as served:
        assert served.path.parent == runtime_dir / "copytrade"
        assert stat.S_IMODE(served.path.parent.stat().st_mode) == 0o700
        assert stat.S_IMODE(served.path.stat().st_mode) == 0o600
        assert (await ask(deep, Request(Command.STATUS)))["database"] == str(deep)


# --- the commands ---------------------------------------------------------------------------


async def test_status_answers_json_ready_and_names_the_engine(
    server: ControlServer, db: Path
) -> None:
    status = await ask(db, Request(Command.STATUS))
    assert status["state"] == "ARMED"
    assert status["pid"] == os.getpid()
    assert status["database"] == str(db)
    assert status["started_at"] == "2026-12-01T09:00:00+05:30"
    assert status["followers"][1] == {
        "name": "beta",
        "state": "FROZEN",
        "open_copies": 1,
        "frozen": True,
    }
    assert status["stats"]["mean_slippage"] is None  # NaN has no JSON form


async def test_kill_passes_the_reason_and_answers_the_new_state(
    server: ControlServer, engine: FakeEngine, db: Path
) -> None:
    status = await ask(db, Request(Command.KILL, reason="leader looks\nwrong"))
    assert engine.kills == ["leader looks wrong"]  # one line
    assert status["state"] == "KILLED"
    await ask(db, Request(Command.KILL))
    assert engine.kills[-1] == DEFAULT_KILL_REASON


async def test_resume_lists_or_replaces_the_uncopied_orders(
    server: ControlServer, engine: FakeEngine, db: Path
) -> None:
    report = await ask(db, Request(Command.RESUME))
    assert report["state"] == "ARMED"
    assert report["uncopied"][0]["leader_order_id"] == "L-77"
    assert report["uncopied"][0]["followers"] == ["alpha", "beta"]
    report = await ask(db, Request(Command.RESUME, replace_open=True))
    assert report["replaced"] == ["L-77"]
    assert engine.resumes == [False, True]


async def test_unfreeze_names_one_account_the_engine_or_all(
    server: ControlServer, engine: FakeEngine, db: Path
) -> None:
    assert (await ask(db, Request(Command.UNFREEZE, account="alpha")))["message"] == (
        "alpha: cleared"
    )
    assert (await ask(db, Request(Command.UNFREEZE, account="engine")))["message"] == (
        "engine: cleared"
    )
    assert (await ask(db, Request(Command.UNFREEZE)))["message"] == "nothing is frozen"
    assert engine.unfreezes == ["alpha", "", None]


async def test_resync_and_uncopied(server: ControlServer, engine: FakeEngine, db: Path) -> None:
    report = await ask(db, Request(Command.RESYNC))
    assert report["leader_orders_checked"] == 12 and report["actions_taken"] == 3
    assert engine.resyncs == 1
    answer = await ask(db, Request(Command.UNCOPIED))
    assert answer["orders"][0]["trigger_price"] == 250.0


async def test_a_refusal_is_the_engines_own_line(
    server: ControlServer, engine: FakeEngine, db: Path
) -> None:
    engine.refuse_resume = True
    with pytest.raises(EngineRefused) as refused:
        await ask(db, Request(Command.RESUME))
    assert str(refused.value) == "the engine is not killed"


async def test_an_engine_failure_is_one_line_without_the_secret_and_the_server_lives_on(
    server: ControlServer, engine: FakeEngine, db: Path
) -> None:
    register_secret(CANARY)
    engine.crash_resync = RuntimeError(f"broker said no to {CANARY}\nsecond line")
    with pytest.raises(EngineRefused) as refused:
        await ask(db, Request(Command.RESYNC))
    assert str(refused.value) == "the engine could not resync: RuntimeError: broker said no to ***"
    assert (await ask(db, Request(Command.STATUS)))["state"] == "ARMED"


async def test_no_secret_in_any_answer(server: ControlServer, engine: FakeEngine, db: Path) -> None:
    register_secret(CANARY)
    engine.extra_status = {"leader": {"client_id": "1000000001", "note": f"token {CANARY}"}}
    raw = await raw_exchange(server.path, b'{"command": "status"}\n')
    assert CANARY not in raw.decode()
    assert json.loads(raw)["result"]["leader"]["note"] == "token ***"


# --- hostile and broken requests ------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        (b"hello\n", "request is not a JSON line"),
        (b"\xff\xfe\n", "request is not a JSON line"),
        (b"[1, 2]\n", "request must be a JSON object"),
        (b'{"command": "launch"}\n', "unknown command 'launch' (known: status, kill, resume, "),
        (b'{"command": 7}\n', "unknown command 'int'"),
        (b'{"v": 2, "command": "status"}\n', "unsupported protocol version 2"),
        (b'{"v": true, "command": "status"}\n', "unsupported protocol version True"),
        (b'{"command": "kill", "reason": 5}\n', "reason must be text"),
        (b'{"command": "resume", "replace_open": "yes"}\n', "replace_open must be true or false"),
        (b"x" * (MAX_LINE_BYTES + 10) + b"\n", f"request longer than {MAX_LINE_BYTES} bytes"),
    ],
)
async def test_a_malformed_request_gets_one_error_line(
    server: ControlServer, engine: FakeEngine, db: Path, payload: bytes, error: str
) -> None:
    raw = await raw_exchange(server.path, payload)
    assert raw.endswith(b"\n") and raw.count(b"\n") == 1
    answer = json.loads(raw)
    assert answer["ok"] is False
    assert answer["error"].startswith(error)
    assert engine.kills == [] and engine.resumes == []  # nothing was done
    assert (await ask(db, Request(Command.STATUS)))["state"] == "ARMED"


async def test_a_request_without_newline_is_read_at_end_of_input(server: ControlServer) -> None:
    raw = await raw_exchange(server.path, b'{"command": "status"}')
    assert json.loads(raw)["ok"] is True


async def test_a_silent_client_is_let_go_and_a_probe_costs_nothing(
    server: ControlServer, db: Path
) -> None:
    raw = await raw_exchange(server.path, b"", close_write=False)
    assert json.loads(raw)["error"] == "no request line within 1 s"
    assert await raw_exchange(server.path, b"") == b""  # connect and leave
    assert (await ask(db, Request(Command.STATUS)))["state"] == "ARMED"


async def test_many_clients_at_once(server: ControlServer, db: Path) -> None:
    answers = await asyncio.gather(*(ask(db, Request(Command.STATUS)) for _ in range(20)))
    assert {a["state"] for a in answers} == {"ARMED"}


async def test_a_peer_of_another_user_is_refused(
    server: ControlServer, engine: FakeEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A second user cannot be created here; the server compares the kernel's peer uid with
    # its own, so pretending to run as another uid makes this (real) peer a stranger.
    real_uid = os.getuid()
    monkeypatch.setattr(os, "getuid", lambda: real_uid + 1)
    raw = await raw_exchange(server.path, b'{"command": "kill"}\n')
    assert json.loads(raw)["error"] == "refused: the control channel serves only its own user"
    assert engine.kills == []


async def test_the_client_does_not_talk_to_a_socket_of_another_user(
    server: ControlServer, db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_uid = os.getuid()
    monkeypatch.setattr(os, "getuid", lambda: real_uid + 1)
    with pytest.raises(ControlClientError, match="belongs to another user"):
        send_command(db, Request(Command.KILL))


# --- the commands a trader types -------------------------------------------------------------


async def copytrade(*args: str, cwd: Path = ROOT) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("COPYTRADE_")}
    env["COLUMNS"] = "160"
    env["PYTHONPATH"] = str(ROOT)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tui.cli",
        *args,
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_cli_status_prints_a_table(server: ControlServer, db: Path) -> None:
    code, out, err = await copytrade("status", "--db-path", str(db))
    assert (code, err) == (0, "")
    assert out.startswith("Engine ARMED\n")
    assert "NSE open 09:15-15:30 IST" in out
    for text in ("followers", "alpha", "beta", "FROZEN", "open copies", "replicated", "12.50"):
        assert text in out
    assert str(db) in out


async def test_cli_status_json(server: ControlServer, db: Path) -> None:
    code, out, _ = await copytrade("status", "--db-path", str(db), "--json")
    assert code == 0
    assert json.loads(out)["followers"][0]["name"] == "alpha"


async def test_cli_finds_the_database_in_the_settings_file(
    server: ControlServer, db: Path, tmp_path: Path
) -> None:
    env_file = tmp_path / "trading.env"
    env_file.write_text(f"COPYTRADE_DB_PATH={db}\nCOPYTRADE_LEADER__ACCESS_TOKEN=x\n")
    code, out, _ = await copytrade("status", "--env-file", str(env_file), "--json")
    assert code == 0 and json.loads(out)["state"] == "ARMED"


async def test_cli_kill_resume_resync(server: ControlServer, engine: FakeEngine, db: Path) -> None:
    code, out, _ = await copytrade("kill", "--db-path", str(db), "--reason", "leader offline")
    assert code == 0 and "Engine KILLED" in out
    assert engine.kills == ["leader offline"]

    code, out, _ = await copytrade("resume", "--db-path", str(db))
    assert code == 0
    assert "Leader orders open without a copy" in out
    assert "L-77" in out and "alpha, beta" in out
    assert "copytrade resume --replace-open" in out

    code, out, _ = await copytrade("resume", "--db-path", str(db), "--replace-open")
    assert code == 0 and "Copies placed again for 1 leader orders: L-77" in out
    assert engine.resumes == [False, True]

    code, out, _ = await copytrade("resync", "--db-path", str(db))
    assert code == 0
    assert "Resync done in 0.42 s: 12 leader orders checked, 3 actions taken." in out
    assert "alpha: copy of L-5 was missing; placed" in out


async def test_cli_refusal_exits_1_with_one_line(
    server: ControlServer, engine: FakeEngine, db: Path
) -> None:
    engine.refuse_resume = True
    code, out, err = await copytrade("resume", "--db-path", str(db))
    assert (code, out) == (1, "")
    assert err == "copytrade: resume refused: the engine is not killed\n"


@pytest.mark.parametrize("command", ["status", "kill", "resume", "resync"])
async def test_cli_without_an_engine_exits_2_with_one_line(tmp_path: Path, command: str) -> None:
    db = tmp_path / "nobody.db"
    code, out, err = await copytrade(command, "--db-path", str(db))
    assert (code, out) == (2, "")
    assert err == f"copytrade: no engine is running for {db}\n"


def test_a_control_line_stays_json_when_a_pin_is_also_a_number() -> None:
    secrets.register_secret("4821")
    try:
        line = json.loads(
            encode_result({"quantity": 4821, "order": "1000004821", "note": "pin 4821"})
        )
        assert line["result"] == {"quantity": 4821, "order": "1000004821", "note": "pin ***"}
    finally:
        secrets.clear_secrets()
