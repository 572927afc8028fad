"""Canaries: no access token, PIN or TOTP secret ever reaches the screen, whatever text the
engine hands the terminal (an alert, a freeze reason, a sync note, an order) and whatever the
trader types into the token dialog."""

from __future__ import annotations

import html
import re
from datetime import timedelta
from pathlib import Path

import pyotp
import pytest
from textual.pilot import Pilot
from textual.widgets import Input

from engine.control.protocol import UncopiedOrder
from engine.demo import ALPHA_TOKEN, BETA_ID, BETA_TOKEN, LEADER_TOKEN, DemoSession
from engine.domain import ConnectionState, EngineState, Severity
from engine.events import AccountsChanged
from engine.secrets import register_secret
from engine.views import AccountState, AccountView, SyncOrderView, SyncPreview
from tests.leaks import secret_in
from tests.tui.conftest import SIZE, commands_done, settle
from tests.tui.fakes import T0, FakeEngine, FixedClock, alert_raised, populate, populate_cockpit
from tui.app import CopyTradeApp

PIN = "58213907"
TOTP = pyotp.random_base32()
TOKEN = "canary-screen-token-9b7e2d41"
CANARIES = (PIN, TOTP, TOKEN)


def screen_text(app: CopyTradeApp) -> str:
    runs = re.findall(r"<text[^>]*>([^<]*)</text>", app.export_screenshot())
    return html.unescape("".join(runs)).replace("\xa0", " ")


def leaked(app: CopyTradeApp, canaries: tuple[str, ...] = CANARIES) -> list[str]:
    text = screen_text(app)
    flat = text.replace(" ", "")
    return [c for c in canaries if secret_in(c, text) or secret_in(c, flat)]


@pytest.fixture
def leaky_engine() -> FakeEngine:
    """An engine whose every text carries a secret (as a bug would)."""
    for secret in CANARIES:
        register_secret(secret)
    engine = FakeEngine()
    engine.engine_state = EngineState.KILLED
    engine.accounts = [
        AccountView("leader", AccountState.KILLED, f"login refused for pin {PIN}", is_leader=True),
        AccountView(
            "follower-a",
            AccountState.FROZEN,
            f"Dhan refused token {TOKEN} (totp {TOTP})",
            token_renewal=f"mints from PIN {PIN}",
            token_status="REFUSED",
        ),
    ]
    engine.preview_sync = SyncPreview(
        (SyncOrderView("follower-a", "NSE_EQ", "2885", TOKEN, "INTRADAY", "BUY", 5, 0, 5),),
        (f"follower-b: positions unavailable (access_token={TOKEN}, totp {TOTP})",),
    )
    engine.uncopied = [UncopiedOrder("L1", f"RELIANCE {PIN}", "BUY", "LIMIT", 5, followers=("a",))]
    return engine


async def test_no_secret_on_screen_in_panes_dialogs_or_the_token_field(
    leaky_engine: FakeEngine,
) -> None:
    engine = leaky_engine
    app = CopyTradeApp(engine, clock=FixedClock(), sample_every=3600)
    async with app.run_test(size=SIZE) as pilot:
        populate(engine)
        populate_cockpit(engine, frozen="follower-b")
        engine.publish(AccountsChanged(T0, tuple(engine.accounts)))
        engine.publish(
            alert_raised(
                f"login failed: pin={PIN} totp_secret={TOTP} token {TOKEN}",
                severity=Severity.CRITICAL,
                code="LEAK",
                at=T0 + timedelta(seconds=1),
            )
        )
        await settle(pilot, app)
        assert leaked(app) == []
        assert "[redacted]" in screen_text(app)  # the leaking texts are shown, masked

        async def check_dialog(key: str) -> None:
            await pilot.press(key)
            await commands_done(app)
            await pilot.pause()
            assert app.screen is not app.screen_stack[0], key
            assert leaked(app) == [], key
            await pilot.press("escape")
            await pilot.pause()

        for key in ("k", "s", "u", "question_mark"):  # resume (KILLED), sync, freeze, help
            await check_dialog(key)
        app.alerts_pane.focus()
        await check_dialog("enter")  # the leaking alert, in full
        await pilot.press("T")
        await pilot.pause()
        field = app.screen.query_one("#token-input", Input)
        field.focus()
        await pilot.press(*TOKEN)
        assert leaked(app) == []
        await pilot.click("#yes")
        await commands_done(app)
        await pilot.pause()
        assert leaked(app) == []
        assert engine.tokens_received[0][1].get_secret_value() == TOKEN


async def test_no_demo_token_on_screen_with_the_real_engine(tmp_path: Path) -> None:
    session = DemoSession(db_path=tmp_path / "t.db", script=False)
    tokens = (LEADER_TOKEN, ALPHA_TOKEN, BETA_TOKEN)
    app = CopyTradeApp(session, demo=True, clock=FixedClock())
    async with app.run_test(size=SIZE) as pilot:
        await _started(pilot, session)
        session.sim.expire_token(BETA_ID)  # refusals carry Dhan's token words
        session.leader.place(("NSE_FNO", "48211"), "BUY", 130, price=150.0)
        await pilot.pause(3.0)
        app.flush_events()
        assert leaked(app, tokens) == []
        await pilot.press("T")
        await pilot.pause()
        app.screen.query_one("#token-input", Input).focus()
        await pilot.press(*BETA_TOKEN)
        assert leaked(app, tokens) == []
        await pilot.press("escape")
        await pilot.press("s")
        await commands_done(app)
        await pilot.pause()
        assert leaked(app, tokens) == []


async def _started(pilot: Pilot[None], session: DemoSession) -> None:
    for _ in range(200):
        if session.engine.leader_connection() is ConnectionState.CONNECTED:
            break
        await pilot.pause(0.05)
    await pilot.pause(0.3)
