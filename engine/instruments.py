"""Lot sizes, tick sizes and option flags the engine needs to size and price follower orders.

Sources, in order: instruments given at start (the demo passes the simulator's master, a user
may point `COPYTRADE_INSTRUMENTS_FILE` at Dhan's scrip-master CSV), then what the leader's
order alerts teach us (the socket carries LotSize; the REST order book does not).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path

from engine.domain import Instrument, Segment

_EXCHANGE_SEGMENT = {
    ("NSE", "E"): Segment.NSE_EQ,
    ("NSE", "D"): Segment.NSE_FNO,
    ("NSE", "C"): Segment.NSE_CURRENCY,
    ("BSE", "E"): Segment.BSE_EQ,
    ("BSE", "D"): Segment.BSE_FNO,
    ("BSE", "C"): Segment.BSE_CURRENCY,
    ("MCX", "M"): Segment.MCX_COMM,
}
_OPTION_KINDS = {"OPTIDX", "OPTSTK", "OPTFUT", "OPTCUR"}
EQUITY_SEGMENTS = frozenset({Segment.NSE_EQ, Segment.BSE_EQ})


class InstrumentsFileError(Exception):
    pass


class InstrumentBook:
    def __init__(self, instruments: Iterable[Instrument] = ()) -> None:
        self._by_key: dict[tuple[Segment, str], Instrument] = {}
        self._learned_lots: dict[tuple[Segment, str], int] = {}
        for inst in instruments:
            self.add(inst)

    def add(self, inst: Instrument) -> None:
        self._by_key[(inst.segment, inst.security_id)] = inst

    def learn_lot_size(self, segment: Segment, security_id: str, lot_size: int) -> None:
        if lot_size > 0:
            self._learned_lots[(segment, security_id)] = lot_size

    def get(self, segment: Segment, security_id: str) -> Instrument | None:
        return self._by_key.get((segment, security_id))

    def lot_size(self, segment: Segment, security_id: str) -> int:
        """0 when unknown (the replicator then refuses to re-size a derivative)."""
        inst = self._by_key.get((segment, security_id))
        if inst is not None:
            return inst.lot_size
        learned = self._learned_lots.get((segment, security_id))
        if learned:
            return learned
        return 1 if segment in EQUITY_SEGMENTS else 0

    def tick_size(self, segment: Segment, security_id: str) -> float:
        inst = self._by_key.get((segment, security_id))
        return inst.tick_size if inst is not None else 0.05

    def is_option(self, segment: Segment, security_id: str) -> bool:
        inst = self._by_key.get((segment, security_id))
        return bool(inst and inst.is_option)

    def __len__(self) -> int:
        return len(self._by_key)

    @classmethod
    def from_scrip_master(cls, path: Path) -> InstrumentBook:
        """Read Dhan's scrip-master CSV (columns SEM_EXM_EXCH_ID, SEM_SEGMENT,
        SEM_SMST_SECURITY_ID, SEM_INSTRUMENT_NAME, SEM_TRADING_SYMBOL, SEM_LOT_UNITS,
        SEM_TICK_SIZE); rows it cannot read are skipped, a missing column is an error."""
        book = cls()
        try:
            with path.open(newline="", encoding="utf-8") as fh:
                reader = csv.DictReader(fh)
                needed = {"SEM_EXM_EXCH_ID", "SEM_SEGMENT", "SEM_SMST_SECURITY_ID", "SEM_LOT_UNITS"}
                missing = needed - set(reader.fieldnames or ())
                if missing:
                    raise InstrumentsFileError(
                        f"{path}: not a Dhan scrip master (missing {', '.join(sorted(missing))})"
                    )
                for row in reader:
                    seg = _EXCHANGE_SEGMENT.get((row["SEM_EXM_EXCH_ID"], row["SEM_SEGMENT"]))
                    if seg is None:
                        continue
                    try:
                        lot = int(float(row["SEM_LOT_UNITS"] or 1))
                        tick = float(row.get("SEM_TICK_SIZE") or 5) / 100 or 0.05
                    except ValueError:
                        continue
                    kind = row.get("SEM_INSTRUMENT_NAME", "")
                    book.add(
                        Instrument(
                            segment=seg,
                            security_id=row["SEM_SMST_SECURITY_ID"].strip(),
                            symbol=row.get("SEM_TRADING_SYMBOL", ""),
                            lot_size=max(lot, 1),
                            tick_size=tick,
                            is_option=kind in _OPTION_KINDS,
                        )
                    )
        except OSError as exc:
            raise InstrumentsFileError(f"{path}: cannot read ({exc.strerror})") from exc
        return book
