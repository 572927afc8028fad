"""Typed results for the dhanhq SDK's ``{status, remarks, data}`` dicts.

The SDK never raises on HTTP errors and discards the status code; what is left is
``remarks`` (a dict with Dhan's ``error_code``/``error_message`` when the body was JSON, else the
exception text) and ``data``. :func:`classify` turns that into a :class:`BrokerResult`.

The one rule that matters for "never place twice": when we cannot tell whether a mutating call
(place / modify / cancel) reached Dhan's order system, the result is AMBIGUOUS, and the caller
must reconcile (``GET /orders/external/{correlationId}`` or ``GET /orders/{id}``) before
retrying. The same failure on a read is TRANSIENT: simply retry.

Classification (``code`` is ``remarks['error_code']``):

=============================================  ==================  ==================
Situation                                      mutating call       read
=============================================  ==================  ==================
status success                                 OK                  OK
DH-904, 805                                    RATE_LIMITED        RATE_LIMITED
DH-901, DH-902, 807, 808, 809, 810             AUTH_FAILED         AUTH_FAILED
DH-903, DH-905, DH-906, DH-911                 REFUSED             REFUSED *
DH-907                                         REFUSED             NOT_FOUND
DH-908, DH-909, DH-910, 800, unknown code      AMBIGUOUS           TRANSIENT
non-JSON body ("Expecting value", HTML 502)    AMBIGUOUS           TRANSIENT
transport error (timeout, refused, reset)      AMBIGUOUS           TRANSIENT
a request the SDK refused to build/send        REFUSED             REFUSED
=============================================  ==================  ==================

\\* on a read, an error whose message says "not found" / "no data" / "no record" is NOT_FOUND.

Live Dhan (facts §8b) also answers with bodies that carry no DH code: a framework 404
``{timestamp,status,error,path}`` (L10), ``{errorCode,httpStatus,internalErrorCode,...}`` or
``{"status":"failed","data":{code:msg}}`` (L13, possibly inside a 2xx). Those are never
NOT_FOUND: they are AMBIGUOUS (mutation) / TRANSIENT (read) with ``shape`` UNRECOGNISED, so a
caller can tell "Dhan said something we do not know" from a recognised Dhan error
(``shape`` DHAN_ERROR), a body that was not JSON (NOT_JSON) and no answer at all (TRANSPORT).
DH-904 is RATE_LIMITED whatever its ``errorType`` says (L11: it comes as Input_Exception).

Messages never contain the access token: :func:`sanitize` cuts everything after
``access-token``, replaces the account's token, and masks registered secrets and JWTs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from engine.dhan.codec import CodecError, parse_order_status
from engine.domain import OrderStatus
from engine.secrets import MASK, redact

__all__ = [
    "AnswerShape",
    "BrokerError",
    "BrokerResult",
    "ResultKind",
    "classify",
    "classify_exception",
    "not_sent",
    "sanitize",
]

_MAX_MESSAGE = 500


class ResultKind(StrEnum):
    OK = "OK"
    REFUSED = "REFUSED"  # Dhan said no; retrying the same request will not help
    RATE_LIMITED = "RATE_LIMITED"  # DH-904: back off, then retry
    AUTH_FAILED = "AUTH_FAILED"  # token invalid/expired or no API access: stop this account
    NOT_FOUND = "NOT_FOUND"  # a read for something Dhan does not have
    AMBIGUOUS = "AMBIGUOUS"  # a mutation that may or may not have happened: reconcile first
    TRANSIENT = "TRANSIENT"  # a read that failed for a passing reason: retry


_RETRYABLE = frozenset({ResultKind.RATE_LIMITED, ResultKind.TRANSIENT})


class AnswerShape(StrEnum):
    """What kind of answer a result was built from (independent of what it means)."""

    OK = "OK"  # a success body
    DHAN_ERROR = "DHAN_ERROR"  # an error body carrying a Dhan error code we classify
    UNRECOGNISED = "UNRECOGNISED"  # JSON we cannot read as a Dhan answer: unknown, never absent
    NOT_JSON = "NOT_JSON"  # the SDK could not parse the body (empty 202, HTML 502 ...)
    TRANSPORT = "TRANSPORT"  # no answer: timeout, refused, reset, or our own wait ran out
    LOCAL = "LOCAL"  # never sent: refused by us or by the SDK before sending


@dataclass(frozen=True)
class BrokerResult:
    kind: ResultKind
    order_id: str = ""
    status: OrderStatus | None = None
    error_code: str = ""
    message: str = ""
    # Not part of equality: two results that mean the same compare equal whatever the shape.
    shape: AnswerShape = field(default=AnswerShape.OK, compare=False)
    # Every order id of the answer: one for a normal placement, several for a sliced one.
    order_ids: tuple[str, ...] = field(default=(), compare=False)

    @property
    def ok(self) -> bool:
        return self.kind is ResultKind.OK

    @property
    def retryable(self) -> bool:
        """Safe to send the same request again after a pause (RATE_LIMITED, TRANSIENT).

        AMBIGUOUS is deliberately not retryable: reconcile first, or an order may be doubled.
        """
        return self.kind in _RETRYABLE


class BrokerError(Exception):
    """A read that could not be answered; carries the classified result."""

    def __init__(self, result: BrokerResult) -> None:
        super().__init__(f"{result.kind.value}: {result.error_code or '-'} {result.message}")
        self.result = result


# The value given to an access-token key ('access-token': 'abc', access_token=abc), not the
# words around it: Dhan's own error text ("Access token is invalid or expired") is kept.
_ACCESS_TOKEN_VALUE = re.compile(
    r"""(access[-_ ]?token['"]?\s*[:=]\s*['"]?)([^'"\s,;&})\]]+)""", re.IGNORECASE
)


def sanitize(text: object, token: str = "") -> str:
    """Text safe to show or log: Dhan's words kept, no token value (after an access-token key,
    the account's own, any registered secret or JWT), bounded length."""
    out = text if isinstance(text, str) else str(text)
    out = _ACCESS_TOKEN_VALUE.sub(lambda m: m.group(1) + MASK, out)
    if token:
        out = out.replace(token, MASK)
    out = redact(out)
    if len(out) > _MAX_MESSAGE:
        out = out[:_MAX_MESSAGE] + "…"
    return out


