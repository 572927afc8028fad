"""Engine events become keyed, in-place table updates; floods stay responsive."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from engine.domain import ConnectionState, EngineState, MirrorState, OrderStatus, Severity
from engine.events import EngineStateChanged, RecoveryCompleted
from engine.views import RecoveryReport
from tests.tui.conftest import SIZE, settle
from tests.tui.fakes import (
    T0,
    FakeEngine,
    FixedClock,
    alert_raised,
    connection,
    follower_changed,
    follower_view,
    leader_seen,
    limiter_changed,
    limiter_view,
    stats_updated,
)
from tui.app import CopyTradeApp
from tui.screens.help import HelpScreen

JWT = ".".join(
    (
        "eyJhbGciOiJIUzUxMiJ9",
        "eyJpc3MiOiJkaGFuIiwiY2xpZW50SWQiOiIxMDAwIn0",
        "c2lnbmF0dXJlLXNpZ25hdHVyZQ",
    )
)  # fake; no token-shaped text committed


async def test_leader_rows_are_keyed_and_updated_in_place(
    app: CopyTradeApp, engine: FakeEngine
) -> None:
    async with app.run_test(size=SIZE) as pilot:
        engine.publish(leader_seen("L1", symbol="RELIANCE", quantity=10))
        engine.publish(leader_seen("L2", symbol="INFY", at=T0 + timedelta(seconds=5)))
        await settle(pilot, app)
        table = app.leader_table
        assert table.row_count == 2
        assert table.keys() == ["L2", "L1"]  # newest first
        assert table.cells_of("L1") == (
            "10:15:00",
            "L1",
            "RELIANCE",
            "-",
            "BUY",
            "LMT",
            "INTRA",
            "0/10",
            "2450.50",
            "DAY",
            "PENDING",
        )
        engine.publish(leader_seen("L1", status=OrderStatus.PART_TRADED, filled=4))
        await settle(pilot, app)
        engine.publish(leader_seen("L1", status=OrderStatus.TRADED, filled=10))
        await settle(pilot, app)
        assert table.row_count == 2
        assert table.keys() == ["L2", "L1"]
        assert table.cell_text("L1", "qty") == "10/10"
        assert table.cell_text("L1", "status") == "TRADED"
        assert str(table.shown_cell("L1", "status")) == "TRADED"
        assert table.shown_cell("L1", "status").style == "green"
        assert "Leader orders (2)" in str(table.border_title)


async def test_leader_rows_are_capped_by_key(engine: FakeEngine) -> None:
    app = CopyTradeApp(engine, clock=FixedClock(), leader_rows=20)
    async with app.run_test(size=SIZE) as pilot:
        for i in range(50):
            engine.publish(leader_seen(f"L{i:03d}"))
            if i % 7 == 0:
                await settle(pilot, app)
        await settle(pilot, app)
        table = app.leader_table
        assert table.row_count == 20
        assert table.keys()[0] == "L049"
        assert table.keys()[-1] == "L030"
        # the bulk removal left the table's own bookkeeping consistent
        for index, key in enumerate(table.keys()):
            assert table.row_index(key) == index
            assert str(table.get_row_at(index)[0]) == "10:15:00"
        table.focus()
        await pilot.press("ctrl+end")
        assert table.cursor_key() == "L030"
        engine.publish(leader_seen("L030", status=OrderStatus.TRADED, filled=10))
        await settle(pilot, app)
        assert table.cell_text("L030", "status") == "TRADED"
        assert table.row_count == 20


async def test_many_removals_in_one_flush_rebuild_the_table_consistently(
    engine: FakeEngine,
) -> None:
    app = CopyTradeApp(engine, clock=FixedClock(), leader_rows=20)
    async with app.run_test(size=SIZE) as pilot:
        for i in range(20):
            engine.publish(leader_seen(f"L{i:03d}"))
        await settle(pilot, app)
        table = app.leader_table
        table.focus()
        for _ in range(5):
            await pilot.press("down")
        assert table.cursor_key() == "L014"
        # 12 new orders in one flush push 12 old ones out (their rows are reused).
        for i in range(20, 32):
            engine.publish(leader_seen(f"L{i:03d}"))
        engine.publish(leader_seen("L014", status=OrderStatus.TRADED, filled=10))
        await settle(pilot, app)
        assert table.row_count == 20
        assert table.keys() == [f"L{i:03d}" for i in range(31, 11, -1)]
        for index, key in enumerate(table.keys()):
            assert table.row_index(key) == index
        assert table.cursor_key() == "L014"  # still the user's row
        assert table.cell_text("L014", "status") == "TRADED"
        # the user's row pushed out too: the cursor stays where it was, on a row that exists
        for i in range(32, 52):
            engine.publish(leader_seen(f"L{i:03d}"))
        await settle(pilot, app)
        assert table.keys()[0] == "L051" and table.row_count == 20
        assert table.cursor_key() == table.keys()[table.cursor_row]


async def test_filtering_away_many_follower_rows_rebuilds_consistently(
    app: CopyTradeApp, engine: FakeEngine
) -> None:
    async with app.run_test(size=SIZE) as pilot:
        for i in range(30):
            engine.publish(leader_seen(f"L{i:02d}"))
            engine.publish(follower_changed("follower-a", f"L{i:02d}"))
        engine.publish(follower_changed("follower-b", "L29"))
        await settle(pilot, app)
        table = app.follower_table
        assert table.row_count == 31
        app.leader_table.focus()
        await pilot.press("f")  # 29 rows leave at once: the table is rebuilt
        await pilot.pause()
        assert table.leader_filter == "L29"
        assert sorted(table.keys()) == ["follower-a\x1fL29", "follower-b\x1fL29"]
        for index, key in enumerate(table.keys()):
            assert table.row_index(key) == index
        await pilot.press("f")
        await pilot.pause()
        assert table.row_count == 31
        assert table.keys()[-1] == "follower-a\x1fL00"
        assert table.cell_text("follower-a\x1fL00", "leader") == "L00"


async def test_cursor_sticks_to_the_order_the_user_is_on(
    app: CopyTradeApp, engine: FakeEngine
) -> None:
    async with app.run_test(size=SIZE) as pilot:
        for i in range(3):
            engine.publish(leader_seen(f"L{i}"))
        await settle(pilot, app)
        table = app.leader_table
        table.focus()
        assert table.cursor_key() == "L2"  # tailing the newest
        await pilot.press("down")
        assert table.cursor_key() == "L1"
        engine.publish(leader_seen("L3"))
        await settle(pilot, app)
        assert table.keys()[0] == "L3"
        assert table.cursor_key() == "L1"  # the user's row, not whatever is at that index


async def test_follower_rows_keyed_and_filtered(app: CopyTradeApp, engine: FakeEngine) -> None:
    async with app.run_test(size=SIZE) as pilot:
        engine.publish(leader_seen("L1"))
        engine.publish(leader_seen("L2"))
        engine.publish(follower_changed("follower-a", "L1", state=MirrorState.PLACING))
        engine.publish(follower_changed("follower-b", "L1"))
        engine.publish(follower_changed("follower-a", "L2"))
        await settle(pilot, app)
        table = app.follower_table
        assert table.row_count == 3
        engine.publish(
            follower_changed(
                "follower-a",
                "L1",
                state=MirrorState.DONE,
                broker_status="TRADED",
                filled=5,
                avg=2450.6,
                slippage=0.1,
                latency=212.0,
            )
        )
        engine.publish(
            follower_changed(
                "follower-b",
                "L1",
                state=MirrorState.FAILED,
                broker_status="REJECTED",
                reason="RMS: insufficient margin",
            )
        )
        await settle(pilot, app)
        assert table.row_count == 3
        key = "follower-a\x1fL1"
        assert table.cells_of(key)[:8] == (
            "follower-a",
            "L1",
            "DONE TRADED",
            "5",
            "5",
            "2450.60",
            "+0.10",
            "212",
        )
        assert table.cell_text("follower-b\x1fL1", "reason") == "RMS: insufficient margin"
        assert table.cell_text("follower-b\x1fL1", "status") == "FAILED"
        # filter to the highlighted leader order (L2 is newest, the cursor tails it)
        app.leader_table.focus()
        await pilot.press("f")
        assert table.leader_filter == "L2"
        assert table.row_count == 1
        await pilot.press("down")  # the filter follows the cursor
        await pilot.pause()
        assert table.leader_filter == "L1"
        assert sorted(table.keys()) == ["follower-a\x1fL1", "follower-b\x1fL1"]
        await pilot.press("f")
        assert table.leader_filter is None
        assert table.row_count == 3


async def test_initial_views_are_seeded(engine: FakeEngine) -> None:
    engine.initial_followers = [follower_view("follower-a", "L7")]
    engine.initial_limiters = [limiter_view("follower-a", (1, 2, 3, 4))]
    app = CopyTradeApp(engine, clock=FixedClock())
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert app.follower_table.row_count == 1
        assert "follower-a" in app.accounts_pane.cards


async def test_limiter_cards_update_in_place(app: CopyTradeApp, engine: FakeEngine) -> None:
    async with app.run_test(size=SIZE) as pilot:
        engine.publish(limiter_changed("follower-a", (3, 41, 120, 380), queue=2, throttled=5))
        engine.publish(limiter_changed("leader", (0, 1, 1, 1)))
        await settle(pilot, app)
        pane = app.accounts_pane
        card = pane.cards["follower-a"]
        assert "second ██░░░░░░ 3 of 10 used" in card.plain()
        assert "minute █░░░░░░░ 41 of 250 used" in card.plain()
        assert "queue 2 · waited 5 · Dhan refusals 0" in card.plain()
        engine.publish(limiter_changed("follower-a", (10, 50, 130, 390), dh904=2))
        await settle(pilot, app)
        assert pane.cards["follower-a"] is card
        assert len(pane.children) == 2
        assert pane.children[0] is pane.cards["leader"]  # the leader's card first
        assert "10 of 10 used" in card.plain() and "Dhan refusals 2" in card.plain()


async def test_alerts_newest_first_and_merged(app: CopyTradeApp, engine: FakeEngine) -> None:
    async with app.run_test(size=SIZE) as pilot:
        engine.publish(alert_raised("first", severity=Severity.INFO))
        engine.publish(alert_raised("boom", severity=Severity.ERROR, follower="follower-b"))
        await settle(pilot, app)
        assert app.alerts_pane.lines()[0].startswith("10:15:00 ERR  [follower-b] boom")
        engine.publish(alert_raised("first", severity=Severity.INFO))  # same dedup key again
        await settle(pilot, app)
        lines = app.alerts_pane.lines()
        assert len(lines) == 2
        assert lines[0] == "10:15:00 INFO \u00d72 first"
        engine.publish(alert_raised("first", severity=Severity.INFO, count=5))  # engine dedup
        engine.publish(
            alert_raised("socket silent", severity=Severity.CRITICAL, code="LEADER_STALLED")
        )
        await settle(pilot, app)
        lines = app.alerts_pane.lines()
        assert lines[0].startswith("10:15:00 CRIT socket silent")
        assert lines[1] == "10:15:00 INFO \u00d75 first"
        item = next(iter(reversed(app.alerts_pane.items.values())))
        assert item.alert.severity is Severity.CRITICAL


async def test_status_line_figures(
    app: CopyTradeApp, engine: FakeEngine, clock: FixedClock
) -> None:
    async with app.run_test(size=SIZE) as pilot:
        engine.publish(connection("leader", ConnectionState.CONNECTED))
        engine.publish(
            stats_updated(
                replicated=99,
                failed=1,
                latency_p50_ms=150.0,
                latency_p99_ms=900.0,
                mean_slippage=0.05,
                disconnects=2,
                last_leader_event_at=T0 - timedelta(seconds=3),
            )
        )
        await settle(pilot, app)
        text = app.status_line.plain
        assert "ARMED" in text
        assert "leader CONNECTED · last event 3s ago" in text
        assert "NSE open 09:15-15:30 IST" in text and "10:15:00 IST" in text
        assert "copied 99 · failed 1 (99.0% ok)" in text
        assert "p50 150 ms p99 900 ms" in text
        assert "slippage +0.05" in text and "disconnects 2" in text
        clock.advance(60)
        app._tick()
        assert "last event 1m03s ago" in app.status_line.plain
        engine.publish(connection("leader", ConnectionState.DISCONNECTED))
        engine.publish(connection("follower-b", ConnectionState.DISCONNECTED))
        engine.publish(EngineStateChanged(at=T0, state=EngineState.KILLED, reason="risk limit"))
        await settle(pilot, app)
        text = app.status_line.plain
        assert "leader DISCONNECTED" in text
        assert "follower-b DISCONNECTED" in text
        assert "KILLED" in text and "risk limit" in text


async def test_engine_recoveries_are_left_to_the_engine_alerts(
    app: CopyTradeApp, engine: FakeEngine
) -> None:
    """The engine raises its own RECOVERY alert; the pane does not add a second line."""
    async with app.run_test(size=SIZE) as pilot:
        engine.publish(RecoveryCompleted(at=T0, report=RecoveryReport("reconnect", 4, 1)))
        await settle(pilot, app)
        assert app.alerts_pane.lines() == []
        assert app.events_applied == 1


async def test_no_token_reaches_the_screen(app: CopyTradeApp, engine: FakeEngine) -> None:
    async with app.run_test(size=SIZE) as pilot:
        engine.publish(alert_raised(f"auth failed with token {JWT}", severity=Severity.ERROR))
        engine.publish(
            follower_changed("follower-a", "L1", state=MirrorState.FAILED, reason=f"401 {JWT}")
        )
        await settle(pilot, app)
        await pilot.pause(0.05)
        screen = app.export_screenshot()
        assert "[redacted]" in app.alerts_pane.lines()[0]
        assert JWT[:20] not in screen
        assert "eyJ" not in screen


async def test_flood_stays_responsive(app: CopyTradeApp, engine: FakeEngine) -> None:
    """20,000 events as fast as the fake engine can publish them; keys still work."""
    n = 20_000
    async with app.run_test(size=SIZE) as pilot:

        async def flood() -> None:
            for i in range(n):
                order = f"L{i // 20:05d}"
                kind = i % 5
                if kind == 0:
                    engine.publish(leader_seen(order, filled=i % 10))
                elif kind == 1:
                    engine.publish(follower_changed("follower-a", order, filled=i % 5))
                elif kind == 2:
                    engine.publish(limiter_changed("follower-a", (i % 10, i % 250, 0, i % 7000)))
                elif kind == 3:
                    engine.publish(stats_updated(replicated=i))
                else:
                    engine.publish(alert_raised(f"alert {i % 7}"))
                if i % 500 == 0:
                    await asyncio.sleep(0)

        task = asyncio.create_task(flood())
        await asyncio.sleep(0.05)
        await pilot.press("question_mark")  # a key pressed mid-flood is handled
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        await task
        await settle(pilot, app)
        assert app.coalescer.received == n
        assert app.events_applied == n
        last_order = f"L{(n - 1) // 20:05d}"
        assert app.leader_table.keys()[0] == last_order
        assert app.leader_table.row_count == 500
        last_leader_i = max(i for i in range(n) if i % 5 == 0)
        assert app.leader_table.cell_text(last_order, "qty") == f"{last_leader_i % 10}/10"
        assert app.follower_table.row_count == 500
        assert app.status_line.facts.stats.replicated == n - 2
        assert len(app.alerts_pane.items) == 7
        await pilot.press("k")
        assert app.screen.id == "confirm-kill"
        await pilot.press("escape")
        assert engine.count("kill") == 0
