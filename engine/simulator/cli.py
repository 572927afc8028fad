"""``copytrade sim`` / ``python -m engine.simulator``: serve the Dhan paper exchange.

Prints where it listens and the account client ids, never a token, PIN or TOTP secret. Serves
until Ctrl-C (or SIGTERM), then shuts down cleanly and exits 0.

    copytrade sim --account 1000000001:tokL --profile live
    copytrade sim --account 1000000001:tokL --totp 1000000001=123456:JBSWY3DPEHPK3PXP \
        --ip-whitelist 1000000002=127.0.0.2 --replay recorded/
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import signal
import sys

from .auth import check_secret
from .profile import BUILTIN_PROFILES, ProfileError, SimProfile, load_profile
from .replay import ReplayError, load_recording
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
        default=[],
        metavar="CLIENT_ID:TOKEN",
        help="an account and its access token (repeatable)",
    )
    parser.add_argument(
        "--profile",
        default="live",
        metavar="NAME|FILE.json",
        help=f"Dhan dialect: {', '.join(BUILTIN_PROFILES)}, or a JSON file (default live)",
    )
    parser.add_argument(
        "--totp",
        action="append",
        default=[],
        metavar="CLIENT_ID=PIN:SECRET",
        help="let the account mint tokens from PIN + TOTP (base32 secret; repeatable)",
    )
    parser.add_argument(
        "--ip-whitelist",
        action="append",
        default=[],
        metavar="CLIENT_ID=IP[,IP]",
        help="refuse the account's order requests from any other source address (repeatable)",
    )
    parser.add_argument(
        "--replay",
        metavar="DIR",
        help="re-enact DIR/socket.jsonl (from copytrade run --record) in the leader account",
    )
    parser.add_argument(
        "--replay-account",
        metavar="CLIENT_ID",
        help="the account the recorded leader's orders go to (default: the first --account)",
    )
    parser.add_argument(
        "--replay-speed", type=float, default=1.0, help="replay time factor (2 = twice as fast)"
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


def _totp(specs: list[str], parser: argparse.ArgumentParser) -> dict[str, tuple[str, str]]:
    logins: dict[str, tuple[str, str]] = {}
    for spec in specs:
        client_id, sep, rest = spec.partition("=")
        pin, sep2, secret = rest.partition(":")
        if not sep or not sep2 or not client_id.strip() or not pin or not secret:
            parser.error("--totp must look like CLIENT_ID=PIN:SECRET")  # never echo the secret
        try:
            logins[client_id.strip()] = (pin, check_secret(secret))
        except ValueError as exc:
            parser.error(f"--totp for {client_id.strip()}: {exc}")
    return logins


def _whitelists(specs: list[str], parser: argparse.ArgumentParser) -> dict[str, list[str]]:
    lists: dict[str, list[str]] = {}
    for spec in specs:
        client_id, sep, ips = spec.partition("=")
        addresses = [ip.strip() for ip in ips.split(",") if ip.strip()]
        if not sep or not client_id.strip() or not addresses or len(addresses) > 2:
            parser.error("--ip-whitelist must look like CLIENT_ID=IP[,IP] (two IPs at most)")
        for ip in addresses:
            try:
                ipaddress.ip_address(ip)
            except ValueError:
                parser.error(f"--ip-whitelist: {ip!r} is not an IP address")
        lists[client_id.strip()] = addresses
    return lists


async def _serve(
    args: argparse.Namespace,
    accounts: dict[str, str],
    profile: SimProfile,
    logins: dict[str, tuple[str, str]],
    whitelists: dict[str, list[str]],
) -> None:
    sim = DhanSimulator(
        accounts=accounts,
        real_hours=args.real_hours,
        seed=args.seed,
        funds=args.funds,
        profile=profile,
    )
    for client_id, (pin, secret) in logins.items():
        sim.enable_totp(client_id, pin, secret)
    for client_id, ips in whitelists.items():
        sim.set_ip_whitelist(client_id, ips)
    await sim.start(host=args.host, port=args.port)
    replay = None
    if args.replay:
        replay_account = args.replay_account or next(iter(accounts or logins), "")
        recording = load_recording(args.replay)
        replay = sim.start_replay(recording, replay_account, speed=args.replay_speed)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    print(f"Dhan simulator listening: REST {sim.rest_url}  order socket {sim.ws_url}", flush=True)
    print(f"  control API: {sim.control_url}/state", flush=True)
    print(f"  accounts: {', '.join(sim.exchange.accounts)}", flush=True)
    print(f"  profile: {args.profile}", flush=True)
    print(f"  scrip master: {sim.scrip_master_url}", flush=True)
    if replay is not None:
        print(
            f"  replaying {len(replay.events)} frames once {replay.replayer.client_id}'s order "
            "socket connects",
            flush=True,
        )
    print("  Ctrl-C to stop", flush=True)
    try:
        await stop.wait()
    finally:
        if replay is not None:
            replay.cancel()
        await sim.stop()
        print("Dhan simulator stopped", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    accounts = _accounts(args.account, parser)
    logins = _totp(args.totp, parser)
    if not accounts and not logins:
        parser.error("give at least one --account CLIENT_ID:TOKEN or --totp CLIENT_ID=PIN:SECRET")
    whitelists = _whitelists(args.ip_whitelist, parser)
    for client_id in whitelists:
        if client_id not in accounts and client_id not in logins:
            parser.error(f"--ip-whitelist names {client_id}, which is not an --account")
    try:
        profile = load_profile(args.profile)
    except ProfileError as exc:
        parser.error(str(exc))
    if args.replay:
        try:
            load_recording(args.replay)
        except ReplayError as exc:
            parser.error(str(exc))
        if args.replay_speed <= 0:
            parser.error("--replay-speed must be positive")
    try:
        asyncio.run(_serve(args, accounts, profile, logins, whitelists))
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        print(f"copytrade sim: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    return 0
