"""Lot sizes, tick sizes, freeze quantities and option flags the engine needs to size and price
follower orders.

Sources, best first:
1. Dhan's scrip master (:mod:`engine.dhan.scrip_master`): downloaded at start and once a day,
   or the last good copy on disk, or ``COPYTRADE_INSTRUMENTS_FILE`` (which overrides both). It
   gives lot size, tick size, freeze quantity, instrument type and option type.
2. What the leader's order alerts teach (:meth:`InstrumentBook.learn`): the socket carries
   ``LotSize``, ``TickSize`` and ``OptType`` for the order's instrument.
3. Defaults: lot 1 for cash equity (0 = unknown for derivatives, so nothing is re-sized on a
   guess), tick 0.05, no freeze quantity.

``replace_master`` swaps in a new day's master at once; what the socket taught stays as the
fallback for instruments the master lacks.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path

from engine.dhan.codec import InstrumentHint
from engine.dhan.scrip_master import (
    LoadResult,
    MasterInstrument,
    ScripMasterError,
    parse_scrip_master,
)
from engine.domain import Instrument, Segment

EQUITY_SEGMENTS = frozenset({Segment.NSE_EQ, Segment.BSE_EQ})
DEFAULT_TICK = 0.05

__all__ = ["EQUITY_SEGMENTS", "InstrumentBook", "InstrumentsFileError", "round_to_tick"]


class InstrumentsFileError(Exception):
    pass


def round_to_tick(price: float, tick: float, *, up: bool | None = None) -> float:
    """``price`` on the tick grid: nearest, or up/down when ``up`` is True/False.

    Works in integer ticks so 5812.0 with tick 1.0 or 221.45 with 0.05 come out exact.
    """
    if tick <= 0 or not math.isfinite(price):
        return price
    steps = price / tick
    nearest = round(steps)
    if abs(steps - nearest) < 1e-9 or up is None:  # on the grid already, or nearest wanted
        whole = nearest
    else:
        whole = math.ceil(steps) if up else math.floor(steps)
    decimals = max(0, -math.floor(math.log10(tick)) + 2) if tick < 1 else 2
    return round(whole * tick, decimals)


class InstrumentBook:
    def __init__(self, instruments: Iterable[Instrument | MasterInstrument] = ()) -> None:
        self._by_key: dict[tuple[Segment, str], Instrument] = {}
        self._details: dict[tuple[Segment, str], MasterInstrument] = {}
        self._learned_lots: dict[tuple[Segment, str], int] = {}
        self._learned: dict[tuple[Segment, str], InstrumentHint] = {}
        for inst in instruments:
            self.add(inst)

    # --- filling ----------------------------------------------------------------------------

    def add(self, inst: Instrument | MasterInstrument) -> None:
        if isinstance(inst, MasterInstrument):
            self._details[inst.key] = inst
            self._by_key[inst.key] = inst.to_instrument()
        else:
            self._by_key[(inst.segment, inst.security_id)] = inst

    def replace_master(self, instruments: Iterable[MasterInstrument]) -> None:
        """A new day's master replaces the previous one whole (learned facts stay)."""
        by_key: dict[tuple[Segment, str], Instrument] = {}
        details: dict[tuple[Segment, str], MasterInstrument] = {}
        for inst in instruments:
            details[inst.key] = inst
            by_key[inst.key] = inst.to_instrument()
        self._by_key, self._details = by_key, details

    def apply_load(self, result: LoadResult) -> bool:
        """Take a :meth:`ScripMaster.load` result: a load that brought instruments (download,
        override file or last good copy) replaces the master; one that brought nothing keeps
        what the book has (yesterday's master beats none). True when replaced."""
        if not result.instruments:
            return False
        self.replace_master(result.instruments)
        return True

    def learn_lot_size(self, segment: Segment, security_id: str, lot_size: int) -> None:
        if lot_size > 0:
            self._learned_lots[(segment, security_id)] = lot_size

    def learn(self, hint: InstrumentHint) -> None:
        """What an order alert says about its instrument (used where the master is silent)."""
        key = (hint.segment, hint.security_id)
        known = self._learned.get(key)
        if known is not None:
            # Keep what an earlier alert said when this one leaves a field out.
            hint = InstrumentHint(
                segment=hint.segment,
                security_id=hint.security_id,
                lot_size=hint.lot_size or known.lot_size,
                tick_size=hint.tick_size or known.tick_size,
                option_type=hint.option_type or known.option_type,
                instrument_type=hint.instrument_type or known.instrument_type,
                symbol=hint.symbol or known.symbol,
            )
        self._learned[key] = hint
        self.learn_lot_size(hint.segment, hint.security_id, hint.lot_size)

    # --- reading ----------------------------------------------------------------------------

    def get(self, segment: Segment, security_id: str) -> Instrument | None:
        return self._by_key.get((segment, security_id))

    def details(self, segment: Segment, security_id: str) -> MasterInstrument | None:
        """The master's full row (freeze quantity, instrument and option type, expiry)."""
        return self._details.get((segment, security_id))

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
        if inst is not None:
            return inst.tick_size
        hint = self._learned.get((segment, security_id))
        if hint is not None and hint.tick_size > 0:
            return hint.tick_size
        return DEFAULT_TICK

    def round_price(
        self, segment: Segment, security_id: str, price: float, *, up: bool | None = None
    ) -> float:
        """``price`` on this instrument's tick (MCX crude: whole rupees)."""
        return round_to_tick(price, self.tick_size(segment, security_id), up=up)

    def freeze_qty(self, segment: Segment, security_id: str) -> int | None:
        """Units per order above which the exchange refuses (slice above it); None: no limit
        known."""
        details = self._details.get((segment, security_id))
        return details.freeze_qty if details is not None else None

    def needs_slicing(self, segment: Segment, security_id: str, quantity: int) -> bool:
        """True when one order of ``quantity`` would exceed the freeze quantity: place it with
        ``DhanBroker.place_sliced`` (``POST /orders/slicing``)."""
        freeze = self.freeze_qty(segment, security_id)
        return freeze is not None and quantity > freeze

    def option_type(self, segment: Segment, security_id: str) -> str:
        """ "CE" / "PE", or "" when not an option or unknown."""
        details = self._details.get((segment, security_id))
        if details is not None:
            return details.option_type
        hint = self._learned.get((segment, security_id))
        return hint.option_type if hint is not None else ""

    def instrument_type(self, segment: Segment, security_id: str) -> str:
        """EQUITY, OPTIDX, FUTCOM … ("" when unknown)."""
        details = self._details.get((segment, security_id))
        if details is not None:
            return details.instrument
        hint = self._learned.get((segment, security_id))
        return hint.instrument_type if hint is not None else ""

    def is_option(self, segment: Segment, security_id: str) -> bool:
        inst = self._by_key.get((segment, security_id))
        if inst is not None:
            return inst.is_option
        hint = self._learned.get((segment, security_id))
        return bool(
            hint and (hint.option_type in ("CE", "PE") or hint.instrument_type.startswith("OPT"))
        )

    def __len__(self) -> int:
        return len(self._by_key)

    @classmethod
    def from_scrip_master(cls, path: Path) -> InstrumentBook:
        """Read a Dhan scrip-master CSV, compact or detailed (``COPYTRADE_INSTRUMENTS_FILE``);
        rows it cannot read are skipped, a file that is not a scrip master is an error."""
        try:
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            detail = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise InstrumentsFileError(f"{path}: cannot read ({detail})") from exc
        try:
            parsed = parse_scrip_master(text)
        except ScripMasterError as exc:
            raise InstrumentsFileError(f"{path}: {exc}") from None
        return cls(parsed.instruments)
