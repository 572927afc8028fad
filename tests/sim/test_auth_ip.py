"""Issue 12 on the simulator's side: tokens minted from PIN + TOTP with dhanhq's DhanLogin,
their expiry and renewal, the profile's token validity, the static-IP endpoints, and order
requests refused by source address (each SDK bound to its own 127.0.0.x)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import pyotp
import pytest
import requests
from dhanhq import DhanLogin
from dhanhq.dhan_http import DhanHTTP
from urllib3.poolmanager import PoolManager

from engine.clock import IST, ManualClock
from engine.simulator import DhanSimulator
from engine.simulator.cli import main as sim_main
from tests.leaks import leaked_secrets

from .conftest import FOLLOWER, FOLLOWER_TOKEN, LEADER, LEADER_TOKEN, call, limit_buy, make_sdk

pytestmark = pytest.mark.e2e

PIN = "482913"
SECRET = pyotp.random_base32()
TOTP_ONLY = "1000000009"  # an account that has no pasted token at all


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def auth_sim(clock: ManualClock) -> AsyncIterator[DhanSimulator]:
    sim = DhanSimulator(accounts={LEADER: LEADER_TOKEN, FOLLOWER: FOLLOWER_TOKEN}, clock=clock)
    sim.enable_totp(LEADER, PIN, SECRET)
    sim.enable_totp(TOTP_ONLY, PIN, SECRET)
    await sim.start(host="127.0.0.1", port=0)
    try:
        yield sim
    finally:
        await sim.stop()


def login_for(sim: DhanSimulator, client_id: str) -> DhanLogin:
    login = DhanLogin(client_id)
    login.AUTH_BASE_URL = sim.rest_url.removesuffix("/v2")  # Dhan's auth host, same port here
    login.API_BASE_URL = sim.rest_url
    return login


def code_at(clock: ManualClock) -> str:
    return pyotp.TOTP(SECRET).at(clock.now())


async def test_mint_with_pin_and_totp_then_use_the_token(
    auth_sim: DhanSimulator, clock: ManualClock
) -> None:
    login = login_for(auth_sim, TOTP_ONLY)
    minted = await call(login.generate_token, PIN, code_at(clock))
    assert set(minted) == {
        "dhanClientId", "dhanClientName", "dhanClientUcc", "givenPowerOfAttorney",
        "accessToken", "expiryTime",
    }  # fmt: skip
    assert minted["dhanClientId"] == TOTP_ONLY
    token = minted["accessToken"]
    assert token.count(".") == 2  # JWT-shaped, as Dhan's
    expiry = IST.localize(datetime.strptime(minted["expiryTime"], "%Y-%m-%dT%H:%M:%S"))
    assert (expiry - clock.now()).total_seconds() == 86400
    sdk = make_sdk(auth_sim, TOTP_ONLY, token)
    assert (await call(sdk.place_order, **limit_buy()))["status"] == "success"
    profile = await call(login.user_profile, token)
    assert profile["tokenValidity"] == expiry.strftime("%d/%m/%Y %H:%M")


async def test_wrong_pin_or_totp_is_refused_and_never_logged(
    auth_sim: DhanSimulator, clock: ManualClock
) -> None:
    login = login_for(auth_sim, LEADER)
    wrong_code = f"{(int(code_at(clock)) + 1) % 1_000_000:06d}"
    with pytest.raises(Exception, match="DH-901"):
        await call(login.generate_token, PIN, wrong_code)
    with pytest.raises(Exception, match="DH-901"):
        await call(login.generate_token, "000000", code_at(clock))
    with pytest.raises(Exception, match="DH-901"):  # an account without TOTP set up
        await call(login_for(auth_sim, FOLLOWER).generate_token, PIN, code_at(clock))
    minted = await call(login.generate_token, PIN, code_at(clock))
    log = json.dumps(auth_sim.requests, default=str)
    for secret in (PIN, SECRET, wrong_code, code_at(clock), minted["accessToken"], LEADER_TOKEN):
        assert secret not in log
    assert [r["status"] for r in auth_sim.requests] == [401, 401, 401, 200]
    assert {r["source"] for r in auth_sim.requests} == {"127.0.0.1"}


async def test_minted_tokens_expire_renew_works_and_the_pasted_token_keeps_working(
    auth_sim: DhanSimulator, clock: ManualClock
) -> None:
    auth_sim.set_profile(auth_sim.profile.model_copy(update={"token_validity_s": 3600}))
    login = login_for(auth_sim, LEADER)
    first = (await call(login.generate_token, PIN, code_at(clock)))["accessToken"]
    clock.advance(3000)
    renewed = await call(login.renew_token, first)
    second = renewed["accessToken"]
    assert second != first and renewed["dhanClientId"] == LEADER
    clock.advance(700)  # the first token is past its hour, the renewed one is not
    with pytest.raises(Exception, match="DH-901"):
        await call(login.user_profile, first)
    assert "tokenValidity" in await call(login.user_profile, second)
    with pytest.raises(Exception, match="DH-901"):
        await call(login.renew_token, first)  # an expired token cannot be renewed
    clock.advance(3600)
    expired = await call(make_sdk(auth_sim, LEADER, second).get_order_list)
    assert expired["remarks"]["error_code"] == "DH-901"
    pasted = await call(make_sdk(auth_sim, LEADER, LEADER_TOKEN).get_order_list)
    assert pasted["status"] == "success"  # the --account token keeps working


class SourceAddressAdapter(requests.adapters.HTTPAdapter):
    """Sends from a chosen local address (the test's stand-in for a machine with several)."""

    def __init__(self, source: str) -> None:
        self.source = source
        super().__init__()

    def init_poolmanager(
        self, connections: int, maxsize: int, block: bool = False, **kw: Any
    ) -> None:
        self.poolmanager = PoolManager(
            num_pools=connections, maxsize=maxsize, block=block, source_address=(self.source, 0)
        )


def sdk_from(sim: DhanSimulator, client_id: str, token: str, source: str) -> Any:
    sdk = make_sdk(sim, client_id, token)
    sdk.dhan_http.session.mount("http://", SourceAddressAdapter(source))
    return sdk


async def test_orders_from_a_non_whitelisted_address_are_refused(
    auth_sim: DhanSimulator,
) -> None:
    auth_sim.set_ip_whitelist(FOLLOWER, ["127.0.0.2"])
    own = sdk_from(auth_sim, FOLLOWER, FOLLOWER_TOKEN, "127.0.0.2")
    other = sdk_from(auth_sim, FOLLOWER, FOLLOWER_TOKEN, "127.0.0.3")
    placed = await call(own.place_order, **limit_buy())
    assert placed["status"] == "success"
    refused = await call(other.place_order, **limit_buy())
    assert refused["status"] == "failure" and refused["remarks"]["error_code"] == "DH-911"
    assert "127.0.0.3" in refused["remarks"]["error_message"]
    oid = placed["data"]["orderId"]
    assert (await call(other.cancel_order, oid))["remarks"]["error_code"] == "DH-911"
    assert (await call(other.get_order_list))["status"] == "success"  # reads need no whitelist
    assert (await call(own.cancel_order, oid))["status"] == "success"
    sources = [(r["source"], r["method"], r["status"]) for r in auth_sim.requests]
    assert sources == [
        ("127.0.0.2", "POST", 200),
        ("127.0.0.3", "POST", 403),
        ("127.0.0.3", "DELETE", 403),
        ("127.0.0.3", "GET", 200),
        ("127.0.0.2", "DELETE", 200),
    ]
    # The leader has no whitelist: any address may send its orders.
    leader = sdk_from(auth_sim, LEADER, LEADER_TOKEN, "127.0.0.4")
    assert (await call(leader.place_order, **limit_buy()))["status"] == "success"
    # The profile chooses the refusal's code.
    auth_sim.set_profile("pascal-upper")
    auth_sim.set_profile(auth_sim.profile.model_copy(update={"invalid_ip_code": "DH-905"}))
    assert (await call(other.place_order, **limit_buy()))["remarks"]["error_code"] == "DH-905"


async def test_ip_endpoints_get_set_modify(
    auth_sim: DhanSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(DhanHTTP, "API_BASE_URL", auth_sim.rest_url)
    login = login_for(auth_sim, FOLLOWER)
    empty = await call(login.get_ip, FOLLOWER_TOKEN)
    assert empty["data"] == {
        "primaryIP": "", "secondaryIP": "", "modifyDatePrimary": "", "modifyDateSecondary": "",
    }  # fmt: skip
    res = await call(login.set_ip, FOLLOWER_TOKEN, "127.0.0.2", "PRIMARY")
    assert res["data"]["status"] == "SUCCESS"
    again = await call(login.set_ip, FOLLOWER_TOKEN, "127.0.0.5", "PRIMARY")
    assert again["remarks"]["error_code"] == "DH-905"  # set once; modifyIP changes it
    assert (await call(login.set_ip, FOLLOWER_TOKEN, "127.0.0.6", "SECONDARY"))["status"] == (
        "success"
    )
    assert (await call(login.modify_ip, FOLLOWER_TOKEN, "127.0.0.7", "PRIMARY"))["status"] == (
        "success"
    )
    bad = await call(login.modify_ip, FOLLOWER_TOKEN, "not-an-ip", "PRIMARY")
    assert bad["remarks"]["error_code"] == "DH-905"
    view = (await call(login.get_ip, FOLLOWER_TOKEN))["data"]
    assert (view["primaryIP"], view["secondaryIP"]) == ("127.0.0.7", "127.0.0.6")
    assert view["modifyDatePrimary"] == "2026-11-30"  # ManualClock's 23 Nov + Dhan's 7 days
    refused = await call(make_sdk(auth_sim, FOLLOWER, FOLLOWER_TOKEN).place_order, **limit_buy())
    assert refused["remarks"]["error_code"] == "DH-911"  # the SDK sends from 127.0.0.1


def test_cli_refuses_bad_totp_and_whitelist_without_echoing_secrets(
    capsys: pytest.CaptureFixture[str],
) -> None:
    cases = (
        ["--totp", f"{LEADER}={PIN}:not base32!"],
        ["--totp", f"{LEADER}:{PIN}"],
        ["--account", f"{LEADER}:{LEADER_TOKEN}", "--ip-whitelist", f"{LEADER}=300.1.1.1"],
        ["--account", f"{LEADER}:{LEADER_TOKEN}", "--ip-whitelist", "1999=127.0.0.2"],
    )
    for argv in cases:
        with pytest.raises(SystemExit) as exc:
            sim_main(argv)
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert not leaked_secrets([PIN, LEADER_TOKEN], err) and "not base32" not in err
        assert err.strip().splitlines()[-1].startswith("copytrade sim: error:")


async def test_a_token_minted_after_expire_token_works(
    auth_sim: DhanSimulator, clock: ManualClock
) -> None:
    login = login_for(auth_sim, LEADER)
    before = (await call(login.generate_token, PIN, code_at(clock)))["accessToken"]
    auth_sim.expire_token(LEADER)
    for token in (before, LEADER_TOKEN):  # every token held at the expiry is refused
        refused = await call(make_sdk(auth_sim, LEADER, token).get_order_list)
        assert refused["remarks"]["error_code"] == "DH-901"
    clock.advance(31)  # a new TOTP step
    after = (await call(login.generate_token, PIN, code_at(clock)))["accessToken"]
    assert (await call(make_sdk(auth_sim, LEADER, after).place_order, **limit_buy()))[
        "status"
    ] == "success"
    still = await call(make_sdk(auth_sim, LEADER, LEADER_TOKEN).get_order_list)
    assert still["remarks"]["error_code"] == "DH-901"  # the pasted token stays expired


async def test_the_pasted_tokens_profile_validity_is_a_day_whatever_minted_tokens_live(
    auth_sim: DhanSimulator, clock: ManualClock
) -> None:
    auth_sim.set_profile(auth_sim.profile.model_copy(update={"token_validity_s": 4}))
    login = login_for(auth_sim, LEADER)
    clock.advance(60)  # minted tokens would be long dead; the pasted one still works
    profile = await call(login.user_profile, LEADER_TOKEN)
    until = IST.localize(datetime.strptime(profile["tokenValidity"], "%d/%m/%Y %H:%M"))
    assert 23 * 3600 < (until - clock.now()).total_seconds() <= 86400
    assert (await call(make_sdk(auth_sim, LEADER, LEADER_TOKEN).get_order_list))[
        "status"
    ] == "success"
