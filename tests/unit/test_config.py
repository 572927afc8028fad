"""Settings: sources and precedence, followers JSON, one-line errors that never leak tokens."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from engine import secrets
from engine.config import ConfigError, Settings, load_settings
from engine.domain import Product, Segment
from engine.paths import default_db_path
from engine.replication.rules import (
    CapitalRatioSizing,
    CopyFilters,
    FixedLotsSizing,
    MultiplierSizing,
    RiskLimits,
)

LEADER_TOKEN = "leader-token-AAAA-1111"
F1_TOKEN = "follower-one-token-BBBB-2222"
F2_TOKEN = "follower-two-token-CCCC-3333"


def follower(name: str, client_id: str | int, token: str | int, **extra: Any) -> dict[str, Any]:
    return {"name": name, "client_id": client_id, "access_token": token, **extra}


def env(followers: list[dict[str, Any]] | str | None = None, **overrides: str) -> dict[str, str]:
    if followers is None:
        followers = [follower("alice", "2000000001", F1_TOKEN)]
    values = {
        "COPYTRADE_LEADER__CLIENT_ID": "1000000001",
        "COPYTRADE_LEADER__ACCESS_TOKEN": LEADER_TOKEN,
        "COPYTRADE_FOLLOWERS": followers if isinstance(followers, str) else json.dumps(followers),
    }
    values.update(overrides)
    return values


def load_error(environ: dict[str, str], env_file: Path | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings(env_file=env_file, environ=environ)
    text = str(info.value)
    assert "\n" not in text
    for token in (LEADER_TOKEN, F1_TOKEN, F2_TOKEN):
        assert token not in text
    assert "input_value" not in text
    return text


def test_defaults() -> None:
    s = load_settings(env_file=None, environ=env())
    assert s.leader.client_id == "1000000001"
    assert s.leader.access_token is not None
    assert s.leader.access_token.get_secret_value() == LEADER_TOKEN
    (f,) = s.followers
    assert f.name == "alice"
    assert f.sizing == MultiplierSizing(multiplier=1.0)
    assert f.filters == CopyFilters()
    assert f.risk == RiskLimits()
    assert f.enabled is True
    assert s.dhan.rest_url == "https://api.dhan.co/v2"
    assert s.dhan.order_ws_url == "wss://api-order-update.dhan.co"
    assert s.dhan.timeout_s == 10
    assert (s.limiter.headroom, s.limiter.per_second, s.limiter.per_minute) == (0.0, 10, 250)
    assert (s.limiter.per_hour, s.limiter.per_day) == (1000, 7000)
    assert s.db_path == default_db_path()  # the per-user data directory, not the cwd
    assert s.enforce_market_hours is True
    assert s.holiday_override_file is None
    assert s.reconcile_interval_s == 30
    assert s.leader_idle_timeout_s == 60
    assert s.leader_dark_kill_after_s is None
    assert s.activate_dhan_kill_switch is False
    assert s.log_level == "INFO"


def test_nested_delimiter_and_scalars() -> None:
    s = load_settings(
        env_file=None,
        environ=env(
            COPYTRADE_DHAN__REST_URL="http://127.0.0.1:8765/v2/",
            COPYTRADE_DHAN__ORDER_WS_URL="ws://127.0.0.1:8765/",
            COPYTRADE_DHAN__TIMEOUT_S="2.5",
            COPYTRADE_LIMITER__HEADROOM="0.2",
            COPYTRADE_LIMITER__PER_SECOND="5",
            COPYTRADE_DB_PATH="/tmp/x.db",
            COPYTRADE_ENFORCE_MARKET_HOURS="false",
            COPYTRADE_LEADER_DARK_KILL_AFTER_S="120",
            COPYTRADE_ACTIVATE_DHAN_KILL_SWITCH="true",
            COPYTRADE_LOG_LEVEL="debug",
            COPYTRADE_HOLIDAY_OVERRIDE_FILE="",  # blank means default
            UNRELATED_VARIABLE="ignored",
        ),
    )
    assert s.dhan.rest_url == "http://127.0.0.1:8765/v2"
    assert s.dhan.order_ws_url == "ws://127.0.0.1:8765/"
    assert s.dhan.timeout_s == 2.5
    assert s.limiter.headroom == 0.2
    assert s.limiter.per_second == 5
    assert s.db_path == Path("/tmp/x.db")
    assert s.enforce_market_hours is False
    assert s.leader_dark_kill_after_s == 120
    assert s.activate_dhan_kill_switch is True
    assert s.log_level == "DEBUG"
    assert s.holiday_override_file is None


def test_env_wins_over_dotenv(tmp_path: Path) -> None:
    dotenv = tmp_path / "custom.env"
    dotenv.write_text(
        "# comment\n"
        "COPYTRADE_LEADER__CLIENT_ID=1000000009\n"
        f"COPYTRADE_LEADER__ACCESS_TOKEN={LEADER_TOKEN}\n"
        f"COPYTRADE_FOLLOWERS='{json.dumps([follower('bob', '3000000001', F2_TOKEN)])}'\n"
        "COPYTRADE_DB_PATH=from-file.db\n"
        "COPYTRADE_LIMITER__PER_MINUTE=100\n"
        "COPYTRADE_RECONCILE_INTERVAL_S=15\n"
    )
    only_file = load_settings(env_file=dotenv, environ={})
    assert only_file.leader.client_id == "1000000009"
    assert only_file.followers[0].name == "bob"
    assert only_file.db_path == Path("from-file.db")
    assert only_file.limiter.per_minute == 100
    assert only_file.reconcile_interval_s == 15

    both = load_settings(
        env_file=dotenv,
        environ={"COPYTRADE_DB_PATH": "from-env.db", "COPYTRADE_LIMITER__PER_MINUTE": "200"},
    )
    assert both.db_path == Path("from-env.db")
    assert both.limiter.per_minute == 200
    assert both.leader.client_id == "1000000009"  # still from the file


def test_default_dotenv_may_be_absent_but_explicit_file_must_exist(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_settings(environ=env()).leader.client_id == "1000000001"
    text = load_error(env(), env_file=tmp_path / "nope.env")
    assert text == f"env file {tmp_path / 'nope.env'}: not found"


def test_reads_os_environ_when_no_mapping_given(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in env().items():
        monkeypatch.setenv(key, value)
    assert load_settings(env_file=None).followers[0].name == "alice"


def test_followers_with_each_sizing_kind() -> None:
    followers = [
        follower(
            "half",
            "2000000001",
            F1_TOKEN,
            sizing={"kind": "multiplier", "multiplier": 0.5},
            filters={"segments": ["NSE_FNO"], "products": ["INTRADAY"], "options_only": True},
            bounds={"min_qty": 1, "max_qty": 500},
        ),
        follower("capital", 2000000002, F2_TOKEN, sizing={"kind": "capital_ratio", "factor": 2}),
        follower(
            "one-lot",
            "2000000003",
            "third-token-DDDD",
            sizing={"kind": "fixed_lots", "lots": 1},
            risk={"max_lots": 4, "on_loss_breach": "kill_engine"},
            enabled=False,
        ),
    ]
    s = load_settings(env_file=None, environ=env(followers))
    half, capital, one = s.followers
    assert half.sizing == MultiplierSizing(multiplier=0.5)
    assert half.filters.segments == (Segment.NSE_FNO,)
    assert half.filters.products == (Product.INTRADAY,)
    assert half.filters.options_only is True
    assert half.bounds.max_qty == 500
    assert capital.client_id == "2000000002"  # a JSON number is accepted
    assert capital.sizing == CapitalRatioSizing(factor=2)
    assert one.sizing == FixedLotsSizing(lots=1)
    assert one.risk.on_loss_breach == "kill_engine"
    assert one.enabled is False


def test_missing_leader_names_the_key() -> None:
    environ = env()
    del environ["COPYTRADE_LEADER__ACCESS_TOKEN"]
    assert load_error(environ) == (
        "COPYTRADE_LEADER__ACCESS_TOKEN is missing (or set COPYTRADE_LEADER__PIN and"
        " COPYTRADE_LEADER__TOTP_SECRET to mint tokens)"
    )
    del environ["COPYTRADE_LEADER__CLIENT_ID"]
    assert load_error(environ).startswith("COPYTRADE_LEADER is missing")


def test_missing_followers() -> None:
    environ = env()
    del environ["COPYTRADE_FOLLOWERS"]
    assert load_error(environ).startswith("COPYTRADE_FOLLOWERS is missing")
    assert load_error(env("[]")) == "COPYTRADE_FOLLOWERS: must list at least one follower"


def test_bad_json_in_followers() -> None:
    text = load_error(env(f'[{{"name": "a", "access_token": "{F1_TOKEN}",}}'))
    assert text.startswith("COPYTRADE_FOLLOWERS: is not valid JSON")
    text = load_error(env(json.dumps(follower("a", "2000000001", F1_TOKEN))))
    assert text == "COPYTRADE_FOLLOWERS: must be a JSON list of followers, not a single object"


def test_bad_json_in_a_nested_section() -> None:
    assert load_error(env(COPYTRADE_DHAN="{oops")) == "COPYTRADE_DHAN: is not valid JSON"


def test_duplicate_follower_names_and_client_ids() -> None:
    dup_names = [
        follower("alice", "2000000001", F1_TOKEN),
        follower("alice", "2000000002", F2_TOKEN),
    ]
    text = load_error(env(dup_names))
    assert text == "COPYTRADE_FOLLOWERS: follower name 'alice' appears twice (index 1)"
    dup_ids = [
        follower("alice", "2000000001", F1_TOKEN),
        follower("bob", "2000000001", F2_TOKEN),
    ]
    assert "client id 2000000001 appears twice" in load_error(env(dup_ids))
    leader_as_follower = [follower("alice", "1000000001", F1_TOKEN)]
    assert load_error(env(leader_as_follower)).startswith(
        "COPYTRADE_FOLLOWERS[0].client_id: is the leader's client id"
    )


def test_negative_multiplier_names_the_json_path() -> None:
    followers = [
        follower("alice", "2000000001", F1_TOKEN),
        follower("bob", "2000000002", F2_TOKEN, sizing={"kind": "multiplier", "multiplier": -1}),
    ]
    text = load_error(env(followers))
    assert text == "COPYTRADE_FOLLOWERS[1].sizing.multiplier: must be greater than 0"


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"COPYTRADE_LEADER__CLIENT_ID": "12ab"}, "COPYTRADE_LEADER__CLIENT_ID: must be"),
        ({"COPYTRADE_LEADER__ACCESS_TOKEN": "   "}, "COPYTRADE_LEADER__ACCESS_TOKEN: must not"),
        ({"COPYTRADE_LEADER__ACCES_TOKEN": "x"}, "COPYTRADE_LEADER__ACCES_TOKEN: is not a known"),
        ({"COPYTRADE_LIMITER__HEADROOM": "0.9"}, "COPYTRADE_LIMITER__HEADROOM: must be less"),
        ({"COPYTRADE_DHAN__REST_URL": "ftp://x"}, "COPYTRADE_DHAN__REST_URL: must start"),
        ({"COPYTRADE_RECONCILE_INTERVAL_S": "0"}, "COPYTRADE_RECONCILE_INTERVAL_S: must be"),
        ({"COPYTRADE_LOG_LEVEL": "loud"}, "COPYTRADE_LOG_LEVEL: must be one of"),
        ({"COPYTRADE_ENFORCE_MARKET_HOURS": "maybe"}, "COPYTRADE_ENFORCE_MARKET_HOURS: must be"),
    ],
)
def test_one_line_errors(overrides: dict[str, str], expected: str) -> None:
    assert load_error(env(**overrides)).startswith(expected)


def test_bad_follower_fields() -> None:
    followers = [
        follower("bad name!", "2000000001", F1_TOKEN),
        follower("ok", "2000000002", "", sizing={"kind": "fixed_lots", "lots": 1, "x": 1}),
        {"name": "no-token", "client_id": "2000000003", "sizng": {}},
    ]
    problems = load_error(env(followers)).split("; ")
    assert problems == [
        "COPYTRADE_FOLLOWERS[0].name: must be 1 to 24 letters, digits, '_' or '-'",
        "COPYTRADE_FOLLOWERS[1].access_token: must not be empty",
        "COPYTRADE_FOLLOWERS[1].sizing.x: is not a known setting (check the spelling)",
        "COPYTRADE_FOLLOWERS[2].access_token is missing (or set COPYTRADE_FOLLOWERS[2].pin and"
        " COPYTRADE_FOLLOWERS[2].totp_secret to mint tokens)",
        "COPYTRADE_FOLLOWERS[2].sizng: is not a known setting (check the spelling)",
    ]


def test_tokens_never_echoed_even_in_odd_places() -> None:
    followers = [
        follower("alice", "2000000001", F1_TOKEN),
        # the token pasted into the wrong field, and a token where a number belongs
        {"name": "bob", "client_id": F2_TOKEN, "access_token": F2_TOKEN},
        follower("carol", "2000000003", 12345),
    ]
    text = load_error(env(followers, COPYTRADE_LIMITER__PER_DAY=LEADER_TOKEN))
    assert "COPYTRADE_FOLLOWERS[1].client_id" in text
    assert "COPYTRADE_LIMITER__PER_DAY" in text
    assert "COPYTRADE_FOLLOWERS[2].access_token: must be a string" in text


def test_jwt_shaped_value_not_echoed() -> None:
    jwt = ".".join(
        ("eyJhbGciOiJIUzUxMiJ9", "eyJkaGFuQ2xpZW50SWQiOiIxIn0", "c2lnbmF0dXJlc2lnbmF0dXJl")
    )  # fake; no token-shaped text committed
    text = load_error(env(COPYTRADE_LEADER__CLIENT_ID=jwt))
    assert jwt not in text


def test_repr_and_str_hide_tokens() -> None:
    followers = [follower("alice", "2000000001", F1_TOKEN), follower("b", "2000000002", F2_TOKEN)]
    s = load_settings(env_file=None, environ=env(followers))
    for text in (repr(s), str(s), repr(s.followers), s.model_dump_json()):
        for token in (LEADER_TOKEN, F1_TOKEN, F2_TOKEN):
            assert token not in text


def test_tokens_registered_for_redaction(caplog: pytest.LogCaptureFixture) -> None:
    secrets.clear_secrets()
    followers = [follower("alice", "2000000001", F1_TOKEN), follower("b", "2000000002", F2_TOKEN)]
    load_settings(env_file=None, environ=env(followers))
    assert secrets.redact(f"{LEADER_TOKEN} {F1_TOKEN} {F2_TOKEN}") == "*** *** ***"


def test_tokens_registered_even_when_loading_fails() -> None:
    secrets.clear_secrets()
    followers = [follower("alice", "2000000001", F1_TOKEN, sizing={"kind": "nope"})]
    with pytest.raises(ConfigError):
        load_settings(env_file=None, environ=env(followers))
    assert secrets.redact(F1_TOKEN) == "***"
    assert secrets.redact(LEADER_TOKEN) == "***"
    logging.getLogger(__name__).debug("registry still works")


def test_unknown_keys_are_refused_with_the_closest_valid_one(tmp_path: Path) -> None:
    text = load_error(env(COPYTRADE_LEADER_DARK_KILL_AFTER="120"))
    assert text == (
        "COPYTRADE_LEADER_DARK_KILL_AFTER: is not a known setting"
        " (did you mean COPYTRADE_LEADER_DARK_KILL_AFTER_S?)"
    )
    text = load_error(env(copytrade_limiter__per_secnd="5"))
    assert text.endswith("(did you mean COPYTRADE_LIMITER__PER_SECOND?)")
    assert "COPYTRADE_LOG_LEVL: is not a known" in load_error(env(COPYTRADE_LOG_LEVL=""))
    text = load_error(env(COPYTRADE_SOMETHING_ELSE="x"))
    assert text == (
        "COPYTRADE_SOMETHING_ELSE: is not a known setting (see .env.example for the valid keys)"
    )
    dotenv = tmp_path / "typo.env"
    dotenv.write_text("COPYTRADE_RECONCILE_INTERVAL=15\n")
    assert "did you mean COPYTRADE_RECONCILE_INTERVAL_S?" in load_error(env(), env_file=dotenv)


def test_a_whole_section_as_json_and_its_keys_over_it() -> None:
    s = load_settings(
        env_file=None,
        environ=env(
            COPYTRADE_DHAN='{"rest_url": "http://127.0.0.1:1/v2", "timeout_s": 3}',
            COPYTRADE_DHAN__TIMEOUT_S="4",
        ),
    )
    assert (s.dhan.rest_url, s.dhan.timeout_s) == ("http://127.0.0.1:1/v2", 4)
    assert load_error(env(COPYTRADE_DHAN="[1]")) == "COPYTRADE_DHAN: must be a JSON object"


def test_follower_named_leader_is_refused() -> None:
    for name in ("leader", "LEADER", "Leader"):
        text = load_error(env([follower(name, "2000000001", F1_TOKEN)]))
        assert text.startswith("COPYTRADE_FOLLOWERS[0].name: is reserved for the leading account")


def test_every_follower_disabled_is_refused() -> None:
    followers = [follower("a", "2000000001", F1_TOKEN, enabled=False)]
    assert load_error(env(followers)).startswith("COPYTRADE_FOLLOWERS: every follower is disabled")


def test_limits_above_dhans_refused_except_against_a_loopback_simulator() -> None:
    text = load_error(env(COPYTRADE_LIMITER__PER_SECOND="11", COPYTRADE_LIMITER__PER_DAY="9000"))
    assert text == (
        "COPYTRADE_LIMITER__PER_SECOND: 11 is above Dhan's limit of 10 orders per second; "
        "COPYTRADE_LIMITER__PER_DAY: 9000 is above Dhan's limit of 7000 orders per day"
    )
    s = load_settings(
        env_file=None,
        environ=env(
            COPYTRADE_LIMITER__PER_HOUR="100000", COPYTRADE_DHAN__REST_URL="http://127.0.0.1:9/v2"
        ),
    )
    assert s.limiter.per_hour == 100000


def test_files_named_by_the_settings_are_checked(tmp_path: Path) -> None:
    not_sqlite = tmp_path / "notes.db"
    not_sqlite.write_text("just some text, not a database\n")
    assert load_error(env(COPYTRADE_DB_PATH=str(not_sqlite))) == (
        f"COPYTRADE_DB_PATH: {not_sqlite} exists and is not an SQLite database"
    )
    assert load_error(env(COPYTRADE_DB_PATH=str(tmp_path))).startswith("COPYTRADE_DB_PATH: ")
    empty = tmp_path / "empty.db"
    empty.touch()
    assert load_settings(env_file=None, environ=env(COPYTRADE_DB_PATH=str(empty))).db_path == empty
    missing = tmp_path / "holidays.json"
    assert load_error(env(COPYTRADE_HOLIDAY_OVERRIDE_FILE=str(missing))) == (
        f"COPYTRADE_HOLIDAY_OVERRIDE_FILE: market calendar override {missing}: file not found"
    )
    missing.write_text("{not json")
    text = load_error(env(COPYTRADE_HOLIDAY_OVERRIDE_FILE=str(missing)))
    assert text.startswith("COPYTRADE_HOLIDAY_OVERRIDE_FILE: ") and "not valid JSON" in text
    scrips = tmp_path / "scrips.csv"
    assert load_error(env(COPYTRADE_INSTRUMENTS_FILE=str(scrips))) == (
        f"COPYTRADE_INSTRUMENTS_FILE: {scrips}: file not found"
    )
    scrips.write_text("A,B\n1,2\n")
    assert "not a Dhan scrip master (missing SEM_EXM_EXCH_ID" in load_error(
        env(COPYTRADE_INSTRUMENTS_FILE=str(scrips))
    )


def test_unparseable_env_file_line_is_refused_by_number(tmp_path: Path) -> None:
    dotenv = tmp_path / "broken.env"
    dotenv.write_text(f"COPYTRADE_LEADER__ACCESS_TOKEN={LEADER_TOKEN}\nCOPYTRADE_DB_PATH='x\n")
    text = load_error({}, env_file=dotenv)
    assert text == f"env file {dotenv} line 2: cannot parse (expected NAME=value)"


def _env_keys(model: type[Any], prefix: str) -> set[str]:
    keys: set[str] = set()
    for name, field in model.model_fields.items():
        sub = field.annotation
        key = prefix + name.upper()
        if isinstance(sub, type) and hasattr(sub, "model_fields") and name != "followers":
            keys |= _env_keys(sub, key + "__")
        else:
            keys.add(key)
    return keys


def test_env_example_documents_every_key_and_loads() -> None:
    example = Path(__file__).resolve().parents[2] / ".env.example"
    lines = example.read_text().splitlines()
    documented = {line.split("=", 1)[0] for line in lines if line.startswith("COPYTRADE_")}
    assert documented == _env_keys(Settings, "COPYTRADE_")
    for i, line in enumerate(lines):
        if line.startswith("COPYTRADE_"):
            assert lines[i - 1].startswith("#") or lines[i - 1].startswith("COPYTRADE_"), line
    s = load_settings(env_file=example, environ={})
    half, one = s.followers
    assert half.sizing == MultiplierSizing(multiplier=0.5)
    assert half.filters.segments == (Segment.NSE_FNO,)
    assert one.sizing == FixedLotsSizing(lots=1)
