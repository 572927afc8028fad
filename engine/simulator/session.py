"""Market session: when each segment accepts regular (non-AMO) orders.

By default the simulated market is open at any hour. With ``real_hours=True`` it follows IST:
NSE/BSE cash and F&O 09:15-15:30 on weekdays that are not NSE holidays, currency 09:00-17:00,
MCX 09:00-23:30 on weekdays (MCX's 23:55 winter close and agri sessions are not modelled).
The 2026 holiday table is the NSE circular CMTR71775 list plus the 15 Jan ad hoc closure.
"""

from __future__ import annotations

from datetime import date, datetime, time

NSE_HOLIDAYS_2026: frozenset[date] = frozenset(
    date(2026, m, d)
    for m, d in (
        (1, 15), (1, 26), (3, 3), (3, 26), (3, 31), (4, 3), (4, 14), (5, 1), (5, 28),
        (6, 26), (9, 14), (10, 2), (10, 20), (11, 10), (11, 24), (12, 25),
    )
)  # fmt: skip

_HOURS: dict[str, tuple[time, time]] = {
    "NSE_EQ": (time(9, 15), time(15, 30)),
    "NSE_FNO": (time(9, 15), time(15, 30)),
    "BSE_EQ": (time(9, 15), time(15, 30)),
    "BSE_FNO": (time(9, 15), time(15, 30)),
    "NSE_CURRENCY": (time(9, 0), time(17, 0)),
    "BSE_CURRENCY": (time(9, 0), time(17, 0)),
    "MCX_COMM": (time(9, 0), time(23, 30)),
}


class MarketSession:
    def __init__(self, real_hours: bool = False, holidays: frozenset[date] = NSE_HOLIDAYS_2026):
        self.real_hours = real_hours
        self.holidays = holidays

    def is_open(self, segment: str, now_ist: datetime) -> bool:
        if not self.real_hours:
            return True
        hours = _HOURS.get(segment)
        if hours is None:
            return False
        if now_ist.weekday() >= 5:
            return False
        if segment != "MCX_COMM" and now_ist.date() in self.holidays:
            return False
        start, end = hours
        return start <= now_ist.time().replace(tzinfo=None) < end
