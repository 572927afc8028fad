"""Secret registry, redaction and the logging filter."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import keyring
import pyotp
import pytest
from keyring.backend import KeyringBackend
from keyring.backends import fail

from engine import secrets
from engine.clock import IST, ManualClock
from engine.config import ConfigError, load_settings
from engine.domain import Alert, Severity
from engine.secrets import (
    RedactingFilter,
    clear_secrets,
    install_log_redaction,
    redact,
    register_secret,
)
from engine.store import Store, WriteBatch
from tests.leaks import leaked_secrets, secret_in_bytes
from tests.tui.fakes import FakeEngine, FixedClock, alert_raised
from tui.app import CopyTradeApp

TOKEN = "tok-SECRET-0123456789abcdef"
JWT = (
    "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzUxMiJ9"
    ".eyJpc3MiOiJkaGFuIiwiZGhhbkNsaWVudElkIjoiMTAwMDAwMDAwMSJ9"
    ".c2lnbmF0dXJlLXNpZ25hdHVyZS1zaWduYXR1cmU"
)


@pytest.fixture(autouse=True)
def _clean_registry() -> Iterator[None]:
    clear_secrets()
    yield
    clear_secrets()


def test_redact_registered_secret_everywhere() -> None:
    register_secret(TOKEN)
    text = f"header access-token={TOKEN}; again {TOKEN}!"
    assert redact(text) == "header access-token=***; again ***!"


def test_redact_jwt_shaped_strings_without_registration() -> None:
    assert redact(f'{{"Token":"{JWT}"}}') == '{"Token":"***"}'


def test_redact_leaves_ordinary_text_alone() -> None:
    register_secret(TOKEN)
    text = "order 112111182198 placed; eyJ alone is fine; a.b.c too"
    assert redact(text) == text


def test_a_pin_is_masked_where_it_stands_alone_not_inside_a_number_or_an_id() -> None:
    register_secret("4821")
    assert redact("pin 4821 refused; PIN:4821 (4821)") == "pin *** refused; PIN:*** (***)"
    # Inside an order id, a timestamp, a price or a correlationId it reveals nothing, and
    # masked there it broke the number (and a stored record with it).
    kept = "order 1000004821 at 10:15:03.482150, price 14821.5, CPY-4821SESV"
    assert redact(kept) == kept


def test_pins_sharing_first_digits_are_each_masked_whole() -> None:
    for pin in ("4821", "48217", "4899"):
        register_secret(pin)
    assert redact("4821 48217 4899 48210") == "*** *** *** 48210"


def test_longest_secret_masked_whole() -> None:
    register_secret("abcd1234")
    register_secret("abcd1234-and-more")
    assert redact("x abcd1234-and-more y abcd1234") == "x *** y ***"


def test_blank_secrets_ignored_and_registration_idempotent() -> None:
    register_secret("")
    register_secret("   ")
    register_secret(None)
    assert secrets.registered_secret_count() == 0
    register_secret(TOKEN)
    register_secret(TOKEN)
    assert secrets.registered_secret_count() == 1


def test_secret_with_regex_characters() -> None:
    weird = "a.b*c+(d)[e]"
    register_secret(weird)
    assert redact(f"<{weird}> aXbbc") == "<***> aXbbc"


def test_filter_redacts_msg_args_and_exception(caplog: pytest.LogCaptureFixture) -> None:
    register_secret(TOKEN)
    logger = logging.getLogger("test.secrets.filter")
    logger.addFilter(RedactingFilter())
    try:
        with caplog.at_level(logging.DEBUG, logger="test.secrets.filter"):
            logger.info("login with %s", TOKEN)
            logger.info(f"inline {TOKEN}")
            logger.info("dict args %(tok)s", {"tok": TOKEN})
            try:
                raise RuntimeError(f"boom {TOKEN} {JWT}")
            except RuntimeError:
                logger.exception("failed")
    finally:
        for f in list(logger.filters):
            logger.removeFilter(f)
    assert TOKEN not in caplog.text
    assert JWT not in caplog.text
    assert "login with ***" in caplog.text
    assert "inline ***" in caplog.text
    assert "dict args ***" in caplog.text
    assert "RuntimeError: boom *** ***" in caplog.text


def test_filter_survives_bad_format_string() -> None:
    register_secret(TOKEN)
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "bad %d %s", (TOKEN,), None)
    assert RedactingFilter().filter(record) is True
    assert TOKEN not in record.getMessage()


@pytest.fixture
def _restore_logging() -> Iterator[None]:
    factory = logging.getLogRecordFactory()
    ws = logging.getLogger("websockets")
    level = ws.level
    named = {n: list(logging.getLogger(n).filters) for n in secrets.REDACTED_LOGGERS}
    root_handlers = {h: list(h.filters) for h in logging.getLogger().handlers}
    yield
    logging.setLogRecordFactory(factory)
    ws.setLevel(level)
    for name, filters in named.items():
        logging.getLogger(name).filters[:] = filters
    for handler, filters in root_handlers.items():
        handler.filters[:] = filters


@pytest.mark.usefixtures("_restore_logging")
def test_install_is_idempotent_and_caps_websockets(caplog: pytest.LogCaptureFixture) -> None:
    register_secret(TOKEN)
    logging.getLogger("websockets").setLevel(logging.DEBUG)
    install_log_redaction()
    install_log_redaction()
    assert logging.getLogger("websockets").level == logging.INFO
    for name in ("websockets", "aiohttp", "urllib3", "dhanhq"):
        filters = logging.getLogger(name).filters
        assert sum(isinstance(f, RedactingFilter) for f in filters) == 1, name
    root = logging.getLogger()
    assert sum(isinstance(f, RedactingFilter) for f in root.filters) == 1
    for handler in root.handlers:
        assert sum(isinstance(f, RedactingFilter) for f in handler.filters) == 1

    with caplog.at_level(logging.DEBUG):
        # A child logger: logger-level filters on "websockets" do not see its records,
        # the handler filter and the record factory do.
        logging.getLogger("websockets.client").info('> TEXT \'{"Token":"%s"}\'', TOKEN)
        logging.getLogger("dhanhq").warning("headers %s", {"access-token": TOKEN})
        logging.getLogger("some.app").error("jwt %s", JWT)
        logging.getLogger("websockets.client").debug("frame %s", TOKEN)  # below INFO
    assert TOKEN not in caplog.text
    assert JWT not in caplog.text
    assert "frame" not in caplog.text
    assert caplog.text.count("***") == 3


@pytest.mark.usefixtures("_restore_logging")
def test_install_keeps_a_quieter_websockets_level() -> None:
    logging.getLogger("websockets").setLevel(logging.ERROR)
    install_log_redaction()
    assert logging.getLogger("websockets").level == logging.ERROR


# --- canaries: PINs, TOTP secrets and tokens given to the settings --------------------------

PIN_CANARY = "739164"
FOLLOWER_PIN_CANARY = "52817306"
TOTP_CANARY = pyotp.random_base32()
FOLLOWER_TOTP_CANARY = pyotp.random_base32()
TOKEN_CANARY = "canary-token-7f3e9a1c5b2d"
FOLLOWER_TOKEN_CANARY = "canary-follower-token-0c4d8e"
CANARIES = (
    PIN_CANARY,
    FOLLOWER_PIN_CANARY,
    TOTP_CANARY,
    FOLLOWER_TOTP_CANARY,
    TOKEN_CANARY,
    FOLLOWER_TOKEN_CANARY,
)


def canary_env(**overrides: str) -> dict[str, str]:
    followers = [
        {
            "name": "alice",
            "client_id": "2000000001",
            "access_token": FOLLOWER_TOKEN_CANARY,
            "pin": FOLLOWER_PIN_CANARY,
            "totp_secret": FOLLOWER_TOTP_CANARY,
            "source_ip": "127.0.0.2",
        }
    ]
    env = {
        "COPYTRADE_LEADER__CLIENT_ID": "1000000001",
        "COPYTRADE_LEADER__ACCESS_TOKEN": TOKEN_CANARY,
        "COPYTRADE_LEADER__PIN": PIN_CANARY,
        "COPYTRADE_LEADER__TOTP_SECRET": TOTP_CANARY,
        "COPYTRADE_FOLLOWERS": json.dumps(followers),
    }
    env.update(overrides)
    return env


def all_canaries_in(text: str) -> list[str]:
    return leaked_secrets(CANARIES, text)


@pytest.mark.usefixtures("_restore_logging")
def test_settings_secrets_are_masked_in_logs(caplog: pytest.LogCaptureFixture) -> None:
    settings = load_settings(env_file=None, environ=canary_env())
    assert settings.leader.pin is not None and settings.leader.totp_secret is not None
    assert sorted(settings.secret_values()) == sorted(CANARIES)
    assert all_canaries_in(repr(settings)) == [] and all_canaries_in(str(settings)) == []
    install_log_redaction()
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("engine.test").info("settings %s", " ".join(CANARIES))
        logging.getLogger("urllib3.connectionpool").debug(
            '"POST /app/generateAccessToken?dhanClientId=1&pin=%s&totp=123456 HTTP/1.1" 200',
            PIN_CANARY,
        )
        try:
            raise RuntimeError(f"boom {FOLLOWER_TOTP_CANARY}")
        except RuntimeError:
            logging.getLogger("engine.test").exception("failed")
    assert all_canaries_in(caplog.text) == []
    assert "totp=123456" not in caplog.text


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"COPYTRADE_LEADER__PIN": "73a164"}, "COPYTRADE_LEADER__PIN"),
        ({"COPYTRADE_LEADER__TOTP_SECRET": "not-base32-at-all!"}, "COPYTRADE_LEADER__TOTP_SECRET"),
        ({"COPYTRADE_LEADER__TOTP_SECRET": "JBSWY3DP"}, "COPYTRADE_LEADER__TOTP_SECRET"),
        ({"COPYTRADE_LEADER__CLIENT_ID": PIN_CANARY + "x"}, "COPYTRADE_LEADER__CLIENT_ID"),
        ({"COPYTRADE_LEADER__CLIENT_ID": TOTP_CANARY}, "COPYTRADE_LEADER__CLIENT_ID"),
        ({"COPYTRADE_LEADER__SOURCE_IP": TOTP_CANARY}, "COPYTRADE_LEADER__SOURCE_IP"),
        ({"COPYTRADE_LEADER__PIN": ""}, "COPYTRADE_LEADER__TOTP_SECRET"),
        ({"COPYTRADE_DHAN__AUTH_URL": "ftp://x"}, "COPYTRADE_DHAN__AUTH_URL"),
    ],
)
def test_settings_errors_are_one_line_without_secrets(overrides: dict[str, str], key: str) -> None:
    env = canary_env(**overrides)
    with pytest.raises(ConfigError) as caught:
        load_settings(env_file=None, environ=env)
    text = str(caught.value)
    assert text.startswith(key), text
    assert "\n" not in text
    assert all_canaries_in(text) == []
    bad = next(iter(overrides.values()))
    if len(bad) >= 6:
        assert bad not in text


def test_an_address_this_machine_lacks_is_named() -> None:
    env = canary_env(COPYTRADE_LEADER__SOURCE_IP="192.0.2.77")
    with pytest.raises(ConfigError) as caught:
        load_settings(env_file=None, environ=env)
    assert str(caught.value).startswith(
        "COPYTRADE_LEADER__SOURCE_IP: 192.0.2.77 is not an address of this machine"
    )


def test_follower_pin_as_a_json_number_is_refused_without_echo() -> None:
    followers = [
        {
            "name": "alice",
            "client_id": "2000000001",
            "pin": 739164,
            "totp_secret": FOLLOWER_TOTP_CANARY,
        }
    ]
    env = canary_env(COPYTRADE_FOLLOWERS=json.dumps(followers))
    with pytest.raises(ConfigError) as caught:
        load_settings(env_file=None, environ=env)
    assert str(caught.value).startswith("COPYTRADE_FOLLOWERS[0].pin: must be given as text")
    assert "739164" not in str(caught.value)


def test_neither_token_nor_pin_is_one_clear_line() -> None:
    env = canary_env()
    for name in ("ACCESS_TOKEN", "PIN", "TOTP_SECRET"):
        del env[f"COPYTRADE_LEADER__{name}"]
    with pytest.raises(ConfigError) as caught:
        load_settings(env_file=None, environ=env)
    assert str(caught.value) == (
        "COPYTRADE_LEADER__ACCESS_TOKEN is missing (or set COPYTRADE_LEADER__PIN and"
        " COPYTRADE_LEADER__TOTP_SECRET to mint tokens)"
    )


def test_pin_and_totp_alone_are_enough() -> None:
    env = canary_env()
    del env["COPYTRADE_LEADER__ACCESS_TOKEN"]
    settings = load_settings(env_file=None, environ=env)
    assert settings.leader.access_token is None
    assert [t.get_secret_value() for t in settings.tokens()] == [FOLLOWER_TOKEN_CANARY]
    assert settings.followers[0].source_ip == "127.0.0.2"


async def test_the_database_never_holds_them(tmp_path: Path) -> None:
    load_settings(env_file=None, environ=canary_env())
    leak = "refused: " + " ".join(CANARIES)
    at = IST.localize(datetime(2026, 12, 1, 9, 15))
    async with await Store.open(tmp_path / "c.db", clock=ManualClock(at)) as store:
        await store.write_batch(
            WriteBatch(
                journal=[(at, "broker", "alice", "L1", leak)],
                alerts=[Alert("TOKEN_REFUSED", Severity.CRITICAL, leak, at, "alice")],
            )
        )
    for path in sorted(tmp_path.iterdir()):  # noqa: ASYNC240 (the store is closed)
        data = path.read_bytes()
        assert [c for c in CANARIES if secret_in_bytes(c, data)] == [], path.name


async def test_a_screenshot_never_shows_them() -> None:
    load_settings(env_file=None, environ=canary_env())
    engine = FakeEngine()
    app = CopyTradeApp(engine, clock=FixedClock())
    async with app.run_test(size=(160, 40)) as pilot:
        engine.publish(alert_raised("login failed: " + " ".join(CANARIES), code="TOKEN_REFUSED"))
        app.flush_events()
        await pilot.pause(0.05)
        screen = app.export_screenshot().replace("&#160;", " ")
        pane = " ".join(app.alerts_pane.lines())
    assert "login failed" in screen and "login failed" in pane
    assert all_canaries_in(screen) == [] and all_canaries_in(pane) == []


# --- secrets at rest: a secrets file, the keyring ---------------------------------------------


def write_private(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


def env_without_secrets(**extra: str) -> dict[str, str]:
    followers = [{"name": "Alice", "client_id": "2000000001"}]
    env = {
        "COPYTRADE_LEADER__CLIENT_ID": "1000000001",
        "COPYTRADE_FOLLOWERS": json.dumps(followers),
    }
    env.update(extra)
    return env


def test_secrets_file_in_dotenv_form_fills_every_account(tmp_path: Path) -> None:
    path = write_private(
        tmp_path / "secrets.env",
        f"COPYTRADE_LEADER__PIN={PIN_CANARY}\n"
        f"COPYTRADE_LEADER__TOTP_SECRET={TOTP_CANARY}\n"
        f"COPYTRADE_FOLLOWERS__ALICE__ACCESS_TOKEN={FOLLOWER_TOKEN_CANARY}\n",
    )
    settings = load_settings(
        env_file=None, environ=env_without_secrets(COPYTRADE_SECRETS_FILE=str(path))
    )
    assert settings.leader.pin is not None
    assert settings.leader.pin.get_secret_value() == PIN_CANARY
    assert settings.followers[0].access_token is not None
    assert settings.followers[0].access_token.get_secret_value() == FOLLOWER_TOKEN_CANARY
    assert redact(f"{PIN_CANARY} {TOTP_CANARY} {FOLLOWER_TOKEN_CANARY}") == "*** *** ***"


def test_secrets_file_in_toml_form_and_the_environment_wins(tmp_path: Path) -> None:
    path = write_private(
        tmp_path / "secrets.toml",
        f'[leader]\naccess_token = "{TOKEN_CANARY}"\n\n'
        f'[followers.alice]\npin = "{FOLLOWER_PIN_CANARY}"\n'
        f'totp_secret = "{FOLLOWER_TOTP_CANARY}"\n',
    )
    env = env_without_secrets(
        COPYTRADE_SECRETS_FILE=str(path), COPYTRADE_LEADER__ACCESS_TOKEN="from-the-environment"
    )
    settings = load_settings(env_file=None, environ=env)
    assert settings.leader.access_token is not None
    assert settings.leader.access_token.get_secret_value() == "from-the-environment"
    follower = settings.followers[0]
    assert follower.pin is not None and follower.pin.get_secret_value() == FOLLOWER_PIN_CANARY
    assert follower.access_token is None  # it mints from its PIN + TOTP


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_secrets_file_others_can_read_is_refused(tmp_path: Path, mode: int) -> None:
    path = write_private(tmp_path / "secrets.env", f"COPYTRADE_LEADER__PIN={PIN_CANARY}\n", mode)
    with pytest.raises(ConfigError) as caught:
        load_settings(env_file=None, environ=env_without_secrets(COPYTRADE_SECRETS_FILE=str(path)))
    text = str(caught.value)
    assert text == (
        f"COPYTRADE_SECRETS_FILE: {path} can be read by other users (mode {mode:o}); "
        f"run: chmod 600 {path}"
    )


@pytest.mark.parametrize(
    ("name", "text", "words"),
    [
        ("s.env", f"COPYTRADE_LEADER__PASSWORD={PIN_CANARY}\n", "is not a secret it may hold"),
        ("s.env", f"COPYTRADE_DHAN__REST_URL={PIN_CANARY}\n", "is not a secret it may hold"),
        ("s.toml", f'[leader]\npin = "{PIN_CANARY}\n', "not valid TOML"),
        ("s.toml", f'[dhan]\npin = "{PIN_CANARY}"\n', "is not a section it may hold"),
        ("s.toml", f"[leader]\npin = {PIN_CANARY}\n", "must be a string"),
    ],
)
def test_bad_secrets_file_is_one_line_without_values(
    tmp_path: Path, name: str, text: str, words: str
) -> None:
    path = write_private(tmp_path / name, text)
    with pytest.raises(ConfigError) as caught:
        load_settings(env_file=None, environ=env_without_secrets(COPYTRADE_SECRETS_FILE=str(path)))
    message = str(caught.value)
    assert message.startswith("COPYTRADE_SECRETS_FILE: ") and words in message
    assert PIN_CANARY not in message and "\n" not in message


def test_missing_secrets_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^COPYTRADE_SECRETS_FILE: .*nope.env: file not found$"):
        load_settings(
            env_file=None,
            environ=env_without_secrets(COPYTRADE_SECRETS_FILE=str(tmp_path / "nope.env")),
        )


class MemoryKeyring(KeyringBackend):
    """A keyring backend holding its passwords in a dict (a real backend, in memory)."""

    priority = 1

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.passwords: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.passwords.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.passwords[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        self.passwords.pop((service, username), None)


@pytest.fixture
def system_keyring() -> Iterator[None]:
    previous = keyring.get_keyring()
    yield
    keyring.set_keyring(previous)


@pytest.mark.usefixtures("system_keyring")
def test_keyring_fills_missing_secrets() -> None:
    memory = MemoryKeyring()
    keyring.set_keyring(memory)
    keyring.set_password("copytrade", "leader.pin", PIN_CANARY)
    keyring.set_password("copytrade", "leader.totp_secret", TOTP_CANARY)
    keyring.set_password("copytrade", "Alice.access_token", FOLLOWER_TOKEN_CANARY)
    settings = load_settings(env_file=None, environ=env_without_secrets(COPYTRADE_KEYRING="true"))
    assert settings.leader.totp_secret is not None
    assert settings.leader.totp_secret.get_secret_value() == TOTP_CANARY
    assert settings.followers[0].access_token is not None
    assert redact(PIN_CANARY) == "***"
    # not asked for: the keyring is not read at all
    with pytest.raises(ConfigError, match="COPYTRADE_LEADER__ACCESS_TOKEN is missing"):
        load_settings(env_file=None, environ=env_without_secrets())


@pytest.mark.usefixtures("system_keyring")
def test_no_keyring_backend_is_one_line_only_when_asked() -> None:
    keyring.set_keyring(fail.Keyring())  # type: ignore[no-untyped-call]
    with pytest.raises(ConfigError) as caught:
        load_settings(env_file=None, environ=env_without_secrets(COPYTRADE_KEYRING="true"))
    assert str(caught.value) == (
        "COPYTRADE_KEYRING: no system keyring is available on this machine"
    )
    env = env_without_secrets(
        COPYTRADE_LEADER__ACCESS_TOKEN=TOKEN_CANARY, COPYTRADE_KEYRING="false"
    )
    env["COPYTRADE_FOLLOWERS"] = json.dumps(
        [{"name": "alice", "client_id": "2000000001", "access_token": FOLLOWER_TOKEN_CANARY}]
    )
    assert load_settings(env_file=None, environ=env).keyring is False


def test_many_secrets_each_masked_whole_even_when_one_is_a_prefix_of_another() -> None:
    tokens = [f"tok-many-{i:03d}" for i in range(250)] + ["tok-many-0", "tok-many-0001x", "a.b*c"]
    for token in tokens:
        register_secret(token)
    for token in tokens:
        assert redact(f"before {token} after") == "before *** after"
    assert redact("tok-many-0001x tok-many-00 tok-many-") == "*** ***0 tok-many-"
    assert redact("a.b*c abbc") == "*** abbc"  # regex characters are literal


def test_many_secrets_registered_at_once_are_all_masked_and_built_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Startup registers every account's secrets one by one: the pattern is built once, at
    the first text redacted after them, and masks each of them."""
    secrets.clear_secrets()
    built: list[int] = []
    original = secrets._trie_pattern

    def counting(words: object) -> str:
        built.append(1)
        return original(words)  # type: ignore[arg-type]

    monkeypatch.setattr(secrets, "_trie_pattern", counting)
    tokens = [f"tok-many-{i:04d}-abcdefghij" for i in range(300)]
    try:
        version = secrets.secrets_version()
        for token in tokens:
            secrets.register_secret(token)
        assert secrets.secrets_version() > version  # cached redactions are not reused
        assert built == []
        text = " ".join(tokens[::37])
        assert secrets.redact(text) == " ".join(["***"] * len(tokens[::37]))
        assert secrets.redact(tokens[-1]) == "***"
        assert len(built) == 1
        secrets.register_secret("tok-one-more-abcdefghij")
        assert secrets.redact("x tok-one-more-abcdefghij y") == "x *** y"
        assert len(built) == 2
    finally:
        secrets.clear_secrets()
