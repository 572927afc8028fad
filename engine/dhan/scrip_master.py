"""Dhan's published instrument master (the "scrip master" CSV): download, parse, keep, fall back.

Where (``dhanhq.co/docs/v2/instruments``, "Instrument List"):

- compact:  ``https://images.dhan.co/api-data/api-scrip-master.csv``
- detailed: ``https://images.dhan.co/api-data/api-scrip-master-detailed.csv`` (the default here)

Columns used (detailed name / compact name): exchange ``EXCH_ID``/``SEM_EXM_EXCH_ID`` (NSE, BSE,
MCX), segment letter ``SEGMENT``/``SEM_SEGMENT`` (E equity, D derivatives, C currency, M
commodity, I index), ``SECURITY_ID``/``SEM_SMST_SECURITY_ID``, ``INSTRUMENT``/
``SEM_INSTRUMENT_NAME`` (EQUITY, OPTIDX, FUTCOM…), ``INSTRUMENT_TYPE``/``SEM_EXCH_INSTRUMENT_TYPE``,
``LOT_SIZE``/``SEM_LOT_UNITS``, ``TICK_SIZE``/``SEM_TICK_SIZE``, ``OPTION_TYPE``/
``SEM_OPTION_TYPE`` (CE, PE; XX when not an option), ``SM_EXPIRY_DATE``/``SEM_EXPIRY_DATE``,
``STRIKE_PRICE``/``SEM_STRIKE_PRICE`` (a negative placeholder when not an option),
``SYMBOL_NAME``/``SEM_TRADING_SYMBOL``, ``DISPLAY_NAME``/``SEM_CUSTOM_SYMBOL``,
``UNDERLYING_SYMBOL``/``SM_SYMBOL_NAME``. Only the detailed file has the freeze quantity
(``SM_FREEZE_QTY``, its last column; 0 or negative on cash rows = none published); its lines
end with a trailing comma.

Units (not in Dhan's table; from live rows quoted by third parties and OpenAlgo's Dhan master
download, which divides by 100): ``TICK_SIZE`` is in **paise** ("5.0000" = Rs 0.05; MCX crude
"100.0000" = Rs 1); lot size is a float ("65.0").

Freeze quantity when the file has none (the compact form, or a 0/negative value on a
derivative): :data:`INDEX_FREEZE_QTY`, NSE's limits for index derivatives from its circular of
29 Aug 2025 (effective 1 Sep 2025). NSE revises them monthly; the detailed file is preferred
and ``COPYTRADE_INSTRUMENTS_FILE`` (a detailed file) overrides both.

Loading (:class:`ScripMaster`): an override file wins when given. Otherwise download; a good
download replaces the last good copy on disk (atomically); a failed download falls back to that
copy; with neither, the result says so. Every result that is not a fresh download or the
override carries an ``alert`` text. Bad rows are skipped and counted, never fatal.
"""

from __future__ import annotations

import asyncio
import csv
import io
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from enum import StrEnum
from pathlib import Path

import aiohttp

from engine.clock import Clock, SystemClock, to_ist
from engine.domain import Instrument, Segment

__all__ = [
    "COMPACT_URL",
    "DEFAULT_URL",
    "DETAILED_URL",
    "INDEX_FREEZE_QTY",
    "LoadResult",
    "LoadSource",
    "MasterInstrument",
    "ParsedMaster",
    "ScripMaster",
    "ScripMasterError",
    "parse_scrip_master",
]

log = logging.getLogger(__name__)

COMPACT_URL = "https://images.dhan.co/api-data/api-scrip-master.csv"
DETAILED_URL = "https://images.dhan.co/api-data/api-scrip-master-detailed.csv"
DEFAULT_URL = DETAILED_URL
CACHE_FILE_NAME = "dhan-scrip-master.csv"

# NSE index-derivative quantity freeze limits (units per order), NSE circular of 29 Aug 2025,
# effective 1 Sep 2025. Used only when the file gives no freeze quantity for a contract.
INDEX_FREEZE_QTY: Mapping[str, int] = {
    "NIFTY": 1800,
    "BANKNIFTY": 900,
    "FINNIFTY": 1800,
    "MIDCPNIFTY": 2800,
    "NIFTYNXT50": 600,
}

