"""Logs a trader can read: each copy as sent and each conversion in the headless JSON lines and
the log; a clean stop is not a WARNING; a frozen follower is not "engine killed"; a refusal by
the local SDK is not "Dhan refused"; Dhan's own error words are kept."""

from __future__ import annotations

import io
import json
import logging

import pytest

from engine.dhan.errors import AnswerShape, BrokerResult, ResultKind, sanitize
from engine.headless import JsonLinesLog
from engine.live.sent_log import refused_by
from tests.e2e.conftest import BETA, World

pytestmark = pytest.mark.e2e


async def test_each_copy_and_each_conversion_is_in_the_headless_log_and_a_clean_stop_is_quiet(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    out = io.StringIO()
    world.eng.subscribe(JsonLinesLog(out, lambda: 0.0))
    caplog.set_level(logging.INFO)
    world.place(order_type="MARKET", qty=65)
    await world.follower_order("alpha")
    await world.follower_order("beta")
    await world.settle()
    sent = [
        json.loads(line)
        for line in out.getvalue().splitlines()
        if json.loads(line)["event"] == "CopySent"
    ]
    alpha = next(s for s in sent if s["follower"] == "alpha")
    assert alpha["action"] == "PLACE"
    assert "place BUY LIMIT 65 " in alpha["text"] and " @ " in alpha["text"]
    assert any(c.startswith("MARKET sent as LIMIT") for c in alpha["conversions"])
    assert any("copy sent: alpha: place BUY LIMIT 65" in r.getMessage() for r in caplog.records)
    assert any("MARKET sent as LIMIT" in r.getMessage() for r in caplog.records)

    caplog.clear()
    await world.stop_engine()
    loud = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert not loud, [r.getMessage() for r in loud]


async def test_a_frozen_follower_is_not_called_engine_killed(world: World) -> None:
    world.sim.expire_token(BETA[0])
    world.place(price=200.0)
    await world.follower_order("alpha")
    await world.until(lambda: bool(world.eng.follower_stop_reason("beta")), 10, "beta frozen")
    world.place(price=199.0)
    await world.follower_order("alpha", 2)
    await world.settle()
    texts = [a.message for a in world.eng.recent_alerts()]
    texts += [m.reason for m in world.eng.mirrors()]
    assert not [t for t in texts if "engine killed" in t.lower()], texts
    assert any("beta frozen" in t for t in texts)


def test_a_refusal_by_the_local_sdk_is_not_called_dhan_refused() -> None:
    local = BrokerResult(
        ResultKind.REFUSED, error_code="LOCAL", message="x", shape=AnswerShape.LOCAL
    )
    dhan = BrokerResult(ResultKind.REFUSED, error_code="DH-905", message="x")
    assert "Dhan refused" not in refused_by(local) and "SDK" in refused_by(local)
    assert refused_by(dhan) == "Dhan refused"
    words = "DH-906: Order quantity is not a multiple of the lot size (access token: abc)"
    assert sanitize(words) == words.replace("abc", "***")
