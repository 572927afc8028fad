"""`copytrade token set ACCOUNT`: the token read from standard input reaches the running
engine over the control channel (a real server, the real CLI in a subprocess), is never on
the command line, in an answer, a repr or the output; refusals are one line."""

from __future__ import annotations

import asyncio
import fcntl
import io
import os
import sys
import termios
from collections.abc import AsyncIterator, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from engine.accounts.tokens import ReplaceOutcome
from engine.clock import IST
from engine.control import ControlServer, Request, ResumeReport, UncopiedOrder
from engine.control.protocol import (
    Command,
    ProtocolError,
    TokenSetting,
    decode_request,
    encode_request,
)
from engine.secrets import clear_secrets, redact
from engine.views import RecoveryReport
from tui.token_command import read_token

ROOT = Path(__file__).resolve().parents[2]
# Built at run time: no token-shaped text in the repository.
NEW_TOKEN = "tok-" + "replacement" * 3
REFUSED_TOKEN = "tok-" + "refusedbydhan" * 2
EXPIRES = IST.localize(datetime(2026, 12, 2, 9, 0))


class TokenEngine:
    """Answers like the engine: takes a token for a known account unless Dhan refuses it."""

    def __init__(self) -> None:
        self.tokens: dict[str, str] = {}

    def status(self) -> Mapping[str, Any]:
        return {"state": "ARMED"}

    async def kill(self, reason: str) -> None:
        return None

    async def resume(self, replace_open: bool) -> ResumeReport:
        return ResumeReport(state="ARMED")

    async def resync(self) -> RecoveryReport:
        return RecoveryReport("manual", 0, 0, (), 0.0)

    async def uncopied_orders(self) -> list[UncopiedOrder]:
        return []

    async def set_token(self, account: str, token: SecretStr) -> ReplaceOutcome:
        if account not in ("leader", "alpha"):
            return ReplaceOutcome(False, f"{account}: no such account in this engine")
        if token.get_secret_value() == REFUSED_TOKEN:
            return ReplaceOutcome(False, f"{account}: Dhan refused the new token; kept the old")
        self.tokens[account] = token.get_secret_value()
        return ReplaceOutcome(True, f"{account}: token replaced", EXPIRES)


class NoTokenEngine(TokenEngine):
    set_token = None  # type: ignore[assignment]  # an engine without the ability


@pytest.fixture(autouse=True)
def _clean_secrets() -> Iterator[None]:
    clear_secrets()
    yield
    clear_secrets()


@pytest.fixture
def engine() -> TokenEngine:
    return TokenEngine()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "copytrade.db"


@pytest.fixture
async def server(engine: TokenEngine, db: Path) -> AsyncIterator[ControlServer]:
    async with ControlServer(engine, db, request_timeout_s=1.0) as served:
        yield served


async def copytrade_token_set(account: str, db: Path, stdin: bytes) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COPYTRADE_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tui.cli",
        "token",
        "set",
        account,
        "--db-path",
        str(db),
        cwd=ROOT,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin), timeout=30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_the_token_from_stdin_reaches_the_engine_and_is_never_printed(
    server: ControlServer, engine: TokenEngine, db: Path
) -> None:
    code, out, err = await copytrade_token_set("alpha", db, NEW_TOKEN.encode() + b"\n")
    assert (code, err) == (0, "")
    assert out.strip() == "alpha: token replaced"
    assert engine.tokens == {"alpha": NEW_TOKEN}
    assert NEW_TOKEN not in out + err


async def test_a_refused_token_is_one_line_exit_1_and_not_echoed(
    server: ControlServer, engine: TokenEngine, db: Path
) -> None:
    code, out, err = await copytrade_token_set("alpha", db, REFUSED_TOKEN.encode() + b"\n")
    assert code == 1 and out == ""
    assert err.strip() == (
        "copytrade: token not changed: alpha: Dhan refused the new token; kept the old"
    )
    assert REFUSED_TOKEN not in err and engine.tokens == {}
    code, _, err = await copytrade_token_set("gamma", db, NEW_TOKEN.encode() + b"\n")
    assert code == 1 and "gamma: no such account" in err and NEW_TOKEN not in err


