"""The instrument master at start and once a day: Dhan's scrip master (lot sizes, and the
real tick of each instrument, so a protected price is one Dhan accepts: MCX crude moves in
whole rupees, not 0.05). Runs in the background; until it lands, ticks learned from orders
or the default apply."""

from __future__ import annotations

from pathlib import Path

from engine.clock import Clock
from engine.dhan.scrip_master import DEFAULT_URL, LoadResult, ScripMaster
from engine.domain import Severity
from engine.instruments import InstrumentBook
from engine.live.collector import freeze_long_lived
from engine.live.notifier import Notifier


def wanted(instruments_url: str, rest_url: str) -> bool:
    """Load from Dhan when trading on Dhan (or when pointed at another master on purpose);
    a simulator's engine is given its instrument book."""
    return "api.dhan.co" in rest_url or instruments_url != DEFAULT_URL


async def keep_loaded(
    url: str, db_path: Path, clock: Clock, book: InstrumentBook, notifier: Notifier
) -> None:
    master = ScripMaster(url, ScripMaster.cache_path_beside(db_path), clock=clock)

    def apply(result: LoadResult) -> None:
        book.apply_load(result)
        freeze_long_lived()  # the day's instruments: kept out of every later full pass
        if result.needs_alert:
            notifier.alert("INSTRUMENTS", Severity.WARNING, f"Instrument master: {result.alert}")

    apply(await master.load())
    await master.run_daily(apply)
