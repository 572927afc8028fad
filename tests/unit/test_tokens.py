"""TokenKeeper: mint from PIN+TOTP, renew before expiry, re-mint on refusal, replace, warn once.

Runs against a loopback server speaking Dhan's auth contract (tests/unit/auth_server.py) with
the keeper's real HTTP client; time is a ManualClock shared by the keeper and the server.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from datetime import datetime, timedelta

import pyotp
import pytest
from pydantic import SecretStr

from engine import secrets
from engine.accounts.auth_api import AuthFailure, AuthFailureKind, DhanAuthApi, TokenGrant
from engine.accounts.keepers import build_keepers
from engine.accounts.tokens import (
    HowItRenews,
    NoTokenError,
    TokenEvent,
    TokenEventKind,
    TokenKeeper,
    TokenStatus,
    jwt_expiry,
)
from engine.clock import IST, ManualClock
from engine.config import load_settings
from engine.domain import Severity
from tests.leaks import leaked_secrets
from tests.unit.auth_server import AuthState, make_jwt, serve

CLIENT_ID = "1000000001"
PIN = "482913"
TOTP_SECRET = pyotp.random_base32()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(IST.localize(datetime(2026, 12, 1, 8, 30, 0)))


@pytest.fixture
def state(clock: ManualClock) -> AuthState:
    return AuthState(client_id=CLIENT_ID, pin=PIN, totp_secret=TOTP_SECRET, now=clock.now)


@pytest.fixture
def base_url(state: AuthState) -> Iterator[str]:
    with serve(state) as url:
        yield url


@pytest.fixture
def api(base_url: str) -> Iterator[DhanAuthApi]:
    client = DhanAuthApi(
        CLIENT_ID, auth_base_url=base_url, api_base_url=f"{base_url}/v2", timeout_s=5
    )
    yield client
    client.close()


@pytest.fixture
def redacted_logs() -> Iterator[None]:
    """Log redaction as the application installs it, undone afterwards."""
    factory = logging.getLogRecordFactory()
    named = {n: list(logging.getLogger(n).filters) for n in secrets.REDACTED_LOGGERS}
    handlers = {h: list(h.filters) for h in logging.getLogger().handlers}
    ws_level = logging.getLogger("websockets").level
    secrets.install_log_redaction()
    yield
    logging.setLogRecordFactory(factory)
    logging.getLogger("websockets").setLevel(ws_level)
    for name, filters in named.items():
        logging.getLogger(name).filters[:] = filters
    for handler, filters in handlers.items():
        handler.filters[:] = filters


class Recorder:
    def __init__(self, keeper: TokenKeeper) -> None:
        self.events: list[TokenEvent] = []
        self.tokens: list[str] = []
        keeper.add_event_listener(self.events.append)
        keeper.add_token_listener(self.tokens.append)

    def kinds(self) -> list[TokenEventKind]:
        return [e.kind for e in self.events]


def keeper_for(
    api: DhanAuthApi,
    clock: ManualClock,
    *,
    token: str | None = None,
    pin: str | None = PIN,
    totp: str | None = TOTP_SECRET,
    account: str = "f1",
) -> tuple[TokenKeeper, Recorder]:
    keeper = TokenKeeper(
        account, CLIENT_ID, auth=api, clock=clock, access_token=token, pin=pin, totp_secret=totp
    )
    return keeper, Recorder(keeper)


def assert_no_secret(text: str, *extra: str) -> None:
    for secret in (PIN, TOTP_SECRET, *extra):
        assert secret not in text


async def test_mints_at_start_when_only_pin_and_totp_are_set(
    api: DhanAuthApi, clock: ManualClock, state: AuthState
) -> None:
    keeper, seen = keeper_for(api, clock)
    assert keeper.how_it_renews is HowItRenews.MINTS
    with pytest.raises(NoTokenError):
        keeper.token()

    assert await keeper.start() is TokenStatus.VALID

    token = keeper.token()
    assert state.valid(token)
    assert seen.tokens == [token]
    assert seen.kinds() == [TokenEventKind.MINTED]  # no RESTORED for the first token
    left = keeper.time_left()
    assert left is not None and timedelta(hours=23, minutes=59) <= left <= timedelta(hours=24)
    mint = state.seen[-1]
    assert (mint.method, mint.path) == ("POST", "/app/generateAccessToken")
    assert mint.query["dhanClientId"] == [CLIENT_ID]
    assert mint.query["pin"] == [PIN]
    assert pyotp.TOTP(TOTP_SECRET).verify(mint.query["totp"][0], for_time=clock.now())
    assert "24.0 h left" in keeper.describe() and "mints from PIN+TOTP" in keeper.describe()
    for text in (keeper.describe(), repr(keeper), *(e.message for e in seen.events)):
        assert_no_secret(text, token)


async def test_pasted_token_learns_expiry_from_profile_and_renews_an_hour_before(
    api: DhanAuthApi, clock: ManualClock, state: AuthState
) -> None:
    pasted, expires = state.issue()
    keeper, seen = keeper_for(api, clock, token=pasted, pin=None, totp=None)
    await keeper.start()
    assert keeper.how_it_renews is HowItRenews.RENEWS
    # tokenValidity has minute precision
    assert keeper.expires_at == expires.replace(second=0, microsecond=0)
    assert state.paths() == ["/v2/profile"]

    clock.advance(timedelta(hours=22).total_seconds())
    await keeper.tick()
    assert seen.kinds() == []  # 2 h left: nothing due
    clock.advance(timedelta(hours=1, minutes=1).total_seconds())
    await keeper.tick()

    assert seen.kinds() == [TokenEventKind.RENEWED]
    assert keeper.token() != pasted and state.valid(keeper.token())
    assert seen.tokens == [keeper.token()]
    renew = state.seen[-1]
    assert (renew.method, renew.path) == ("GET", "/v2/RenewToken")
    assert renew.headers["access-token"] == pasted
    assert renew.headers["dhanClientId"] == CLIENT_ID
    left = keeper.time_left()
    assert left is not None and left > timedelta(hours=23)


async def test_pasted_token_dhan_will_not_renew_warns_once_then_expires(
    api: DhanAuthApi, clock: ManualClock, state: AuthState
) -> None:
    state.renew_allowed = False
    pasted, _ = state.issue()
    keeper, seen = keeper_for(api, clock, token=pasted, pin=None, totp=None)
    await keeper.start()
    clock.advance(timedelta(hours=23, minutes=5).total_seconds())

    await keeper.tick()
    clock.advance(60)
    await keeper.tick()
    clock.advance(60)
    await keeper.tick()

    assert seen.kinds() == [TokenEventKind.RENEW_FAILED, TokenEventKind.EXPIRING]
    warning = seen.events[-1]
    assert warning.severity is Severity.WARNING and not warning.freezes
    assert "f1" in warning.message and "cannot be renewed" in warning.message
    assert "copytrade token set f1" in warning.message
    assert keeper.how_it_renews is HowItRenews.CANNOT
    assert state.paths().count("/v2/RenewToken") == 1  # refused once: not asked again

    clock.advance(timedelta(hours=1).total_seconds())
    await keeper.tick()
    assert seen.kinds()[-1] is TokenEventKind.EXPIRED
    assert seen.events[-1].freezes and keeper.status is TokenStatus.EXPIRED
    alert = seen.events[-1].as_alert()
    assert alert.follower == "f1" and alert.code == "TOKEN_EXPIRED"
    assert alert.severity is Severity.CRITICAL


async def test_minted_token_is_replaced_before_expiry_without_a_gap(
    api: DhanAuthApi, clock: ManualClock, state: AuthState
) -> None:
    state.renew_allowed = False  # Dhan does not renew it: the keeper mints a new one
    keeper, seen = keeper_for(api, clock)
    await keeper.start()
    first = keeper.token()
    clock.advance(timedelta(hours=23, minutes=49).total_seconds())
    await keeper.tick()
    assert seen.kinds() == [TokenEventKind.MINTED]  # 11 min left: not due yet

    clock.advance(120)
    await keeper.tick()

    assert seen.kinds() == [TokenEventKind.MINTED, TokenEventKind.MINTED]
    assert keeper.token() != first
    assert state.valid(first) and state.valid(keeper.token())  # the old one still worked
    assert TokenEventKind.EXPIRING not in seen.kinds()


async def test_refused_token_is_reminted_at_once(
    api: DhanAuthApi, clock: ManualClock, state: AuthState
) -> None:
    keeper, seen = keeper_for(api, clock)
    await keeper.start()
    first = keeper.token()
    del state.tokens[first]  # Dhan forgets it (logged out elsewhere)

    assert await keeper.on_refused(first) is True
    assert keeper.token() != first and state.valid(keeper.token())
    assert seen.kinds() == [TokenEventKind.MINTED, TokenEventKind.MINTED]
    # A second report of the same, already replaced token changes nothing.
    assert await keeper.on_refused(first) is True
    assert len(seen.tokens) == 2


async def test_refused_pasted_token_freezes_until_replaced(
    api: DhanAuthApi, clock: ManualClock, state: AuthState
) -> None:
    pasted, _ = state.issue()
    keeper, seen = keeper_for(api, clock, token=pasted, pin=None, totp=None)
    await keeper.start()
    del state.tokens[pasted]

    assert await keeper.on_refused(pasted) is False
    assert keeper.status is TokenStatus.REFUSED
    assert seen.events[-1].kind is TokenEventKind.REFUSED and seen.events[-1].freezes
    assert "copytrade token set f1" in seen.events[-1].message

    bad = await keeper.replace(make_jwt(CLIENT_ID, clock.now() + timedelta(hours=1), 999))
    assert not bad.accepted and "DH-901" in bad.message
    assert keeper.status is TokenStatus.REFUSED

    fresh, expires = state.issue()
    outcome = await keeper.replace(SecretStr(fresh))
    assert outcome.accepted and outcome.expires_at == expires.replace(second=0, microsecond=0)
    assert keeper.token() == fresh
    assert keeper.status.value == "VALID"  # (via .value: mypy narrowed status above)
    assert seen.kinds()[-2:] == [TokenEventKind.REPLACED, TokenEventKind.RESTORED]
    assert seen.events[-1].unfreezes
    assert seen.tokens[-1] == fresh
    for event in seen.events:
        assert_no_secret(event.message, pasted, fresh)


async def test_pasted_token_refused_at_start_is_minted_over(
    api: DhanAuthApi, clock: ManualClock, state: AuthState
) -> None:
    stale = make_jwt(CLIENT_ID, clock.now() - timedelta(hours=1), 7)
    keeper, seen = keeper_for(api, clock, token=stale)
    assert await keeper.start() is TokenStatus.VALID
    assert keeper.token() != stale and state.valid(keeper.token())
    assert seen.kinds() == [TokenEventKind.MINTED]


@pytest.mark.usefixtures("redacted_logs")
async def test_dhan_down_at_start_then_back(
    api: DhanAuthApi, clock: ManualClock, state: AuthState, caplog: pytest.LogCaptureFixture
) -> None:
    state.down = True
    keeper, seen = keeper_for(api, clock)
    with caplog.at_level(logging.DEBUG):
        assert await keeper.start() is TokenStatus.NONE
        assert not keeper.has_token
        assert seen.kinds() == [TokenEventKind.RENEW_FAILED]
        assert "HTTP 503" in seen.events[0].message
        await keeper.tick()  # too soon to try again
        assert state.paths().count("/app/generateAccessToken") == 1
        assert 29 <= keeper.seconds_until_next_tick() <= 30

        state.down = False
        clock.advance(30)
        await keeper.tick()

    assert seen.kinds() == [
        TokenEventKind.RENEW_FAILED,
        TokenEventKind.MINTED,
        TokenEventKind.RESTORED,
    ]
    assert state.valid(keeper.token())
    assert "generateAccessToken" in caplog.text  # urllib3 did log the request line...
    assert_no_secret(caplog.text, keeper.token())  # ...with the PIN and token masked
    for record in caplog.records:
        for code in (s.query.get("totp", [""])[0] for s in state.seen):
            assert f"totp={code}" not in record.getMessage()


@pytest.mark.usefixtures("redacted_logs")
async def test_wrong_pin_never_shows_the_pin(
    base_url: str, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    api = DhanAuthApi(CLIENT_ID, auth_base_url=base_url, api_base_url=f"{base_url}/v2")
    wrong_pin = "917364"
    keeper = TokenKeeper(
        "leader",
        CLIENT_ID,
        auth=api,
        clock=clock,
        pin=wrong_pin,
        totp_secret=TOTP_SECRET,
        is_leader=True,
    )
    seen = Recorder(keeper)
    with caplog.at_level(logging.DEBUG):
        await keeper.start()
    api.close()
    assert seen.kinds() == [TokenEventKind.RENEW_FAILED]
    event = seen.events[0]
    assert "Invalid PIN" in event.message and "leader" in event.message
    assert event.as_alert().follower is None
    for text in (event.message, caplog.text, repr(keeper)):
        assert wrong_pin not in text and TOTP_SECRET not in text


async def test_unreachable_auth_never_shows_the_pin_in_the_failure() -> None:
    api = DhanAuthApi(
        CLIENT_ID,
        auth_base_url="http://127.0.0.1:9",
        api_base_url="http://127.0.0.1:9/v2",
        timeout_s=2,
    )
    code = pyotp.TOTP(TOTP_SECRET).now()
    failure = await asyncio.to_thread(api.mint, PIN, code)
    api.close()
    assert isinstance(failure, AuthFailure)
    assert failure.kind is AuthFailureKind.UNREACHABLE
    assert not leaked_secrets([PIN, code], str(failure))


async def test_renew_answer_without_expiry_falls_back_to_the_jwt_claim(
    api: DhanAuthApi, state: AuthState
) -> None:
    token, expires = state.issue()
    grant = await asyncio.to_thread(api.renew, token)
    assert isinstance(grant, TokenGrant)
    assert grant.expires_at is not None
    assert abs((grant.expires_at - expires).total_seconds()) < 1
    assert jwt_expiry(grant.token.get_secret_value()) is not None
    assert "**********" in repr(grant)  # SecretStr: the token is not in a repr


def test_jwt_expiry_reads_exp_and_refuses_anything_else() -> None:
    when = IST.localize(datetime(2026, 12, 2, 8, 30))
    assert jwt_expiry(make_jwt(CLIENT_ID, when, 1)) == when
    for not_jwt in ("", "abc", "a.b.c", "a.!!!.c", "eyJ0.eyJleHAiOiJ4In0.x"):
        assert jwt_expiry(not_jwt) is None


def test_bad_totp_secret_is_one_line_without_the_secret(api: DhanAuthApi) -> None:
    clock = ManualClock()
    for secret, words in (("not base32!!", "base32"), ("JBSWY3DP", "too short")):
        with pytest.raises(ValueError) as caught:
            TokenKeeper("f1", CLIENT_ID, auth=api, clock=clock, pin=PIN, totp_secret=secret)
        assert words in str(caught.value) and secret not in str(caught.value)
    with pytest.raises(ValueError, match="go together"):
        TokenKeeper("f1", CLIENT_ID, auth=api, clock=clock, pin=PIN)


def test_totp_secret_in_groups_and_lower_case_is_accepted(api: DhanAuthApi) -> None:
    grouped = " ".join(TOTP_SECRET[i : i + 4] for i in range(0, len(TOTP_SECRET), 4)).lower()
    keeper = TokenKeeper(
        "f1", CLIENT_ID, auth=api, clock=ManualClock(), pin=PIN, totp_secret=grouped
    )
    assert keeper.can_mint


async def test_run_loop_renews_on_its_own_and_stops(
    api: DhanAuthApi, clock: ManualClock, state: AuthState
) -> None:
    keeper, seen = keeper_for(api, clock)
    await keeper.start()
    renewed = asyncio.Event()
    keeper.add_event_listener(lambda e: renewed.set() if e.kind is TokenEventKind.RENEWED else None)
    stop = asyncio.Event()
    task = asyncio.create_task(keeper.run(stop))
    await asyncio.wait_for(renewed.wait(), timeout=10)  # ManualClock.sleep moves time on
    stop.set()
    await asyncio.wait_for(task, timeout=5)
    assert state.valid(keeper.token())
    assert seen.kinds()[:2] == [TokenEventKind.MINTED, TokenEventKind.RENEWED]


def test_secrets_are_registered_for_redaction(api: DhanAuthApi) -> None:
    secrets.clear_secrets()
    TokenKeeper(
        "f1",
        CLIENT_ID,
        auth=api,
        clock=ManualClock(),
        access_token="pasted-token-xyz-123",
        pin=PIN,
        totp_secret=TOTP_SECRET,
    )
    text = secrets.redact(f"pin={PIN} secret={TOTP_SECRET} token=pasted-token-xyz-123")
    assert text == "pin=*** secret=*** token=***"


async def test_refusals_while_minting_fails_are_said_once_and_not_hammered(
    api: DhanAuthApi, clock: ManualClock, state: AuthState
) -> None:
    keeper, seen = keeper_for(api, clock)
    await keeper.start()
    first = keeper.token()
    del state.tokens[first]
    state.down = True

    for _ in range(5):
        assert await keeper.on_refused(first) is False
    assert state.paths().count("/app/generateAccessToken") == 2  # start, then one retry
    assert seen.kinds() == [
        TokenEventKind.MINTED,
        TokenEventKind.RENEW_FAILED,
        TokenEventKind.REFUSED,
    ]
    assert "could not be minted" in seen.events[-1].message

    state.down = False
    clock.advance(31)
    await keeper.tick()
    assert seen.kinds()[-2:] == [TokenEventKind.MINTED, TokenEventKind.RESTORED]
    assert await keeper.on_refused(first) is True  # the old token: already replaced


async def test_keepers_built_from_the_settings(
    base_url: str, clock: ManualClock, state: AuthState
) -> None:
    followers = [
        {
            "name": "alice",
            "client_id": "2000000001",
            "access_token": "alice-token-0001",
            "source_ip": "127.0.0.2",
        },
        {
            "name": "off",
            "client_id": "2000000002",
            "access_token": "off-token-0002",
            "enabled": False,
        },
    ]
    settings = load_settings(
        env_file=None,
        environ={
            "COPYTRADE_LEADER__CLIENT_ID": CLIENT_ID,
            "COPYTRADE_LEADER__PIN": PIN,
            "COPYTRADE_LEADER__TOTP_SECRET": TOTP_SECRET,
            "COPYTRADE_FOLLOWERS": json.dumps(followers),
            "COPYTRADE_DHAN__REST_URL": f"{base_url}/v2",
        },
    )
    keepers = build_keepers(settings, clock)
    try:
        assert list(keepers) == ["leader", "alice"]
        assert keepers["leader"].how_it_renews is HowItRenews.MINTS
        assert keepers["alice"].how_it_renews is HowItRenews.RENEWS
        assert await keepers["leader"].start() is TokenStatus.VALID
        assert state.seen[-1].path == "/app/generateAccessToken"  # the derived auth URL
        assert keepers["leader"].is_leader and not keepers["alice"].is_leader
    finally:
        for keeper in keepers.values():
            keeper.close()


async def test_a_short_lived_token_is_renewed_at_a_third_of_its_life_not_at_once(
    api: DhanAuthApi, clock: ManualClock, state: AuthState
) -> None:
    state.lifetime = timedelta(minutes=3)  # shorter than the 10 minutes renewed before
    keeper, seen = keeper_for(api, clock)
    await keeper.start()
    await keeper.tick()
    assert seen.kinds() == [TokenEventKind.MINTED]  # 3 min left: not renewed at once
    assert 119 <= keeper.seconds_until_next_tick() <= 120  # due with a minute left
    clock.advance(121)
    await keeper.tick()
    assert seen.kinds() == [TokenEventKind.MINTED, TokenEventKind.RENEWED]


async def test_a_refused_pasted_token_dhan_takes_again_is_restored(
    api: DhanAuthApi, clock: ManualClock, state: AuthState
) -> None:
    pasted, expires = state.issue()
    keeper, seen = keeper_for(api, clock, token=pasted, pin=None, totp=None)
    await keeper.start()
    del state.tokens[pasted]
    assert await keeper.on_refused(pasted) is False
    await keeper.tick()  # Dhan still refuses it: nothing changes
    assert keeper.status is TokenStatus.REFUSED and seen.kinds()[-1] is TokenEventKind.REFUSED
    assert keeper.seconds_until_next_tick() <= 30

    state.tokens[pasted] = expires  # renewed at Dhan's end (or the refusal was a blip)
    clock.advance(31)
    await keeper.tick()
    assert keeper.status.value == "VALID"
    assert seen.kinds()[-1] is TokenEventKind.RESTORED and seen.events[-1].unfreezes
    assert keeper.token() == pasted
    assert_no_secret(seen.events[-1].message, pasted)
