"""The async face over the ``dhanhq`` SDK, one instance per account.

The SDK builds every request (its public order methods) and :mod:`engine.dhan.transport`
carries it on the account's own asyncio HTTP session, byte for byte as the SDK's
``requests`` session would, answering the SDK's ``{status, remarks, data}`` dict: no thread
hop, and one slow account never blocks another. Every answer is classified into a typed
:class:`~engine.dhan.errors.BrokerResult` (mutations) or a decoded value (reads; failures raise
:class:`~engine.dhan.errors.BrokerError`).

The SDK's ``OrderUpdate`` is never used here: it prints the access token. The order-update
socket is read by :mod:`engine.dhan.order_stream`.

The access token lives in the SDK's objects and in a private attribute; it is never part of
``repr()``/``str()``, a result message or a log line.

Engine integration (issue 11):

- :meth:`DhanBroker.find_by_correlation` settles whether a copy exists *positively*: FOUND
  (the order(s) carrying the correlationId), ABSENT_FROM_BOOK (the whole order book was read
  and no order carries it: the only positive "absent") or UNKNOWN (no safe answer: send
  nothing). An error code alone never means "absent" (facts §8b L1: live Dhan answers an
  unknown order id with DH-905, and nobody knows what the correlation lookup answers).
- :meth:`DhanBroker.place_sliced` places through ``POST /orders/slicing`` (freeze quantity);
  the result's ``order_ids`` lists every slice. Modify and cancel stay per order id.
- ``recorder=``: every REST exchange is handed to a :class:`~engine.dhan.recorder.Recorder`
  (method, path, body, status and body of the answer; never the headers).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

from engine.dhan.broker_answers import (
    CorrelationLookup,
    Existence,
    Funds,
    OrderBook,
    Position,
    Profile,
    lenient_float,
    lenient_whole,
    lower_keys,
    optional_whole,
    parse_token_validity,
    row_correlation,
)
from engine.dhan.codec import (
    CodecError,
    DecodedRows,
    decode_rest_order,
    decode_rest_orders,
    encode_modify,
    encode_place,
    parse_product,
    parse_segment,
)
from engine.dhan.errors import (
    AnswerShape,
    BrokerError,
    BrokerResult,
    ResultKind,
    classify,
    classify_exception,
    not_sent,
    sanitize,
)
from engine.dhan.recorder import Recorder
from engine.dhan.transport import (
    AsyncDhanTransport,
    Exchange,
    RequestBuilder,
    SdkRequest,
    request_building_sdk,
)
from engine.domain import OrderParams, OrderSnapshot, OrderStatus
from engine.secrets import register_secret

__all__ = [
    "CorrelationLookup",
    "DhanBroker",
    "Existence",
    "Funds",
    "OrderBook",
    "Position",
    "Profile",
]

log = logging.getLogger(__name__)


class DhanBroker:
    """One Dhan account behind the real ``dhanhq`` SDK."""

    def __init__(
        self,
        client_id: str,
        access_token: str,
        rest_url: str,
        *,
        timeout_s: float = 10.0,
        max_workers: int = 4,
        account: str = "",
        recorder: Recorder | None = None,
        source_ip: str | None = None,
    ) -> None:
        self._client_id = client_id
        self._account = account or client_id
        self._recorder = recorder
        self._token = access_token
        register_secret(access_token)
        self._rest_url = rest_url.rstrip("/")
        self._timeout_s = timeout_s
        # The SDK builds each request; the transport sends it (max_workers: at most that many
        # requests of this account at once, as the SDK's thread pool allowed).
        self._sdk = request_building_sdk()
        self._builder = RequestBuilder()
        self._transport = AsyncDhanTransport(
            client_id,
            access_token,
            self._rest_url,
            timeout_s=timeout_s,
            max_connections=max_workers,
            source_ip=source_ip,
            on_exchange=None if recorder is None else self._record_exchange,
        )
        # The SDK's timeout is per socket operation; this bounds the whole call. Past it the
        # request may still have reached Dhan, so a mutation is AMBIGUOUS, never "failed".
        self._call_timeout_s = timeout_s * 3 + 5
        self._closed = False
        self.last_codec_errors: list[CodecError] = []
        self._book_rows = DecodedRows()  # the last book read: unchanged rows are not decoded

    # --- identity (never the token) -------------------------------------------------------

    @property
    def client_id(self) -> str:
        return self._client_id

    @property
    def rest_url(self) -> str:
        return self._rest_url

    def __repr__(self) -> str:
        return f"DhanBroker(client_id={self._client_id!r}, rest_url={self._rest_url!r})"

    __str__ = __repr__

    def __reduce__(self) -> Any:  # a broker (and its token) is never pickled
        raise TypeError("DhanBroker cannot be pickled")

    def use_token(self, access_token: str) -> None:
        """Every call from now on sends this token (renewed, minted or replaced while running;
        engine.accounts keeps it). A call already sent keeps the token it went with."""
        register_secret(access_token)
        self._token = access_token
        self._transport.use_token(access_token)

    @property
    def token_in_use(self) -> str:
        """The token calls are sent with now (to tell Dhan's refusal of an older one apart)."""
        return self._token

    # --- plumbing -------------------------------------------------------------------------

    def _record_exchange(self, exchange: Exchange) -> None:
        """Every exchange with an HTTP answer (the headers, and so the token, never reach it)."""
        recorder = self._recorder
        if recorder is None:
            return
        try:
            try:
                body: object = json.loads(exchange.content)
            except ValueError:
                body = exchange.content.decode("utf-8", errors="replace")
            recorder.rest(
                self._account,
                exchange.method,
                exchange.path,
                exchange.body,
                {"status": exchange.status, "body": body},
            )
        except Exception:  # recording must never disturb a call
            log.debug("%s: recording a REST exchange failed", self._account)

    def _record_failure(self, what: str, result: BrokerResult) -> None:
        """A call that got no HTTP answer (transport error, our own timeout)."""
        if self._recorder is None or result.shape is not AnswerShape.TRANSPORT:
            return
        try:
            self._recorder.rest(self._account, "-", what, None, {"error": result.message})
        except Exception:
            log.debug("%s: recording a failed call failed", self._account)

    async def _send(self, request: SdkRequest) -> Any:
        """The SDK's answer dict to ``request``; TimeoutError past the whole-call bound."""
        if self._closed:
            raise RuntimeError("broker is closed")
        async with asyncio.timeout(self._call_timeout_s):
            return await self._transport.send(request)

    async def _mutate(
        self,
        what: str,
        build: Callable[..., SdkRequest],
        /,
        *,
        log_result: bool = True,
        **kwargs: Any,
    ) -> BrokerResult:
        try:
            # The SDK builds the request (and refuses a bad one, e.g. an amo_time it does not
            # know) before anything is sent.
            request = build(**kwargs)
        except Exception as exc:
            result = not_sent(str(exc), self._token)
            if log_result:
                self._log_result(what, result)
            return result
        try:
            response = await self._send(request)
        except TimeoutError as exc:
            result = classify_exception(exc, mutating=True, token=self._token)
            result = BrokerResult(
                result.kind,
                message=f"no answer within {self._call_timeout_s:.0f}s",
                shape=AnswerShape.TRANSPORT,
            )
        except Exception as exc:
            result = classify_exception(exc, mutating=True, token=self._token)
        else:
            result = classify(response, mutating=True, token=self._token)
        self._record_failure(what, result)
        if log_result:
            self._log_result(what, result)
        return result

    async def _read(self, what: str, build: Callable[..., SdkRequest], /, **kwargs: Any) -> Any:
        """The ``data`` of a successful read; raises BrokerError otherwise."""
        try:
            response = await self._send(build(**kwargs))
        except Exception as exc:
            result = classify_exception(exc, mutating=False, token=self._token)
        else:
            result = classify(response, mutating=False, token=self._token)
            if result.kind is ResultKind.OK:
                return response.get("data") if isinstance(response, Mapping) else None
        self._record_failure(what, result)
        self._log_result(what, result)
        raise BrokerError(result)

    def _log_result(self, what: str, result: BrokerResult) -> None:
        if result.kind in (ResultKind.OK, ResultKind.NOT_FOUND):
            log.debug("%s %s: OK %s %s", self._client_id, what, result.order_id, result.status)
        else:
            log.warning(
                "%s %s: %s %s %s",
                self._client_id,
                what,
                result.kind.value,
                result.error_code,
                sanitize(result.message, self._token),
            )

    # --- mutations ------------------------------------------------------------------------

    async def place(self, params: OrderParams) -> BrokerResult:
        """Place one order; ``params.correlation_id`` goes to Dhan as the SDK's ``tag``.

        AMBIGUOUS means it may exist: look it up by correlation id before placing again.
        """
        try:
            kwargs = encode_place(params)
        except CodecError as exc:
            return not_sent(str(exc), self._token)
        return await self._mutate("place", self._sdk.place_order, **kwargs)

    async def place_sliced(self, params: OrderParams) -> BrokerResult:
        """Place through ``POST /orders/slicing``: Dhan splits a quantity above the exchange's
        freeze quantity into several orders, all carrying ``params.correlation_id``.

        OK: ``order_ids`` lists every slice (``order_id`` is the first). AMBIGUOUS: any number
        of slices may exist; settle it with ``find_by_correlation(cid, complete=True)``.
        Each slice is then modified and cancelled by its own order id.
        """
        try:
            kwargs = encode_place(params)
        except CodecError as exc:
            return not_sent(str(exc), self._token)
        result = await self._mutate(
            "place sliced", self._sdk.place_order, should_slice=True, **kwargs
        )
        if result.kind is ResultKind.OK and not result.order_ids:
            # A success without any order id: we cannot tell what was placed.
            return BrokerResult(
                ResultKind.AMBIGUOUS,
                message="sliced placement answered without order ids",
                shape=AnswerShape.UNRECOGNISED,
            )
        return result

    async def modify(self, order_id: str, params: OrderParams, leg_name: str = "") -> BrokerResult:
        """Modify an open order; ``params.quantity`` is the order's new TOTAL quantity."""
        try:
            kwargs = encode_modify(order_id, params, leg_name)
        except CodecError as exc:
            return not_sent(str(exc), self._token)
        result = await self._mutate(f"modify {order_id}", self._sdk.modify_order, **kwargs)
        if result.kind is ResultKind.OK and not result.order_id:
            result = BrokerResult(ResultKind.OK, order_id=order_id, status=result.status)
        return result

    async def cancel(self, order_id: str) -> BrokerResult:
        """Cancel an open order.

        Dhan may answer an accepted cancel with an empty 202, which the SDK reports as a
        failure; any unclear answer is therefore confirmed with ``GET /orders/{id}``:
        CANCELLED -> OK; another terminal status -> REFUSED (with that status); still open or
        unreadable -> AMBIGUOUS.
        """
        if not order_id:
            return not_sent("order id is missing", self._token)
        result = await self._cancel_once(order_id)
        self._log_result(f"cancel {order_id}", result)
        return result

    async def _cancel_once(self, order_id: str) -> BrokerResult:
        result = await self._mutate(
            f"cancel {order_id}", self._sdk.cancel_order, log_result=False, order_id=order_id
        )
        if result.kind is ResultKind.OK:
            return BrokerResult(
                ResultKind.OK,
                order_id=result.order_id or order_id,
                status=result.status or OrderStatus.CANCELLED,
            )
        if result.kind is not ResultKind.AMBIGUOUS:
            return result
        try:
            snapshot = await self.order_by_id(order_id)
        except BrokerError as exc:
            return BrokerResult(
                ResultKind.AMBIGUOUS,
                order_id=order_id,
                error_code=result.error_code,
                message=f"{result.message}; confirming failed: {exc.result.message}",
            )
        if snapshot is None:
            return BrokerResult(
                ResultKind.AMBIGUOUS,
                order_id=order_id,
                message=f"{result.message}; the order was not found when confirming",
            )
        if snapshot.status is OrderStatus.CANCELLED:
            return BrokerResult(ResultKind.OK, order_id=order_id, status=OrderStatus.CANCELLED)
        if snapshot.status.is_terminal:
            return BrokerResult(
                ResultKind.REFUSED,
                order_id=order_id,
                status=snapshot.status,
                message=f"order is already {snapshot.status.value}",
            )
        return BrokerResult(
            ResultKind.AMBIGUOUS,
            order_id=order_id,
            status=snapshot.status,
            error_code=result.error_code,
            message=f"{result.message}; order still {snapshot.status.value} when confirming",
        )

    async def kill_switch(self, activate: bool) -> BrokerResult:
        action = "activate" if activate else "deactivate"
        return await self._mutate(f"kill switch {action}", self._sdk.kill_switch, action=action)

    # --- reads ----------------------------------------------------------------------------

    async def order_book(self) -> OrderBook:
        """The day's orders (``GET /orders``). Raises BrokerError when the book is unreadable;
        rows that cannot be decoded are listed in ``.errors`` (and ``last_codec_errors``)."""
        data = await self._order_book_rows()
        snapshots, errors = decode_rest_orders(data, self._book_rows)
        for error in errors:
            log.warning("%s order book: %s", self._client_id, sanitize(error, self._token))
        self.last_codec_errors = errors
        return OrderBook(snapshots, errors)

    async def _order_book_rows(self, *, strict: bool = False) -> list[Any]:
        """The raw rows of ``GET /orders``. ``strict``: only a JSON list is a book (an empty
        string is not "no orders" when the question is whether an order exists)."""
        data = await self._read("order book", self._sdk.get_order_list)
        if data is None or (data == "" and not strict):
            data = []
        if not isinstance(data, list):
            raise BrokerError(
                BrokerResult(
                    ResultKind.TRANSIENT,
                    message=f"order book is not a list but {type(data).__name__}",
                    shape=AnswerShape.UNRECOGNISED,
                )
            )
        return data

    def _one_order(self, data: Any, what: str) -> OrderSnapshot | None:
        if isinstance(data, list):
            rows = [row for row in data if row]
            if not rows:
                return None
            # Several orders can share a correlation id (slicing): the furthest along wins.
            snapshots, errors = decode_rest_orders(rows)
            if not snapshots:
                raise BrokerError(
                    BrokerResult(ResultKind.TRANSIENT, message=f"{what}: {errors[0]}")
                )
            return max(snapshots, key=lambda s: s.progress_key())
        if data in ("", None) or (isinstance(data, Mapping) and not data):
            return None
        try:
            return decode_rest_order(data)
        except CodecError as exc:
            raise BrokerError(
                BrokerResult(ResultKind.TRANSIENT, message=sanitize(f"{what}: {exc}", self._token))
            ) from None

    async def order_by_id(self, order_id: str) -> OrderSnapshot | None:
        """One order (``GET /orders/{id}``); None when Dhan says there is no such order."""
        try:
            data = await self._read(
                f"order {order_id}", self._sdk.get_order_by_id, order_id=order_id
            )
        except BrokerError as exc:
            if exc.result.kind is ResultKind.NOT_FOUND:
                return None
            raise
        return self._one_order(data, f"order {order_id}")

    async def order_by_correlation(self, correlation_id: str) -> OrderSnapshot | None:
        """The order placed with this correlation id (``GET /orders/external/{cid}``).

        None only when Dhan clearly says there is none (empty answer, DH-907, "not found");
        raises BrokerError for every unclear answer, so a caller never places twice because
        of a timeout.

        Kept for the engine until it moves to :meth:`find_by_correlation`: this one still
        reads "absent" from an error code or an empty answer, which live Dhan does not settle
        (facts §8b L1).
        """
        try:
            data = await self._read(
                f"order by correlation {correlation_id}",
                self._sdk.get_order_by_correlationID,
                correlation_id=correlation_id,
            )
        except BrokerError as exc:
            if exc.result.kind is ResultKind.NOT_FOUND:
                return None
            raise
        return self._one_order(data, f"order by correlation {correlation_id}")

    async def find_by_correlation(
        self, correlation_id: str, *, complete: bool = False
    ) -> CorrelationLookup:
        """Whether an order with this correlationId exists at Dhan, settled positively.

        1. ``GET /orders/external/{cid}``: an order (object or list) whose correlationId is
           ``cid`` -> FOUND. Any error, empty 200 or empty list is NOT taken as "absent".
        2. Otherwise (or always, with ``complete=True``, for sliced copies whose slices may not
           all come back from the lookup) ``GET /orders``: the orders carrying ``cid`` ->
           FOUND; none, and every row of the book readable -> ABSENT_FROM_BOOK.
        3. The book cannot be read, or a row that carries ``cid`` cannot be decoded ->
           UNKNOWN (with the reason). Never raises for Dhan's answers.

        An order still in flight may not be in the book yet: a caller resolving an ambiguous
        placement should take ABSENT_FROM_BOOK as final only from a read made after the send
        can no longer land (its own timeout has passed), e.g. by asking twice a few seconds
        apart.
        """
        cid = correlation_id.strip()
        if not cid:
            return CorrelationLookup(Existence.UNKNOWN, reason="no correlation id given")
        from_lookup: list[OrderSnapshot] = []
        lookup_note = ""
        try:
            data = await self._read(
                f"order by correlation {cid}",
                self._sdk.get_order_by_correlationID,
                correlation_id=cid,
            )
        except BrokerError as exc:
            lookup_note = f"lookup answered {exc.result.kind.value}"
            if exc.result.error_code:
                lookup_note += f" {exc.result.error_code}"
        else:
            rows = data if isinstance(data, list) else [data]
            snapshots, _ = decode_rest_orders([r for r in rows if isinstance(r, Mapping) and r])
            from_lookup = [s for s in snapshots if s.correlation_id == cid]
            lookup_note = "lookup found it" if from_lookup else "lookup showed no such order"
        if from_lookup and not complete:
            return CorrelationLookup(Existence.FOUND, tuple(from_lookup), reason=lookup_note)
        try:
            rows = await self._order_book_rows(strict=True)
        except BrokerError as exc:
            if from_lookup:  # the lookup's answer stands; the book only adds slices
                return CorrelationLookup(Existence.FOUND, tuple(from_lookup), reason=lookup_note)
            return CorrelationLookup(
                Existence.UNKNOWN,
                reason=f"{lookup_note}; order book unreadable: {exc.result.message}",
            )
        found: dict[str, OrderSnapshot] = {s.order_id: s for s in from_lookup}
        unreadable_ours = 0
        for row in rows:
            if not isinstance(row, Mapping):
                unreadable_ours += 1  # cannot even tell whose it is
                continue
            if row_correlation(row) != cid:
                continue
            try:
                snapshot = decode_rest_order(row)
            except CodecError as exc:
                log.warning(
                    "%s order book: a row with %s is unreadable: %s",
                    self._client_id,
                    cid,
                    sanitize(exc, self._token),
                )
                unreadable_ours += 1
                continue
            found[snapshot.order_id] = snapshot
        if found and not unreadable_ours:
            return CorrelationLookup(
                Existence.FOUND, tuple(found.values()), reason="order book", from_book=True
            )
        if unreadable_ours:
            return CorrelationLookup(
                Existence.UNKNOWN,
                tuple(found.values()),
                reason=f"{unreadable_ours} order book row(s) that may be ours are unreadable",
                from_book=True,
            )
        return CorrelationLookup(
            Existence.ABSENT_FROM_BOOK,
            reason=f"{lookup_note}; no order in the book ({len(rows)} rows) carries it",
            from_book=True,
        )

    async def positions(self) -> list[Position]:
        data = await self._read("positions", self._sdk.get_positions)
        if data in ("", None):
            return []
        if not isinstance(data, list):
            raise BrokerError(
                BrokerResult(ResultKind.TRANSIENT, message="positions answer is not a list")
            )
        out: list[Position] = []
        errors: list[CodecError] = []
        for index, row in enumerate(data):
            try:
                if not isinstance(row, Mapping):
                    raise CodecError(f"expected an object, got {type(row).__name__}")
                d = lower_keys(row)
                out.append(
                    Position(
                        segment=parse_segment(d.get("exchangesegment")),
                        security_id=str(d.get("securityid") or ""),
                        symbol=str(d.get("tradingsymbol") or ""),
                        product=parse_product(d.get("producttype")),
                        net_qty=lenient_whole(d.get("netqty")),
                        buy_avg=lenient_float(d.get("buyavg")),
                        sell_avg=lenient_float(d.get("sellavg")),
                        realized_pnl=lenient_float(d.get("realizedprofit")),
                        unrealized_pnl=lenient_float(d.get("unrealizedprofit")),
                        day_buy_qty=optional_whole(d.get("daybuyqty")),
                        day_sell_qty=optional_whole(d.get("daysellqty")),
                        carried_buy_qty=optional_whole(d.get("carryforwardbuyqty")),
                        carried_sell_qty=optional_whole(d.get("carryforwardsellqty")),
                    )
                )
            except CodecError as exc:
                errors.append(CodecError(f"position row {index}: {exc}"))
        for error in errors:
            log.warning("%s positions: %s", self._client_id, sanitize(error, self._token))
        self.last_codec_errors = errors
        return out

    async def fund_limits(self) -> Funds:
        data = await self._read("fund limits", self._sdk.get_fund_limits)
        if not isinstance(data, Mapping):
            raise BrokerError(
                BrokerResult(ResultKind.TRANSIENT, message="fund limits answer is not an object")
            )
        d = lower_keys(data)
        available = d.get("availabelbalance", d.get("availablebalance"))
        return Funds(
            available=lenient_float(available),
            sod_limit=lenient_float(d.get("sodlimit")),
            utilized=lenient_float(d.get("utilizedamount")),
        )

    async def kill_switch_status(self) -> bool | None:
        """True when Dhan's kill switch is active; None when unknown (unreadable)."""
        try:
            data = await self._read("kill switch status", self._sdk.status_kill_switch)
        except BrokerError:
            return None
        if not isinstance(data, Mapping):
            return None
        status = str(lower_keys(data).get("killswitchstatus") or "").strip().upper()
        if status.startswith("ACTIVATE") or status in ("ACTIVE", "ON", "TRUE"):
            return True
        if status.startswith("DEACTIVATE") or status in ("INACTIVE", "OFF", "FALSE"):
            return False
        return None

    async def profile(self) -> Profile:
        """``GET {rest_url}/profile`` with the account's headers; raises BrokerError on failure."""
        data = await self._read("profile", self._builder.get, endpoint="/profile")
        if not isinstance(data, Mapping):
            raise BrokerError(
                BrokerResult(ResultKind.TRANSIENT, message="profile answer is not an object")
            )
        d = lower_keys(data)
        return Profile(
            client_id=str(d.get("dhanclientid") or self._client_id),
            token_valid_until=parse_token_validity(d.get("tokenvalidity")),
        )

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            await self._transport.close()
        except Exception:  # closing is best effort
            log.debug("%s: closing the HTTP session failed", self._client_id)