_SEGMENTS: Mapping[tuple[str, str], Segment] = {
    ("NSE", "E"): Segment.NSE_EQ,
    ("NSE", "D"): Segment.NSE_FNO,
    ("NSE", "C"): Segment.NSE_CURRENCY,
    ("BSE", "E"): Segment.BSE_EQ,
    ("BSE", "D"): Segment.BSE_FNO,
    ("BSE", "C"): Segment.BSE_CURRENCY,
    ("MCX", "M"): Segment.MCX_COMM,
}
_OPTION_KINDS = frozenset({"OPTIDX", "OPTSTK", "OPTFUT", "OPTCUR"})
_DERIVATIVE_SEGMENTS = frozenset(
    {Segment.NSE_FNO, Segment.BSE_FNO, Segment.MCX_COMM, Segment.NSE_CURRENCY, Segment.BSE_CURRENCY}
)
_PROBLEMS_KEPT = 5


@dataclass(frozen=True)
class _Columns:
    form: str
    exchange: str
    segment: str
    security_id: str
    instrument: str
    instrument_type: str
    lot_size: str
    tick_size: str
    option_type: str
    expiry: str
    strike: str
    symbol: str
    display_name: str
    underlying: str
    freeze_qty: str = ""


_DETAILED = _Columns(
    form="detailed",
    exchange="EXCH_ID",
    segment="SEGMENT",
    security_id="SECURITY_ID",
    instrument="INSTRUMENT",
    instrument_type="INSTRUMENT_TYPE",
    lot_size="LOT_SIZE",
    tick_size="TICK_SIZE",
    option_type="OPTION_TYPE",
    expiry="SM_EXPIRY_DATE",
    strike="STRIKE_PRICE",
    symbol="SYMBOL_NAME",
    display_name="DISPLAY_NAME",
    underlying="UNDERLYING_SYMBOL",
    freeze_qty="SM_FREEZE_QTY",
)
_COMPACT = _Columns(
    form="compact",
    exchange="SEM_EXM_EXCH_ID",
    segment="SEM_SEGMENT",
    security_id="SEM_SMST_SECURITY_ID",
    instrument="SEM_INSTRUMENT_NAME",
    instrument_type="SEM_EXCH_INSTRUMENT_TYPE",
    lot_size="SEM_LOT_UNITS",
    tick_size="SEM_TICK_SIZE",
    option_type="SEM_OPTION_TYPE",
    expiry="SEM_EXPIRY_DATE",
    strike="SEM_STRIKE_PRICE",
    symbol="SEM_TRADING_SYMBOL",
    display_name="SEM_CUSTOM_SYMBOL",
    underlying="SM_SYMBOL_NAME",
)


class ScripMasterError(Exception):
    """A file that is not a Dhan scrip master at all (a bad row is not an error)."""


@dataclass(frozen=True, slots=True)
class MasterInstrument:
    segment: Segment
    security_id: str
    symbol: str
    lot_size: int
    tick_size: float  # rupees
    instrument: str = ""  # EQUITY, INDEX, OPTIDX, FUTSTK, FUTCOM ...
    instrument_type: str = ""  # the exchange's finer type (ES, OP, FUT ...)
    option_type: str = ""  # CE / PE; "" when not an option
    freeze_qty: int | None = None  # units per order; None: no limit known
    expiry: date | None = None
    strike: float | None = None
    display_name: str = ""
    underlying: str = ""

    @property
    def key(self) -> tuple[Segment, str]:
        return (self.segment, self.security_id)

    @property
    def is_option(self) -> bool:
        return self.option_type in ("CE", "PE") or self.instrument in _OPTION_KINDS

    def to_instrument(self) -> Instrument:
        return Instrument(
            segment=self.segment,
            security_id=self.security_id,
            symbol=self.symbol,
            lot_size=self.lot_size,
            tick_size=self.tick_size,
            is_option=self.is_option,
        )


