"""Dhan's two wire dialects, written independently of the engine's codec.

REST (camelCase, full enum names) for request bodies and the order / trade / position / fund
objects; the order-update socket (short codes B/S, LMT/MKT/SL/SLM, C/I/M/F/V/B, Exchange +
Segment letters) for ``order_alert`` messages.

Each encoder follows a ``SimProfile`` (profile.py). Under the live default (§8b of
shared/dhan-api-facts.md): socket ``Data`` keys are lower camelCase and statuses Title-case
("Pending", "Traded", "Cancelled"); unset REST fields are placeholders ("NA" correlationId,
legName and drvOptionType, omsErrorCode "0", exchangeOrderId "0" before the exchange accepts,
date-only drvExpiryDate); a cancelled order reports remainingQuantity 0; trade rows carry
drvOptionType "NA" and customSymbol null. A partially filled order stays PENDING on the socket
unless the profile says PART_TRADED; REST reports PART_TRADED.
Times are IST "YYYY-MM-DD HH:MM:SS"; a null date is "0001-01-01 00:00:00".
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from engine.clock import IST

from .errors import input_error
from .exchange import ModifyRequest, OrderRequest, SimOrder, SimPosition, SimTrade
from .instruments import NULL_DATE, SimInstrument
from .profile import LIVE, SimProfile

SIDES = ("BUY", "SELL")
SEGMENTS = (
    "NSE_EQ", "NSE_FNO", "NSE_CURRENCY", "BSE_EQ", "BSE_FNO", "BSE_CURRENCY", "MCX_COMM", "IDX_I",
)  # fmt: skip
PRODUCTS = ("CNC", "INTRADAY", "MARGIN", "MTF", "CO", "BO")
ORDER_TYPES = ("LIMIT", "MARKET", "STOP_LOSS", "STOP_LOSS_MARKET")
VALIDITIES = ("DAY", "IOC")
AMO_TIMES = ("PRE_OPEN", "OPEN", "OPEN_30", "OPEN_60")
LEG_NAMES = ("ENTRY_LEG", "TARGET_LEG", "STOP_LOSS_LEG")
CORRELATION_MAX = 25
_CORRELATION_RE = re.compile(r"^[A-Za-z0-9 _-]*$")

SOCKET_EXCHANGE: dict[str, tuple[str, str]] = {
    "NSE_EQ": ("NSE", "E"),
    "NSE_FNO": ("NSE", "D"),
    "NSE_CURRENCY": ("NSE", "C"),
    "BSE_EQ": ("BSE", "E"),
    "BSE_FNO": ("BSE", "D"),
    "BSE_CURRENCY": ("BSE", "C"),
    "MCX_COMM": ("MCX", "M"),
    "IDX_I": ("NSE", "I"),
}
SOCKET_TXN = {"BUY": "B", "SELL": "S"}
SOCKET_ORDER_TYPE = {
    "LIMIT": "LMT",
    "MARKET": "MKT",
    "STOP_LOSS": "SL",
    "STOP_LOSS_MARKET": "SLM",
}
SOCKET_PRODUCT = {"CNC": "C", "INTRADAY": "I", "MARGIN": "M", "MTF": "F", "CO": "V", "BO": "B"}
LEG_NO = {"": 1, "ENTRY_LEG": 1, "STOP_LOSS_LEG": 2, "TARGET_LEG": 3}


# ---- time -----------------------------------------------------------------------------------
def ist(dt: datetime | None) -> str:
    if dt is None:
        return NULL_DATE
    local = IST.localize(dt) if dt.tzinfo is None else dt.astimezone(IST)
    return local.strftime("%Y-%m-%d %H:%M:%S")


# ---- decoding requests ------------------------------------------------------------------------
def _enum(body: dict[str, Any], name: str, allowed: tuple[str, ...]) -> str:
    value = body.get(name)
    if value is None or value == "":
        raise input_error(f"Missing required field {name}")
    if not isinstance(value, str) or value not in allowed:
        raise input_error(
            f"Invalid value for {name}: {value!r} (expected one of {', '.join(allowed)})"
        )
    return value


def _number(body: dict[str, Any], name: str, default: float | None = None) -> float:
    value = body.get(name)
    if value is None or value == "":
        if default is None:
            raise input_error(f"Missing required field {name}")
        return default
    if isinstance(value, bool):
        raise input_error(f"Invalid value for {name}: {value!r} (expected a number)")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise input_error(f"Invalid value for {name}: {value!r} (expected a number)") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise input_error(f"Invalid value for {name}: {value!r} (expected a number)")
    if number < 0:
        raise input_error(f"{name} must not be negative (got {value!r})")
    return number


def _integer(body: dict[str, Any], name: str, default: int | None = None) -> int:
    number = _number(body, name, None if default is None else float(default))
    if number != int(number):
        raise input_error(f"Invalid value for {name}: {body.get(name)!r} (expected a whole number)")
    return int(number)


def _check_quantities(quantity: int, disclosed: int) -> None:
    if quantity <= 0:
        raise input_error(f"quantity must be greater than zero (got {quantity})")
    if disclosed:
        if disclosed > quantity:
            raise input_error(f"disclosedQuantity {disclosed} must not exceed quantity {quantity}")
        if disclosed * 10 < quantity * 3:
            raise input_error(
                f"disclosedQuantity {disclosed} must be at least 30% of quantity {quantity}"
            )


def _check_prices(order_type: str, price: float, trigger: float) -> None:
    if order_type in ("LIMIT", "STOP_LOSS") and not price > 0:
        raise input_error(f"price is required for {order_type} orders")
    if order_type in ("STOP_LOSS", "STOP_LOSS_MARKET") and not trigger > 0:
        raise input_error(f"triggerPrice is required for {order_type} orders")


def _require_object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise input_error("Request body must be a JSON object")
    return body


def decode_place(body: Any, client_id: str | None = None) -> OrderRequest:
    data = _require_object(body)
    if client_id is not None and data.get("dhanClientId") not in (None, "", client_id):
        raise input_error("dhanClientId in the body does not match the client-id header")
    side = _enum(data, "transactionType", SIDES)
    segment = _enum(data, "exchangeSegment", SEGMENTS)
    product = _enum(data, "productType", PRODUCTS)
    order_type = _enum(data, "orderType", ORDER_TYPES)
    validity = _enum(data, "validity", VALIDITIES) if data.get("validity") else "DAY"
    raw_sec = data.get("securityId")
    if raw_sec is None or isinstance(raw_sec, bool) or str(raw_sec).strip() == "":
        raise input_error("Missing required field securityId")
    if not isinstance(raw_sec, str | int):
        raise input_error(f"Invalid value for securityId: {raw_sec!r}")
    quantity = _integer(data, "quantity")
    disclosed = _integer(data, "disclosedQuantity", 0)
    _check_quantities(quantity, disclosed)
    price = _number(data, "price", 0.0)
    trigger = _number(data, "triggerPrice", 0.0)
    _check_prices(order_type, price, trigger)
    amo = data.get("afterMarketOrder", False)
    if amo in ("true", "True"):
        amo = True
    if amo in (None, "false", "False"):
        amo = False
    if not isinstance(amo, bool):
        raise input_error(f"Invalid value for afterMarketOrder: {amo!r} (expected true/false)")
    amo_time = ""
    if amo:
        amo_time = _enum(data, "amoTime", AMO_TIMES)
    correlation = data.get("correlationId")
    if correlation is None:
        correlation = ""
    if not isinstance(correlation, str):
        raise input_error(f"Invalid value for correlationId: {correlation!r} (expected a string)")
    if len(correlation) > CORRELATION_MAX:
        raise input_error(
            f"correlationId must be at most {CORRELATION_MAX} characters (got {len(correlation)})"
        )
    if not _CORRELATION_RE.match(correlation):
        raise input_error("correlationId may contain only letters, digits, space, '_' and '-'")
    bo_profit = None if data.get("boProfitValue") is None else _number(data, "boProfitValue")
    bo_stop = None if data.get("boStopLossValue") is None else _number(data, "boStopLossValue")
    return OrderRequest(
        side=side,
        segment=segment,
        product=product,
        order_type=order_type,
        validity=validity,
        security_id=str(raw_sec).strip(),
        quantity=quantity,
        price=price if order_type in ("LIMIT", "STOP_LOSS") else 0.0,
        trigger_price=trigger if order_type in ("STOP_LOSS", "STOP_LOSS_MARKET") else 0.0,
        disclosed_qty=disclosed,
        amo=amo,
        amo_time=amo_time,
        correlation_id=correlation,
        bo_profit=bo_profit,
        bo_stop_loss=bo_stop,
    )


def decode_modify(
    body: Any, order_id: str, client_id: str | None = None, *, tolerant: bool = False
) -> ModifyRequest:
    """``tolerant`` (live, §8b L9): legName "NA" passes and body dhanClientId is not checked."""
    data = _require_object(body)
    if (
        not tolerant
        and client_id is not None
        and data.get("dhanClientId") not in (None, "", client_id)
    ):
        raise input_error("dhanClientId in the body does not match the client-id header")
    if data.get("orderId") not in (None, "") and str(data.get("orderId")) != order_id:
        raise input_error("orderId in the body does not match the orderId in the path")
    order_type = _enum(data, "orderType", ORDER_TYPES)
    validity = _enum(data, "validity", VALIDITIES)
    quantity = _integer(data, "quantity")
    disclosed = _integer(data, "disclosedQuantity", 0)
    _check_quantities(quantity, disclosed)
    price = _number(data, "price", 0.0)
    trigger = _number(data, "triggerPrice", 0.0)
    _check_prices(order_type, price, trigger)
    leg = data.get("legName") or ""
    if tolerant and leg == "NA":
        leg = ""
    if leg and leg not in LEG_NAMES:
        raise input_error(
            f"Invalid value for legName: {leg!r} (expected one of {', '.join(LEG_NAMES)})"
        )
    return ModifyRequest(
        order_type=order_type,
        validity=validity,
        quantity=quantity,
        price=price if order_type in ("LIMIT", "STOP_LOSS") else 0.0,
        trigger_price=trigger if order_type in ("STOP_LOSS", "STOP_LOSS_MARKET") else 0.0,
        disclosed_qty=disclosed,
        leg_name=str(leg),
    )


# ---- encoding REST ----------------------------------------------------------------------------
def _date_only(value: str) -> str:
    return value.split(" ", 1)[0]


def _drv(inst: SimInstrument, profile: SimProfile = LIVE, *, trade: bool = False) -> dict[str, Any]:
    expiry = inst.expiry if inst.is_derivative else NULL_DATE
    option = {"CE": "CALL", "PE": "PUT"}.get(inst.opt_type)
    if profile.classic_details:
        return {"drvExpiryDate": expiry, "drvOptionType": option, "drvStrikePrice": inst.strike}
    return {
        "drvExpiryDate": _date_only(expiry),
        # Live trade rows say "NA" even for options (§8b L8); order rows say CALL / PUT.
        "drvOptionType": "NA" if trade or option is None else option,
        "drvStrikePrice": inst.strike,
    }


def order_rest(order: SimOrder, profile: SimProfile = LIVE) -> dict[str, Any]:
    inst = order.inst
    live = not profile.classic_details
    remaining = order.remaining
    if live and order.status == "CANCELLED":
        remaining = 0  # §8b L7: read fills from filledQty, not from what remains
    return {
        "dhanClientId": order.client_id,
        "orderId": order.order_id,
        "exchangeOrderId": order.exchange_order_id or ("0" if live else ""),
        "correlationId": order.correlation_id or ("NA" if live else ""),
        "orderStatus": order.status,
        "transactionType": order.side,
        "exchangeSegment": inst.segment,
        "productType": order.product,
        "orderType": order.order_type,
        "validity": order.validity,
        "tradingSymbol": inst.symbol,
        "securityId": inst.security_id,
        "quantity": order.quantity,
        "disclosedQuantity": order.disclosed_qty,
        "price": order.price,
        "triggerPrice": order.trigger_price,
        "afterMarketOrder": order.amo,
        "amoTime": order.amo_time or None,
        "boProfitValue": order.bo_profit or 0.0,
        "boStopLossValue": order.bo_stop_loss or 0.0,
        "legName": order.leg_name or ("NA" if live else None),
        "createTime": ist(order.create_time),
        "updateTime": ist(order.update_time),
        "exchangeTime": ist(order.exchange_time),
        **_drv(inst, profile),
        "omsErrorCode": order.oms_error_code or ("0" if live else None),
        "omsErrorDescription": order.reason if order.status == "REJECTED" else None,
        "algoId": "0" if order.source == "P" else "",
        "remainingQuantity": remaining,
        "averageTradedPrice": order.avg_price,
        "filledQty": order.filled_qty,
    }


def trade_rest(trade: SimTrade, profile: SimProfile = LIVE) -> dict[str, Any]:
    order = trade.order
    inst = order.inst
    return {
        "dhanClientId": order.client_id,
        "orderId": order.order_id,
        "exchangeOrderId": order.exchange_order_id,
        "exchangeTradeId": trade.trade_id,
        "transactionType": order.side,
        "exchangeSegment": inst.segment,
        "productType": order.product,
        "orderType": order.order_type,
        "tradingSymbol": inst.symbol,
        "customSymbol": inst.display_name if profile.classic_details else None,
        "securityId": inst.security_id,
        "tradedQuantity": trade.quantity,
        "tradedPrice": trade.price,
        "isin": inst.isin,
        "instrument": inst.instrument,
        "sebiTax": 0.0,
        "stt": 0.0,
        "brokerageCharges": 0.0,
        "serviceTax": 0.0,
        "exchangeTransactionCharges": 0.0,
        "stampDuty": 0.0,
        "createTime": ist(trade.time),
        "updateTime": ist(trade.time),
        "exchangeTime": ist(trade.time),
        **_drv(inst, profile, trade=True),
    }


def position_rest(
    client_id: str, pos: SimPosition, ltp: float, profile: SimProfile = LIVE
) -> dict[str, Any]:
    inst = pos.inst
    net = pos.net_qty
    # Today's quantities, or (a profile) every day's with the carried ones among them.
    today = profile.positions_day_qty == "today"
    day_buy = pos.buy_qty - pos.carried_buy_qty if today else pos.buy_qty
    day_sell = pos.sell_qty - pos.carried_sell_qty if today else pos.sell_qty
    day_buy_value = pos.buy_value - pos.carried_buy_value if today else pos.buy_value
    day_sell_value = pos.sell_value - pos.carried_sell_value if today else pos.sell_value
    return {
        "dhanClientId": client_id,
        "tradingSymbol": inst.symbol,
        "securityId": inst.security_id,
        "positionType": "LONG" if net > 0 else "SHORT" if net < 0 else "CLOSED",
        "exchangeSegment": inst.segment,
        "productType": pos.product,
        "buyAvg": round(pos.buy_avg, 4),
        "costPrice": round(pos.cost_price, 4),
        "buyQty": pos.buy_qty,
        "sellAvg": round(pos.sell_avg, 4),
        "sellQty": pos.sell_qty,
        "netQty": net,
        "realizedProfit": round(pos.realized, 2),
        "unrealizedProfit": round(pos.unrealized(ltp), 2),
        "rbiReferenceRate": 1.0,
        "multiplier": 1,
        "carryForwardBuyQty": pos.carried_buy_qty,
        "carryForwardSellQty": pos.carried_sell_qty,
        "carryForwardBuyValue": round(pos.carried_buy_value, 2),
        "carryForwardSellValue": round(pos.carried_sell_value, 2),
        "dayBuyQty": day_buy,
        "daySellQty": day_sell,
        "dayBuyValue": round(day_buy_value, 2),
        "daySellValue": round(day_sell_value, 2),
        **_drv(inst),
        "crossCurrency": False,
    }


def funds_rest(client_id: str, sod: float, available: float, utilized: float) -> dict[str, Any]:
    return {
        "dhanClientId": client_id,
        "availabelBalance": round(available, 2),
        "sodLimit": round(sod, 2),
        "collateralAmount": 0.0,
        "receiveableAmount": 0.0,
        "utilizedAmount": round(utilized, 2),
        "blockedPayoutAmount": 0.0,
        "withdrawableBalance": round(max(available, 0.0), 2),
    }


# ---- encoding the socket ----------------------------------------------------------------------
def socket_status(status: str, profile: SimProfile = LIVE) -> str:
    word = status
    if status == "PART_TRADED" and not profile.socket_part_traded:
        word = "PENDING"
    return word.title() if profile.socket_status_case == "title" else word


def lower_camel(key: str) -> str:
    return key[:1].lower() + key[1:]


def order_alert(order: SimOrder, ltp: float, profile: SimProfile = LIVE) -> dict[str, Any]:
    """The whole ``{"Type": "order_alert", "Data": {...}}`` message for one order state."""
    inst = order.inst
    exchange, segment = SOCKET_EXCHANGE.get(inst.segment, ("NSE", "E"))
    data: dict[str, Any] = {
        "Exchange": exchange,
        "Segment": segment,
        "Source": order.source,
        "SecurityId": inst.security_id,
        "ClientId": order.client_id,
        "ExchOrderNo": order.exchange_order_id or "0",
        "OrderNo": order.order_id,
        "Product": SOCKET_PRODUCT.get(order.product, order.product),
        "TxnType": SOCKET_TXN.get(order.side, order.side),
        "OrderType": SOCKET_ORDER_TYPE.get(order.order_type, order.order_type),
        "Validity": order.validity,
        "DiscQuantity": order.disclosed_qty,
        "DiscQtyRem": order.disclosed_qty if order.is_open else 0,
        "RemainingQuantity": order.remaining,
        "Quantity": order.quantity,
        "TradedQty": order.filled_qty,
        "Price": order.price,
        "TriggerPrice": order.trigger_price,
        "TradedPrice": order.last_fill_price,
        "AvgTradedPrice": order.avg_price,
        "AlgoOrdNo": "",
        "OffMktFlag": "1" if order.amo else "0",
        "OrderDateTime": ist(order.create_time),
        "ExchOrderTime": ist(order.exchange_time),
        "LastUpdatedTime": ist(order.update_time),
        "Remarks": order.remarks or "NA",
        "MktType": "NL",
        "ReasonDescription": order.reason,
        "LegNo": LEG_NO.get(order.leg_name, 1),
        "Instrument": inst.instrument,
        "Symbol": inst.symbol,
        "ProductName": order.product,
        "Status": socket_status(order.status, profile),
        "LotSize": inst.lot_size,
        "StrikePrice": inst.strike,
        "ExpiryDate": inst.expiry if inst.is_derivative else NULL_DATE,
        "OptType": inst.opt_type,
        "DisplayName": inst.display_name,
        "Isin": inst.isin or "NA",
        "Series": inst.series or "NA",
        "GoodTillDaysDate": NULL_DATE,
        "RefLtp": ltp,
        "TickSize": inst.tick_size,
        "AlgoId": "0" if order.source == "P" else "",
        "Multiplier": 1,
        "CorrelationId": order.correlation_id,
    }
    if not profile.classic_details:
        # §8b L12: the docs' sample also carries these lower-camel duplicates, and its
        # GoodTillDaysDate is date-only.
        data["GoodTillDaysDate"] = _date_only(NULL_DATE)
        data.update(
            {
                "refLtp": ltp,
                "tickSize": inst.tick_size,
                "instrumentType": inst.instrument,
                "series": data["Series"],
                "multiplier": 1,
                "algoId": data["AlgoId"],
                "goodTillDaysDate": data["GoodTillDaysDate"],
            }
        )
    if profile.socket_keys == "camel":
        data = {lower_camel(k): v for k, v in data.items()}
    return {"Type": "order_alert", "Data": data}
