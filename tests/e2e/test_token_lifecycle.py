"""The engine over a trading day's tokens and static IPs, with the real dhanhq SDK against the
simulator:

- the leader known only by PIN + TOTP (no token) copies to two followers, one of which also
  mints its own; every token lives 4 s and is renewed while copying goes on: no copy late,
  refused or lost, the engine never frozen;
- a follower's token Dhan revokes mid-session is re-minted and the refused copy sent again;
- a refused leader token freezes the whole engine until a new one is set (refused one first);
- a follower's token replaced with `copytrade token set` while a headless engine runs (a
  subprocess): refused token -> that follower frozen -> new token from stdin -> copying again;
- a follower whose source_ip is not whitelisted is frozen with an alert naming the address
  while the other, on its own 127.0.0.x, keeps copying; the simulator's request log shows each
  follower's calls, and its order socket, arriving from its own address;
- no PIN, TOTP secret or token in any output, alert, log line, the database or the
  simulator's log.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import Any

import pyotp
import pytest
from pydantic import SecretStr

from engine.config import load_settings
from engine.control.client import ControlClientError, send_command
from engine.control.protocol import Command, Request
from engine.domain import Alert, ConnectionState, EngineState
from engine.engine import Engine
from engine.events import EngineEvent, FreezeChanged
from engine.simulator.server import DhanSimulator
from tests.e2e.conftest import ALPHA, BETA, LEADER, NIFTY_CE
from tests.leaks import leaked_secrets

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parents[2]
LEADER_PIN = "582046"
ALPHA_PIN = "9173"
LEADER_TOTP = pyotp.random_base32()
ALPHA_TOTP = pyotp.random_base32()


def base_env(sim: DhanSimulator, db: Path, followers: list[dict[str, Any]]) -> dict[str, str]:
    return {
        "COPYTRADE_LEADER__CLIENT_ID": LEADER[0],
        "COPYTRADE_FOLLOWERS": json.dumps(followers),
        "COPYTRADE_DHAN__REST_URL": sim.rest_url,
        "COPYTRADE_DHAN__ORDER_WS_URL": sim.ws_url,
        "COPYTRADE_DHAN__TIMEOUT_S": "3",
        "COPYTRADE_DB_PATH": str(db),
        "COPYTRADE_ENFORCE_MARKET_HOURS": "false",
        "COPYTRADE_RECONCILE_INTERVAL_S": "3600",
        "COPYTRADE_RISK_CHECK_INTERVAL_S": "0.5",
        "COPYTRADE_INSTRUMENTS_URL": sim.scrip_master_detailed_url,
    }


def leader_buy(sim: DhanSimulator, price: float = 100.0) -> str:
    return sim.place_manual_order(
        LEADER[0],
        transactionType="BUY",
        exchangeSegment=NIFTY_CE[0],
        securityId=NIFTY_CE[1],
        quantity=65,
        orderType="LIMIT",
        price=price,
        productType="INTRADAY",
    )


async def until(predicate: Callable[[], bool], timeout: float, what: str) -> float:
    """Seconds it took; AssertionError past the timeout."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)
    return time.monotonic() - start


def copies_at_least(sim: DhanSimulator, count: int, *client_ids: str) -> Callable[[], bool]:
    return lambda: all(len(sim.orders(cid)) >= count for cid in client_ids)


def no_secret_in(texts: Iterable[str], secrets: Iterable[str]) -> None:
    blob = "\n".join(texts)
    assert not leaked_secrets(secrets, blob), "a secret leaked"


def database_text(db: Path) -> str:
    parts = [p.read_bytes() for p in db.parent.glob(db.name + "*") if p.is_file()]
    return b"".join(parts).decode("latin-1")


def posts(sim: DhanSimulator, client_id: str) -> list[dict[str, Any]]:
    return [
        r
        for r in sim.requests
        if r["client_id"] == client_id and r["method"] == "POST" and r["path"] == "/v2/orders"
    ]