@dataclass(frozen=True)
class ParsedMaster:
    instruments: tuple[MasterInstrument, ...]
    form: str  # "detailed" or "compact"
    rows: int  # data rows read
    skipped: int  # rows that could not be used (counted, not fatal)
    problems: tuple[str, ...] = ()  # the first few reasons, for the log


def _float(text: str, name: str) -> float:
    try:
        value = float(text.strip().replace(",", ""))
    except ValueError:
        raise ValueError(f"{name} {text!r} is not a number") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"{name} {text!r} is not a finite number")
    return value


def _expiry(text: str) -> date | None:
    text = text.strip()
    if not text or text.upper() in ("NA", "-1") or text.startswith("0001-01-01"):
        return None
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d", "%d-%m-%Y", "%d-%b-%Y"):
        try:
            return datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    return None  # cosmetic for us: an unreadable expiry never costs the row


def _columns_for(header: Iterable[str]) -> _Columns:
    names = {name.strip().upper() for name in header}
    for columns in (_DETAILED, _COMPACT):
        needed = {columns.exchange, columns.segment, columns.security_id, columns.lot_size}
        if needed <= names:
            return columns
    raise ScripMasterError(
        "not a Dhan scrip master (no EXCH_ID/SEGMENT/SECURITY_ID/LOT_SIZE columns, nor their"
        " SEM_ forms)"
    )


def _row_instrument(row: Mapping[str, str], c: _Columns) -> MasterInstrument | None:
    """One row -> instrument; None for a row of a segment we do not trade. Raises ValueError."""

    def get(column: str) -> str:
        return (row.get(column) or "").strip() if column else ""

    exchange, letter = get(c.exchange).upper(), get(c.segment).upper()
    if letter == "I":
        segment: Segment | None = Segment.IDX_I
    else:
        segment = _SEGMENTS.get((exchange, letter))
    if segment is None:
        return None
    security_id = get(c.security_id)
    if security_id.endswith(".0"):
        security_id = security_id[:-2]
    if not security_id or not security_id.isdigit():
        raise ValueError(f"security id {security_id!r} is not a number")
    lot = int(_float(get(c.lot_size) or "0", "lot size"))
    tick_paise = _float(get(c.tick_size) or "0", "tick size")
    instrument = get(c.instrument).upper()
    derivative = segment in _DERIVATIVE_SEGMENTS and instrument not in ("EQUITY", "INDEX")
    if lot <= 0:
        if derivative:
            raise ValueError(f"derivative {security_id} has lot size {lot}")
        lot = 1
    if tick_paise <= 0:
        if segment is not Segment.IDX_I:
            raise ValueError(f"{security_id} has tick size {tick_paise}")
        tick_paise = 5.0
    option = get(c.option_type).upper()
    option = option if option in ("CE", "PE") else ""
    strike_text = get(c.strike)
    strike: float | None = None
    if option and strike_text:
        strike = _float(strike_text, "strike")
    underlying = get(c.underlying).upper()
    freeze: int | None = None
    freeze_text = get(c.freeze_qty)
    if freeze_text:
        value = int(_float(freeze_text, "freeze quantity"))
        freeze = value if value > 0 else None  # 0/negative: none published
    if freeze is None and derivative and segment is Segment.NSE_FNO:
        freeze = INDEX_FREEZE_QTY.get(underlying) if instrument.endswith("IDX") else None
    return MasterInstrument(
        segment=segment,
        security_id=security_id,
        symbol=get(c.symbol) or get(c.display_name),
        lot_size=lot,
        tick_size=round(tick_paise / 100.0, 6),
        instrument=instrument,
        instrument_type=get(c.instrument_type).upper(),
        option_type=option,
        freeze_qty=freeze,
        expiry=_expiry(get(c.expiry)),
        strike=strike,
        display_name=get(c.display_name),
        underlying=underlying,
    )


