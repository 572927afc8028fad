"""Tokens and static IPs against the simulator, with the real dhanhq SDK.

- an account known only by PIN + TOTP mints a token the SDK then trades with;
- a short-lived minted token is renewed before it ends while the SDK keeps calling: no gap;
- a refused (expired) token is re-minted at once;
- the SDK's own ``DhanLogin`` and our auth client speak the same contract;
- each follower's orders leave from its own 127.0.0.x, and an address not whitelisted is
  refused by Dhan's invalid-IP answer;
- ``copytrade check`` shows how each token renews and fails on an address not whitelisted;
- no PIN, TOTP secret or token in the check's output or the simulator's request log.
"""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

import pyotp
from dhanhq import DhanContext, DhanLogin, dhanhq
from rich.console import Console

from engine.accounts.auth_api import DhanAuthApi, TokenGrant
from engine.accounts.source_ip import bind_dhan_http
from engine.accounts.tokens import TokenEvent, TokenEventKind, TokenKeeper, TokenStatus
from engine.check import Verdict, collect, render
from engine.clock import SystemClock
from engine.config import load_settings
from engine.simulator.server import DhanSimulator
from tests.e2e.conftest import ALPHA, BETA, LEADER, NIFTY_CE
from tests.leaks import leaked_secrets, secret_in

PIN = "246810"
TOTP_SECRET = pyotp.random_base32()
TOTP_ONLY = "1000000009"  # an account whose token nobody knows: it logs in by TOTP only


def auth_api(sim: DhanSimulator, client_id: str, source_ip: str | None = None) -> DhanAuthApi:
    base = sim.rest_url.removesuffix("/v2")
    return DhanAuthApi(
        client_id,
        auth_base_url=base,
        api_base_url=sim.rest_url,
        timeout_s=3,
        source_ip=source_ip,
    )


def sdk_for(sim: DhanSimulator, client_id: str, token: str, source_ip: str | None = None) -> Any:
    ctx = DhanContext(client_id, token)
    ctx.dhan_http.base_url = sim.rest_url
    ctx.dhan_http.timeout = 3
    bind_dhan_http(ctx.dhan_http, source_ip)
    return dhanhq(ctx)


def place(sdk: Any, price: float = 100.0) -> dict[str, Any]:
    answer: dict[str, Any] = sdk.place_order(
        security_id=NIFTY_CE[1],
        exchange_segment=NIFTY_CE[0],
        transaction_type="BUY",
        quantity=65,
        order_type="LIMIT",
        product_type="INTRADAY",
        price=price,
    )
    return answer


async def test_pin_and_totp_only_account_mints_and_trades(sim: DhanSimulator) -> None:
    sim.enable_totp(TOTP_ONLY, PIN, TOTP_SECRET)
    api = auth_api(sim, TOTP_ONLY)
    keeper = TokenKeeper(
        "gamma", TOTP_ONLY, auth=api, clock=SystemClock(), pin=PIN, totp_secret=TOTP_SECRET
    )
    try:
        assert await keeper.start() is TokenStatus.VALID
        left = keeper.time_left()
        assert left is not None and left > timedelta(hours=23)
        sdk = sdk_for(sim, TOTP_ONLY, keeper.token())
        answer = await asyncio.to_thread(place, sdk)
        assert answer["status"] == "success", answer
        assert (await asyncio.to_thread(sdk.get_order_list))["status"] == "success"
    finally:
        api.close()
    mint = next(r for r in sim.requests if r["path"] == "/app/generateAccessToken")
    assert mint["status"] == 200 and mint["client_id"] == TOTP_ONLY
    log_text = json.dumps(sim.requests, default=str)
    assert not leaked_secrets([PIN, TOTP_SECRET, keeper.token()], log_text)


