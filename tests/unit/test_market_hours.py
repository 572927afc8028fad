"""Market sessions per segment, the 2026 holiday table and the override file."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
import pytz

from engine.clock import IST
from engine.domain import Segment
from engine.market_hours import (
    NSE_HOLIDAYS_2026,
    MarketCalendar,
    MarketCalendarError,
    mcx_close,
    us_dst,
)

CAL = MarketCalendar()


def at(y: int, m: int, d: int, hh: int = 10, mm: int = 0, ss: int = 0) -> datetime:
    return IST.localize(datetime(y, m, d, hh, mm, ss))


MONDAY = (2026, 11, 23)  # a normal trading Monday


def test_2026_holiday_table_matches_the_circular_plus_15_jan() -> None:
    expected = {
        date(2026, 1, 15),
        date(2026, 1, 26),
        date(2026, 3, 3),
        date(2026, 3, 26),
        date(2026, 3, 31),
        date(2026, 4, 3),
        date(2026, 4, 14),
        date(2026, 5, 1),
        date(2026, 5, 28),
        date(2026, 6, 26),
        date(2026, 9, 14),
        date(2026, 10, 2),
        date(2026, 10, 20),
        date(2026, 11, 10),
        date(2026, 11, 24),
        date(2026, 12, 25),
    }
    assert set(NSE_HOLIDAYS_2026) == expected
    assert all(d.weekday() < 5 for d in expected)
    assert CAL.covers_year(2026)
    assert not CAL.covers_year(2027)


@pytest.mark.parametrize("d", sorted(NSE_HOLIDAYS_2026))
@pytest.mark.parametrize("segment", [Segment.NSE_EQ, Segment.NSE_FNO, Segment.MCX_COMM])
def test_every_holiday_is_closed(d: date, segment: Segment) -> None:
    s = CAL.session(segment, at(d.year, d.month, d.day, 11))
    assert s.phase == "holiday"
    ok, reason = CAL.can_send(segment, at(d.year, d.month, d.day, 11), amo=False)
    assert not ok
    assert f"holiday {d.isoformat()}" in reason


def test_holiday_reason_names_the_day_and_next_open() -> None:
    ok, reason = CAL.can_send(Segment.NSE_FNO, at(2026, 11, 24, 10), amo=False)
    assert not ok
    assert reason == (
        "NSE_FNO closed: holiday 2026-11-24 (Guru Nanak Jayanti); opens Wed 2026-11-25 09:15 IST"
    )
    s = CAL.session(Segment.NSE_FNO, at(2026, 11, 24, 10))
    assert s.opens_at == at(2026, 11, 25, 9, 15)
    assert s.closes_at == at(2026, 11, 25, 15, 30)


def test_15_jan_ad_hoc_closure() -> None:
    assert CAL.session(Segment.NSE_EQ, at(2026, 1, 15, 11)).phase == "holiday"
    assert CAL.session(Segment.MCX_COMM, at(2026, 1, 15, 10)).phase == "holiday"


def test_weekend() -> None:
    s = CAL.session(Segment.NSE_FNO, at(2026, 11, 21, 10))  # Saturday
    assert s.phase == "weekend"
    assert s.opens_at == at(2026, 11, 23, 9, 15)
    assert "weekend" in s.label and "Mon 2026-11-23 09:15" in s.label


def test_fno_session_boundaries() -> None:
    seg = Segment.NSE_FNO
    assert CAL.session(seg, at(*MONDAY, 9, 14, 59)).phase == "closed"
    s = CAL.session(seg, at(*MONDAY, 9, 15))
    assert s.phase == "open"
    assert s.label == "NSE_FNO open 09:15-15:30 IST"
    assert CAL.session(seg, at(*MONDAY, 15, 29, 59)).phase == "open"
    assert CAL.session(seg, at(*MONDAY, 15, 30)).phase == "closed"
    ok, reason = CAL.can_send(seg, at(*MONDAY, 8, 0), amo=False)
    assert (ok, reason) == (False, "NSE_FNO closed: opens 09:15 IST")
    assert CAL.session(Segment.BSE_FNO, at(*MONDAY, 12)).phase == "open"


def test_after_close_points_to_next_trading_day() -> None:
    s = CAL.session(Segment.NSE_FNO, at(2026, 11, 23, 16))  # Monday; Tuesday is a holiday
    assert s.phase == "closed"
    assert s.opens_at == at(2026, 11, 25, 9, 15)
    assert "since 15:30 IST" in s.label


@pytest.mark.parametrize("segment", [Segment.NSE_EQ, Segment.BSE_EQ])
def test_equity_pre_open(segment: Segment) -> None:
    assert CAL.session(segment, at(*MONDAY, 8, 59, 59)).phase == "closed"
    s = CAL.session(segment, at(*MONDAY, 9, 0))
    assert s.phase == "pre_open"
    assert s.opens_at == at(*MONDAY, 9, 15)
    assert CAL.can_send(segment, at(*MONDAY, 9, 5), amo=False)[0]
    # order entry ends before the random close at 09:07-09:08
    s = CAL.session(segment, at(*MONDAY, 9, 10))
    assert s.phase == "closed"
    assert "opens 09:15 IST" in s.label
    assert not CAL.can_send(segment, at(*MONDAY, 9, 10), amo=False)[0]
    assert CAL.session(segment, at(*MONDAY, 9, 15)).phase == "open"
    assert CAL.session(segment, at(*MONDAY, 15, 30)).phase == "closed"


def test_fno_has_no_pre_open() -> None:
    assert CAL.session(Segment.NSE_FNO, at(*MONDAY, 9, 5)).phase == "closed"


@pytest.mark.parametrize("segment", [Segment.NSE_CURRENCY, Segment.BSE_CURRENCY])
def test_currency_hours(segment: Segment) -> None:
    assert CAL.session(segment, at(*MONDAY, 8, 59)).phase == "closed"
    assert CAL.session(segment, at(*MONDAY, 9, 0)).phase == "open"
    assert CAL.session(segment, at(*MONDAY, 16, 59)).phase == "open"
    assert CAL.session(segment, at(*MONDAY, 17, 0)).phase == "closed"


def test_us_dst() -> None:
    assert us_dst(date(2026, 7, 1))
    assert not us_dst(date(2026, 12, 1))
    # 2026: DST from Sun 8 Mar to Sun 1 Nov
    assert not us_dst(date(2026, 3, 7))
    assert us_dst(date(2026, 3, 9))
    assert us_dst(date(2026, 10, 30))
    assert not us_dst(date(2026, 11, 2))


def test_mcx_close_follows_us_dst() -> None:
    seg = Segment.MCX_COMM
    assert mcx_close(date(2026, 7, 1)).strftime("%H:%M") == "23:30"
    assert mcx_close(date(2026, 11, 23)).strftime("%H:%M") == "23:55"
    # summer: 23:40 is closed
    assert CAL.session(seg, at(2026, 7, 1, 23, 29)).phase == "open"
    assert CAL.session(seg, at(2026, 7, 1, 23, 40)).phase == "closed"
    # winter: 23:40 is open, 23:55 closed
    s = CAL.session(seg, at(2026, 11, 23, 23, 40))
    assert s.phase == "open"
    assert s.closes_at == at(2026, 11, 23, 23, 55)
    assert CAL.session(seg, at(2026, 11, 23, 23, 55)).phase == "closed"
    assert CAL.session(seg, at(2026, 11, 23, 8, 59)).phase == "closed"
    assert CAL.session(seg, at(2026, 11, 23, 9, 0)).phase == "open"
    # the week after the US switch back: Friday 30 Oct still 23:30, Monday 2 Nov 23:55
    assert CAL.session(seg, at(2026, 10, 30, 23, 45)).phase == "closed"
    assert CAL.session(seg, at(2026, 11, 2, 23, 45)).phase == "open"


def test_index_is_never_tradable() -> None:
    for amo in (False, True):
        ok, reason = CAL.can_send(Segment.IDX_I, at(*MONDAY, 10), amo=amo)
        assert not ok and "not tradable" in reason


def test_amo_may_be_sent_outside_hours() -> None:
    ok, reason = CAL.can_send(Segment.NSE_FNO, at(*MONDAY, 20), amo=True)
    assert ok and reason.startswith("AMO")
    assert CAL.can_send(Segment.NSE_EQ, at(2026, 11, 24, 20), amo=True)[0]
    assert CAL.can_send(Segment.NSE_EQ, at(2026, 11, 21, 20), amo=True)[0]


def test_naive_and_foreign_times_are_converted() -> None:
    # naive times are IST wall times
    assert CAL.session(Segment.NSE_FNO, datetime(2026, 11, 23, 10, 0)).phase == "open"
    assert CAL.session(Segment.NSE_FNO, datetime(2026, 11, 23, 4, 0)).phase == "closed"
    utc = pytz.utc.localize(datetime(2026, 11, 23, 4, 0))  # 09:30 IST
    assert CAL.session(Segment.NSE_FNO, utc).phase == "open"


def test_custom_holidays_replace_the_table() -> None:
    cal = MarketCalendar(holidays={date(2026, 11, 23)})
    s = cal.session(Segment.NSE_FNO, at(*MONDAY, 10))
    assert s.phase == "holiday"
    assert "holiday 2026-11-23;" in s.label  # no name known
    assert cal.session(Segment.NSE_FNO, at(2026, 11, 24, 10)).phase == "open"


def write(tmp_path: Path, content: object) -> Path:
    p = tmp_path / "calendar.json"
    p.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
    return p


def test_override_closed_and_open(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        {
            "closed": ["2026-12-24", {"date": "2026-12-31", "name": "exchange outage"}],
            "open": [
                "2026-11-24",
                {"date": "2026-11-08", "from": "18:00", "to": "19:15", "name": "Muhurat trading"},
            ],
        },
    )
    cal = MarketCalendar(override_path=path)
    s = cal.session(Segment.NSE_FNO, at(2026, 12, 24, 10))
    assert s.phase == "holiday" and "ad hoc closure" in s.label
    assert "exchange outage" in cal.session(Segment.NSE_EQ, at(2026, 12, 31, 10)).label
    # a built-in holiday reopened by the override
    assert cal.session(Segment.NSE_FNO, at(2026, 11, 24, 10)).phase == "open"
    # Sunday special session with its own hours
    assert cal.session(Segment.NSE_EQ, at(2026, 11, 8, 17, 59)).phase == "closed"
    s = cal.session(Segment.NSE_EQ, at(2026, 11, 8, 18, 30))
    assert s.phase == "open" and "Muhurat trading" in s.label
    assert s.closes_at == at(2026, 11, 8, 19, 15)
    assert cal.session(Segment.MCX_COMM, at(2026, 11, 8, 18, 30)).phase == "open"
    assert cal.session(Segment.NSE_EQ, at(2026, 11, 8, 19, 15)).phase == "closed"
    # built-in holidays remain
    assert cal.session(Segment.NSE_EQ, at(2026, 12, 25, 10)).phase == "holiday"
    # the day before a special Sunday session points to it
    sat = cal.session(Segment.NSE_EQ, at(2026, 11, 7, 10))
    assert sat.opens_at == at(2026, 11, 8, 18, 0)


def test_override_open_weekend_normal_hours(tmp_path: Path) -> None:
    cal = MarketCalendar(override_path=write(tmp_path, {"open": ["2026-11-21"]}))
    assert cal.session(Segment.NSE_FNO, at(2026, 11, 21, 10)).phase == "open"


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("{not json", "not valid JSON"),
        ([], 'expected an object with "closed"'),
        ({"closd": []}, "unknown key 'closd'"),
        ({"closed": "2026-12-24"}, "'closed' must be a list"),
        ({"closed": ["2026-12-24", "2026-13-01"]}, 'closed[1] = "2026-13-01"'),
        ({"closed": ["24/12/2026"]}, "is not a date (YYYY-MM-DD)"),
        ({"closed": [20261224]}, 'expected "YYYY-MM-DD"'),
        ({"closed": [{"date": 20261224}]}, "must be a string YYYY-MM-DD"),
        ({"open": [{"from": "18:00"}]}, 'missing "date"'),
        ({"open": [{"date": "2026-11-08", "from": "18:00"}]}, 'both "from" and "to"'),
        ({"open": [{"date": "2026-11-08", "from": "19:00", "to": "18:00"}]}, "after"),
        ({"open": [{"date": "2026-11-08", "from": "6pm", "to": "19:00"}]}, "not a time"),
        ({"closed": [{"date": "2026-11-08", "from": "18:00", "to": "19:00"}]}, "unknown key"),
        ({"closed": ["2026-11-08"], "open": ["2026-11-08"]}, "both as closed and as open"),
    ],
)
def test_override_errors_name_file_and_entry(tmp_path: Path, content: object, needle: str) -> None:
    path = write(tmp_path, content)
    with pytest.raises(MarketCalendarError) as info:
        MarketCalendar(override_path=path)
    msg = str(info.value)
    assert str(path) in msg
    assert needle in msg


def test_override_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.json"
    with pytest.raises(MarketCalendarError, match="file not found") as info:
        MarketCalendar(override_path=path)
    assert str(path) in str(info.value)


def test_is_trading_day_and_names() -> None:
    assert CAL.is_trading_day(date(2026, 11, 23))
    assert not CAL.is_trading_day(date(2026, 11, 24))
    assert not CAL.is_trading_day(date(2026, 11, 22))
    assert CAL.holiday_name(date(2026, 12, 25)) == "Christmas"
    assert CAL.holiday_name(date(2026, 12, 24)) is None


def test_every_2026_weekday_classification_is_consistent() -> None:
    d = date(2026, 1, 1)
    while d.year == 2026:
        s = CAL.session(Segment.NSE_FNO, at(d.year, d.month, d.day, 12))
        if d in NSE_HOLIDAYS_2026:
            assert s.phase == "holiday"
        elif d.weekday() >= 5:
            assert s.phase == "weekend"
        else:
            assert s.phase == "open"
        assert s.opens_at is not None and s.opens_at.date() >= d
        d += timedelta(days=1)


def test_against_pandas_market_calendars_if_installed() -> None:
    mcal = pytest.importorskip("pandas_market_calendars")
    cal = mcal.get_calendar("XNSE")
    trading = {ts.date() for ts in cal.valid_days("2026-01-01", "2026-12-31")}
    weekday_holidays = set()
    d = date(2026, 1, 1)
    while d.year == 2026:
        if d.weekday() < 5 and d not in trading:
            weekday_holidays.add(d)
        d += timedelta(days=1)
    assert weekday_holidays == set(NSE_HOLIDAYS_2026)
