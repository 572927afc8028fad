"""``copytrade sim`` / ``python -m engine.simulator``: serve the Dhan paper exchange.

Prints where it listens and the account client ids, never a token. Serves until Ctrl-C
(or SIGTERM), then shuts down cleanly and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys

from .server import DhanSimulator


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="copytrade sim", description="Dhan paper exchange (REST v2 + order socket) on loopback"
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 = any)")
    parser.add_argument(
        "--account",
        action="append",
        required=True,
        metavar="CLIENT_ID:TOKEN",
        help="an account and its access token (repeatable)",
    )
    parser.add_argument("--real-hours", action="store_true", help="follow NSE/MCX hours (IST)")
    parser.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    parser.add_argument("--funds", type=float, default=1_000_000.0, help="funds per account")
    return parser


def _accounts(specs: list[str], parser: argparse.ArgumentParser) -> dict[str, str]:
    accounts: dict[str, str] = {}
    for spec in specs:
        client_id, sep, token = spec.partition(":")
        if not sep or not client_id.strip() or not token:
            parser.error("--account must look like CLIENT_ID:TOKEN")  # never echo the token
        accounts[client_id.strip()] = token
    return accounts


async def _serve(args: argparse.Namespace, accounts: dict[str, str]) -> None:
    sim = DhanSimulator(
        accounts=accounts, real_hours=args.real_hours, seed=args.seed, funds=args.funds
    )
    await sim.start(host=args.host, port=args.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    print(f"Dhan simulator listening: REST {sim.rest_url}  order socket {sim.ws_url}", flush=True)
    print(f"  control API: {sim.control_url}/state", flush=True)
    print(f"  accounts: {', '.join(accounts)}", flush=True)
    print("  Ctrl-C to stop", flush=True)
    try:
        await stop.wait()
    finally:
        await sim.stop()
        print("Dhan simulator stopped", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    accounts = _accounts(args.account, parser)
    try:
        asyncio.run(_serve(args, accounts))
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        print(f"copytrade sim: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    return 0