class Running:
    """An in-process engine and what it published."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.events: list[EngineEvent] = []
        engine.subscribe(self.events.append)
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.task = asyncio.create_task(self.engine.run())
        await asyncio.wait_for(self.engine.wait_started(), 15)
        await until(
            lambda: self.engine.leader_connection() is ConnectionState.CONNECTED,
            10,
            "leader feed",
        )

    async def stop(self) -> None:
        if self.task is not None:
            await self.engine.stop()
            await asyncio.wait_for(self.task, 15)
            self.task = None

    def alerts(self, code: str | None = None) -> list[Alert]:
        return [a for a in self.engine.recent_alerts() if code is None or a.code == code]


@pytest.fixture
async def running() -> AsyncIterator[Callable[[Engine], Running]]:
    started: list[Running] = []

    def make(engine: Engine) -> Running:
        started.append(Running(engine))
        return started[-1]

    yield make
    for run in started:
        await run.stop()


async def test_pin_and_totp_leader_copies_while_short_tokens_renew_with_no_gap(
    sim: DhanSimulator,
    tmp_path: Path,
    running: Callable[[Engine], Running],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="engine")
    sim.enable_totp(LEADER[0], LEADER_PIN, LEADER_TOTP)
    sim.enable_totp(ALPHA[0], ALPHA_PIN, ALPHA_TOTP)
    sim.set_profile(sim.profile.model_copy(update={"token_validity_s": 4}))
    followers = [
        {"name": "alpha", "client_id": ALPHA[0], "pin": ALPHA_PIN, "totp_secret": ALPHA_TOTP},
        {"name": "beta", "client_id": BETA[0], "access_token": BETA[1]},
    ]
    env = base_env(sim, tmp_path / "engine.db", followers)
    env |= {"COPYTRADE_LEADER__PIN": LEADER_PIN, "COPYTRADE_LEADER__TOTP_SECRET": LEADER_TOTP}
    assert "COPYTRADE_LEADER__ACCESS_TOKEN" not in env  # the leader has no token at all
    run = running(Engine(load_settings(env_file=None, environ=env)))
    await run.start()
    minted = {r["client_id"] for r in sim.requests if r["path"] == "/app/generateAccessToken"}
    assert minted == {LEADER[0], ALPHA[0]}

    delays: list[float] = []
    tokens: set[str] = set()  # every token Dhan gave out (the simulator forgets dead ones)
    started = time.monotonic()
    count = 0
    while time.monotonic() - started < 10.0:  # two and a half token lifetimes
        tokens |= {t for cid in (LEADER[0], ALPHA[0]) for t in sim.exchange.accounts[cid].minted}
        leader_buy(sim, 100.0 + count * 0.05)
        count += 1
        delays.append(
            await until(
                copies_at_least(sim, count, ALPHA[0], BETA[0]),
                3,
                f"copies of leader order {count}",
            )
        )
        await asyncio.sleep(0.2)

    renewals = [r["client_id"] for r in sim.requests if r["path"] == "/v2/RenewToken"]
    # 4 s tokens renewed at a third of their life left: 3+ renewals each in 10 s.
    assert renewals.count(LEADER[0]) >= 3 and renewals.count(ALPHA[0]) >= 3, renewals
    assert {a.follower for a in run.alerts("TOKEN_RENEWED")} == {None, "alpha"}
    assert count >= 30 and len(delays) == count
    assert max(delays) < 1.0, f"slowest copy took {max(delays):.2f}s"
    assert all(r.get("status") != 401 for r in sim.requests), "a call went out with a dead token"
    refused = [a for a in run.alerts() if a.code in ("TOKEN_REFUSED", "FOLLOWER_REFUSED")]
    assert not refused, refused
    assert not [e for e in run.events if isinstance(e, FreezeChanged)]
    assert run.engine.state is EngineState.ARMED
    await run.stop()

    assert len(tokens) >= 6
    secrets = [LEADER_PIN, ALPHA_PIN, LEADER_TOTP, ALPHA_TOTP, BETA[1], *tokens]
    no_secret_in(
        [
            json.dumps(sim.requests, default=str),
            caplog.text,
            *(a.message for a in run.alerts()),
            database_text(tmp_path / "engine.db"),
        ],
        secrets,
    )


async def test_a_token_dhan_revokes_is_reminted_and_the_copy_still_goes(
    sim: DhanSimulator, tmp_path: Path, running: Callable[[Engine], Running]
) -> None:
    sim.enable_totp(ALPHA[0], ALPHA_PIN, ALPHA_TOTP)
    followers = [
        {"name": "alpha", "client_id": ALPHA[0], "pin": ALPHA_PIN, "totp_secret": ALPHA_TOTP},
        {"name": "beta", "client_id": BETA[0], "access_token": BETA[1]},
    ]
    env = base_env(sim, tmp_path / "engine.db", followers)
    env["COPYTRADE_LEADER__ACCESS_TOKEN"] = LEADER[1]
    run = running(Engine(load_settings(env_file=None, environ=env)))
    await run.start()
    leader_buy(sim, 100.0)
    await until(copies_at_least(sim, 1, ALPHA[0], BETA[0]), 5, "first copies")
    await run.engine.settle()

    sim.expire_token(ALPHA[0])  # Dhan ends alpha's token hours early
    await asyncio.sleep(0.1)  # sockets dropped
    leader_buy(sim, 101.0)
    await until(copies_at_least(sim, 2, ALPHA[0], BETA[0]), 5, "copies after the revocation")
    alpha_posts = posts(sim, ALPHA[0])
    assert [r["status"] for r in alpha_posts] == [200, 401, 200]  # refused, re-minted, sent
    mints = [r for r in sim.requests if r["path"] == "/app/generateAccessToken"]
    assert len(mints) == 2 and all(r["client_id"] == ALPHA[0] for r in mints)
    assert not run.alerts("FOLLOWER_REFUSED") and not run.alerts("FOLLOWER_FROZEN")
    assert {a.follower for a in run.alerts("TOKEN_MINTED")} == {"alpha"}


async def test_a_refused_leader_token_freezes_the_engine_until_a_new_one_is_set(
    sim: DhanSimulator, tmp_path: Path, running: Callable[[Engine], Running]
) -> None:
    followers = [{"name": "alpha", "client_id": ALPHA[0], "access_token": ALPHA[1]}]
    env = base_env(sim, tmp_path / "engine.db", followers)
    env["COPYTRADE_LEADER__ACCESS_TOKEN"] = LEADER[1]
    run = running(Engine(load_settings(env_file=None, environ=env)))
    await run.start()
    new_token = "tok-leader-" + "fresh" * 3

    sim.renew_token(LEADER[0], new_token)  # the pasted token no longer works at Dhan
    sim.faults.drop_sockets(LEADER[0])  # the feed reconnects: its login is refused
    await until(lambda: run.engine.state is EngineState.FROZEN, 10, "engine frozen")
    assert run.alerts("TOKEN_REFUSED") and "copytrade token set leader" in (
        run.alerts("TOKEN_REFUSED")[0].message
    )
    leader_buy(sim, 100.0)  # placed while frozen: not copied yet
    await asyncio.sleep(0.5)
    assert sim.orders(ALPHA[0]) == []

    refused = await run.engine.set_token("leader", SecretStr("tok-leader-wrong"))
    assert not refused.accepted and run.engine.state is EngineState.FROZEN
    outcome = await run.engine.set_token("leader", SecretStr(new_token))
    assert outcome.accepted and new_token not in outcome.message
    await until(lambda: run.engine.state is EngineState.ARMED, 15, "freeze cleared")
    await until(lambda: run.engine.leader_connection() is ConnectionState.CONNECTED, 5, "feed back")
    await until(copies_at_least(sim, 1, ALPHA[0]), 10, "the order that waited, copied")
    no_secret_in([a.message for a in run.alerts()], [new_token, LEADER[1]])


async def test_a_follower_off_its_whitelisted_ip_is_frozen_while_the_other_copies(
    sim: DhanSimulator, tmp_path: Path, running: Callable[[Engine], Running]
) -> None:
    sim.set_ip_whitelist(ALPHA[0], ["127.0.0.2"])
    sim.set_ip_whitelist(BETA[0], ["127.0.0.9"])  # beta sends from 127.0.0.3: not on it
    followers = [
        {"name": "alpha", "client_id": ALPHA[0], "access_token": ALPHA[1]},
        {"name": "beta", "client_id": BETA[0], "access_token": BETA[1]},
    ]
    followers[0]["source_ip"] = "127.0.0.2"
    followers[1]["source_ip"] = "127.0.0.3"
    env = base_env(sim, tmp_path / "engine.db", followers)
    env["COPYTRADE_LEADER__ACCESS_TOKEN"] = LEADER[1]
    run = running(Engine(load_settings(env_file=None, environ=env)))
    await run.start()

    leader_buy(sim, 100.0)
    await until(lambda: len(sim.orders(ALPHA[0])) == 1, 5, "alpha's first copy")
    await until(lambda: bool(run.alerts("FOLLOWER_FROZEN")), 5, "beta frozen")
    frozen = run.alerts("FOLLOWER_FROZEN")
    assert [a.follower for a in frozen] == ["beta"]
    assert "127.0.0.3" in frozen[0].message and "whitelist" in frozen[0].message
    freezes = [e for e in run.events if isinstance(e, FreezeChanged)]
    assert [(e.account, e.causes) for e in freezes] == [("beta", ("INVALID_IP",))]

    for n in range(2, 5):  # alpha keeps copying; beta sends nothing new while frozen
        leader_buy(sim, 100.0 + n)
        await until(copies_at_least(sim, n, ALPHA[0]), 5, f"alpha's copy {n}")
    await run.engine.settle()
    assert sim.orders(BETA[0]) == []
    assert len(posts(sim, BETA[0])) == 1  # the one refused order, then frozen

    alpha_calls = [r for r in sim.requests if r["client_id"] == ALPHA[0]]
    beta_calls = [r for r in sim.requests if r["client_id"] == BETA[0]]
    assert alpha_calls and {r["source"] for r in alpha_calls} == {"127.0.0.2"}
    assert beta_calls and {r["source"] for r in beta_calls} == {"127.0.0.3"}
    assert [r["status"] for r in posts(sim, ALPHA[0])] == [200] * 4
    sockets = {a["clientId"]: a["socketSources"] for a in sim.state()["accounts"]}
    assert sockets[ALPHA[0]] == ["127.0.0.2"] and sockets[BETA[0]] == ["127.0.0.3"]
    assert [r["status"] for r in posts(sim, BETA[0])] == [403]

    # The trader fixes the whitelist and clears the freeze: every leader order still open is
    # copied to beta, the one whose placement Dhan refused for the IP among them.
    sim.set_ip_whitelist(BETA[0], ["127.0.0.3"])
    await run.engine.resume()
    await until(copies_at_least(sim, 4, BETA[0]), 15, "beta's copies once its IP is whitelisted")
    await run.engine.settle()
    assert sorted(o["price"] for o in sim.orders(BETA[0])) == [100.0, 102.0, 103.0, 104.0]


# --- a headless engine in its own process, its token replaced from the command line ---------


async def copytrade(*args: str, stdin: bytes | None = None) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COPYTRADE_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tui.cli",
        *args,
        cwd=ROOT,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin), timeout=60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def status_of(db: Path) -> dict[str, Any] | None:
    try:
        answer = await asyncio.to_thread(send_command, db, Request(Command.STATUS))
    except ControlClientError:
        return None
    return answer if isinstance(answer, dict) else None


def follower_frozen(status: dict[str, Any] | None, name: str) -> str:
    if status is None:
        return ""
    return next((str(f["frozen"]) for f in status["followers"] if f["name"] == name), "")


async def _beta_token_refused_after_a_first_copy(
    sim: DhanSimulator, tmp_path: Path, running: Callable[[Engine], Running]
) -> tuple[Running, str, str]:
    """alpha and beta (pasted tokens) copy a first leader buy at 100; then Dhan refuses beta's
    token. The engine, the first leader order and beta's token that will work."""
    followers = [
        {"name": "alpha", "client_id": ALPHA[0], "access_token": ALPHA[1]},
        {"name": "beta", "client_id": BETA[0], "access_token": BETA[1]},
    ]
    env = base_env(sim, tmp_path / "engine.db", followers)
    env["COPYTRADE_LEADER__ACCESS_TOKEN"] = LEADER[1]
    run = running(Engine(load_settings(env_file=None, environ=env)))
    await run.start()
    leader_id = leader_buy(sim, 100.0)
    await until(copies_at_least(sim, 1, ALPHA[0], BETA[0]), 5, "first copies")
    await run.engine.settle()
    new_token = "tok-beta-" + "renewed" * 3
    sim.renew_token(BETA[0], new_token)  # Dhan now refuses beta's pasted token
    return run, leader_id, new_token


