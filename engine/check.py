"""`copytrade check`: the pre-open health check a trader runs at 09:00 (and the engine at start).

Every account: its token (hours left and how it renews; minted from PIN + TOTP when no
token is pasted), its static IP (the account's ``source_ip``, or the machine address given
with ``--ip``, against the whitelist Dhan holds: ``GET /v2/ip/getIP``), Dhan kill switch
state, funds; the session calendar for today; config sanity. A table of pass/fail, and a
non-zero exit on any failure.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from urllib.parse import urlsplit

from pydantic import SecretStr
from rich.console import Console
from rich.table import Table

from engine.accounts.auth_api import AuthFailure, DhanAuthApi
from engine.accounts.tokens import TokenEvent, TokenEventKind, TokenKeeper, TokenStatus
from engine.clock import Clock, SystemClock
from engine.config import AccountSettings, FollowerSettings, Settings
from engine.dhan.broker import DhanBroker
from engine.domain import Segment
from engine.market_hours import MarketCalendar
from engine.secrets import redact
from engine.store.positions import orphaned_copies
from engine.store.safety import persisted_safety

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


@dataclass(frozen=True, slots=True)
class AccountToCheck:
    """One account as the check sees it (its secrets stay inside the settings objects)."""

    name: str
    client_id: str
    access_token: SecretStr | None
    pin: SecretStr | None
    totp_secret: SecretStr | None
    source_ip: str | None

    @classmethod
    def of(cls, name: str, account: AccountSettings | FollowerSettings) -> AccountToCheck:
        return cls(
            name,
            account.client_id,
            account.access_token,
            account.pin,
            account.totp_secret,
            account.source_ip,
        )


async def check_token(account: AccountToCheck, keeper: TokenKeeper) -> tuple[CheckResult, bool]:
    """The token row, and whether the account has a working token for the other checks.

    Starting the keeper is what the engine does at start: it mints from PIN + TOTP when no
    token is pasted (or the pasted one is refused), else reads the pasted token's expiry.
    """
    events: list[TokenEvent] = []
    keeper.add_event_listener(events.append)
    try:
        status = await keeper.start()
    except Exception as exc:  # a check never dies on one account
        return (
            CheckResult(account.name, "token", Verdict.FAIL, redact(f"cannot check: {exc}")),
            False,
        )
    how = keeper.how_it_renews.value
    if status is not TokenStatus.VALID:
        why = next(
            (e.message for e in reversed(events) if e.kind is not TokenEventKind.MINTED),
            "no token",
        )
        return CheckResult(account.name, "token", Verdict.FAIL, redact(why)), False
    minted = any(e.kind is TokenEventKind.MINTED for e in events)
    left = keeper.time_left()
    prefix = "minted from PIN+TOTP; " if minted else ""
    if left is None:
        return (
            CheckResult(
                account.name, "token", Verdict.WARN, f"{prefix}valid; expiry unknown; {how}"
            ),
            True,
        )
    hours = left.total_seconds() / 3600
    if hours <= 0:
        verdict = Verdict.FAIL
    elif hours < TOKEN_WARN_HOURS and not keeper.can_mint:
        verdict = Verdict.WARN
    else:
        verdict = Verdict.PASS
    until = keeper.expires_at
    assert until is not None
    detail = (
        f"{prefix}valid until {until:%d %b %H:%M} IST ({hours:.1f} h left); {how}"
        if hours > 0
        else f"expired at {until:%d %b %H:%M} IST; {how}"
    )
    return CheckResult(account.name, "token", verdict, detail), hours > 0


def check_static_ip(
    account: AccountToCheck,
    auth: DhanAuthApi,
    token: str,
    machine_ip: str | None,
    *,
    simulator: bool,
) -> CheckResult:
    """The static-IP row: the address this account's orders leave from vs Dhan's whitelist."""
    answer = auth.whitelisted_ips(token)
    if isinstance(answer, AuthFailure):
        return CheckResult(
            account.name, "static IP", Verdict.FAIL, f"whitelist unreadable ({answer})"
        )
    listed = ", ".join(answer.addresses) or "none"
    if not answer.addresses:
        # Dhan refuses every order of an account with no whitelisted IP; the simulator's
        # empty whitelist means "no IP check".
        return CheckResult(
            account.name,
            "static IP",
            Verdict.WARN if simulator else Verdict.FAIL,
            "no IP whitelisted at Dhan"
            + (" (the simulator checks none)" if simulator else ": Dhan will refuse its orders"),
        )
    address = account.source_ip or machine_ip
    origin = "source_ip" if account.source_ip else "--ip"
    if address is None:
        return CheckResult(
            account.name,
            "static IP",
            Verdict.WARN,
            f"whitelisted at Dhan: {listed}; no source_ip set: give --ip ADDR to check "
            "the address this machine sends from",
        )
    if answer.allows(address):
        return CheckResult(
            account.name, "static IP", Verdict.PASS, f"{address} ({origin}) is whitelisted"
        )
    return CheckResult(
        account.name,
        "static IP",
        Verdict.FAIL,
        f"{account.name}: {address} ({origin}) is not whitelisted at Dhan (whitelisted: "
        f"{listed}); its orders will be refused",
    )


async def check_account(
    account: AccountToCheck,
    settings: Settings,
    clock: Clock,
    make_broker: BrokerMaker = _default_broker,
    machine_ip: str | None = None,
) -> list[CheckResult]:
    auth = DhanAuthApi(
        account.client_id,
        auth_base_url=settings.dhan.auth_base_url,
        api_base_url=settings.dhan.rest_url,
        timeout_s=settings.dhan.timeout_s,
        source_ip=account.source_ip,
    )
    try:
        keeper = TokenKeeper(
            account.name,
            account.client_id,
            auth=auth,
            clock=clock,
            access_token=account.access_token,
            pin=account.pin,
            totp_secret=account.totp_secret,
            is_leader=account.name == "leader",
        )
        token_row, usable = await check_token(account, keeper)
        results = [token_row]
        if not usable:
            return results  # with a bad token every other call fails the same way
        token = keeper.token()
        results.append(
            await asyncio.to_thread(
                check_static_ip,
                account,
                auth,
                token,
                machine_ip,
                simulator=_is_loopback(settings.dhan.rest_url),
            )
        )
        results.extend(
            await _broker_rows(account.name, account.client_id, token, settings, make_broker)
        )
        return results
    finally:
        auth.close()


async def _broker_rows(
    account: str, client_id: str, token: str, settings: Settings, make_broker: BrokerMaker
) -> list[CheckResult]:
    broker = make_broker(client_id, token, settings.dhan.rest_url, settings.dhan.timeout_s)
    results: list[CheckResult] = []
    try:
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


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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


def check_orphaned_copies(settings: Settings) -> list[CheckResult]:
    """Copies still open for followers removed from the configuration: nothing follows the
    leader for them (issue 10). Each fails the check, named."""
    try:
        lines = orphaned_copies(settings.db_path, {f.name for f in settings.followers})
    except Exception as exc:  # unreadable (a damaged file, no permission): said, not raised
        return [CheckResult("config", "orphaned copies", Verdict.WARN, redact(str(exc)))]
    if not lines:
        return [CheckResult("config", "orphaned copies", Verdict.PASS, "none")]
    return [CheckResult("config", "orphaned copies", Verdict.FAIL, line) for line in lines]


def check_safety_state(settings: Settings) -> list[CheckResult]:
    """What the engine would start with: KILLED, or frozen (a loss limit, another engine...),
    so that the trader knows before the open rather than at the first leader order."""
    try:
        state, freezes = persisted_safety(settings.db_path)
    except Exception as exc:  # unreadable: the engine itself will say more at start
        return [CheckResult("engine", "safety state", Verdict.WARN, redact(str(exc)))]
    out: list[CheckResult] = []
    if state is not None and state[0] == "KILLED":
        out.append(
            CheckResult(
                "engine",
                "kill switch",
                Verdict.WARN,
                f"starts KILLED ({redact(state[1])}): `copytrade resume` once it runs",
            )
        )
    for account, reason in freezes:
        out.append(
            CheckResult(
                account or "engine",
                "frozen",
                Verdict.WARN,
                f"starts frozen: {redact(reason)} (`copytrade unfreeze` once it runs, "
                "unless it clears itself)",
            )
        )
    return out or [CheckResult("engine", "safety state", Verdict.PASS, "not killed, not frozen")]


async def collect(
    settings: Settings,
    clock: Clock | None = None,
    make_broker: BrokerMaker = _default_broker,
    *,
    machine_ip: str | None = None,
) -> list[CheckResult]:
    """Every row. ``machine_ip``: the address to compare with the whitelist of accounts that
    have no ``source_ip`` (``copytrade check --ip ADDR``)."""
    clock = clock or SystemClock()
    now = clock.now()
    accounts = [AccountToCheck.of("leader", settings.leader)]
    accounts += [AccountToCheck.of(f.name, f) for f in settings.followers if f.enabled]
    per_account = await asyncio.gather(
        *(check_account(a, settings, clock, make_broker, machine_ip) for a in accounts)
    )
    results = check_config(settings) + check_calendar(settings, now)
    results += check_orphaned_copies(settings)
    results += check_safety_state(settings)
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
    settings: Settings,
    *,
    clock: Clock | None = None,
    console: Console | None = None,
    machine_ip: str | None = None,
) -> int:
    results = await collect(settings, clock, machine_ip=machine_ip)
    render(results, console or Console())
    return 1 if any(r.verdict is Verdict.FAIL for r in results) else 0
