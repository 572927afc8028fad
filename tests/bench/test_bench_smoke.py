"""The benchmarks still run: each main coroutine with tiny sizes against a simulator
subprocess. No timing asserts (they are measurements); only that every figure is reported."""

from __future__ import annotations

import math

import pytest

from bench import burst, followers, latency
from bench.common import Account, filesystem_of
from engine.replication.correlation import correlation_id

pytestmark = pytest.mark.timeout(90)


async def test_latency_reports_engine_bare_and_ratios(capsys: pytest.CaptureFixture[str]) -> None:
    figures = await latency.run(orders=5, seed=3)
    for key in ("engine", "bare", "ratio_p50", "ratio_p99", "stages", "throttled"):
        assert key in figures
    for side in ("engine", "bare"):
        assert figures[side]["n"] == 5
        assert set(figures[side]) >= {"p50", "p90", "p99", "max"}
    assert math.isfinite(figures["ratio_p50"]) and math.isfinite(figures["ratio_p99"])
    assert "engine/bare" in capsys.readouterr().out


async def test_burst_reports_minimum_ratio_and_dh904(capsys: pytest.CaptureFixture[str]) -> None:
    figures = await burst.run(orders=15)
    for key in ("actual_s", "minimum_s", "ratio", "dh904", "posts", "distinct", "duplicates"):
        assert key in figures
    assert "ratio to the minimum" in capsys.readouterr().out


async def test_followers_reports_each_count(capsys: pytest.CaptureFixture[str]) -> None:
    figures = await followers.run(counts=(1, 3), orders=2, rounds=2)
    assert [c["n"] for c in figures["counts"]] == [1, 3]
    for row in figures["counts"]:
        assert row["orders"] == 4 and len(row["round_ratios"]) == 2
        for key in ("first_ms", "last_ms", "lean_first_ms", "cpu_s", "rss_mib", "sim_cpu_s"):
            assert key in row
        assert row["first_ms"] <= row["last_ms"]
        assert row["lean_first_ms"] <= row["lean_last_ms"]
    assert figures["single_ms"] is not None and figures["scaling"] is not None
    out = capsys.readouterr().out
    assert "LAST" in out
    assert "the pace of the others" in out and "FIRST-served copy" in out
    assert "engine store: " in out  # the disk's flush is in every copy's path


def test_the_store_s_filesystem_is_the_innermost_mount_holding_it() -> None:
    mounts = [("/", "ext4"), ("/dev/shm", "tmpfs"), ("/tmpx", "tmpfs")]
    assert filesystem_of("/dev/shm", mounts) == "tmpfs"
    assert filesystem_of("/dev/shm/copytrade", mounts) == "tmpfs"
    assert filesystem_of("/tmp", mounts) == "ext4"  # not /tmpx: a mount point, not a prefix
    assert filesystem_of("/tmp", []) == "?"


@pytest.mark.parametrize("front", ["headless", "terminal"])
async def test_followers_runs_the_engine_as_a_trader_would(
    front: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Under `copytrade run --headless` or the terminal app, the same figures: every copy
    placed (the run waits for each), and the front named in the report."""
    figures = await followers.run(counts=(2,), orders=2, rounds=1, front=front)
    (row,) = figures["counts"]
    assert row["orders"] == 2 and row["first_ms"] <= row["last_ms"]
    words = {"headless": "copytrade run --headless", "terminal": "the terminal app"}
    assert words[front] in capsys.readouterr().out


def test_first_and_last_copy_and_the_pace_between() -> None:
    alert_at = {"L1": 10.0}
    post_at = {correlation_id("L1", name, 0): at for name, at in (("a", 10.004), ("b", 10.010))}
    accounts = [Account(name, f"10{i}", f"tok{i}") for i, name in enumerate(("a", "b"))]
    first = followers._copy_ms(alert_at, post_at, "L1", accounts, min)
    last = followers._copy_ms(alert_at, post_at, "L1", accounts, max)
    assert math.isclose(first, 4.0) and math.isclose(last, 10.0)
    pace = followers._pace_ms(first, last, 2)
    assert pace is not None and math.isclose(pace, 6.0)
    assert followers._pace_ms(first, first, 1) is None  # one follower: no pace
