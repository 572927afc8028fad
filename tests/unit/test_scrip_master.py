"""Dhan's scrip master: parsing both forms, download, last good copy, fallbacks, the book."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

import pytest
from aiohttp import web

from engine.clock import IST, ManualClock
from engine.config import Settings
from engine.dhan.codec import InstrumentHint
from engine.dhan.scrip_master import (
    DEFAULT_URL,
    INDEX_FREEZE_QTY,
    LoadResult,
    LoadSource,
    ScripMaster,
    ScripMasterError,
    parse_scrip_master,
)
from engine.domain import Segment
from engine.instruments import InstrumentBook, InstrumentsFileError, round_to_tick

# Header and rows shaped like Dhan's detailed file: a trailing comma on every line, tick in
# paise, lot as a float, strike -0.01 and option XX when not an option, freeze quantity last
# (a live NIFTY option row fetched 2026-08-26 reads "...,65.0,2026-09-29,29150.00000,CE,5.0000,
# M,N,N,N,NA,A,0,0,0,0,0,0,0,20.1000,0.0500,1756,").
DETAILED_HEADER = (
    "EXCH_ID,SEGMENT,SECURITY_ID,ISIN,INSTRUMENT,UNDERLYING_SECURITY_ID,UNDERLYING_SYMBOL,"
    "SYMBOL_NAME,DISPLAY_NAME,INSTRUMENT_TYPE,SERIES,LOT_SIZE,SM_EXPIRY_DATE,STRIKE_PRICE,"
    "OPTION_TYPE,TICK_SIZE,EXPIRY_FLAG,BRACKET_FLAG,COVER_FLAG,ASM_GSM_FLAG,ASM_GSM_CATEGORY,"
    "BUY_SELL_INDICATOR,BUY_CO_MIN_MARGIN_PER,BUY_CO_SL_RANGE_MAX_PERC,BUY_CO_SL_RANGE_MIN_PERC,"
    "BUY_BO_MIN_MARGIN_PER,BUY_BO_PROFIT_RANGE_MAX_PERC,BUY_BO_PROFIT_RANGE_MIN_PERC,MTF_LEVERAGE,"
    "SM_UPPER_LIMIT,SM_LOWER_LIMIT,SM_FREEZE_QTY,"
)
NIFTY_CE = (
    "NSE,D,35084,NA,OPTIDX,26000,NIFTY,NIFTY-Sep2026-29150-CE,NIFTY 29 SEP 29150 CALL,OP,NA,"
    "65.0,2026-09-29,29150.00000,CE,5.0000,M,N,N,N,NA,A,0,0,0,0,0,0,0,20.1000,0.0500,1756,"
)
NIFTY_FUT_NO_FREEZE = (
    "NSE,D,49081,NA,FUTIDX,26000,NIFTY,NIFTY-Sep2026-FUT,NIFTY SEP FUT,FUT,NA,"
    "65.0,2026-09-29,-0.01000,XX,10.0000,M,N,N,N,NA,A,0,0,0,0,0,0,0,28000.0,24000.0,0,"
)
CRUDE_FUT = (
    "MCX,M,458305,NA,FUTCOM,294,CRUDEOIL,CRUDEOIL-18Dec2026-FUT,CRUDEOIL DEC FUT,FUTCOM,NA,"
    "100.0,2026-12-18,-0.01000,XX,100.0000,M,N,N,N,NA,A,0,0,0,0,0,0,0,6400.0,5200.0,10000,"
)
RELIANCE_EQ = (
    "NSE,E,2885,INE002A01018,EQUITY,NA,RELIANCE,RELIANCE,Reliance Industries,ES,EQ,"
    "1.0,,-0.01000,XX,10.0000,NA,Y,Y,N,NA,A,0,0,0,0,0,0,4,1700.0,1390.0,-1,"
)
NIFTY_INDEX = (
    "NSE,I,13,NA,INDEX,NA,NIFTY,NIFTY,Nifty 50,INDEX,X,1.0,,-0.01000,XX,0.0000,NA,N,N,N,NA,NA,"
    "0,0,0,0,0,0,0,0,0,0,"
)
BAD_ROWS = (
    "NSE,D,xx12,NA,OPTIDX,26000,NIFTY,BROKEN,BROKEN,OP,NA,65.0,2026-09-29,1,CE,5.0,M,",
    "NSE,D,35090,NA,OPTIDX,26000,NIFTY,NOLOT,NOLOT,OP,NA,0,2026-09-29,29200,CE,5.0,M,",
    "NSE,D,35091,NA,OPTIDX,26000,NIFTY,NOTICK,NOTICK,OP,NA,65.0,2026-09-29,29200,CE,abc,M,",
)
OTHER_EXCHANGE = "NCDEX,X,777,NA,FUTCOM,NA,GUAR,GUAR,GUAR,FUT,NA,5.0,,-0.01,XX,100.0,M,"


def detailed(*rows: str) -> str:
    return "\n".join([DETAILED_HEADER, *rows]) + "\n"


COMPACT_HEADER = (
    "SEM_EXM_EXCH_ID,SEM_SEGMENT,SEM_SMST_SECURITY_ID,SEM_INSTRUMENT_NAME,SEM_EXPIRY_CODE,"
    "SEM_TRADING_SYMBOL,SEM_LOT_UNITS,SEM_CUSTOM_SYMBOL,SEM_EXPIRY_DATE,SEM_STRIKE_PRICE,"
    "SEM_OPTION_TYPE,SEM_TICK_SIZE,SEM_EXPIRY_FLAG,SEM_EXCH_INSTRUMENT_TYPE,SEM_SERIES,"
    "SM_SYMBOL_NAME"
)
COMPACT_ROWS = (
    "NSE,D,52874,OPTIDX,0,BANKNIFTY-Dec2026-59000-CE,30.0,BANKNIFTY 29 DEC 59000 CALL,"
    "2026-12-29 14:30:00,59000.00000,CE,5.0000,M,OP,NA,BANKNIFTY",
    "MCX,M,458305,FUTCOM,0,CRUDEOIL-18Dec2026-FUT,100.0,CRUDEOIL DEC FUT,2026-12-18 23:30:00,"
    "-0.01000,XX,100.0000,M,FUTCOM,NA,CRUDEOIL",
    "NSE,E,1333,EQUITY,0,HDFCBANK,1.0,HDFC Bank,,,,5.0000,NA,ES,EQ,HDFC BANK LTD",
)


def compact() -> str:
    return "\n".join([COMPACT_HEADER, *COMPACT_ROWS]) + "\n"


# --- parsing ------------------------------------------------------------------------------


def test_detailed_rows() -> None:
    parsed = parse_scrip_master(detailed(NIFTY_CE, CRUDE_FUT, RELIANCE_EQ, NIFTY_INDEX))
    assert parsed.form == "detailed" and parsed.rows == 4 and parsed.skipped == 0
    by_id = {i.security_id: i for i in parsed.instruments}
    ce = by_id["35084"]
    assert ce.segment is Segment.NSE_FNO and ce.lot_size == 65 and ce.tick_size == 0.05
    assert ce.option_type == "CE" and ce.is_option and ce.instrument == "OPTIDX"
    assert ce.freeze_qty == 1756 and ce.expiry == date(2026, 9, 29) and ce.strike == 29150.0
    assert ce.symbol == "NIFTY-Sep2026-29150-CE" and ce.underlying == "NIFTY"
    crude = by_id["458305"]
    assert crude.segment is Segment.MCX_COMM and crude.tick_size == 1.0 and crude.lot_size == 100
    assert crude.option_type == "" and not crude.is_option and crude.strike is None
    assert crude.freeze_qty == 10000
    reliance = by_id["2885"]
    assert reliance.segment is Segment.NSE_EQ and reliance.tick_size == 0.10
    assert reliance.freeze_qty is None  # -1: no limit published
    assert by_id["13"].segment is Segment.IDX_I


def test_compact_rows_and_the_index_freeze_table() -> None:
    parsed = parse_scrip_master(compact())
    assert parsed.form == "compact" and parsed.skipped == 0
    by_id = {i.security_id: i for i in parsed.instruments}
    # The compact file has no freeze column: NSE's index table fills it for index options.
    assert by_id["52874"].freeze_qty == INDEX_FREEZE_QTY["BANKNIFTY"] == 900
    assert by_id["52874"].lot_size == 30 and by_id["52874"].option_type == "CE"
    assert by_id["52874"].expiry == date(2026, 12, 29)
    assert by_id["458305"].tick_size == 1.0 and by_id["458305"].freeze_qty is None
    assert by_id["1333"].tick_size == 0.05 and by_id["1333"].lot_size == 1


def test_a_zero_freeze_on_an_index_derivative_falls_back_to_the_table() -> None:
    parsed = parse_scrip_master(detailed(NIFTY_FUT_NO_FREEZE))
    assert parsed.instruments[0].freeze_qty == 1800


def test_bad_rows_are_skipped_and_counted() -> None:
    parsed = parse_scrip_master(detailed(NIFTY_CE, *BAD_ROWS, OTHER_EXCHANGE, "", CRUDE_FUT))
    assert parsed.rows == 6 and parsed.skipped == 3
    assert sorted(i.security_id for i in parsed.instruments) == ["35084", "458305"]
    assert len(parsed.problems) == 3 and "xx12" in parsed.problems[0]


@pytest.mark.parametrize(
    "text",
    ["", "a,b,c\n1,2,3\n", DETAILED_HEADER + "\n", detailed(*BAD_ROWS)],
)
def test_not_a_scrip_master(text: str) -> None:
    with pytest.raises(ScripMasterError):
        parse_scrip_master(text)


# --- the book -----------------------------------------------------------------------------


def test_book_from_the_master_and_the_socket() -> None:
    book = InstrumentBook(parse_scrip_master(detailed(NIFTY_CE, CRUDE_FUT)).instruments)
    assert book.lot_size(Segment.MCX_COMM, "458305") == 100
    assert book.tick_size(Segment.MCX_COMM, "458305") == 1.0
    assert book.freeze_qty(Segment.NSE_FNO, "35084") == 1756
    assert not book.needs_slicing(Segment.NSE_FNO, "35084", 1756)
    assert book.needs_slicing(Segment.NSE_FNO, "35084", 1757)
    assert not book.needs_slicing(Segment.NSE_EQ, "2885", 10**6)  # no limit known
    assert book.option_type(Segment.NSE_FNO, "35084") == "CE"
    assert book.instrument_type(Segment.MCX_COMM, "458305") == "FUTCOM"
    assert book.is_option(Segment.NSE_FNO, "35084") and not book.is_option(
        Segment.MCX_COMM, "458305"
    )
    # Protected prices land on the real tick: MCX crude in whole rupees.
    assert book.round_price(Segment.MCX_COMM, "458305", 5870.12) == 5870.0
    assert book.round_price(Segment.MCX_COMM, "458305", 5870.12, up=True) == 5871.0
    assert book.round_price(Segment.NSE_FNO, "35084", 221.47) == 221.45
    # An instrument the master lacks: what the socket taught, then defaults.
    unknown = (Segment.MCX_COMM, "999001")
    assert book.lot_size(*unknown) == 0 and book.tick_size(*unknown) == 0.05
    book.learn(InstrumentHint(Segment.MCX_COMM, "999001", lot_size=100, tick_size=1.0))
    book.learn(InstrumentHint(Segment.MCX_COMM, "999001", option_type="CE"))
    assert book.lot_size(*unknown) == 100 and book.tick_size(*unknown) == 1.0
    assert book.option_type(*unknown) == "CE" and book.is_option(*unknown)
    assert book.freeze_qty(*unknown) is None
    # A new day's master replaces the old one; the socket's lesson stays as a fallback.
    assert not book.apply_load(LoadResult(LoadSource.NONE, alert="download failed"))
    assert book.get(Segment.MCX_COMM, "458305") is not None  # nothing new: the old one stays
    new_day = parse_scrip_master(detailed(RELIANCE_EQ)).instruments
    assert book.apply_load(LoadResult(LoadSource.DOWNLOADED, new_day))
    assert book.get(Segment.MCX_COMM, "458305") is None and len(book) == 1
    assert book.tick_size(*unknown) == 1.0


@pytest.mark.parametrize(
    ("price", "tick", "up", "expected"),
    [
        (5812.4, 1.0, None, 5812.0),
        (5812.5, 1.0, True, 5813.0),
        (5812.5, 1.0, False, 5812.0),
        (221.45, 0.05, True, 221.45),  # already on the grid: unchanged whatever the way
        (221.46, 0.05, False, 221.45),
        (1500.04, 0.10, True, 1500.1),
        (83.2525, 0.0025, None, 83.2525),
        (100.0, 0.0, None, 100.0),
    ],
)
def test_round_to_tick(price: float, tick: float, up: bool | None, expected: float) -> None:
    assert round_to_tick(price, tick, up=up) == expected


def test_instruments_file_override_reads_both_forms(tmp_path: Path) -> None:
    path = tmp_path / "master.csv"
    path.write_text(compact())
    assert InstrumentBook.from_scrip_master(path).tick_size(Segment.MCX_COMM, "458305") == 1.0
    path.write_text(detailed(NIFTY_CE))
    assert InstrumentBook.from_scrip_master(path).freeze_qty(Segment.NSE_FNO, "35084") == 1756
    path.write_text("not,a,master\n")
    with pytest.raises(InstrumentsFileError, match="not a Dhan scrip master"):
        InstrumentBook.from_scrip_master(path)
    with pytest.raises(InstrumentsFileError, match="cannot read"):
        InstrumentBook.from_scrip_master(tmp_path / "missing.csv")


def test_the_setting_defaults_to_dhans_real_url() -> None:
    assert Settings.model_fields["instruments_url"].default == DEFAULT_URL
    assert DEFAULT_URL == "https://images.dhan.co/api-data/api-scrip-master-detailed.csv"


# --- loading: download, last good copy, fallbacks -----------------------------------------

MASTER_PATH = "/api-data/api-scrip-master-detailed.csv"


@dataclass
class FakeImages:
    """Dhan's images host on loopback: serves the CSV at Dhan's real path."""

    body: str = ""
    status: int = 200
    delay_s: float = 0.0
    hits: int = 0
    url: str = ""
    errors: list[str] = field(default_factory=list)

    async def handle(self, _: web.Request) -> web.Response:
        self.hits += 1
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        return web.Response(text=self.body, status=self.status, content_type="text/csv")


@pytest.fixture
async def images() -> AsyncIterator[FakeImages]:
    fake = FakeImages(body=detailed(NIFTY_CE, CRUDE_FUT))
    app = web.Application()
    app.router.add_get(MASTER_PATH, fake.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    fake.url = f"http://{host}:{port}{MASTER_PATH}"
    yield fake
    await runner.cleanup()


async def test_download_keeps_a_copy_and_a_failure_falls_back_to_it(
    images: FakeImages, tmp_path: Path
) -> None:
    cache = ScripMaster.cache_path_beside(tmp_path / "copytrade.db")
    assert cache == tmp_path / "dhan-scrip-master.csv"
    master = ScripMaster(images.url, cache, timeout_s=2)
    first = await master.load()
    assert first.source is LoadSource.DOWNLOADED and not first.needs_alert
    assert len(first.instruments) == 2 and cache.read_text() == images.body
    # Written beside and renamed in place: no half-written file is ever left behind.
    assert not cache.with_name(cache.name + ".tmp").exists()
    assert not master.refresh_due()
    # The next download fails (HTTP 502, then a file that is not a scrip master): the last
    # good copy is used, with an alert, and it is not overwritten.
    for status, body in ((502, "<html>bad gateway</html>"), (200, "<html>login</html>")):
        images.status, images.body = status, body
        result = await master.load()
        assert result.source is LoadSource.LAST_GOOD_COPY
        assert len(result.instruments) == 2 and result.needs_alert
        assert "using the copy saved at" in result.alert
        assert "35084" in cache.read_text()


async def test_no_download_and_no_copy_says_so(images: FakeImages, tmp_path: Path) -> None:
    images.status = 500
    result = await ScripMaster(images.url, tmp_path / "copy.csv", timeout_s=2).load()
    assert result.source is LoadSource.NONE and result.instruments == ()
    assert "no saved copy" in result.alert and "order stream" in result.alert
    # A damaged copy on disk is not used either.
    (tmp_path / "copy.csv").write_text("garbage\n")
    result = await ScripMaster(images.url, tmp_path / "copy.csv", timeout_s=2).load()
    assert result.source is LoadSource.NONE and "unusable" in result.alert


async def test_download_timeout_and_refused_connection_fall_back(
    images: FakeImages, tmp_path: Path
) -> None:
    cache = tmp_path / "copy.csv"
    cache.write_text(detailed(CRUDE_FUT))
    images.delay_s = 1.0
    slow = await ScripMaster(images.url, cache, timeout_s=0.2).load()
    assert slow.source is LoadSource.LAST_GOOD_COPY and "TimeoutError" in slow.alert
    refused = await ScripMaster("http://127.0.0.1:9/x.csv", cache, timeout_s=1).load()
    assert refused.source is LoadSource.LAST_GOOD_COPY
    assert [i.security_id for i in refused.instruments] == ["458305"]


async def test_skipped_rows_are_reported(images: FakeImages, tmp_path: Path) -> None:
    images.body = detailed(NIFTY_CE, *BAD_ROWS)
    result = await ScripMaster(images.url, tmp_path / "c.csv", timeout_s=2).load()
    assert result.source is LoadSource.DOWNLOADED and result.skipped == 3
    assert result.alert == "3 of 4 rows unreadable and skipped" and len(result.problems) == 3


async def test_override_file_wins_and_is_never_downloaded(
    images: FakeImages, tmp_path: Path
) -> None:
    override = tmp_path / "mine.csv"
    override.write_text(compact())
    master = ScripMaster(images.url, tmp_path / "c.csv", override_file=override)
    result = await master.load()
    assert result.source is LoadSource.OVERRIDE_FILE and images.hits == 0
    assert {i.security_id for i in result.instruments} == {"52874", "458305", "1333"}
    override.write_text("nothing useful\n")
    broken = await master.load()
    assert broken.source is LoadSource.NONE and "unusable" in broken.alert


async def test_daily_refresh_at_eight_ist(images: FakeImages, tmp_path: Path) -> None:
    clock = ManualClock(IST.localize(datetime(2026, 12, 1, 7, 30)))
    master = ScripMaster(images.url, tmp_path / "c.csv", clock=clock, timeout_s=2)
    assert master.seconds_until_next_refresh() == 30 * 60
    assert master.refresh_due()
    await master.load()
    assert not master.refresh_due()
    clock.advance(24 * 3600)
    assert master.refresh_due()
    loaded: list[tuple[LoadResult, datetime]] = []
    first = asyncio.Event()

    def on_loaded(result: LoadResult) -> None:
        loaded.append((result, clock.now()))
        first.set()

    task = asyncio.create_task(master.run_daily(on_loaded))
    try:
        await asyncio.wait_for(first.wait(), timeout=5)
    finally:
        task.cancel()
    result, at = loaded[0]
    assert result.source is LoadSource.DOWNLOADED
    assert at == IST.localize(datetime(2026, 12, 2, 8, 0))
    assert master.last_download_day == date(2026, 12, 2)