async def test_nothing_on_stdin_or_no_engine_changes_nothing(
    server: ControlServer, engine: TokenEngine, db: Path, tmp_path: Path
) -> None:
    code, _, err = await copytrade_token_set("alpha", db, b"\n")
    assert code == 2
    assert err.strip() == "copytrade: no token read from standard input; nothing was changed"
    elsewhere = tmp_path / "other.db"
    code, _, err = await copytrade_token_set("alpha", elsewhere, NEW_TOKEN.encode())
    assert code == 2 and "no engine is running" in err and NEW_TOKEN not in err
    assert engine.tokens == {}


async def test_an_engine_that_cannot_take_tokens_says_so(db: Path) -> None:
    engine = NoTokenEngine()
    assert not isinstance(engine, TokenSetting)
    async with ControlServer(engine, db, request_timeout_s=1.0):
        code, _, err = await copytrade_token_set("alpha", db, NEW_TOKEN.encode())
    assert code == 1
    assert "this engine cannot take a new token while it runs" in err


def test_the_request_carries_the_token_only_on_the_wire() -> None:
    request = Request(Command.TOKEN_SET, account="alpha", token=SecretStr(NEW_TOKEN))
    assert NEW_TOKEN not in repr(request) and NEW_TOKEN not in str(request)
    line = encode_request(request)
    decoded = decode_request(line)
    assert decoded.account == "alpha" and decoded.token is not None
    assert decoded.token.get_secret_value() == NEW_TOKEN
    # Read once, the token is a registered secret: any later text masks it.
    assert NEW_TOKEN not in redact(f"failed with {NEW_TOKEN}")


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b'{"command": "token_set", "token": "x"}', "token_set needs the account's name"),
        (b'{"command": "token_set", "account": "alpha"}', "token_set needs the new token"),
        (b'{"command": "token_set", "account": "a", "token": "  "}', "it was empty"),
        (b'{"command": "token_set", "account": "a\\u0007", "token": "t"}', "not an account"),
    ],
)
def test_bad_token_requests_are_one_clear_line(body: bytes, error: str) -> None:
    with pytest.raises(ProtocolError, match=error):
        decode_request(body)


def test_read_token_takes_the_first_piped_line() -> None:
    piped = io.StringIO(f"  {NEW_TOKEN}  \nsecond line\n")
    assert read_token(piped, io.StringIO(), "alpha") == NEW_TOKEN
    assert read_token(io.StringIO(""), io.StringIO(), "alpha") == ""


PROMPT = b"(not shown): "


def _read_until(fd: int, marker: bytes | None) -> bytes:
    """What the terminal shows, up to ``marker`` (None: until the child closes it)."""
    seen = b""
    while marker is None or marker not in seen:
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: the child closed its end of the terminal
            break
        if not chunk:
            break
        seen += chunk
    return seen


async def test_on_a_terminal_the_token_is_typed_without_echo(
    server: ControlServer, engine: TokenEngine, db: Path
) -> None:
    master, slave = os.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith("COPYTRADE_")}

    def controlling_terminal() -> None:  # the pty is the child's /dev/tty, as in a shell
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tui.cli",
        "token",
        "set",
        "alpha",
        "--db-path",
        str(db),
        cwd=ROOT,
        env=env,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        preexec_fn=controlling_terminal,
    )
    os.close(slave)
    try:
        # Typed only once the prompt is up (echo is off by then, as for a person typing).
        before = await asyncio.wait_for(asyncio.to_thread(_read_until, master, PROMPT), 30)
        os.write(master, NEW_TOKEN.encode() + b"\n")
        after = await asyncio.wait_for(asyncio.to_thread(_read_until, master, None), 30)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
        shown = (before + after).decode(errors="replace")
    finally:
        os.close(master)
    assert "New access token for alpha (not shown):" in shown
    assert "alpha: token replaced" in shown
    assert NEW_TOKEN not in shown  # typed, never echoed
    assert engine.tokens == {"alpha": NEW_TOKEN}
