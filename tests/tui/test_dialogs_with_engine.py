"""Each new dialog's No and Yes paths, pressed as a trader would, against the real engine and
the simulator (the real dhanhq SDK on 127.0.0.1): position sync (S), resume with the re-place
offer (K then K), clearing a freeze (U) and replacing a token (T, masked)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import Input, Select

from engine.demo import ALPHA_ID, BETA_ID, LEADER_ID, DemoSession
from engine.domain import ConnectionState, EngineState
from engine.views import AccountState
from tests.tui.conftest import RecordingApp
from tests.tui.fakes import FixedClock
from tui.screens.token import TokenScreen

pytestmark = pytest.mark.e2e
SIZE = (160, 46)
BANKNIFTY_PE = ("NSE_FNO", "52875")


async def until(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def started(session: DemoSession) -> None:
    await until(
        lambda: session.engine.leader_connection() is ConnectionState.CONNECTED,
        what="engine",
    )


def follower_posts(session: DemoSession) -> int:
    """Order placements the followers' accounts received (the simulator's request log)."""
    return sum(
        1
        for r in session.sim.requests
        if r["client_id"] in (ALPHA_ID, BETA_ID)
        and r["method"] == "POST"
        and r["path"].rstrip("/") == "/v2/orders"
    )


def net_qty(session: DemoSession, client_id: str, key: tuple[str, str]) -> int:
    return sum(
        int(p.get("netQty", 0))
        for p in session.sim.positions(client_id)
        if p.get("exchangeSegment") == key[0] and str(p.get("securityId")) == key[1]
    )


def copies_of(session: DemoSession, client_id: str) -> int:
    return len(session.sim.orders(client_id))


def leader_buy(session: DemoSession, price: float = 150.0, qty: int = 130) -> str:
    return session.sim.place_manual_order(
        LEADER_ID,
        transactionType="BUY",
        exchangeSegment="NSE_FNO",
        securityId="48211",
        quantity=qty,
        orderType="LIMIT",
        price=price,
        productType="INTRADAY",
    )


def details(app: RecordingApp) -> str:
    return str(app.screen.query_one("#dialog-details-text").render())


def account_state(session: DemoSession, name: str) -> AccountState | None:
    return next((v.state for v in session.account_views() if v.account == name), None)


async def booted(pilot: Pilot[None], session: DemoSession) -> None:
    await started(session)
    # the startup recovery ran: every account has a view
    await until(
        lambda: {"alpha", "beta"} <= {v.account for v in session.account_views()},
        what="the accounts",
    )
    await pilot.pause(0.3)


# --- S: position sync -----------------------------------------------------------------------


async def test_sync_no_places_nothing_and_yes_brings_followers_to_target(tmp_path: Path) -> None:
    session = DemoSession(db_path=tmp_path / "t.db", script=False)
    session.leader.hold_before_start()  # 60 held before the attach point: never copied
    await asyncio.sleep(1.1)  # Dhan's times have whole seconds
    app = RecordingApp(session, demo=True, clock=FixedClock())
    async with app.run_test(size=SIZE) as pilot:
        await booted(pilot, session)
        await until(
            lambda: app.positions_table.has_key("NSE_FNO:52875:INTRADAY|alpha"),
            what="the positions read",
        )
        posts_before = follower_posts(session)
        await pilot.press("s")
        await until(lambda: app.screen.id == "confirm-sync", what="the sync preview")
        preview = details(app)
        assert preview.count("BANKNIFTY-Dec2026-59000-PE") == 2  # exactly two orders
        assert "alpha      BUY     120  BANKNIFTY-Dec2026-59000-PE" in preview
        assert "beta       BUY      30  BANKNIFTY-Dec2026-59000-PE" in preview
        await pilot.press("enter")  # No has the focus
        await until(lambda: app.screen.id != "confirm-sync", what="the dialog closed")
        await pilot.pause(0.5)
        assert follower_posts(session) == posts_before  # nothing went to Dhan
        assert net_qty(session, ALPHA_ID, BANKNIFTY_PE) == 0

        await pilot.press("s")
        await until(lambda: app.screen.id == "confirm-sync", what="the sync preview again")
        assert details(app) == preview
        await pilot.press("y")
        await until(
            lambda: (
                net_qty(session, ALPHA_ID, BANKNIFTY_PE) == 120
                and net_qty(session, BETA_ID, BANKNIFTY_PE) == 30
            ),
            what="the followers at their targets",
        )
        await pilot.pause(0.5)
        assert follower_posts(session) == posts_before + 2  # exactly the previewed orders
        assert any("2 sync order(s) sent" in n for n in app.notices)
        await pilot.press("s")  # at target now: nothing more to place
        await until(
            lambda: any("nothing to sync" in n for n in app.notices), what="nothing to sync"
        )
        assert follower_posts(session) == posts_before + 2


# --- K then K: resume and the re-place offer --------------------------------------------------


async def kill_then_order_while_killed(pilot: Pilot[None], app: RecordingApp) -> str:
    session = app.engine
    assert isinstance(session, DemoSession)
    await pilot.press("k")
    await until(lambda: app.screen.id == "confirm-kill", what="the kill dialog")
    await pilot.press("y")
    await until(lambda: session.state is EngineState.KILLED, what="KILLED")
    order_id = leader_buy(session, 147.0)
    await until(
        lambda: any(o.order_id == order_id for o in session.engine.leader_orders()),
        what="the order placed while killed seen",
    )
    await pilot.press("k")
    await until(lambda: app.screen.id == "confirm-resume", what="the resume dialog")
    listed = details(app)
    assert order_id in listed and listed.count("no copy in alpha, beta") == 1
    await pilot.press("y")
    await until(lambda: app.screen.id == "confirm-replace", what="the re-place offer")
    assert order_id in details(app)
    return order_id


async def test_resume_no_keeps_the_order_uncopied(tmp_path: Path) -> None:
    session = DemoSession(db_path=tmp_path / "t.db", script=False)
    app = RecordingApp(session, demo=True, clock=FixedClock())
    async with app.run_test(size=SIZE) as pilot:
        await booted(pilot, session)
        await kill_then_order_while_killed(pilot, app)
        await pilot.press("enter")  # No (resume only) has the focus
        await until(lambda: session.state is EngineState.ARMED, what="ARMED")
        await pilot.pause(0.5)
        assert copies_of(session, ALPHA_ID) == copies_of(session, BETA_ID) == 0
        assert follower_posts(session) == 0


async def test_resume_yes_replaces_the_order_exactly_once(tmp_path: Path) -> None:
    session = DemoSession(db_path=tmp_path / "t.db", script=False)
    app = RecordingApp(session, demo=True, clock=FixedClock())
    async with app.run_test(size=SIZE) as pilot:
        await booted(pilot, session)
        await kill_then_order_while_killed(pilot, app)
        await pilot.press("y")
        await until(lambda: session.state is EngineState.ARMED, what="ARMED")
        await until(
            lambda: copies_of(session, ALPHA_ID) == 1 and copies_of(session, BETA_ID) == 1,
            what="one copy per follower",
        )
        await pilot.pause(0.8)
        assert follower_posts(session) == 2  # exactly once each
        assert copies_of(session, ALPHA_ID) == copies_of(session, BETA_ID) == 1


# --- U and T: a frozen follower ---------------------------------------------------------------


async def beta_frozen_by_expired_token(pilot: Pilot[None], session: DemoSession) -> None:
    await booted(pilot, session)
    session.sim.expire_token(BETA_ID)
    leader_buy(session, 150.0)
    await until(lambda: account_state(session, "beta") is AccountState.FROZEN, what="beta frozen")


async def test_the_clear_freeze_dialog_names_the_follower_once(tmp_path: Path) -> None:
    """The freeze's reason opens with the follower's name (it is an alert text too); the
    dialog's line, which starts with the name, does not say it twice."""
    session = DemoSession(db_path=tmp_path / "t.db", script=False)
    app = RecordingApp(session, demo=True, clock=FixedClock())
    async with app.run_test(size=SIZE) as pilot:
        await beta_frozen_by_expired_token(pilot, session)
        await pilot.press("u")
        await until(lambda: app.screen.id == "confirm-unfreeze", what="the clear-freeze dialog")
        listed = details(app)
        assert listed.startswith("beta: Dhan refused the access token"), listed
        assert "beta: beta:" not in listed
        await pilot.press("enter")


