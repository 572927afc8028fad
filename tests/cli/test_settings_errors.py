"""Every broken setting is one line naming the key, exit code 2, no traceback, no token.

Each case runs the real command line twice at once, `copytrade run --headless` and
`copytrade check`, in a clean environment with a settings file in a temporary folder; both
must stop at start-up with the same single line on stderr. The tokens are canaries: neither
output may contain them. Nothing here reaches a network (the settings point at 127.0.0.1:9).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

COPYTRADE = Path(sys.executable).parent / "copytrade"
LEADER_TOKEN = "canary-leader-token-5e1f0c"
FOLLOWER_TOKEN = "canary-follower-token-9b2d47"
CANARIES = (LEADER_TOKEN, FOLLOWER_TOKEN)
LEADER_ID = "1000000001"
DIRECTORY = "<a folder>"


def follower(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "alpha",
        "client_id": "2000000001",
        "access_token": FOLLOWER_TOKEN,
    }
    base.update(changes)
    return base


def followers(*items: dict[str, Any]) -> str:
    return json.dumps(list(items))


BASE: dict[str, str] = {
    "COPYTRADE_LEADER__CLIENT_ID": LEADER_ID,
    "COPYTRADE_LEADER__ACCESS_TOKEN": LEADER_TOKEN,
    "COPYTRADE_FOLLOWERS": followers(follower()),
    "COPYTRADE_DHAN__REST_URL": "http://127.0.0.1:9/v2",
    "COPYTRADE_DHAN__ORDER_WS_URL": "ws://127.0.0.1:9/",
    "COPYTRADE_DB_PATH": "{tmp}/engine.db",
    "COPYTRADE_ENFORCE_MARKET_HOURS": "false",
}
REAL_DHAN = {"COPYTRADE_DHAN__REST_URL": "https://api.dhan.co/v2"}


@dataclass(frozen=True)
class Case:
    name: str
    key: str  # the line must name this (``{tmp}`` is the case's folder)
    settings: dict[str, str | None] = field(default_factory=dict)  # None: leave the key out
    environ: dict[str, str] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)  # name -> text, or DIRECTORY
    extra_lines: str = ""  # appended to the settings file as is
    env_file: str = "settings.env"


CASES = [
    Case("leader id missing", "COPYTRADE_LEADER__CLIENT_ID", {"COPYTRADE_LEADER__CLIENT_ID": None}),
    Case(
        "leader token missing",
        "COPYTRADE_LEADER__ACCESS_TOKEN",
        {"COPYTRADE_LEADER__ACCESS_TOKEN": None},
    ),
    Case(
        "leader id not digits",
        "COPYTRADE_LEADER__CLIENT_ID",
        {"COPYTRADE_LEADER__CLIENT_ID": "1a2b3c4d"},
    ),
    Case(
        "leader token in the client id field",
        "COPYTRADE_LEADER__CLIENT_ID",
        {"COPYTRADE_LEADER__CLIENT_ID": LEADER_TOKEN},
    ),
    Case("followers missing", "COPYTRADE_FOLLOWERS", {"COPYTRADE_FOLLOWERS": None}),
    Case("followers not JSON", "COPYTRADE_FOLLOWERS", {"COPYTRADE_FOLLOWERS": '[{"name": "a",}'}),
    Case("followers empty", "COPYTRADE_FOLLOWERS", {"COPYTRADE_FOLLOWERS": "[]"}),
    Case(
        "followers one object, not a list",
        "COPYTRADE_FOLLOWERS",
        {"COPYTRADE_FOLLOWERS": json.dumps(follower())},
    ),
    Case(
        "follower named leader",
        "COPYTRADE_FOLLOWERS[0].name",
        {"COPYTRADE_FOLLOWERS": followers(follower(name="leader"))},
    ),
    Case(
        "follower named Leader",
        "COPYTRADE_FOLLOWERS[0].name",
        {"COPYTRADE_FOLLOWERS": followers(follower(name="Leader"))},
    ),
    Case(
        "follower is the leader's account",
        "COPYTRADE_FOLLOWERS[0].client_id",
        {"COPYTRADE_FOLLOWERS": followers(follower(client_id=LEADER_ID))},
    ),
    Case(
        "two followers with one name",
        "COPYTRADE_FOLLOWERS",
        {
            "COPYTRADE_FOLLOWERS": followers(
                follower(), follower(client_id="2000000002", access_token="canary-follower-two")
            )
        },
    ),
    Case(
        "every follower disabled",
        "COPYTRADE_FOLLOWERS",
        {"COPYTRADE_FOLLOWERS": followers(follower(enabled=False))},
    ),
    Case(
        "follower token pasted as its client id",
        "COPYTRADE_FOLLOWERS[0].client_id",
        {"COPYTRADE_FOLLOWERS": followers(follower(client_id=FOLLOWER_TOKEN))},
    ),
    Case(
        "follower without a token",
        "COPYTRADE_FOLLOWERS[0].access_token",
        {"COPYTRADE_FOLLOWERS": json.dumps([{"name": "alpha", "client_id": "2000000001"}])},
    ),
    Case(
        "negative multiplier",
        "COPYTRADE_FOLLOWERS[0].sizing.multiplier",
        {
            "COPYTRADE_FOLLOWERS": followers(
                follower(sizing={"kind": "multiplier", "multiplier": -1})
            )
        },
    ),
    Case(
        "unknown sizing kind",
        "COPYTRADE_FOLLOWERS[0].sizing",
        {"COPYTRADE_FOLLOWERS": followers(follower(sizing={"kind": "double"}))},
    ),
    Case(
        "misspelt follower key",
        "COPYTRADE_FOLLOWERS[0].sizng",
        {"COPYTRADE_FOLLOWERS": followers(follower(sizng={"kind": "fixed_lots", "lots": 1}))},
    ),
    Case(
        "misspelt key in the file",
        "COPYTRADE_LEADER_DARK_KILL_AFTER_S",  # the closest valid key is named
        {"COPYTRADE_LEADER_DARK_KILL_AFTER": "120"},
    ),
    Case(
        "misspelt key in the environment",
        "COPYTRADE_RECONCILE_INTERVAL_S",
        environ={"COPYTRADE_RECONCILE_INTERVAL": "15"},
    ),
    Case(
        "misspelt nested key",
        "COPYTRADE_LIMITER__PER_SECONDS",
        {"COPYTRADE_LIMITER__PER_SECONDS": "5"},
    ),
    Case("lower-case unknown key", "COPYTRADE_DB_PTH", environ={"copytrade_db_pth": "x.db"}),
    Case(
        "orders per second above Dhan's",
        "COPYTRADE_LIMITER__PER_SECOND",
        {**REAL_DHAN, "COPYTRADE_LIMITER__PER_SECOND": "11"},
    ),
    Case(
        "orders per minute above Dhan's",
        "COPYTRADE_LIMITER__PER_MINUTE",
        {**REAL_DHAN, "COPYTRADE_LIMITER__PER_MINUTE": "300"},
    ),
    Case(
        "orders per hour above Dhan's",
        "COPYTRADE_LIMITER__PER_HOUR",
        {**REAL_DHAN, "COPYTRADE_LIMITER__PER_HOUR": "1200"},
    ),
    Case(
        "orders per day above Dhan's",
        "COPYTRADE_LIMITER__PER_DAY",
        {**REAL_DHAN, "COPYTRADE_LIMITER__PER_DAY": "8000"},
    ),
    Case(
        "headroom too large", "COPYTRADE_LIMITER__HEADROOM", {"COPYTRADE_LIMITER__HEADROOM": "0.9"}
    ),
    Case("rest url not http", "COPYTRADE_DHAN__REST_URL", {"COPYTRADE_DHAN__REST_URL": "ftp://x"}),
    Case(
        "socket url not ws",
        "COPYTRADE_DHAN__ORDER_WS_URL",
        {"COPYTRADE_DHAN__ORDER_WS_URL": "http://127.0.0.1:9/"},
    ),
    Case("dhan section not JSON", "COPYTRADE_DHAN", {"COPYTRADE_DHAN": "{oops"}),
    Case(
        "timeout not a number", "COPYTRADE_DHAN__TIMEOUT_S", {"COPYTRADE_DHAN__TIMEOUT_S": "soon"}
    ),
    Case(
        "database is a text file",
        "COPYTRADE_DB_PATH",
        {"COPYTRADE_DB_PATH": "{tmp}/notes.txt"},
        files={"notes.txt": "shopping list\n"},
    ),
    Case(
        "database is a folder",
        "COPYTRADE_DB_PATH",
        {"COPYTRADE_DB_PATH": "{tmp}/data"},
        files={"data": DIRECTORY},
    ),
    Case(
        "holiday file missing",
        "COPYTRADE_HOLIDAY_OVERRIDE_FILE",
        {"COPYTRADE_HOLIDAY_OVERRIDE_FILE": "{tmp}/holidays.json"},
    ),
    Case(
        "holiday file not JSON",
        "COPYTRADE_HOLIDAY_OVERRIDE_FILE",
        {"COPYTRADE_HOLIDAY_OVERRIDE_FILE": "{tmp}/holidays.json"},
        files={"holidays.json": '{"closed": ["2026-12-25",]}'},
    ),
    Case(
        "holiday file bad date",
        "COPYTRADE_HOLIDAY_OVERRIDE_FILE",
        {"COPYTRADE_HOLIDAY_OVERRIDE_FILE": "{tmp}/holidays.json"},
        files={"holidays.json": '{"closed": ["2026-13-45"]}'},
    ),
    Case(
        "holiday file is a folder",
        "COPYTRADE_HOLIDAY_OVERRIDE_FILE",
        {"COPYTRADE_HOLIDAY_OVERRIDE_FILE": "{tmp}/cal"},
        files={"cal": DIRECTORY},
    ),
    Case(
        "instruments file missing",
        "COPYTRADE_INSTRUMENTS_FILE",
        {"COPYTRADE_INSTRUMENTS_FILE": "{tmp}/scrips.csv"},
    ),
    Case(
        "instruments file not a scrip master",
        "COPYTRADE_INSTRUMENTS_FILE",
        {"COPYTRADE_INSTRUMENTS_FILE": "{tmp}/scrips.csv"},
        files={"scrips.csv": "symbol,lot\nNIFTY,75\n"},
    ),
    Case("env file missing", "{tmp}/nowhere.env", env_file="nowhere.env"),
    Case("env file is a folder", "{tmp}/conf", files={"conf": DIRECTORY}, env_file="conf"),
    Case(
        "env file line unparsable",
        "{tmp}/settings.env line 8",
        extra_lines="COPYTRADE_LOG_LEVEL='INFO\n",
    ),
    Case("log level unknown", "COPYTRADE_LOG_LEVEL", {"COPYTRADE_LOG_LEVEL": "loud"}),
    Case(
        "reconcile interval zero",
        "COPYTRADE_RECONCILE_INTERVAL_S",
        {"COPYTRADE_RECONCILE_INTERVAL_S": "0"},
    ),
    Case(
        "market hours not a yes/no",
        "COPYTRADE_ENFORCE_MARKET_HOURS",
        {"COPYTRADE_ENFORCE_MARKET_HOURS": "maybe"},
    ),
    Case(
        "modifications above Dhan's 25",
        "COPYTRADE_MAX_MODIFICATIONS",
        {"COPYTRADE_MAX_MODIFICATIONS": "30"},
    ),
]


def _prepare(case: Case, tmp: Path) -> tuple[Path, dict[str, str]]:
    for name, text in case.files.items():
        if text == DIRECTORY:
            (tmp / name).mkdir()
        else:
            (tmp / name).write_text(text)
    settings: dict[str, str | None] = {**BASE, **case.settings}
    lines = [f"{key}='{value}'" for key, value in settings.items() if value is not None]
    text = "\n".join(line.replace("{tmp}", str(tmp)) for line in lines) + "\n" + case.extra_lines
    if not (tmp / "settings.env").exists():
        (tmp / "settings.env").write_text(text)
    # A clean environment: nothing of the caller's COPYTRADE_ settings, no Python warnings noise.
    environ = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp), "LANG": "C.UTF-8"}
    environ.update(case.environ)
    return tmp / case.env_file, environ


def _start(args: list[str], cwd: Path, environ: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(COPYTRADE), *args],
        cwd=cwd,
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_broken_setting_is_one_line_naming_the_key(case: Case, tmp_path: Path) -> None:
    env_file, environ = _prepare(case, tmp_path)
    key = case.key.replace("{tmp}", str(tmp_path))
    commands = {
        "run": ["run", "--headless", "--env-file", str(env_file)],
        "check": ["check", "--env-file", str(env_file)],
    }
    running = {name: _start(args, tmp_path, environ) for name, args in commands.items()}
    lines: dict[str, str] = {}
    for name, process in running.items():
        try:
            stdout, stderr = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            pytest.fail(f"copytrade {name} did not stop at start-up")
        assert process.returncode == 2, (name, stderr)
        assert "Traceback" not in stderr + stdout, (name, stderr)
        for canary in CANARIES:
            assert canary not in stderr + stdout, (name, stderr)
        stderr_lines = stderr.splitlines()
        assert len(stderr_lines) == 1, (name, stderr)
        assert stderr_lines[0].startswith("copytrade: configuration error: "), (name, stderr)
        assert key in stderr_lines[0], (name, stderr)
        lines[name] = stderr_lines[0]
    assert lines["run"] == lines["check"]


def test_the_table_is_large_enough() -> None:
    assert len(CASES) >= 30
    assert len({case.name for case in CASES}) == len(CASES)
