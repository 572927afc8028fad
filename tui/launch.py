"""What each `copytrade` subcommand starts: settings in, engine built, screen or log attached."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from pathlib import Path

from engine.api import EngineHandle
from engine.config import ConfigError, Settings, load_settings
from engine.secrets import install_log_redaction, redact


def _configure_logging(headless: bool, level: str = "INFO") -> None:
    # Under the TUI, library logs would scribble over the screen: send them to a file.
    if headless:
        logging.basicConfig(
            level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
    else:
        from engine.paths import default_log_path

        log_file = default_log_path()  # one place per user, not the folder we started in
        log_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        logging.basicConfig(
            level=level,
            filename=str(log_file),
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
    install_log_redaction()


def _config_error(text: str) -> None:
    # One line, no traceback: the text names the setting (ConfigError has already masked tokens).
    print(f"copytrade: configuration error: {redact(text)}", file=sys.stderr)


def _load(env_file: str) -> Settings | None:
    try:
        return load_settings(env_file=env_file)
    except ConfigError as err:
        _config_error(str(err))
        return None


def _serve(engine: EngineHandle, *, headless: bool, demo: bool, minutes: float = 0.0) -> int:
    if headless:
        from engine.headless import run_headless

        return asyncio.run(run_headless(engine, stop_after_s=minutes * 60 or None))
    from tui.app import CopyTradeApp
    from tui.engine_thread import EngineOnItsOwnThread

    # The engine on a loop of its own: the screen's repaints never hold a copy back.
    app = CopyTradeApp(EngineOnItsOwnThread(engine), demo=demo)
    app.run()
    return 0


def run_command(*, env_file: str, headless: bool, record: str | None = None) -> int:
    settings = _load(env_file)
    if settings is None:
        return 2
    _configure_logging(headless, settings.log_level)
    from engine.engine import Engine
    from engine.instruments import InstrumentsFileError
    from engine.market_hours import MarketCalendarError

    # The settings check these files; this catches one changed since then.
    recorder = None
    if record is not None:  # --record DIR: what Dhan sent, redacted (engine.dhan.recorder)
        from engine.dhan.recorder import JsonlRecorder

        client_ids = [settings.leader.client_id] + [f.client_id for f in settings.followers]
        try:
            recorder = JsonlRecorder(Path(record), client_ids)
        except OSError as err:
            print(f"copytrade: cannot record to {record}: {err.strerror}", file=sys.stderr)
            return 2
    try:
        engine = Engine(settings, recorder=recorder)
    except MarketCalendarError as err:
        _config_error(f"COPYTRADE_HOLIDAY_OVERRIDE_FILE: {err}")
        return 2
    except InstrumentsFileError as err:
        _config_error(f"COPYTRADE_INSTRUMENTS_FILE: {err}")
        return 2
    from engine.instance_lock import InstanceLockError

    try:  # one engine per database: refused here, before any screen or connection
        engine.claim_database()
    except InstanceLockError as err:
        print(f"copytrade: {err}", file=sys.stderr)
        return 2
    return _serve(engine, headless=headless, demo=False)


def demo_command(*, seed: int, headless: bool, minutes: float) -> int:
    _configure_logging(headless)
    from engine.demo import DemoSession

    return _serve(DemoSession(seed=seed), headless=headless, demo=True, minutes=minutes)


def check_command(*, env_file: str, machine_ip: str | None = None) -> int:
    settings = _load(env_file)
    if settings is None:
        return 2
    _configure_logging(True, "WARNING")
    from engine.accounts.source_ip import SourceIpError, normalise_address
    from engine.check import run_check

    if machine_ip is not None:
        try:
            machine_ip = normalise_address(machine_ip)
        except SourceIpError as exc:
            print(f"copytrade check: --ip: {exc}", file=sys.stderr)
            return 2
    return asyncio.run(run_check(settings, machine_ip=machine_ip))


def _has_configuration(env_file: str = ".env") -> bool:
    return Path(env_file).exists() or any(k.startswith("COPYTRADE_") for k in os.environ)


def default_command(help_text: str) -> int:
    if _has_configuration():
        return run_command(env_file=".env", headless=False)
    print(help_text)
    return 0