async def test_the_order_a_refused_follower_token_met_is_copied_once_a_new_token_works(
    sim: DhanSimulator, tmp_path: Path, running: Callable[[Engine], Running]
) -> None:
    """The placement that found beta's token refused never reached Dhan's order book: like
    the orders the leader places while beta is frozen, it is copied once the freeze clears,
    if the leader's order is still open."""
    run, _, new_token = await _beta_token_refused_after_a_first_copy(sim, tmp_path, running)
    leader_id = leader_buy(sim, 101.0)
    await until(copies_at_least(sim, 2, ALPHA[0]), 5, "alpha's copy")
    await until(lambda: bool(posts(sim, BETA[0])[1:]), 5, "beta's placement tried")
    await run.engine.settle()
    assert [r["status"] for r in posts(sim, BETA[0])] == [200, 401]
    assert len(sim.orders(BETA[0])) == 1
    outcome = await run.engine.set_token("beta", SecretStr(new_token))
    assert outcome.accepted
    await until(copies_at_least(sim, 2, BETA[0]), 15, "beta's copy once its token works")
    await run.engine.settle()
    copy = sim.orders(BETA[0])[1]
    assert copy["price"] == 101.0 and copy["orderStatus"] == "PENDING"
    assert len(sim.orders(BETA[0])) == 2  # placed once
    mirror = run.engine.mirror("beta", leader_id)
    assert mirror is not None and mirror.is_open_at_broker
    sim.cancel_manual_order(LEADER[0], leader_id)
    await until(lambda: sim.orders(BETA[0])[1]["orderStatus"] == "CANCELLED", 5, "cancelled")


