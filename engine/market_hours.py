"""Indian market sessions (IST) per Dhan exchange segment, with the 2026 NSE holidays built in.

The holiday table is ours (NSE circular CMTR71775 plus the 15 Jan 2026 ad hoc closure), not a
library's: the libraries disagree and none has 2027 yet. Ad hoc closures and special sessions
(Muhurat trading) come from an override file:

    {"closed": ["2026-12-24", {"date": "2026-12-31", "name": "ad hoc closure"}],
     "open":   ["2026-11-07", {"date": "2026-11-08", "from": "18:00", "to": "19:15",
                               "name": "Muhurat trading"}]}

A date in "open" is a trading day even on a weekend or a holiday; with "from"/"to" it is a
special session with those hours for every tradable segment, otherwise normal hours apply.

Simplifications (conservative: they can only refuse an order, never send one to a closed market):
- F&O pre-open (futures only, since Dec 2025) is not modelled: NSE_FNO/BSE_FNO open at 09:15.
- MCX follows the NSE holiday table; MCX's evening sessions on some exchange holidays are not
  modelled (add them to "open" with hours if you trade them). Agri contracts closing at 17:00 or
  21:00 are not distinguished from non-agri.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any, Literal

import pytz

from engine.clock import IST, to_ist
from engine.domain import Segment

__all__ = [
    "NSE_HOLIDAYS_2026",
    "MarketCalendar",
    "MarketCalendarError",
    "Phase",
    "SessionState",
    "mcx_close",
    "us_dst",
]

Phase = Literal["open", "pre_open", "closed", "holiday", "weekend"]

NSE_HOLIDAYS_2026: dict[date, str] = {
    date(2026, 1, 15): "Maharashtra municipal elections (ad hoc closure)",
    date(2026, 1, 26): "Republic Day",
    date(2026, 3, 3): "Holi",
    date(2026, 3, 26): "Shri Ram Navami",
    date(2026, 3, 31): "Shri Mahavir Jayanti",
    date(2026, 4, 3): "Good Friday",
    date(2026, 4, 14): "Dr. Baba Saheb Ambedkar Jayanti",
    date(2026, 5, 1): "Maharashtra Day",
    date(2026, 5, 28): "Bakri Id",
    date(2026, 6, 26): "Muharram",
    date(2026, 9, 14): "Ganesh Chaturthi",
    date(2026, 10, 2): "Mahatma Gandhi Jayanti",
    date(2026, 10, 20): "Dussehra",
    date(2026, 11, 10): "Diwali Balipratipada",
    date(2026, 11, 24): "Guru Nanak Jayanti",
    date(2026, 12, 25): "Christmas",
}

_NEW_YORK = pytz.timezone("America/New_York")

# Equity pre-open: order entry 09:00 until a random close at 09:07-09:08; we stop at 09:07 so a
# follower order is never sent into the random close.
_EQ_PRE_OPEN = (time(9, 0), time(9, 7))
_EQ_HOURS = (time(9, 15), time(15, 30))
_FNO_HOURS = (time(9, 15), time(15, 30))
_CURRENCY_HOURS = (time(9, 0), time(17, 0))
_MCX_OPEN = time(9, 0)
_MCX_CLOSE_US_DST = time(23, 30)
_MCX_CLOSE_OTHERWISE = time(23, 55)

_EQUITY = frozenset({Segment.NSE_EQ, Segment.BSE_EQ})
_FNO = frozenset({Segment.NSE_FNO, Segment.BSE_FNO})
_CURRENCY = frozenset({Segment.NSE_CURRENCY, Segment.BSE_CURRENCY})

_SEARCH_DAYS = 60  # how far ahead to look for the next session


class MarketCalendarError(ValueError):
    """The override file is unreadable or malformed; the message names the file and entry."""


@dataclass(frozen=True, slots=True)
class SessionState:
    """Where a segment's market is at a moment.

    open / pre_open: `opens_at`/`closes_at` are today's normal session (09:15-15:30 for equity).
    closed / holiday / weekend: they are the next normal session (None if none is known).
    """

    phase: Phase
    opens_at: datetime | None
    closes_at: datetime | None
    label: str


@dataclass(frozen=True, slots=True)
class _Hours:
    open: time
    close: time
    pre_open: tuple[time, time] | None = None


@dataclass(frozen=True, slots=True)
class _Special:
    name: str
    hours: tuple[time, time] | None  # None: the segment's normal hours


def us_dst(d: date) -> bool:
    """Whether US daylight-saving time is in force on `d` (noon in New York)."""
    noon = _NEW_YORK.localize(datetime(d.year, d.month, d.day, 12, 0))
    return bool(noon.dst())


def mcx_close(d: date) -> time:
    """MCX non-agri close: 23:30 during US daylight-saving time, 23:55 otherwise."""
    return _MCX_CLOSE_US_DST if us_dst(d) else _MCX_CLOSE_OTHERWISE


def _hhmm(t: time) -> str:
    return t.strftime("%H:%M")


class MarketCalendar:
    def __init__(
        self, holidays: set[date] | None = None, override_path: Path | None = None
    ) -> None:
        """`holidays` replaces the built-in table (names unknown); `override_path` adds to it."""
        self._closed: dict[date, str] = (
            dict(NSE_HOLIDAYS_2026) if holidays is None else dict.fromkeys(holidays, "")
        )
        self._years = {d.year for d in self._closed}
        self._special: dict[date, _Special] = {}
        if override_path is not None:
            self._load_override(Path(override_path))

    # --- override file --------------------------------------------------------------------

    def _load_override(self, path: Path) -> None:
        where = f"market calendar override {path}"
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise MarketCalendarError(f"{where}: file not found") from None
        except IsADirectoryError:
            raise MarketCalendarError(f"{where}: is a folder, not a file") from None
        except UnicodeDecodeError:
            raise MarketCalendarError(f"{where}: is not UTF-8 text") from None
        except OSError as exc:
            raise MarketCalendarError(f"{where}: cannot read ({exc.strerror})") from None
        except json.JSONDecodeError as exc:
            raise MarketCalendarError(
                f"{where}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
            ) from None
        if not isinstance(raw, dict):
            raise MarketCalendarError(f'{where}: expected an object with "closed" and/or "open"')
        unknown = sorted(set(raw) - {"closed", "open"})
        if unknown:
            raise MarketCalendarError(
                f'{where}: unknown key {unknown[0]!r} (allowed: "closed", "open")'
            )
        closed: dict[date, str] = {}
        opened: dict[date, _Special] = {}
        for key in ("closed", "open"):
            entries = raw.get(key, [])
            if not isinstance(entries, list):
                raise MarketCalendarError(f"{where}: {key!r} must be a list")
            for i, entry in enumerate(entries):
                label = f"{where}: {key}[{i}] = {json.dumps(entry)}"
                d, name, hours = _parse_entry(entry, label, allow_hours=key == "open")
                if key == "closed":
                    closed[d] = name or "ad hoc closure"
                else:
                    opened[d] = _Special(name or "special session", hours)
        both = sorted(set(closed) & set(opened))
        if both:
            raise MarketCalendarError(
                f"{where}: {both[0].isoformat()} is listed both as closed and as open"
            )
        self._closed.update(closed)
        for d in opened:
            self._closed.pop(d, None)
        self._special.update(opened)

    # --- days -----------------------------------------------------------------------------

    def covers_year(self, year: int) -> bool:
        """Whether the holiday table has any entry for `year` (no 2027 data exists yet)."""
        return year in self._years

    def holiday_name(self, d: date) -> str | None:
        """The closure's name ("" if unnamed) when `d` is a listed holiday, else None."""
        return self._closed.get(d)

    def is_trading_day(self, d: date) -> bool:
        if d in self._special:
            return True
        return d not in self._closed and d.weekday() < 5

    def _hours(self, segment: Segment, d: date) -> _Hours | None:
        special = self._special.get(d)
        if special is not None and special.hours is not None:
            return _Hours(special.hours[0], special.hours[1])
        if segment in _EQUITY:
            return _Hours(_EQ_HOURS[0], _EQ_HOURS[1], _EQ_PRE_OPEN)
        if segment in _FNO:
            return _Hours(*_FNO_HOURS)
        if segment in _CURRENCY:
            return _Hours(*_CURRENCY_HOURS)
        if segment is Segment.MCX_COMM:
            return _Hours(_MCX_OPEN, mcx_close(d))
        return None  # IDX_I

    def _at(self, d: date, t: time) -> datetime:
        return IST.localize(datetime.combine(d, t))

    def _next_session(
        self, segment: Segment, after: date
    ) -> tuple[datetime, datetime, _Hours] | None:
        d = after
        for _ in range(_SEARCH_DAYS):
            d += timedelta(days=1)
            if self.is_trading_day(d):
                h = self._hours(segment, d)
                if h is None:
                    return None
                return self._at(d, h.open), self._at(d, h.close), h
        return None

    def _opens_text(self, now: datetime, opens_at: datetime | None, h: _Hours | None) -> str:
        if opens_at is None:
            return "no session known in the next 60 days"
        pre = ""
        if h is not None and h.pre_open is not None:
            pre = f"pre-open order entry {_hhmm(h.pre_open[0])}, "
        when = _hhmm(opens_at.time())
        if opens_at.date() != now.date():
            when = f"{opens_at:%a} {opens_at.date().isoformat()} {when}"
        return f"{pre}opens {when} IST"

    # --- sessions -------------------------------------------------------------------------

    def session(self, segment: Segment, now: datetime) -> SessionState:
        """The phase of `segment` at `now` (naive datetimes are taken as IST)."""
        now = to_ist(now)
        d = now.date()
        seg = segment.value
        if segment is Segment.IDX_I:
            return SessionState("closed", None, None, "IDX_I is an index: not tradable")

        if not self.is_trading_day(d):
            nxt = self._next_session(segment, d)
            opens_at, closes_at, h = nxt if nxt else (None, None, None)
            upcoming = self._opens_text(now, opens_at, h)
            name = self._closed.get(d)
            if name is not None:
                detail = f"holiday {d.isoformat()}" + (f" ({name})" if name else "")
                return SessionState(
                    "holiday", opens_at, closes_at, f"{seg} closed: {detail}; {upcoming}"
                )
            return SessionState(
                "weekend", opens_at, closes_at, f"{seg} closed: weekend; {upcoming}"
            )

        hours = self._hours(segment, d)
        assert hours is not None
        t = now.time()
        open_at, close_at = self._at(d, hours.open), self._at(d, hours.close)
        special = self._special.get(d)
        tag = f" ({special.name})" if special else ""
        span = f"{_hhmm(hours.open)}-{_hhmm(hours.close)} IST"
        if hours.open <= t < hours.close:
            return SessionState("open", open_at, close_at, f"{seg} open {span}{tag}")
        if hours.pre_open is not None and hours.pre_open[0] <= t < hours.pre_open[1]:
            return SessionState(
                "pre_open",
                open_at,
                close_at,
                f"{seg} pre-open{tag}: order entry until {_hhmm(hours.pre_open[1])}, "
                f"opens {_hhmm(hours.open)} IST",
            )
        if t < hours.open:
            if hours.pre_open is not None and t >= hours.pre_open[1]:
                text = f"pre-open order entry closed, opens {_hhmm(hours.open)} IST"
            else:
                text = self._opens_text(now, open_at, hours)
            return SessionState("closed", open_at, close_at, f"{seg} closed{tag}: {text}")
        nxt = self._next_session(segment, d)
        opens_at, closes_at, h = nxt if nxt else (None, None, None)
        return SessionState(
            "closed",
            opens_at,
            closes_at,
            f"{seg} closed{tag} since {_hhmm(hours.close)} IST; "
            f"{self._opens_text(now, opens_at, h)}",
        )

    def closing_day(self, segment: Segment, placed_at: datetime) -> date | None:
        """The day of the close that ends an order placed at ``placed_at`` at the latest (its
        session's: today's while the day's market is still to close, else the next trading
        day's); None when no session is known (an index, a calendar run out)."""
        closes_at = self.session(segment, placed_at).closes_at
        return None if closes_at is None else to_ist(closes_at).date()

    def can_send(self, segment: Segment, now: datetime, amo: bool) -> tuple[bool, str]:
        """Whether an order may be sent now, and a sentence saying why (or why not).

        An after-market order (AMO) may be sent at any time; a regular order only while the
        session is open, or during equity pre-open order entry.
        """
        state = self.session(segment, now)
        if segment is Segment.IDX_I:
            return False, state.label
        if amo:
            return True, f"AMO may be sent now ({state.label})"
        if state.phase in ("open", "pre_open"):
            return True, state.label
        return False, state.label


