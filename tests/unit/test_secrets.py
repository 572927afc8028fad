"""Secret registry, redaction and the logging filter."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from engine import secrets
from engine.secrets import (
    RedactingFilter,
    clear_secrets,
    install_log_redaction,
    redact,
    register_secret,
)

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