async def test_a_leader_change_a_refused_follower_token_met_is_made_once_a_new_token_works(
    sim: DhanSimulator, tmp_path: Path, running: Callable[[Engine], Running]
) -> None:
    """The modification that found beta's token refused is not a refusal of the change: once
    a new token works, beta's copy follows the leader's new price (a trailed stop-loss would
    otherwise stay where it was)."""
    run, leader_id, new_token = await _beta_token_refused_after_a_first_copy(sim, tmp_path, running)
    sim.modify_manual_order(LEADER[0], leader_id, price=99.0)
    await until(lambda: sim.orders(ALPHA[0])[0]["price"] == 99.0, 5, "alpha re-priced")
    await run.engine.settle()
    assert sim.orders(BETA[0])[0]["price"] == 100.0
    outcome = await run.engine.set_token("beta", SecretStr(new_token))
    assert outcome.accepted
    await until(lambda: sim.orders(BETA[0])[0]["price"] == 99.0, 15, "beta re-priced")
    await run.engine.settle()
    assert len(sim.orders(BETA[0])) == 1


async def test_token_set_replaces_a_followers_token_while_headless_runs(
    sim: DhanSimulator, tmp_path: Path
) -> None:
    db = tmp_path / "engine.db"
    followers = [
        {"name": "alpha", "client_id": ALPHA[0], "access_token": ALPHA[1]},
        {"name": "beta", "client_id": BETA[0], "access_token": BETA[1]},
    ]
    env = base_env(sim, db, followers)
    sim.enable_totp(LEADER[0], LEADER_PIN, LEADER_TOTP)  # the leader mints its own tokens
    env |= {"COPYTRADE_LEADER__PIN": LEADER_PIN, "COPYTRADE_LEADER__TOTP_SECRET": LEADER_TOTP}
    env_file = tmp_path / "copytrade.env"
    env_file.write_text("".join(f"{k}='{v}'\n" for k, v in env.items()))
    env_file.chmod(0o600)
    out_path, err_path = tmp_path / "headless.out", tmp_path / "headless.err"
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("COPYTRADE_")}
    with out_path.open("wb") as out, err_path.open("wb") as err:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tui.cli",
            "run",
            "--headless",
            "--env-file",
            str(env_file),
            cwd=ROOT,
            env=child_env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=out,
            stderr=err,
        )
    new_token = "tok-beta-" + "renewed" * 3
    try:
        status: dict[str, Any] | None = None
        deadline = time.monotonic() + 30
        while status is None or status.get("leader_feed") != "CONNECTED":
            assert proc.returncode is None, err_path.read_text()
            assert time.monotonic() < deadline, "headless engine did not come up"
            await asyncio.sleep(0.1)
            status = await status_of(db)

        leader_buy(sim, 100.0)
        await until(lambda: len(sim.orders(BETA[0])) == 1, 10, "beta's first copy")
        sim.renew_token(BETA[0], new_token)  # Dhan now refuses beta's pasted token
        leader_buy(sim, 101.0)
        await until(lambda: len(sim.orders(ALPHA[0])) == 2, 10, "alpha's second copy")
        deadline = time.monotonic() + 10
        while "refused" not in follower_frozen(status, "beta"):
            assert time.monotonic() < deadline, f"beta not frozen: {status}"
            await asyncio.sleep(0.1)
            status = await status_of(db)
        assert sim.orders(BETA[0]) and len(sim.orders(BETA[0])) == 1

        code, out_text, err_text = await copytrade(
            "token", "set", "beta", "--db-path", str(db), stdin=new_token.encode() + b"\n"
        )
        assert (code, err_text) == (0, ""), err_text
        assert out_text.startswith("beta: token replaced")
        deadline = time.monotonic() + 15
        while follower_frozen(status, "beta"):  # the freeze clears once the token works
            assert time.monotonic() < deadline, f"beta still frozen: {status}"
            await asyncio.sleep(0.1)
            status = await status_of(db)
        leader_buy(sim, 102.0)
        await until(
            lambda: any(o["price"] == 102.0 for o in sim.orders(BETA[0])),
            10,
            "beta copying with its new token",
        )
    finally:
        if proc.returncode is None:
            proc.terminate()
            await asyncio.wait_for(proc.wait(), 20)
    logs = out_path.read_text() + err_path.read_text()
    minted = list(sim.exchange.accounts[LEADER[0]].minted)
    assert minted
    no_secret_in(
        [logs, out_text, err_text, database_text(db), json.dumps(sim.requests, default=str)],
        [new_token, BETA[1], ALPHA[1], LEADER_PIN, LEADER_TOTP, *minted],
    )
    assert "TOKEN_REPLACED" in logs or "token replaced" in logs
