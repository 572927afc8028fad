"""The `copytrade` command: one entry point, subcommands imported only when used.

`copytrade` alone (no configuration) explains how to configure and how to start the demo.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

NO_CONFIG_HELP = """\
copytrade: mirror a leader Dhan account's orders into follower accounts.

No configuration found. Either:
  * try it with no Dhan account:      copytrade demo
  * or configure your accounts:       cp .env.example .env   (then edit it)
    and start the terminal:           copytrade run
    or run without a screen:          copytrade run --headless
  * check tokens, funds and calendar: copytrade check

Other commands: copytrade sim --help (the Dhan paper exchange on loopback).
Talk to a running engine: copytrade status | kill | resume | resync | sync.
A new token for one account while it runs: copytrade token set ACCOUNT (reads it from stdin).
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="copytrade", description=__doc__)
    sub = parser.add_subparsers(dest="command")
    sub.add_parser(
        "sim", help="run the Dhan paper exchange (simulator) on loopback", add_help=False
    )
    run = sub.add_parser("run", help="run the replication engine (terminal UI by default)")
    run.add_argument("--headless", action="store_true", help="no screen; JSON-lines log on stdout")
    run.add_argument("--env-file", default=".env", help="settings file (default: .env)")
    run.add_argument(
        "--record",
        metavar="DIR",
        default=None,
        help="write every Dhan REST exchange and order-socket frame to DIR (rest.jsonl, "
        "socket.jsonl), tokens and client ids redacted, to show what Dhan really sent",
    )
    demo = sub.add_parser("demo", help="the whole product against the built-in simulator")
    demo.add_argument("--seed", type=int, default=7, help="seed of the scripted leader session")
    demo.add_argument("--headless", action="store_true", help="no screen; JSON-lines log")
    demo.add_argument("--minutes", type=float, default=0.0, help="stop after this long (0: never)")
    check = sub.add_parser("check", help="pre-open health check of every account")
    check.add_argument("--env-file", default=".env", help="settings file (default: .env)")
    check.add_argument(
        "--ip",
        metavar="ADDR",
        default=None,
        help="the address this machine sends orders from, checked against the whitelist of "
        "accounts without a source_ip",
    )
    _add_control_commands(sub.add_parser)
    _add_token_command(sub.add_parser)
    _add_sync_command(sub.add_parser)
    _add_probe_command(sub.add_parser)
    return parser


def _add_probe_command(add_parser: Callable[..., argparse.ArgumentParser]) -> None:
    probe = add_parser(
        "probe",
        help="ask one real account, harmlessly, how its Dhan answers the open questions; "
        "writes a redacted report loadable as a simulator profile",
    )
    probe.add_argument("--env-file", default=".env", help="settings file (default: .env)")
    probe.add_argument("--account", default="leader", help="leader or a follower's name")
    probe.add_argument(
        "--with-order",
        metavar="SEGMENT:SECURITY_ID:PRICE",
        default=None,
        help="also place ONE LIMIT BUY of quantity 1 at PRICE (far from the market), modify "
        "it once and cancel it at once",
    )
    probe.add_argument("--out", default="probe", help="directory for the report (default: probe)")
    probe.add_argument("--yes", action="store_true", help="do not ask before starting")


def _add_token_command(add_parser: Callable[..., argparse.ArgumentParser]) -> None:
    token = add_parser("token", help="give the running engine a new access token")
    token_sub = token.add_subparsers(dest="token_command", required=True)
    token_set = token_sub.add_parser(
        "set",
        help="read a new access token for ACCOUNT from standard input (never an argument) "
        "and use it at once",
    )
    token_set.add_argument("account", help='"leader" or a follower\'s name')
    token_set.add_argument(
        "--env-file", default=".env", help="settings file naming the database (default: .env)"
    )
    token_set.add_argument("--db-path", default=None, help="the engine's database")


def _add_sync_command(add_parser: Callable[..., argparse.ArgumentParser]) -> None:
    sync = add_parser(
        "sync",
        help="bring followers to their target positions (the leader's positions held when "
        "they started copying): --dry-run shows the orders, --yes places them",
    )
    mode = sync.add_mutually_exclusive_group(required=True)
    mode.add_argument("--dry-run", action="store_true", help="show the orders, place nothing")
    mode.add_argument("--yes", action="store_true", help="place the orders now")
    sync.add_argument(
        "--env-file", default=".env", help="settings file naming the database (default: .env)"
    )
    sync.add_argument("--db-path", default=None, help="the engine's database")
    sync.add_argument("--json", action="store_true", help="print the answer as JSON")


CONTROL_COMMANDS = ("status", "kill", "resume", "resync", "unfreeze")


def _add_control_commands(add_parser: Callable[..., argparse.ArgumentParser]) -> None:
    """Commands that ask the engine already running on a database (headless or terminal)."""
    helps = {
        "status": "show the running engine's state, followers and counters",
        "kill": "kill the running engine: nothing new is sent, open copies are cancelled",
        "resume": "resume a killed engine and list leader orders left without a copy",
        "resync": "make the running engine read the leader's book and converge now",
        "unfreeze": "clear the running engine's freezes (after a resync): all, or --account's",
    }
    for name in CONTROL_COMMANDS:
        cmd = add_parser(name, help=helps[name])
        cmd.add_argument(
            "--env-file", default=".env", help="settings file naming the database (default: .env)"
        )
        cmd.add_argument("--db-path", default=None, help="the engine's database (overrides all)")
        cmd.add_argument("--json", action="store_true", help="print the answer as JSON")
        if name == "kill":
            cmd.add_argument("--reason", default="", help="why, for the alert and the log")
        if name == "resume":
            cmd.add_argument(
                "--replace-open",
                action="store_true",
                help="also place copies of the leader's open orders that have none",
            )
        if name == "unfreeze":
            cmd.add_argument(
                "--account",
                default="",
                help="a follower's name, or \"engine\" for the engine's own freeze (default: all)",
            )


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list and args_list[0] == "sim":
        from engine.simulator.cli import main as sim_main

        return sim_main(args_list[1:])
    parser = build_parser()
    args = parser.parse_args(args_list)
    if args.command == "run":
        from tui.launch import run_command

        return run_command(env_file=args.env_file, headless=args.headless, record=args.record)
    if args.command == "demo":
        from tui.launch import demo_command

        return demo_command(seed=args.seed, headless=args.headless, minutes=args.minutes)
    if args.command == "check":
        from tui.launch import check_command

        return check_command(env_file=args.env_file, machine_ip=args.ip)
    if args.command in CONTROL_COMMANDS:
        from engine.control.protocol import Command
        from tui.control_commands import control_command

        return control_command(
            Command(args.command),
            env_file=args.env_file,
            db_path=args.db_path,
            as_json=args.json,
            reason=getattr(args, "reason", ""),
            replace_open=getattr(args, "replace_open", False),
            account=getattr(args, "account", ""),
        )
    if args.command == "sync":
        from engine.control.protocol import Command
        from tui.control_commands import control_command

        return control_command(
            Command.SYNC_APPLY if args.yes else Command.SYNC_PREVIEW,
            env_file=args.env_file,
            db_path=args.db_path,
            as_json=args.json,
        )
    if args.command == "probe":
        from tui.probe_command import probe_command

        return probe_command(
            env_file=args.env_file,
            account=args.account,
            with_order=args.with_order,
            out_dir=args.out,
            yes=args.yes,
        )
    if args.command == "token":
        from tui.token_command import token_set_command

        return token_set_command(args.account, env_file=args.env_file, db_path=args.db_path)
    from tui.launch import default_command

    return default_command(NO_CONFIG_HELP)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
