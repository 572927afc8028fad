"""Run the end-to-end guarantees under every simulator dialect profile, in one command.

    .venv/bin/python -m tests.matrix                  # every built-in profile
    .venv/bin/python -m tests.matrix classic cancel-202 probe-report.json
    .venv/bin/python -m tests.matrix --jobs 2         # two profiles at a time

For each profile it runs, in its own pytest process, ``tests/e2e`` (no loss, no duplicate,
nothing sent while killed, frozen keeps protection, ...) and the chaos cases for ambiguous
answers (``tests/chaos/test_network.py::test_ambiguous_timeouts_at_scale`` and
``tests/chaos/test_lookup_profiles.py``) with ``--sim-profile NAME``, then prints one line per
profile and the total time. The exit status is 0 only when every profile passed.

CI (``pytest``) runs the live default for everything, the lookup profiles in
tests/chaos/test_lookup_profiles.py and a representative set of the others in
tests/chaos/test_profile_matrix.py. Measured on the 2-core machine: see README.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from engine.simulator.profile import BUILTIN_PROFILES, ProfileError, load_profile

ROOT = Path(__file__).resolve().parent.parent
SUITE = [
    "tests/e2e",
    "tests/chaos/test_network.py::test_ambiguous_timeouts_at_scale",
    "tests/chaos/test_lookup_profiles.py",
]


@dataclass
class Outcome:
    profile: str
    code: int
    seconds: float
    summary: str


async def run_one(profile: str, extra: list[str], log_dir: Path) -> Outcome:
    started = time.monotonic()
    log = log_dir / f"{profile.replace('/', '_')}.log"
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "pytest",
            *SUITE,
            "-q",
            "-p",
            "no:cacheprovider",
            "-n",
            "0",  # the matrix runs its profiles side by side itself
            f"--sim-profile={profile}",
            *extra,
            cwd=ROOT,
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
        )
        code = await proc.wait()
    lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    summary = lines[-1] if lines else "(no output)"
    return Outcome(profile, code, time.monotonic() - started, f"{summary}  [{log}]")


async def run_all(profiles: list[str], jobs: int, extra: list[str], log_dir: Path) -> int:
    slots = asyncio.Semaphore(jobs)

    async def guarded(profile: str) -> Outcome:
        async with slots:
            outcome = await run_one(profile, extra, log_dir)
            mark = "ok  " if outcome.code == 0 else "FAIL"
            print(f"{mark} {profile:<18} {outcome.seconds:6.0f}s  {outcome.summary}", flush=True)
            return outcome

    started = time.monotonic()
    outcomes = await asyncio.gather(*(guarded(p) for p in profiles))
    failed = [o.profile for o in outcomes if o.code != 0]
    print(
        f"{len(profiles) - len(failed)}/{len(profiles)} profiles passed in "
        f"{time.monotonic() - started:.0f}s" + (f"; failed: {', '.join(failed)}" if failed else "")
    )
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.matrix", description=__doc__.split("\n")[0]
    )
    parser.add_argument("profiles", nargs="*", help="built-in names or profile JSON files")
    parser.add_argument("--jobs", type=int, default=1, help="profiles run at once (default 1)")
    parser.add_argument("--logs", type=Path, default=None, help="where each profile's log goes")
    parser.add_argument("pytest_args", nargs=argparse.REMAINDER, help="after --: to pytest")
    args = parser.parse_args(argv)
    profiles = args.profiles or list(BUILTIN_PROFILES)
    for name in profiles:
        try:
            load_profile(name)
        except ProfileError as exc:
            print(exc, file=sys.stderr)
            return 2
    log_dir = args.logs or Path(f"/tmp/copytrade-matrix-{int(time.time())}")
    log_dir.mkdir(parents=True, exist_ok=True)
    extra = [a for a in args.pytest_args if a != "--"]
    return asyncio.run(run_all(profiles, max(1, args.jobs), extra, log_dir))


if __name__ == "__main__":
    raise SystemExit(main())
