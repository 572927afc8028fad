"""A 2-minute soak (fixed seed) in CI: `python -m bench.soak --seed 7 --minutes 2` must report
nothing lost, duplicated, mismatched or sent while KILLED."""

from __future__ import annotations

import asyncio
import json
import sys

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


async def test_two_minute_soak_reports_zeros() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.soak",
        "--seed",
        "7",
        "--minutes",
        "2",
        "--round-s",
        "30",
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 230)
    line = out.decode().strip().splitlines()[-1]
    figures = json.loads(line)
    print(line)
    assert proc.returncode == 0, line
    for key in ("lost", "duplicates", "mismatched", "sent_while_killed"):
        assert figures[key] == 0, line
    assert figures["orders"] >= 50 and figures["rounds"] >= 3, line
    assert figures["reconverge_p95_s"] is not None, line
