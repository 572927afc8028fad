"""Alert dedup, cooldown counts, bounded memory and redaction."""

from __future__ import annotations

from engine.alerts import REDACTION_FAILED, AlertCenter
from engine.clock import ManualClock
from engine.domain import Severity

JWT = "eyJhbGciOiJIUzUxMiJ9.eyJzdWIiOiIxMjM0NSJ9.c2lnbmF0dXJlLXBhcnQ"


def test_first_alert_is_published() -> None:
    clock = ManualClock()
    center = AlertCenter(clock)
    a = center.raise_alert("SIZED_TO_ZERO", Severity.WARNING, "sized to 0", "f1", "L1")
    assert a is not None
    assert (a.code, a.severity, a.message, a.follower, a.leader_order_id, a.count) == (
        "SIZED_TO_ZERO",
        Severity.WARNING,
        "sized to 0",
        "f1",
        "L1",
        1,
    )
    assert a.at == clock.now()
    assert center.recent() == [a]


def test_repeats_within_cooldown_are_counted_then_published_with_count() -> None:
    clock = ManualClock()
    center = AlertCenter(clock, cooldown_s=30)
    assert center.raise_alert("X", Severity.ERROR, "boom") is not None
    clock.advance(10)
    assert center.raise_alert("X", Severity.ERROR, "boom") is None
    clock.advance(10)
    assert center.raise_alert("X", Severity.ERROR, "boom") is None
    clock.advance(10)  # 30 s after the publication
    a = center.raise_alert("X", Severity.ERROR, "boom")
    assert a is not None and a.count == 3
    clock.advance(31)
    b = center.raise_alert("X", Severity.ERROR, "boom")
    assert b is not None and b.count == 1
    assert [x.count for x in center.recent()] == [1, 3, 1]


def test_different_keys_are_not_deduplicated() -> None:
    center = AlertCenter(ManualClock())
    assert center.raise_alert("X", Severity.INFO, "m") is not None
    assert center.raise_alert("Y", Severity.INFO, "m") is not None
    assert center.raise_alert("X", Severity.INFO, "m", follower="f1") is not None
    assert center.raise_alert("X", Severity.INFO, "m", leader_order_id="1") is not None
    assert center.raise_alert("X", Severity.INFO, "other") is not None
    assert len(center.recent()) == 5


def test_recent_is_newest_first() -> None:
    clock = ManualClock()
    center = AlertCenter(clock)
    for i in range(3):
        center.raise_alert("X", Severity.INFO, f"m{i}")
        clock.advance(1)
    assert [a.message for a in center.recent()] == ["m2", "m1", "m0"]


def test_memory_is_bounded() -> None:
    center = AlertCenter(ManualClock(), capacity=10)
    for i in range(1000):
        center.raise_alert("X", Severity.INFO, f"m{i}")
    recent = center.recent()
    assert len(recent) == 10
    assert recent[0].message == "m999"
    assert center.remembered() <= 10


def test_flush_due_publishes_held_back_repeats() -> None:
    clock = ManualClock()
    center = AlertCenter(clock, cooldown_s=5)
    center.raise_alert("X", Severity.WARNING, "m")
    center.raise_alert("X", Severity.WARNING, "m")
    center.raise_alert("X", Severity.WARNING, "m")
    assert center.flush_due() == []
    clock.advance(5)
    flushed = center.flush_due()
    assert len(flushed) == 1 and flushed[0].count == 2
    assert center.flush_due() == []
    # the flush restarted the cooldown
    assert center.raise_alert("X", Severity.WARNING, "m") is None


def test_custom_redact_hook_applies_to_every_message() -> None:
    center = AlertCenter(ManualClock(), redact=lambda s: s.replace("hunter2", "***"))
    a = center.raise_alert("AUTH", Severity.ERROR, "login with hunter2 failed")
    assert a is not None and a.message == "login with *** failed"
    assert "hunter2" not in repr(center.recent())


def test_jwt_is_always_masked() -> None:
    center = AlertCenter(ManualClock())
    a = center.raise_alert("AUTH", Severity.ERROR, f"token {JWT} rejected")
    assert a is not None and JWT not in a.message and "***" in a.message


def test_redaction_dedups_on_the_redacted_message() -> None:
    center = AlertCenter(
        ManualClock(), redact=lambda s: s.replace("tokA", "***").replace("tokB", "***")
    )
    assert center.raise_alert("AUTH", Severity.ERROR, "bad tokA") is not None
    assert center.raise_alert("AUTH", Severity.ERROR, "bad tokB") is None


def test_failing_redactor_withholds_the_message() -> None:
    def broken(_: str) -> str:
        raise RuntimeError("oops")

    center = AlertCenter(ManualClock(), redact=broken)
    a = center.raise_alert("X", Severity.ERROR, "secret stuff")
    assert a is not None and a.message == REDACTION_FAILED


def test_clear() -> None:
    center = AlertCenter(ManualClock())
    center.raise_alert("X", Severity.INFO, "m")
    center.clear()
    assert center.recent() == []
    assert center.raise_alert("X", Severity.INFO, "m") is not None
