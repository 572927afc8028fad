"""Pure pieces of the terminal: formatting, redaction, coalescing, dialog texts."""

from __future__ import annotations

import threading

from engine.domain import MirrorState
from engine.views import KillPreview, RecoveryReport
from tests.tui.fakes import (
    alert_raised,
    follower_changed,
    follower_view,
    leader_seen,
    limiter_changed,
    stats_updated,
)
from tui.app import kill_message, resync_summary
from tui.coalesce import AlertOccurrence, EventCoalescer, merge_alert_count
from tui.format import follower_cells, redact, window_segment

JWT = ".".join(
    (
        "eyJhbGciOiJIUzUxMiJ9",
        "eyJpc3MiOiJkaGFuIiwiY2xpZW50SWQiOiIxMDAwIn0",
        "c2lnbmF0dXJlLXNpZ25hdHVyZQ",
    )
)  # fake; no token-shaped text committed


def test_kill_message_says_exactly_what_happens() -> None:
    assert kill_message(KillPreview(7, 2, 0)) == (
        "Cancel 7 open follower orders in 2 accounts and send nothing new until you resume."
    )
    assert kill_message(KillPreview(1, 1, 3)) == (
        "Cancel 1 open follower order in 1 account and send nothing new until you resume. "
        "3 queued actions will not be sent."
    )
    assert kill_message(KillPreview(0, 0, 0)).startswith("No follower order is open.")
    assert "could not say" in kill_message(None)


def test_resync_summary() -> None:
    text = resync_summary(RecoveryReport("manual", 12, 3, ("a", "b")))
    assert text == (
        "Resync (manual): 12 leader orders checked, 3 actions taken, 2 discrepancies: a; b"
    )
    assert "1 discrepancy" in resync_summary(RecoveryReport("manual", 1, 0, ("x",)))


def test_redact_masks_tokens() -> None:
    for raw in (
        f"auth failed for {JWT}",
        "access-token=abc123def456",
        "client_secret: s3cr3t-value",
        "x" * 60,
    ):
        out = redact(raw)
        assert "abc123def456" not in out
        assert "s3cr3t-value" not in out
        assert JWT not in out
        assert "x" * 60 not in out
    assert redact("RMS: insufficient margin") == "RMS: insufficient margin"


def test_redact_keeps_words_about_tokens_and_masks_bearer_values() -> None:
    assert redact("DH-901 Access token invalid or expired") == (
        "DH-901 Access token invalid or expired"
    )
    assert redact("Dhan refused the token (expired)") == "Dhan refused the token (expired)"
    for raw in ("Authorization: Bearer s3cr3t-value", "authorization s3cr3t-value", "token=s3cr3t"):
        assert "s3cr3t" not in redact(raw)


def test_coalescer_keeps_latest_per_key_and_alert_order() -> None:
    c = EventCoalescer()
    for filled in range(5):
        c.append(leader_seen("L1", filled=filled))
        c.append(follower_changed("fa", "L1", filled=filled))
        c.append(limiter_changed("fa", (filled, 0, 0, 0)))
    c.append(alert_raised("one"))
    c.append(alert_raised("two"))
    c.append(alert_raised("one"))
    c.append(stats_updated(replicated=9))
    batch = c.drain()
    assert batch.events == 19
    assert batch.leaders["L1"][0].filled_qty == 4
    assert batch.followers[("fa", "L1")].filled_qty == 4
    assert batch.limiters["fa"].windows[0].used == 4
    assert [o.alert.message for o in batch.alerts.values()] == ["two", "one"]
    assert [o.arrivals for o in batch.alerts.values()] == [1, 2]
    assert batch.stats is not None and batch.stats.replicated == 9
    assert c.drain().is_empty()


def test_coalescer_buffer_is_bounded_without_losing_keys() -> None:
    c = EventCoalescer(max_buffer=100)
    for i in range(1000):
        c.append(leader_seen(f"L{i % 50}", filled=i))
    assert len(c) < 100
    batch = c.drain()
    assert len(batch.leaders) == 50
    assert batch.leaders["L49"][0].filled_qty == 999


def test_a_buffer_filled_from_another_thread_is_folded_on_the_loops_thread() -> None:
    """The engine on its own thread must not fold (the flush drains meanwhile): a full buffer
    asks the loop's thread to, once until it has, and nothing is lost."""
    c = EventCoalescer(max_buffer=100)
    asked: list[int] = []
    c.fold_soon = lambda: asked.append(len(c))

    def engine_thread() -> None:
        for i in range(250):
            c.append_from_thread(leader_seen(f"L{i % 50}", filled=i))

    worker = threading.Thread(target=engine_thread)
    worker.start()
    worker.join()
    assert asked == [100]  # asked once; the loop had not folded yet
    c.fold_now()  # what the loop's thread then does
    assert len(c) == 0 and c.folded_early == 1
    c.append_from_thread(leader_seen("L0", filled=999))
    batch = c.drain()
    assert len(batch.leaders) == 50
    assert batch.leaders["L0"][0].filled_qty == 999
    assert batch.leaders["L49"][0].filled_qty == 249


def test_merge_alert_count() -> None:
    def occ(count: int, arrivals: int = 1) -> AlertOccurrence:
        return AlertOccurrence(alert_raised("m", count=count).alert, arrivals)

    assert merge_alert_count(None, occ(1)) == 1
    assert merge_alert_count(None, occ(4)) == 4  # engine already deduped
    assert merge_alert_count(2, occ(1)) == 3  # a fresh repeat adds
    assert merge_alert_count(2, occ(1, arrivals=3)) == 5
    assert merge_alert_count(4, occ(6)) == 6  # the engine's running count wins


def test_follower_cells_show_reason_and_state() -> None:
    cells = follower_cells(
        follower_view("fb", "L1", state=MirrorState.FAILED, reason=f"bad token {JWT}")
    )
    texts = [t for t, _ in cells]
    assert texts[2] == "FAILED"
    assert "bad token [redacted]" in texts[8]
    assert cells[2][1] == "bold red"


def test_window_segment_bar() -> None:
    view = limiter_changed("fa", (9, 0, 0, 0)).view
    text, style = window_segment(view.windows[0])
    assert text.startswith("s█░░░")
    assert "1/10" in text
    assert style == "bold red"


def test_a_copy_managed_by_hand_says_so_in_its_reason() -> None:
    from dataclasses import replace

    view = replace(follower_view("fa", "L1"), by_hand=True)
    assert follower_cells(view)[8][0] == "managed by hand"