async def test_clear_freeze_no_keeps_it_and_yes_clears_it(tmp_path: Path) -> None:
    session = DemoSession(db_path=tmp_path / "t.db", script=False)
    app = RecordingApp(session, demo=True, clock=FixedClock())
    async with app.run_test(size=SIZE) as pilot:
        await booted(pilot, session)
        # beta's whitelist no longer holds the address it orders from: Dhan refuses, beta
        # freezes, and only the trader clears that (after fixing the whitelist)
        session.sim.set_ip_whitelist(BETA_ID, ["127.0.0.9"])
        leader_buy(session, 150.0)
        await until(
            lambda: account_state(session, "beta") is AccountState.FROZEN, what="beta frozen"
        )
        await pilot.press("u")
        await until(lambda: app.screen.id == "confirm-unfreeze", what="the clear-freeze dialog")
        listed = details(app)
        assert listed.startswith("beta: ") and "static-IP whitelist" in listed
        await pilot.press("enter")  # No has the focus
        await until(lambda: app.screen.id != "confirm-unfreeze", what="the dialog closed")
        await pilot.pause(0.5)
        assert account_state(session, "beta") is AccountState.FROZEN
        assert not any("freeze cleared" in n for n in app.notices)
        session.sim.set_ip_whitelist(BETA_ID, ["127.0.0.1"])  # the cause is gone
        await pilot.pause(1.5)
        assert account_state(session, "beta") is AccountState.FROZEN  # it waits for the trader
        await pilot.press("u")
        await until(lambda: app.screen.id == "confirm-unfreeze", what="the dialog again")
        await pilot.press("y")
        await until(
            lambda: account_state(session, "beta") is AccountState.ARMED, what="beta cleared"
        )
        await until(lambda: any("freeze cleared" in n for n in app.notices), what="told")
        leader_buy(session, 149.0)  # beta copies again
        await until(
            lambda: any(o["orderStatus"] == "PENDING" for o in session.sim.orders(BETA_ID)),
            what="beta copying again",
        )


