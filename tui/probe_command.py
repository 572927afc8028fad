"""`copytrade probe`: for a user with a real account, ask Dhan (harmlessly) how it answers the
questions no source settles, and write a redacted report loadable as a simulator profile
(engine.dhan.probe). It says what it will do and asks first (``--yes`` skips the question).
Exit codes: 0 written, 1 the probe failed, 2 bad settings or arguments, 3 not confirmed."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import TextIO

from engine.config import ConfigError, load_settings
from engine.dhan.probe import ProbeOrder, plan, probe_account
from engine.secrets import redact

__all__ = ["probe_command"]


def probe_command(
    *,
    env_file: str,
    account: str,
    with_order: str | None,
    out_dir: str,
    yes: bool,
    stdin: TextIO = sys.stdin,
    out: TextIO = sys.stdout,
) -> int:
    try:
        settings = load_settings(env_file=env_file)
    except ConfigError as err:
        print(f"copytrade: {err}", file=sys.stderr)
        return 2
    accounts = {"leader": settings.leader} | {f.name: f for f in settings.followers}
    chosen = accounts.get(account)
    if chosen is None:
        print(f"copytrade: no account {account!r} (known: {', '.join(accounts)})", file=sys.stderr)
        return 2
    if chosen.access_token is None:
        print(
            f"copytrade: {account} has no access_token in the settings; the probe needs one",
            file=sys.stderr,
        )
        return 2
    try:
        order = ProbeOrder.parse(with_order) if with_order else None
    except ValueError as err:
        print(f"copytrade: --with-order: {err}", file=sys.stderr)
        return 2
    target = Path(out_dir)
    print(f"copytrade probe will, on account {account} ({settings.dhan.rest_url}):", file=out)
    for step in plan(order):
        print(f"  - {step}", file=out)
    print(f"into {target}/ (tokens and client ids redacted)", file=out)
    if not yes:
        print("Go ahead? [y/N] ", end="", file=out, flush=True)
        if stdin.readline().strip().lower() not in ("y", "yes"):
            print("Nothing done.", file=out)
            return 3
    try:
        path, result = asyncio.run(
            probe_account(
                client_id=chosen.client_id,
                token=chosen.access_token.get_secret_value(),
                rest_url=settings.dhan.rest_url,
                ws_url=settings.dhan.order_ws_url,
                out_dir=target,
                order=order,
                timeout_s=settings.dhan.timeout_s,
            )
        )
    except OSError as err:
        print(f"copytrade: probe failed: {redact(str(err))}", file=sys.stderr)
        return 1
    print(f"Wrote {path} (load it with: copytrade sim --profile {path})", file=out)
    for note in result.notes:
        print(f"  not settled: {redact(note)}", file=out)
    return 0