_RATE_LIMITED = frozenset({"DH-904", "805", "DH-805"})
_AUTH = frozenset({"DH-901", "DH-902", "807", "808", "809", "810"})
_REFUSED = frozenset({"DH-903", "DH-905", "DH-906", "DH-911"})
_NOT_FOUND_ON_READ = frozenset({"DH-907"})
_NOT_FOUND_WORDS = re.compile(
    r"not\s*found|no\s*(data|record|order)s?\b|does\s*not\s*exist", re.IGNORECASE
)


def _code(value: object) -> str:
    if value is None:
        return ""
    text = str(value).strip().upper()
    if text.startswith("DH-8"):  # the 8xx data-API codes also appear as "DH-807" in the wild
        text = text[3:]
    return text


def _kind_for_code(code: str, message: str, *, mutating: bool) -> ResultKind:
    if code in _RATE_LIMITED:
        return ResultKind.RATE_LIMITED
    if code in _AUTH:
        return ResultKind.AUTH_FAILED
    if code in _NOT_FOUND_ON_READ:
        return ResultKind.REFUSED if mutating else ResultKind.NOT_FOUND
    if code in _REFUSED:
        if not mutating and _NOT_FOUND_WORDS.search(message):
            return ResultKind.NOT_FOUND
        return ResultKind.REFUSED
    # DH-908/909/910, 800, and codes nobody documented: we cannot say what happened.
    return ResultKind.AMBIGUOUS if mutating else ResultKind.TRANSIENT


def _unclear(mutating: bool) -> ResultKind:
    return ResultKind.AMBIGUOUS if mutating else ResultKind.TRANSIENT


_FAILED_WORDS = frozenset({"failed", "failure", "error"})
_DH_CODE = re.compile(r"^(DH-\d{3}|\d{3})$")


def _order_fields(data: object) -> tuple[str, OrderStatus | None, tuple[str, ...]]:
    rows = data if isinstance(data, list) else [data]
    ids: list[str] = []
    first_status: OrderStatus | None = None
    for row in rows:
        if not isinstance(row, Mapping):
            continue
        folded = {str(k).lower(): v for k, v in row.items()}
        raw_id = folded.get("orderid")
        order_id = "" if raw_id is None else str(raw_id).strip()
        if order_id:
            ids.append(order_id)
        raw_status = folded.get("orderstatus")
        if first_status is None and isinstance(raw_status, str) and raw_status.strip():
            try:
                first_status = parse_order_status(raw_status)
            except CodecError:
                first_status = None
    return (ids[0] if ids else ""), first_status, tuple(ids)


