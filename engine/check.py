"""`copytrade check`: the pre-open health check a trader runs at 09:00 (and the engine at start).

Every account: token valid (and hours left), Dhan kill switch state, funds; the session
calendar for today; config sanity. A table of pass/fail, and a non-zero exit on any failure.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from rich.console import Console
from rich.table import Table

from engine.clock import Clock, SystemClock
from engine.config import Settings
from engine.dhan.broker import DhanBroker
from engine.domain import Segment
from engine.market_hours import MarketCalendar
from engine.secrets import redact

TOKEN_WARN_HOURS = 2.0


class Verdict(StrEnum):
    PASS = "PASS"
    WARN = "WARN"
    FAIL = "FAIL"


@dataclass(frozen=True, slots=True)
class CheckResult:
    account: str
    check: str
    verdict: Verdict
    detail: str


BrokerMaker = Callable[[str, str, str, float], DhanBroker]


def _default_broker(client_id: str, token: str, rest_url: str, timeout_s: float) -> DhanBroker:
    return DhanBroker(client_id, token, rest_url, timeout_s=timeout_s)


async def check_account(
    account: str,
    client_id: str,
    token: str,
    settings: Settings,
    now: datetime,
    make_broker: BrokerMaker = _default_broker,
) -> list[CheckResult]:
    broker = make_broker(client_id, token, settings.dhan.rest_url, settings.dhan.timeout_s)
    results: list[CheckResult] = []
    try:
        try:
            profile = await broker.profile()
        except Exception as exc:
            results.append(
                CheckResult(account, "token", Verdict.FAIL, f"rejected by Dhan: {redact(str(exc))}")
            )
            return results  # with a bad token every other call fails the same way
        until = profile.token_valid_until
        if until is None:
            results.append(CheckResult(account, "token", Verdict.WARN, "valid; expiry unknown"))
        else:
            hours = (until - now).total_seconds() / 3600
            verdict = (
                Verdict.FAIL
                if hours <= 0
                else Verdict.WARN
                if hours < TOKEN_WARN_HOURS
                else Verdict.PASS
            )
            results.append(
                CheckResult(
                    account,
                    "token",
                    verdict,
                    f"valid until {until:%d %b %H:%M} IST ({hours:.1f} h left)"
                    if hours > 0
                    else f"expired at {until:%d %b %H:%M} IST",
                )
            )
        try:
            active = await broker.kill_switch_status()
            if active:
                results.append(
                    CheckResult(
                        account,
                        "kill switch",
                        Verdict.FAIL,
                        "Dhan kill switch is ACTIVE: orders will be refused",
                    )
                )
            else:
                results.append(
                    CheckResult(
                        account,
                        "kill switch",
                        Verdict.PASS,
                        "not active" if active is False else "state unknown",
                    )
                )
        except Exception as exc:
            results.append(CheckResult(account, "kill switch", Verdict.FAIL, redact(str(exc))))
        try:
            funds = await broker.fund_limits()
            verdict = Verdict.PASS if funds.available > 0 else Verdict.FAIL
            results.append(
                CheckResult(account, "funds", verdict, f"available ₹{funds.available:,.2f}")
            )
        except Exception as exc:
            results.append(
                CheckResult(
                    account,
                    "funds",
                    Verdict.WARN,
                    f"unavailable ({redact(str(exc))}); Dhan answers DH-906 "
                    "before the market opens",
                )
            )
    finally:
        await broker.close()
    return results


def check_calendar(settings: Settings, now: datetime) -> list[CheckResult]:
    calendar = MarketCalendar(override_path=settings.holiday_override_file)
    out: list[CheckResult] = []
    for segment in (Segment.NSE_EQ, Segment.NSE_FNO, Segment.MCX_COMM):
        session = calendar.session(segment, now)
        if session.phase in ("holiday", "weekend"):
            verdict = Verdict.FAIL if settings.enforce_market_hours else Verdict.WARN
        else:
            verdict = Verdict.PASS
        out.append(CheckResult("market", segment.value, verdict, session.label))
    return out


def check_config(settings: Settings) -> list[CheckResult]:
    out: list[CheckResult] = []
    enabled = [f for f in settings.followers if f.enabled]
    if not enabled:
        out.append(CheckResult("config", "followers", Verdict.FAIL, "no follower is enabled"))
    else:
        out.append(
            CheckResult(
                "config",
                "followers",
                Verdict.PASS,
                f"{len(enabled)} enabled: " + ", ".join(f.name for f in enabled),
            )
        )
    if (
        not settings.dhan.rest_url.startswith("https://")
        and "127.0.0.1" not in settings.dhan.rest_url
    ):
        out.append(
            CheckResult(
                "config",
                "endpoints",
                Verdict.WARN,
                f"REST URL is not HTTPS: {settings.dhan.rest_url}",
            )
        )
    return out


async def collect(
    settings: Settings, clock: Clock | None = None, make_broker: BrokerMaker = _default_broker
) -> list[CheckResult]:
    now = (clock or SystemClock()).now()
    accounts = [
        ("leader", settings.leader.client_id, settings.leader.access_token.get_secret_value())
    ]
    accounts += [
        (f.name, f.client_id, f.access_token.get_secret_value())
        for f in settings.followers
        if f.enabled
    ]
    per_account = await asyncio.gather(
        *(check_account(name, cid, tok, settings, now, make_broker) for name, cid, tok in accounts)
    )
    results = check_config(settings) + check_calendar(settings, now)
    for rows in per_account:
        results.extend(rows)
    return results


def render(results: list[CheckResult], console: Console) -> None:
    table = Table(title="copytrade pre-open check", show_lines=False)
    for col in ("account", "check", "result", "detail"):
        table.add_column(col)
    colour = {Verdict.PASS: "green", Verdict.WARN: "yellow", Verdict.FAIL: "bold red"}
    for r in results:
        table.add_row(r.account, r.check, f"[{colour[r.verdict]}]{r.verdict.value}[/]", r.detail)
    console.print(table)
    failed = sum(r.verdict is Verdict.FAIL for r in results)
    console.print(
        f"[bold red]{failed} check(s) failed[/]" if failed else "[green]all checks passed[/]"
    )


async def run_check(
    settings: Settings, *, clock: Clock | None = None, console: Console | None = None
) -> int:
    results = await collect(settings, clock)
    render(results, console or Console())
    return 1 if any(r.verdict is Verdict.FAIL for r in results) else 0