def _parse_date(value: Any, label: str) -> date:
    if not isinstance(value, str):
        raise MarketCalendarError(f"{label}: the date must be a string YYYY-MM-DD")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise MarketCalendarError(f"{label}: {value!r} is not a date (YYYY-MM-DD)") from None


def _parse_time(value: Any, label: str, key: str) -> time:
    if not isinstance(value, str):
        raise MarketCalendarError(f"{label}: {key!r} must be a string HH:MM")
    try:
        return time.fromisoformat(value)
    except ValueError:
        raise MarketCalendarError(f"{label}: {key}={value!r} is not a time (HH:MM)") from None


def _parse_entry(
    entry: Any, label: str, *, allow_hours: bool
) -> tuple[date, str, tuple[time, time] | None]:
    if isinstance(entry, str):
        return _parse_date(entry, label), "", None
    if not isinstance(entry, dict):
        raise MarketCalendarError(f'{label}: expected "YYYY-MM-DD" or an object with "date"')
    allowed = {"date", "name", "from", "to"} if allow_hours else {"date", "name"}
    unknown = sorted(set(entry) - allowed)
    if unknown:
        raise MarketCalendarError(f"{label}: unknown key {unknown[0]!r}")
    if "date" not in entry:
        raise MarketCalendarError(f'{label}: missing "date"')
    d = _parse_date(entry["date"], label)
    name = entry.get("name", "")
    if not isinstance(name, str):
        raise MarketCalendarError(f'{label}: "name" must be a string')
    hours: tuple[time, time] | None = None
    if "from" in entry or "to" in entry:
        if "from" not in entry or "to" not in entry:
            raise MarketCalendarError(f'{label}: give both "from" and "to", or neither')
        start = _parse_time(entry["from"], label, "from")
        end = _parse_time(entry["to"], label, "to")
        if end <= start:
            raise MarketCalendarError(f'{label}: "to" must be after "from"')
        hours = (start, end)
    return d, name, hours