async def test_short_lived_token_is_renewed_with_no_gap(sim: DhanSimulator) -> None:
    sim.enable_totp(TOTP_ONLY, PIN, TOTP_SECRET)
    sim.exchange.token_validity_s = 3  # every token lives 3 s
    api = auth_api(sim, TOTP_ONLY)
    keeper = TokenKeeper(
        "gamma",
        TOTP_ONLY,
        auth=api,
        clock=SystemClock(),
        pin=PIN,
        totp_secret=TOTP_SECRET,
        renew_before=timedelta(seconds=1.5),
        warn_before=timedelta(seconds=1),
    )
    events: list[TokenEvent] = []
    keeper.add_event_listener(events.append)
    await keeper.start()
    ctx = DhanContext(TOTP_ONLY, keeper.token())
    ctx.dhan_http.base_url = sim.rest_url
    ctx.dhan_http.timeout = 3
    # What the engine does with a new token: put it into the account's SDK headers.
    keeper.add_token_listener(lambda token: ctx.dhan_http.header.update({"access-token": token}))
    sdk = dhanhq(ctx)
    stop = asyncio.Event()
    runner = asyncio.create_task(keeper.run(stop))
    answers: list[str] = []
    try:
        loop = asyncio.get_running_loop()
        until = loop.time() + 7.5  # two and a half lifetimes
        while loop.time() < until:
            answer = await asyncio.to_thread(sdk.get_order_list)
            answers.append(answer["status"])
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.wait_for(runner, 5)
        api.close()
    renewals = [e for e in events if e.kind is TokenEventKind.RENEWED]
    assert len(renewals) >= 2, [e.kind for e in events]
    assert answers.count("failure") == 0, f"{answers.count('failure')} of {len(answers)} failed"
    assert len(answers) > 20
    assert TokenEventKind.EXPIRED not in {e.kind for e in events}


async def test_refused_token_is_reminted_and_the_sdk_works_again(sim: DhanSimulator) -> None:
    sim.enable_totp(TOTP_ONLY, PIN, TOTP_SECRET)
    sim.exchange.token_validity_s = 1
    api = auth_api(sim, TOTP_ONLY)
    keeper = TokenKeeper(
        "gamma", TOTP_ONLY, auth=api, clock=SystemClock(), pin=PIN, totp_secret=TOTP_SECRET
    )
    try:
        await keeper.start()
        old = keeper.token()
        sim.exchange.token_validity_s = 86400
        await asyncio.sleep(1.2)
        refused = await asyncio.to_thread(sdk_for(sim, TOTP_ONLY, old).get_order_list)
        assert refused["status"] == "failure"
        assert refused["remarks"]["error_code"] == "DH-901"

        assert await keeper.on_refused(old) is True
        assert keeper.token() != old
        again = await asyncio.to_thread(sdk_for(sim, TOTP_ONLY, keeper.token()).get_order_list)
        assert again["status"] == "success"
    finally:
        api.close()


async def test_sdk_dhanlogin_and_our_client_speak_the_same_contract(sim: DhanSimulator) -> None:
    sim.enable_totp(TOTP_ONLY, PIN, TOTP_SECRET)
    login = DhanLogin(TOTP_ONLY)
    # On the instance, never the class: other accounts (and tests) keep Dhan's URLs.
    login.AUTH_BASE_URL = sim.rest_url.removesuffix("/v2")
    login.API_BASE_URL = sim.rest_url
    sdk_grant = await asyncio.to_thread(login.generate_token, PIN, pyotp.TOTP(TOTP_SECRET).now())
    sdk_token = sdk_grant["accessToken"]
    renewed = await asyncio.to_thread(login.renew_token, sdk_token)
    profile = await asyncio.to_thread(login.user_profile, sdk_token)
    assert DhanLogin.AUTH_BASE_URL == "https://auth.dhan.co"

    api = auth_api(sim, TOTP_ONLY)
    try:
        ours = await asyncio.to_thread(api.renew, renewed["accessToken"])
        our_profile = await asyncio.to_thread(api.profile, sdk_token)
    finally:
        api.close()
    assert isinstance(ours, TokenGrant) and ours.expires_at is not None
    assert set(sdk_grant) == set(renewed)  # mint and renew answer one shape
    assert "tokenValidity" in profile
    assert not isinstance(our_profile, Exception)
    assert getattr(our_profile, "token_valid_until", None) is not None


