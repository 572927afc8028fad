"""Dhan's order-socket short codes as its docs give them (shared/dhan-api-facts.md §2, §5).

A reference the codec tests encode with, written apart from engine/dhan/codec.py so a
mistake in the codec is not mirrored by its tests.
"""

from __future__ import annotations

from engine.domain import OrderType, Product, Segment, Side

SIDE = {Side.BUY: "B", Side.SELL: "S"}
ORDER_TYPE = {
    OrderType.LIMIT: "LMT",
    OrderType.MARKET: "MKT",
    OrderType.STOP_LOSS: "SL",
    OrderType.STOP_LOSS_MARKET: "SLM",
}
PRODUCT = {
    Product.CNC: "C",
    Product.INTRADAY: "I",
    Product.MARGIN: "M",
    Product.MTF: "F",
    Product.CO: "V",
    Product.BO: "B",
}
EXCHANGE_SEGMENT = {
    Segment.NSE_EQ: ("NSE", "E"),
    Segment.NSE_FNO: ("NSE", "D"),
    Segment.NSE_CURRENCY: ("NSE", "C"),
    Segment.BSE_EQ: ("BSE", "E"),
    Segment.BSE_FNO: ("BSE", "D"),
    Segment.BSE_CURRENCY: ("BSE", "C"),
    Segment.MCX_COMM: ("MCX", "M"),
    Segment.IDX_I: ("NSE", "I"),
}
LEG_NO = {"ENTRY_LEG": 1, "STOP_LOSS_LEG": 2, "TARGET_LEG": 3}
