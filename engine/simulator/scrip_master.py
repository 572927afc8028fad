"""The simulator's instrument master in Dhan's published scrip-master CSV forms.

Dhan serves them at ``https://images.dhan.co/api-data/api-scrip-master.csv`` (compact) and
``.../api-scrip-master-detailed.csv`` (detailed) [DOC dhanhq.co/docs/v2/instruments]; the
simulator serves the same paths on its HTTP port, and the detailed form of one segment at
``GET /v2/instrument/{exchangeSegment}``. Columns and value forms follow Dhan's column table
and live rows quoted in public test fixtures (2026):
- TICK_SIZE / SEM_TICK_SIZE in paise (NIFTY option "5.0000" = Rs 0.05; OpenAlgo divides by 100).
- Strike "-0.01000" when not an option; OPTION_TYPE "XX" when not an option.
- Detailed: date-only SM_EXPIRY_DATE, a trailing comma on every line (as Dhan's file has), and
  the freeze quantity in SM_FREEZE_QTY (its last column). The compact form has no freeze column.
- Compact: SEM_EXPIRY_DATE with the expiry time ("2026-12-01 14:30:00").
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable

from .instruments import SimInstrument

COMPACT_COLUMNS = (
    "SEM_EXM_EXCH_ID", "SEM_SEGMENT", "SEM_SMST_SECURITY_ID", "SEM_INSTRUMENT_NAME",
    "SEM_EXPIRY_CODE", "SEM_TRADING_SYMBOL", "SEM_LOT_UNITS", "SEM_CUSTOM_SYMBOL",
    "SEM_EXPIRY_DATE", "SEM_STRIKE_PRICE", "SEM_OPTION_TYPE", "SEM_TICK_SIZE",
    "SEM_EXPIRY_FLAG", "SEM_EXCH_INSTRUMENT_TYPE", "SEM_SERIES", "SM_SYMBOL_NAME",
)  # fmt: skip
DETAILED_COLUMNS = (
    "EXCH_ID", "SEGMENT", "SECURITY_ID", "ISIN", "INSTRUMENT", "UNDERLYING_SECURITY_ID",
    "UNDERLYING_SYMBOL", "SYMBOL_NAME", "DISPLAY_NAME", "INSTRUMENT_TYPE", "SERIES", "LOT_SIZE",
    "SM_EXPIRY_DATE", "STRIKE_PRICE", "OPTION_TYPE", "TICK_SIZE", "EXPIRY_FLAG", "BRACKET_FLAG",
    "COVER_FLAG", "ASM_GSM_FLAG", "ASM_GSM_CATEGORY", "BUY_SELL_INDICATOR",
    "BUY_CO_MIN_MARGIN_PER", "BUY_CO_SL_RANGE_MAX_PERC", "BUY_CO_SL_RANGE_MIN_PERC",
    "BUY_BO_MIN_MARGIN_PER", "BUY_BO_PROFIT_RANGE_MAX_PERC", "BUY_BO_PROFIT_RANGE_MIN_PERC",
    "MTF_LEVERAGE", "SM_UPPER_LIMIT", "SM_LOWER_LIMIT", "SM_FREEZE_QTY",
)  # fmt: skip

# REST exchangeSegment -> (EXCH_ID, SEGMENT letter) of the scrip master.
EXCHANGE_COLUMNS: dict[str, tuple[str, str]] = {
    "NSE_EQ": ("NSE", "E"),
    "NSE_FNO": ("NSE", "D"),
    "NSE_CURRENCY": ("NSE", "C"),
    "BSE_EQ": ("BSE", "E"),
    "BSE_FNO": ("BSE", "D"),
    "BSE_CURRENCY": ("BSE", "C"),
    "MCX_COMM": ("MCX", "M"),
    "IDX_I": ("NSE", "I"),
}
# Dhan's underlying ids for index derivatives (26000 NIFTY, 26009 BANKNIFTY) and MCX crude.
UNDERLYING_IDS = {"NIFTY": "26000", "BANKNIFTY": "26009", "CRUDEOIL": "294"}
WEEKLY_UNDERLYINGS = frozenset({"NIFTY"})


def _underlying(inst: SimInstrument) -> str:
    return inst.symbol.split("-", 1)[0] if inst.is_derivative else inst.symbol


def _instrument_type(inst: SimInstrument) -> str:
    if inst.instrument.startswith("OPT"):
        return "OP"
    if inst.instrument == "FUTCOM":
        return "FUTCOM"
    if inst.instrument.startswith("FUT"):
        return "FUT"
    return {"EQUITY": "ES", "INDEX": "INDEX"}.get(inst.instrument, inst.instrument)


def _expiry_flag(inst: SimInstrument) -> str:
    if not inst.is_derivative:
        return "NA"
    return "W" if _underlying(inst) in WEEKLY_UNDERLYINGS else "M"


def _strike(inst: SimInstrument) -> str:
    return f"{inst.strike:.5f}" if inst.opt_type in ("CE", "PE") else "-0.01000"


def _tick_paise(inst: SimInstrument) -> str:
    return f"{inst.tick_size * 100:.4f}"


def _series(inst: SimInstrument) -> str:
    if inst.instrument == "INDEX":
        return "X"
    return inst.series if inst.is_equity and inst.series else "NA"


def compact_row(inst: SimInstrument) -> list[str]:
    exch, seg = EXCHANGE_COLUMNS[inst.segment]
    return [
        exch,
        seg,
        inst.security_id,
        inst.instrument,
        "0",
        inst.symbol,
        f"{float(inst.lot_size):.1f}",
        inst.display_name,
        inst.expiry if inst.is_derivative else "",
        _strike(inst),
        inst.opt_type,
        _tick_paise(inst),
        _expiry_flag(inst),
        _instrument_type(inst),
        _series(inst),
        _underlying(inst),
    ]


def detailed_row(inst: SimInstrument) -> list[str]:
    exch, seg = EXCHANGE_COLUMNS[inst.segment]
    underlying = _underlying(inst)
    return [
        exch,
        seg,
        inst.security_id,
        inst.isin or "NA",
        inst.instrument,
        UNDERLYING_IDS.get(underlying, "NA") if inst.is_derivative else "NA",
        underlying,
        inst.symbol,
        inst.display_name,
        _instrument_type(inst),
        _series(inst),
        f"{float(inst.lot_size):.1f}",
        inst.expiry.split(" ", 1)[0] if inst.is_derivative else "",
        _strike(inst),
        inst.opt_type,
        _tick_paise(inst),
        _expiry_flag(inst),
        "N",
        "N",
        "N",
        "NA",
        "A" if inst.tradable else "NA",
        *["0"] * 7,
        "0",
        "0",
        str(inst.freeze_qty or 0),
    ]


def _write(header: Iterable[str], rows: Iterable[list[str]], trailing_comma: bool) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    tail = [""] if trailing_comma else []
    writer.writerow([*header, *tail])
    for row in rows:
        writer.writerow([*row, *tail])
    return out.getvalue()


def compact_csv(instruments: Iterable[SimInstrument]) -> str:
    return _write(COMPACT_COLUMNS, (compact_row(i) for i in instruments), trailing_comma=False)


def detailed_csv(instruments: Iterable[SimInstrument], segment: str | None = None) -> str:
    chosen = (i for i in instruments if segment is None or i.segment == segment)
    return _write(DETAILED_COLUMNS, (detailed_row(i) for i in chosen), trailing_comma=True)