def _failed_body(data: object) -> str | None:
    """The detail of a 2xx body that is really a failure (``{"status":"failed",...}``, L13)."""
    if not isinstance(data, Mapping):
        return None
    folded = {str(k).lower(): v for k, v in data.items()}
    status = folded.get("status")
    if isinstance(status, str) and status.strip().lower() in _FAILED_WORDS:
        detail = folded.get("data") or folded.get("remarks") or folded.get("message") or ""
        return f"Dhan answered status {status!r}: {detail}"
    if "errorcode" in folded and "orderid" not in folded:
        return f"Dhan answered an error body: {dict(data)}"
    return None


def classify(response: object, *, mutating: bool, token: str = "") -> BrokerResult:
    """The SDK's ``{status, remarks, data}`` dict -> BrokerResult. Never raises."""
    try:
        return _classify(response, mutating=mutating, token=token)
    except Exception as exc:  # a shape nobody expected: unclear, never a crash
        return BrokerResult(
            _unclear(mutating),
            message=sanitize(f"unreadable SDK response: {exc}", token),
            shape=AnswerShape.UNRECOGNISED,
        )


def _classify(response: object, *, mutating: bool, token: str) -> BrokerResult:
    if not isinstance(response, Mapping):
        return BrokerResult(
            _unclear(mutating),
            message=sanitize(f"unexpected SDK response of type {type(response).__name__}", token),
            shape=AnswerShape.UNRECOGNISED,
        )
    status = str(response.get("status", "")).strip().lower()
    remarks: Any = response.get("remarks")
    data: Any = response.get("data")
    if status == "success":
        failed = _failed_body(data)
        if failed is not None:
            return BrokerResult(
                _unclear(mutating),
                message=sanitize(failed, token),
                shape=AnswerShape.UNRECOGNISED,
            )
        order_id, order_status, order_ids = _order_fields(data)
        return BrokerResult(
            ResultKind.OK, order_id=order_id, status=order_status, order_ids=order_ids
        )
    if isinstance(remarks, Mapping):
        code = _code(remarks.get("error_code") or remarks.get("errorCode"))
        message = remarks.get("error_message") or remarks.get("errorMessage") or ""
        if not message and remarks.get("message"):  # the old v1 shape
            message = remarks["message"]
        message = sanitize(message or remarks.get("error_type") or "", token)
        if not code or not _DH_CODE.match(code):
            # No Dhan code (framework 404, {errorCode:<other>,httpStatus,...}): unknown.
            detail = f"error code {code!r}" if code else "no Dhan error code"
            return BrokerResult(
                _unclear(mutating),
                error_code=code,
                message=message or f"unrecognised error answer ({detail})",
                shape=AnswerShape.UNRECOGNISED,
            )
        return BrokerResult(
            _kind_for_code(code, message, mutating=mutating),
            error_code=code,
            message=message or "no error message from Dhan",
            shape=AnswerShape.DHAN_ERROR,
        )
    text = sanitize(remarks if remarks is not None else "", token)
    if text.startswith(("action parameter is required", "Invalid action")):
        return BrokerResult(
            ResultKind.REFUSED, error_code="LOCAL", message=text, shape=AnswerShape.LOCAL
        )
    if "Expecting value" in text or "Extra data" in text or "Unterminated" in text:
        detail = "not a JSON answer (empty body, HTML error page or proxy error)"
        return BrokerResult(
            _unclear(mutating), message=f"{detail}: {text}", shape=AnswerShape.NOT_JSON
        )
    if "has no attribute 'get'" in text:
        # A non-2xx JSON body that is not an object (a list, a number): the SDK choked on it.
        return BrokerResult(
            _unclear(mutating),
            message=f"unrecognised error answer: {text}",
            shape=AnswerShape.UNRECOGNISED,
        )
    if not text:
        text = "failure without any detail from the SDK"
    return BrokerResult(_unclear(mutating), message=text, shape=AnswerShape.TRANSPORT)


def classify_exception(exc: BaseException, *, mutating: bool, token: str = "") -> BrokerResult:
    """An exception out of an SDK call or our own wait for it (timeout): unclear."""
    name = type(exc).__name__
    detail = str(exc)
    return BrokerResult(
        _unclear(mutating),
        message=sanitize(f"{name}: {detail}" if detail else name, token),
        shape=AnswerShape.TRANSPORT,
    )


def not_sent(reason: str, token: str = "") -> BrokerResult:
    """A request we (or the SDK) refused to send: nothing reached Dhan."""
    return BrokerResult(
        ResultKind.REFUSED,
        error_code="LOCAL",
        message=sanitize(f"not sent: {reason}", token),
        shape=AnswerShape.LOCAL,
    )
