"""The simulator's instrument master: a handful of Dhan instruments with their real ids.

Equity and index ids (2885 RELIANCE, 1333 HDFCBANK, 11536 TCS, 13 NIFTY, 25 BANKNIFTY) are
Dhan's published security ids. Derivative security ids are per contract on Dhan and change
with every series: the option and futures ids below are ILLUSTRATIVE (realistic 5/6-digit
numbers, not looked up), as are the default prices (a plausible late-November-2026 market).
Lot sizes follow NSE's 2026 revision (NIFTY 65, BANKNIFTY 30). Freeze quantities are Dhan's
SM_FREEZE_QTY column of the detailed scrip master, where an order must stay below the value:
NIFTY 1756 is the value of a live NIFTY row of Sep 2026 quoted in public test fixtures (27 lots
of 65 at most); BANKNIFTY 601 and CRUDEOIL 10001 (units) are illustrative, in the same
"largest order + 1" form. Tick sizes are in rupees here; the scrip master CSV writes them in
paise, as Dhan's does.
"""

from __future__ import annotations

from dataclasses import dataclass

NULL_DATE = "0001-01-01 00:00:00"


@dataclass(frozen=True, slots=True)
class SimInstrument:
    segment: str  # REST exchangeSegment: NSE_EQ, NSE_FNO, MCX_COMM, IDX_I ...
    security_id: str
    symbol: str  # tradingSymbol / socket Symbol
    display_name: str
    instrument: str  # EQUITY, OPTIDX, FUTCOM, INDEX
    lot_size: int = 1
    tick_size: float = 0.05
    freeze_qty: int | None = None  # None: no per-order freeze limit (cash segment)
    expiry: str = NULL_DATE  # "YYYY-MM-DD 14:30:00" for derivatives
    strike: float = 0.0
    opt_type: str = "XX"  # CE / PE / XX
    isin: str = ""
    series: str = ""
    tradable: bool = True
    default_price: float = 100.0

    @property
    def key(self) -> tuple[str, str]:
        return (self.segment, self.security_id)

    @property
    def max_order_qty(self) -> int | None:
        """The largest order the exchange takes: lots strictly below the freeze quantity."""
        if not self.freeze_qty:
            return None
        return max((self.freeze_qty - 1) // self.lot_size * self.lot_size, self.lot_size)

    @property
    def is_derivative(self) -> bool:
        return self.instrument in {"OPTIDX", "OPTSTK", "FUTIDX", "FUTSTK", "FUTCOM", "OPTFUT"}

    @property
    def is_equity(self) -> bool:
        return self.instrument == "EQUITY"


def _opt(
    sec_id: str, underlying: str, expiry_label: str, expiry: str, strike: int, opt: str,
    lot: int, freeze: int, price: float,
) -> SimInstrument:  # fmt: skip
    return SimInstrument(
        segment="NSE_FNO",
        security_id=sec_id,
        symbol=f"{underlying}-{expiry_label}-{strike}-{opt}",
        display_name=f"{underlying} {expiry_label.replace('-', ' ').upper()} {strike} "
        f"{'CALL' if opt == 'CE' else 'PUT'}",
        instrument="OPTIDX",
        lot_size=lot,
        tick_size=0.05,
        freeze_qty=freeze,
        expiry=expiry,
        strike=float(strike),
        opt_type=opt,
        series="XX",
        default_price=price,
    )


NIFTY_EXPIRY = "2026-12-01 14:30:00"  # weekly NIFTY expiry (Tuesday)
BANKNIFTY_EXPIRY = "2026-12-29 14:30:00"  # monthly BANKNIFTY expiry (last Tuesday)

DEFAULT_INSTRUMENTS: tuple[SimInstrument, ...] = (
    SimInstrument(
        "NSE_EQ",
        "2885",
        "RELIANCE",
        "Reliance Industries",
        "EQUITY",
        isin="INE002A01018",
        series="EQ",
        default_price=1545.60,
    ),
    SimInstrument(
        "NSE_EQ",
        "1333",
        "HDFCBANK",
        "HDFC Bank",
        "EQUITY",
        isin="INE040A01034",
        series="EQ",
        default_price=1012.35,
    ),
    SimInstrument(
        "NSE_EQ",
        "11536",
        "TCS",
        "Tata Consultancy Services",
        "EQUITY",
        isin="INE467B01029",
        series="EQ",
        default_price=3187.90,
    ),
    SimInstrument(
        "IDX_I", "13", "NIFTY", "Nifty 50", "INDEX", tradable=False, default_price=26140.25
    ),
    SimInstrument(
        "IDX_I", "25", "BANKNIFTY", "Nifty Bank", "INDEX", tradable=False, default_price=59420.80
    ),
    # NIFTY weekly options, 01 Dec 2026 expiry (ids illustrative).
    _opt("48211", "NIFTY", "Dec2026", NIFTY_EXPIRY, 26000, "CE", 65, 1756, 221.45),
    _opt("48212", "NIFTY", "Dec2026", NIFTY_EXPIRY, 26000, "PE", 65, 1756, 84.30),
    _opt("48215", "NIFTY", "Dec2026", NIFTY_EXPIRY, 26100, "CE", 65, 1756, 158.20),
    _opt("48216", "NIFTY", "Dec2026", NIFTY_EXPIRY, 26100, "PE", 65, 1756, 119.85),
    _opt("48219", "NIFTY", "Dec2026", NIFTY_EXPIRY, 26200, "CE", 65, 1756, 106.65),
    _opt("48220", "NIFTY", "Dec2026", NIFTY_EXPIRY, 26200, "PE", 65, 1756, 166.10),
    # BANKNIFTY monthly options, 29 Dec 2026 expiry (ids illustrative).
    _opt("52874", "BANKNIFTY", "Dec2026", BANKNIFTY_EXPIRY, 59000, "CE", 30, 601, 1185.40),
    _opt("52875", "BANKNIFTY", "Dec2026", BANKNIFTY_EXPIRY, 59000, "PE", 30, 601, 742.15),
    _opt("52880", "BANKNIFTY", "Dec2026", BANKNIFTY_EXPIRY, 59500, "CE", 30, 601, 912.60),
    _opt("52881", "BANKNIFTY", "Dec2026", BANKNIFTY_EXPIRY, 59500, "PE", 30, 601, 968.05),
    # MCX crude oil futures, December 2026 contract (id illustrative).
    SimInstrument(
        "MCX_COMM",
        "458305",
        "CRUDEOIL-18Dec2026-FUT",
        "CRUDEOIL DEC FUT",
        "FUTCOM",
        lot_size=100,
        tick_size=1.0,
        freeze_qty=10001,
        expiry="2026-12-18 23:30:00",
        default_price=5812.0,
    ),
)


class InstrumentMaster:
    """Lookup by (exchangeSegment, securityId)."""

    def __init__(self, instruments: tuple[SimInstrument, ...] = DEFAULT_INSTRUMENTS) -> None:
        self._by_key: dict[tuple[str, str], SimInstrument] = {i.key: i for i in instruments}

    def get(self, segment: str, security_id: str) -> SimInstrument | None:
        return self._by_key.get((segment, str(security_id).strip()))

    def add(self, instrument: SimInstrument) -> None:
        self._by_key[instrument.key] = instrument

    def all(self) -> list[SimInstrument]:
        return list(self._by_key.values())
