"""The reverse direction: our OrderParams -> the dhanhq SDK's keyword arguments."""

from __future__ import annotations

from typing import Any

from engine.dhan.fields import CodecError
from engine.dhan.vocabulary import LEG_NAMES
from engine.domain import AmoTime, OrderParams, Product

_SDK_AMO_TIMES = (AmoTime.OPEN, AmoTime.OPEN_30, AmoTime.OPEN_60)


def encode_place(params: OrderParams) -> dict[str, Any]:
    """Keyword arguments for ``dhanhq.place_order(**kwargs)``.

    Raises CodecError for params the SDK or Dhan would refuse before anything is sent
    (non-positive quantity, AMO at PRE_OPEN which the SDK does not offer, a BO order, for which
    OrderParams carries no profit/stop-loss values).
    """
    if params.quantity <= 0:
        raise CodecError(f"quantity must be positive, got {params.quantity}")
    if not params.security_id:
        raise CodecError("security id is missing")
    if params.product is Product.BO:
        raise CodecError("BO orders need profit/stop-loss values that OrderParams does not carry")
    amo_time = params.amo_time or AmoTime.OPEN
    if params.amo and amo_time not in _SDK_AMO_TIMES:
        raise CodecError(f"the dhanhq SDK cannot place an AMO order at {amo_time.value}")
    return {
        "security_id": str(params.security_id),
        "exchange_segment": params.segment.value,
        "transaction_type": params.side.value,
        "quantity": int(params.quantity),
        "order_type": params.order_type.value,
        "product_type": params.product.value,
        "price": float(params.price),
        "trigger_price": float(params.trigger_price),
        "disclosed_quantity": int(params.disclosed_qty),
        "after_market_order": bool(params.amo),
        "validity": params.validity.value,
        "amo_time": amo_time.value,
        "bo_profit_value": None,
        "bo_stop_loss_Value": None,
        "tag": params.correlation_id or None,
    }


def encode_modify(order_id: str, params: OrderParams, leg_name: str = "") -> dict[str, Any]:
    """Keyword arguments for ``dhanhq.modify_order(**kwargs)``.

    ``params.quantity`` is the TOTAL quantity of the order (Dhan v2), not a delta. The SDK sends
    every value as given, so the types are fixed here. An empty leg name goes out as null.
    """
    if not order_id:
        raise CodecError("order id is missing")
    if params.quantity <= 0:
        raise CodecError(f"quantity must be positive, got {params.quantity}")
    leg = leg_name.strip().upper()
    if leg and leg not in LEG_NAMES:
        raise CodecError(f"unknown leg name {leg_name!r}")
    return {
        "order_id": str(order_id),
        "order_type": params.order_type.value,
        "leg_name": leg or None,
        "quantity": int(params.quantity),
        "price": float(params.price),
        "trigger_price": float(params.trigger_price),
        "disclosed_quantity": int(params.disclosed_qty),
        "validity": params.validity.value,
    }
