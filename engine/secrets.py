"""Keep secrets inside the process: a registry of secret strings and log redaction.

Every access token is registered here when the settings load (see ``engine.config``).
``redact`` then replaces each registered secret, and anything shaped like a JWT (Dhan's
access tokens are JWTs), with ``***``. ``install_log_redaction`` makes every log record pass
through ``redact`` before any handler formats it, and keeps the ``websockets`` logger out of
DEBUG, where it would log raw frames, the login frame with the token included.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterable
from typing import Any

__all__ = [
    "MASK",
    "REDACTED_LOGGERS",
    "RedactingFilter",
    "clear_secrets",
    "install_log_redaction",
    "redact",
    "redact_fields",
    "redact_json",
    "register_secret",
    "registered_secret_count",
    "secrets_version",
]

MASK = "***"

# Loggers that see request headers, socket frames or SDK payloads.
REDACTED_LOGGERS: tuple[str, ...] = ("websockets", "aiohttp", "urllib3", "dhanhq", "root")

# A JWT: three base64url parts, the first starting with the encoding of '{"'.
_JWT = r"eyJ[A-Za-z0-9_\-]+={0,2}\.[A-Za-z0-9_\-]+={0,2}\.[A-Za-z0-9_\-]+={0,2}"
# Dhan's mint call carries the PIN and the TOTP code in its query string, and urllib3 logs
# request lines at DEBUG: mask the values of those parameters wherever a URL is printed.
# The parameter's name is matched (and given back by _mask), not looked behind for: with every
# alternative starting on a character, the regex engine skips ahead to the characters that
# can start one, where a lookbehind would be tried at every position (~2x the cost per text).
_QUERY_SECRET = r"(?P<param>[?&](?:pin|totp|PIN|TOTP)=)[^&\s\"'#]+"

_lock = threading.Lock()
_secrets: set[str] = set()
_pattern: re.Pattern[str] = re.compile(f"{_JWT}|{_QUERY_SECRET}")
_stale = False  # secrets changed since _pattern was built: rebuilt at the next redact
_version = 0  # bumped whenever the set of secrets changes


def _changed() -> None:
    """The set changed: the pattern is built again when next needed, once for a whole batch
    (startup registers every account's secrets one by one: 200 accounts built 200 tries)."""
    global _stale, _version
    _version += 1
    _stale = True


def _current_pattern() -> re.Pattern[str]:
    global _pattern, _stale
    if not _stale:
        return _pattern
    with _lock:
        if _stale:
            digits = {secret for secret in _secrets if secret.isdigit()}
            words = _secrets - digits
            alternatives = [_trie_pattern(words)] if words else []
            if digits:
                alternatives.append(_standalone_digits_pattern(digits))
            alternatives.append(_JWT)
            alternatives.append(_QUERY_SECRET)
            _pattern = re.compile("|".join(alternatives))
            _stale = False
        return _pattern


def _trie_pattern(words: Iterable[str]) -> str:
    """One regex matching any of ``words``, factored as a trie.

    A flat alternation of N secrets is tried secret by secret at every position of every text
    redacted (with 200 follower tokens, ~100 us per line); the trie is tried character by
    character (~13 us). Each optional ending is greedy, so, as before, the longest secret
    starting at a position is masked whole.
    """
    trie: dict[str, Any] = {}
    for word in words:
        node = trie
        for ch in word:
            node = node.setdefault(ch, {})
        node[""] = {}  # a secret ends here

    def build(node: dict[str, Any]) -> str:
        out = ""
        while True:  # a chain of single characters needs no group (and no recursion)
            keys = sorted(k for k in node if k)
            ends = "" in node
            if len(keys) == 1 and not ends:
                out += re.escape(keys[0])
                node = node[keys[0]]
                continue
            if not keys:
                return out
            branches = "|".join(re.escape(k) + build(node[k]) for k in keys)
            return out + f"(?:{branches})" + ("?" if ends else "")

    return f"(?:{build(trie)})"


def _standalone_digits_pattern(secrets: Iterable[str]) -> str:
    """Digits-only secrets (PINs), matched only where they stand alone: not inside a longer
    run of digits or letters. A 4-digit PIN is found inside order ids, prices, timestamps and
    correlationIds all day long; masked there, it turned an order id into ``100000***`` and a
    stored record into text that no longer reads back, and revealed nothing.

    Each first digit is matched before the look behind it (an alternative opening on a
    character keeps the scan of every text as fast as before)."""
    by_first: dict[str, set[str]] = {}
    for secret in secrets:
        by_first.setdefault(secret[0], set()).add(secret[1:])
    branches = []
    for first, rests in sorted(by_first.items()):
        head = re.escape(first) + f"(?<![0-9A-Za-z]{re.escape(first)})"
        branches.append(head + (_trie_pattern(rests) if rests != {""} else ""))
    return f"(?:{'|'.join(branches)})(?![0-9A-Za-z])"


def register_secret(value: str | None) -> None:
    """Remember a secret so that ``redact`` masks it from now on (blank values are ignored)."""
    if not value or not value.strip():
        return
    value = value.strip()
    with _lock:
        if value in _secrets:
            return
        _secrets.add(value)
        _changed()


def registered_secret_count() -> int:
    with _lock:
        return len(_secrets)


def secrets_version() -> int:
    """Changes whenever a secret is registered or the registry is cleared: a text redacted
    earlier may be reused only while it is unchanged."""
    return _version


def clear_secrets() -> None:
    """Forget every registered secret (for tests)."""
    with _lock:
        _secrets.clear()
        _changed()


def redact(text: str) -> str:
    """``text`` with every registered secret, every JWT-shaped string and the values of
    ``pin=``/``totp=`` URL parameters replaced by ``***``."""
    if not text:
        return text
    return _current_pattern().sub(_mask, text)


# A string of digits and the punctuation of numbers, dates and times (an order id, a price, a
# timestamp) holds no secret, only digits a PIN may share with it.
_NOT_TEXT = re.compile(r"[0-9:.+\-TZ ]*")


def redact_fields(data: Any) -> Any:
    """JSON-shaped ``data`` (dicts, lists, strings, numbers) with secrets masked in its text
    strings; numbers, and strings that are a number, a date or an id, are kept whole.

    For JSON that must stay JSON: masked across the text, a PIN that is also a quantity
    leaves ``"quantity":***``, and one that is also a year breaks every date."""
    if isinstance(data, str):
        return data if _NOT_TEXT.fullmatch(data) else redact(data)
    if isinstance(data, dict):
        return {key: redact_fields(item) for key, item in data.items()}
    if isinstance(data, list | tuple):
        return [redact_fields(item) for item in data]
    return data


def redact_json(data: Any, dumps: Callable[[Any], str]) -> str:
    """``dumps(data)`` with secrets masked, and still JSON: as it is when there is nothing to
    mask (one scan of the text), else masked field by field (``redact_fields``)."""
    text = dumps(data)
    return text if redact(text) == text else dumps(redact_fields(data))


def _mask(match: re.Match[str]) -> str:
    return (match.group("param") or "") + MASK


class RedactingFilter(logging.Filter):
    """Rewrites a log record so that no handler can print a secret; never drops a record.

    The message is merged with its args and redacted, the traceback is rendered and redacted
    into ``exc_text`` (``exc_info`` is dropped so no handler renders it raw again), and the
    stack text is redacted too. Applying it twice is harmless.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        _redact_record(record)
        return True


_formatter = logging.Formatter()


def _redact_record(record: logging.LogRecord) -> None:
    try:
        message = record.getMessage()
    except Exception:  # a malformed format string: redact its parts instead
        message = str(record.msg)
        if record.args:
            args = record.args if isinstance(record.args, tuple) else (record.args,)
            message += " " + " ".join(str(a) for a in args)
    record.msg = redact(message)
    record.args = None
    if record.exc_info:
        if not record.exc_text:
            record.exc_text = _formatter.formatException(record.exc_info)
        record.exc_info = None
    if record.exc_text:
        record.exc_text = redact(record.exc_text)
    if record.stack_info:
        record.stack_info = redact(record.stack_info)


_install_lock = threading.Lock()
_original_factory: Callable[..., logging.LogRecord] | None = None


def _redacting_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
    assert _original_factory is not None
    record = _original_factory(*args, **kwargs)
    _redact_record(record)
    return record


def _attach(filterers: Iterable[logging.Filterer]) -> None:
    for item in filterers:
        if not any(isinstance(f, RedactingFilter) for f in item.filters):
            item.addFilter(RedactingFilter())


def install_log_redaction() -> None:
    """Make every log record secret-free before any handler sees it. Idempotent.

    - adds a ``RedactingFilter`` to each handler of the root logger, and to the loggers
      ``websockets``, ``aiohttp``, ``urllib3``, ``dhanhq`` and ``root`` (and their handlers);
    - wraps the log-record factory, so records of child loggers (``websockets.client``)
      and handlers added after this call are redacted as well;
    - raises the ``websockets`` logger to at least INFO: its DEBUG output logs every frame.

    Call it again after adding handlers to the root logger if they must carry the filter
    themselves; the record factory already covers them.
    """
    global _original_factory
    with _install_lock:
        root = logging.getLogger()
        _attach(root.handlers)
        for name in REDACTED_LOGGERS:
            logger = root if name == "root" else logging.getLogger(name)
            _attach([logger])
            _attach(logger.handlers)
        ws = logging.getLogger("websockets")
        if ws.level == logging.NOTSET or ws.level < logging.INFO:
            ws.setLevel(logging.INFO)
        for child in ("websockets.client", "websockets.server", "websockets.protocol"):
            child_logger = logging.getLogger(child)
            if child_logger.level != logging.NOTSET and child_logger.level < logging.INFO:
                child_logger.setLevel(logging.INFO)
        if logging.getLogRecordFactory() is not _redacting_factory:
            _original_factory = logging.getLogRecordFactory()
            logging.setLogRecordFactory(_redacting_factory)