async def type_token(pilot: Pilot[None], app: RecordingApp, token: str) -> None:
    await pilot.press("T")
    await until(lambda: isinstance(app.screen, TokenScreen), what="the token dialog")
    screen = app.screen
    assert screen.query_one("#token-account", Select).value == "beta"  # the refused one
    field = screen.query_one("#token-input", Input)
    assert field.password
    field.focus()
    await pilot.press(*token)
    await pilot.pause()
    assert field.value == token
    rendered = field.render_line(0).text
    assert token not in rendered and "•" * len(token) in rendered  # one dot per character
    assert token not in app.export_screenshot()
    await pilot.click("#yes")
    assert field.value == ""  # moved out of the widget into a SecretStr
    await until(lambda: not isinstance(app.screen, TokenScreen), what="the dialog closed")


async def test_token_wrong_is_refused_right_clears_and_never_shown(tmp_path: Path) -> None:
    session = DemoSession(db_path=tmp_path / "t.db", script=False)
    app = RecordingApp(session, demo=True, clock=FixedClock())
    async with app.run_test(size=SIZE) as pilot:
        await beta_frozen_by_expired_token(pilot, session)
        right, wrong = "beta-new-7f3a", "beta-bad-91c2"
        session.sim.renew_token(BETA_ID, right)
        notices = len(app.notices)
        await type_token(pilot, app, wrong)
        await until(lambda: len(app.notices) > notices, what="the refusal told")
        assert "refused the new token" in app.notices[-1] and "kept the old" in app.notices[-1]
        await pilot.pause(0.5)
        assert account_state(session, "beta") is AccountState.FROZEN
        await type_token(pilot, app, right)
        await until(
            lambda: account_state(session, "beta") is AccountState.ARMED,
            what="beta copying again",
        )
        app.flush_events()
        await pilot.pause()
        screen_text = app.export_screenshot()
        for token in (right, wrong):
            assert token not in screen_text
            assert not any(token in n for n in app.notices)
            assert not any(token in line for line in app.alerts_pane.lines())