def _rows(reader: Iterator[list[str]], header: list[str]) -> Iterator[dict[str, str]]:
    for values in reader:
        if not any(v.strip() for v in values):
            continue
        # Dhan's detailed lines end with a trailing comma: an extra, empty, unnamed field.
        yield {name: value for name, value in zip(header, values, strict=False) if name}


def parse_scrip_master(text: str) -> ParsedMaster:
    """Parse either form. Raises ScripMasterError only when the file is not a scrip master or
    has no usable row; bad rows are skipped and counted."""
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")))
    try:
        header = [name.strip().upper() for name in next(reader)]
    except StopIteration:
        raise ScripMasterError("the file is empty") from None
    columns = _columns_for(header)
    instruments: dict[tuple[Segment, str], MasterInstrument] = {}
    rows = skipped = 0
    problems: list[str] = []
    for row in _rows(reader, header):
        rows += 1
        try:
            inst = _row_instrument(row, columns)
        except ValueError as exc:
            skipped += 1
            if len(problems) < _PROBLEMS_KEPT:
                problems.append(f"row {rows}: {exc}")
            continue
        if inst is not None:
            instruments[inst.key] = inst
    if not instruments:
        raise ScripMasterError(f"no usable instrument in {rows} rows ({skipped} unreadable)")
    return ParsedMaster(tuple(instruments.values()), columns.form, rows, skipped, tuple(problems))


# --- loading ------------------------------------------------------------------------------


class LoadSource(StrEnum):
    DOWNLOADED = "DOWNLOADED"  # fresh from the URL (and kept on disk)
    OVERRIDE_FILE = "OVERRIDE_FILE"  # COPYTRADE_INSTRUMENTS_FILE
    LAST_GOOD_COPY = "LAST_GOOD_COPY"  # the download failed: the copy kept on disk
    NONE = "NONE"  # nothing: lot/tick only from what the socket teaches


@dataclass(frozen=True)
class LoadResult:
    source: LoadSource
    instruments: tuple[MasterInstrument, ...] = ()
    skipped: int = 0
    copy_date: datetime | None = None  # when the data used was fetched (IST)
    alert: str = ""  # set when the user should know (fallback, nothing, skipped rows)
    problems: tuple[str, ...] = field(default=())

    @property
    def needs_alert(self) -> bool:
        return bool(self.alert)