async def test_each_follower_orders_from_its_own_address(sim: DhanSimulator) -> None:
    sim.set_ip_whitelist(ALPHA[0], ["127.0.0.2"])
    sim.set_ip_whitelist(BETA[0], ["127.0.0.3"])
    alpha = sdk_for(sim, ALPHA[0], ALPHA[1], source_ip="127.0.0.2")
    beta = sdk_for(sim, BETA[0], BETA[1], source_ip="127.0.0.3")
    beta_wrong = sdk_for(sim, BETA[0], BETA[1], source_ip="127.0.0.4")

    assert (await asyncio.to_thread(place, alpha))["status"] == "success"
    assert (await asyncio.to_thread(place, beta))["status"] == "success"
    refused = await asyncio.to_thread(place, beta_wrong)

    assert refused["status"] == "failure"
    assert refused["remarks"]["error_code"] == sim.profile.invalid_ip_code
    assert "127.0.0.4" in refused["remarks"]["error_message"]
    posts = [
        (r["client_id"], r["source"], r["status"])
        for r in sim.requests
        if r["method"] == "POST" and r["path"] == "/v2/orders"
    ]
    assert posts == [
        (ALPHA[0], "127.0.0.2", 200),
        (BETA[0], "127.0.0.3", 200),
        (BETA[0], "127.0.0.4", 403),
    ]


async def test_check_shows_token_renewal_and_fails_on_an_address_not_whitelisted(
    sim: DhanSimulator,
) -> None:
    sim.enable_totp(LEADER[0], PIN, TOTP_SECRET)
    sim.set_ip_whitelist(LEADER[0], ["127.0.0.1"])
    sim.set_ip_whitelist(ALPHA[0], ["127.0.0.2"])
    sim.set_ip_whitelist(BETA[0], ["127.0.0.4", "127.0.0.5"])
    followers = [
        {
            "name": "alpha",
            "client_id": ALPHA[0],
            "access_token": ALPHA[1],
            "source_ip": "127.0.0.2",
        },
        {"name": "beta", "client_id": BETA[0], "access_token": BETA[1], "source_ip": "127.0.0.3"},
    ]
    env = {
        "COPYTRADE_LEADER__CLIENT_ID": LEADER[0],
        "COPYTRADE_LEADER__PIN": PIN,
        "COPYTRADE_LEADER__TOTP_SECRET": TOTP_SECRET,
        "COPYTRADE_FOLLOWERS": json.dumps(followers),
        "COPYTRADE_DHAN__REST_URL": sim.rest_url,
        "COPYTRADE_DHAN__ORDER_WS_URL": sim.ws_url,
        "COPYTRADE_DHAN__TIMEOUT_S": "3",
        "COPYTRADE_ENFORCE_MARKET_HOURS": "false",
    }
    settings = load_settings(env_file=None, environ=env)
    assert settings.leader.access_token is None

    results = await collect(settings, SystemClock(), machine_ip="127.0.0.9")
    rows = {(r.account, r.check): r for r in results}

    leader_token = rows[("leader", "token")]
    assert leader_token.verdict is Verdict.PASS
    assert "minted from PIN+TOTP" in leader_token.detail
    assert leader_token.detail.endswith("mints from PIN+TOTP")
    assert "renews via Dhan" in rows[("alpha", "token")].detail
    # the leader has no source_ip: the address named with --ip is checked
    leader_ip = rows[("leader", "static IP")]
    assert leader_ip.verdict is Verdict.FAIL
    assert "127.0.0.9 (--ip) is not whitelisted" in leader_ip.detail
    assert "127.0.0.1" in leader_ip.detail
    assert rows[("alpha", "static IP")].verdict is Verdict.PASS
    beta_ip = rows[("beta", "static IP")]
    assert beta_ip.verdict is Verdict.FAIL
    assert beta_ip.detail.startswith("beta: 127.0.0.3 (source_ip) is not whitelisted")
    assert "127.0.0.4, 127.0.0.5" in beta_ip.detail
    # each account's check calls left from its own address
    sources = {(r["client_id"], r["path"]): r["source"] for r in sim.requests}
    assert sources[(ALPHA[0], "/v2/ip/getIP")] == "127.0.0.2"
    assert sources[(BETA[0], "/v2/ip/getIP")] == "127.0.0.3"

    console = Console(record=True, width=200)
    render(results, console)
    text = console.export_text()
    assert "check(s) failed" in text
    for secret in (PIN, TOTP_SECRET, ALPHA[1], BETA[1], *settings.secret_values()):
        assert not secret_in(secret, text)
        assert not secret_in(secret, json.dumps(sim.requests, default=str))
