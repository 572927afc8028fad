"""`copytrade token set ACCOUNT`: give the running engine a new access token for one account.

The token is read from standard input, never from the command line (where `ps` and the shell
history would keep it): typed at a prompt that does not echo when stdin is a terminal
(`getpass`), else the first line of what is piped in. The engine checks it with Dhan and uses
it at once; a refused token leaves the old one in place. Nothing printed holds the token.
Exit codes: 0 taken, 1 refused (by the engine or Dhan), 2 no engine to ask or nothing read.
"""

from __future__ import annotations

import getpass
import sys
from typing import TextIO

from pydantic import SecretStr

from engine.control.client import (
    ControlClientError,
    EngineNotRunning,
    EngineRefused,
    send_command,
)
from engine.control.protocol import Command, Request
from engine.paths import configured_db_path
from engine.secrets import redact, register_secret

__all__ = ["read_token", "token_set_command"]


def read_token(stdin: TextIO, err: TextIO, account: str) -> str:
    """The token typed (no echo) or piped in; "" when nothing came."""
    if stdin.isatty():
        try:
            return getpass.getpass(f"New access token for {account} (not shown): ", stream=err)
        except (EOFError, KeyboardInterrupt):
            return ""
    line = stdin.readline()
    return line.strip()


def token_set_command(
    account: str,
    *,
    env_file: str | None,
    db_path: str | None,
    stdin: TextIO | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    stdin = stdin or sys.stdin
    out = out or sys.stdout
    err = err or sys.stderr
    token = read_token(stdin, err, account).strip()
    if not token:
        print("copytrade: no token read from standard input; nothing was changed", file=err)
        return 2
    register_secret(token)
    db = configured_db_path(explicit=db_path, env_file=env_file)
    request = Request(command=Command.TOKEN_SET, account=account, token=SecretStr(token))
    try:
        result = send_command(db, request)
    except EngineNotRunning as exc:
        print(
            f"copytrade: {exc}; nothing was changed (a stopped engine takes its token from "
            "the settings when it starts)",
            file=err,
        )
        return 2
    except EngineRefused as exc:
        print(f"copytrade: token not changed: {redact(str(exc))}", file=err)
        return 1
    except ControlClientError as exc:
        print(f"copytrade: {redact(str(exc))}", file=err)
        return 2
    message = result.get("message") if isinstance(result, dict) else None
    print(redact(str(message or f"{account}: token replaced")), file=out)
    return 0