class ScripMaster:
    """Loads the scrip master at start and once a day (see :meth:`run_daily`)."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        cache_path: Path | None = None,
        *,
        override_file: Path | None = None,
        clock: Clock | None = None,
        timeout_s: float = 60.0,
    ) -> None:
        self.url = url
        self.cache_path = cache_path
        self.override_file = override_file
        self.timeout_s = timeout_s
        self._clock: Clock = clock or SystemClock()
        self.last: LoadResult | None = None
        self.last_download_day: date | None = None

    @staticmethod
    def cache_path_beside(db_path: Path) -> Path:
        """Where the last good copy lives: beside the database."""
        return Path(db_path).with_name(CACHE_FILE_NAME)

    async def load(self) -> LoadResult:
        """Never raises: every failure is a LoadResult with an alert."""
        if self.override_file is not None:
            result = await self._load_override(self.override_file)
        else:
            result = await self._load_download()
        self.last = result
        level = logging.WARNING if result.needs_alert else logging.INFO
        log.log(
            level,
            "instruments: %s, %d instruments%s",
            result.source.value,
            len(result.instruments),
            f"; {result.alert}" if result.alert else "",
        )
        return result

    async def _load_override(self, path: Path) -> LoadResult:
        try:
            text = await asyncio.to_thread(path.read_text, encoding="utf-8-sig")
            parsed = parse_scrip_master(text)
        except (OSError, UnicodeDecodeError, ScripMasterError) as exc:
            return LoadResult(
                LoadSource.NONE, alert=f"instruments file {path} unusable: {_describe(exc)}"
            )
        return LoadResult(
            LoadSource.OVERRIDE_FILE,
            parsed.instruments,
            parsed.skipped,
            copy_date=_mtime(path),
            alert=_skipped_alert(parsed),
            problems=parsed.problems,
        )

    async def _load_download(self) -> LoadResult:
        try:
            text = await self._download()
            parsed = parse_scrip_master(text)
        except (OSError, TimeoutError, aiohttp.ClientError, ScripMasterError, ValueError) as exc:
            failure = _describe(exc)
        else:
            self.last_download_day = to_ist(self._clock.now()).date()
            self._keep(text)
            return LoadResult(
                LoadSource.DOWNLOADED,
                parsed.instruments,
                parsed.skipped,
                copy_date=to_ist(self._clock.now()),
                alert=_skipped_alert(parsed),
                problems=parsed.problems,
            )
        return await self._fallback(f"downloading {self.url} failed: {failure}")

    async def _download(self) -> str:
        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(self.url) as response,
        ):
            if response.status != 200:
                raise ValueError(f"HTTP {response.status}")
            raw = await response.read()
        return raw.decode("utf-8-sig", errors="replace")

    def _keep(self, text: str) -> None:
        if self.cache_path is None:
            return
        tmp = self.cache_path.with_name(self.cache_path.name + ".tmp")
        try:
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, self.cache_path)  # a crash never leaves half a copy
        except OSError as exc:
            log.warning("instruments: cannot keep a copy at %s: %s", self.cache_path, exc)

    async def _fallback(self, why: str) -> LoadResult:
        path = self.cache_path
        if path is None or not path.exists():
            return LoadResult(
                LoadSource.NONE,
                alert=f"{why}; no saved copy: lot and tick sizes only from the order stream",
            )
        try:
            text = await asyncio.to_thread(path.read_text, encoding="utf-8-sig")
            parsed = parse_scrip_master(text)
        except (OSError, UnicodeDecodeError, ScripMasterError) as exc:
            return LoadResult(
                LoadSource.NONE,
                alert=f"{why}; the saved copy is unusable ({_describe(exc)}): lot and tick"
                " sizes only from the order stream",
            )
        fetched = _mtime(path)
        when = fetched.strftime("%Y-%m-%d %H:%M IST") if fetched else "an unknown time"
        return LoadResult(
            LoadSource.LAST_GOOD_COPY,
            parsed.instruments,
            parsed.skipped,
            copy_date=fetched,
            alert=f"{why}; using the copy saved at {when}",
            problems=parsed.problems,
        )

    def refresh_due(self) -> bool:
        """True when no download succeeded yet today (IST)."""
        today = to_ist(self._clock.now()).date()
        return self.last_download_day != today

    def seconds_until_next_refresh(self, at_hour_ist: int = 8) -> float:
        """Seconds until the next ``at_hour_ist``:00 IST (before the market opens)."""
        now = to_ist(self._clock.now())
        target = now.replace(hour=at_hour_ist, minute=0, second=0, microsecond=0)
        if target <= now:
            target += timedelta(days=1)
        return (target - now).total_seconds()

    async def run_daily(
        self, on_loaded: Callable[[LoadResult], None], *, at_hour_ist: int = 8
    ) -> None:
        """Reload once a day at ``at_hour_ist``:00 IST until cancelled; a failed download is
        retried every 15 minutes until one succeeds that day."""
        while True:
            await self._clock.sleep(self.seconds_until_next_refresh(at_hour_ist))
            while True:
                result = await self.load()
                _call(on_loaded, result)
                if not self.refresh_due() or self.override_file is not None:
                    break
                await self._clock.sleep(15 * 60)


def _call(callback: Callable[[LoadResult], None], result: LoadResult) -> None:
    try:
        callback(result)
    except Exception:
        log.exception("instruments: on_loaded callback failed")


def _mtime(path: Path) -> datetime | None:
    try:
        return to_ist(datetime.fromtimestamp(path.stat().st_mtime).astimezone())
    except OSError:
        return None


def _skipped_alert(parsed: ParsedMaster) -> str:
    if not parsed.skipped:
        return ""
    return f"{parsed.skipped} of {parsed.rows} rows unreadable and skipped"


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
