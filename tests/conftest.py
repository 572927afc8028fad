"""Test-wide options: ``--sim-profile NAME`` runs the simulator-backed fixtures under another
dialect profile (see tests/sim_profile.py and ``python -m tests.matrix``)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.simulator.profile import ProfileError, load_profile
from tests.sim_profile import ENV_VAR


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--sim-profile",
        default=None,
        help="simulator dialect profile for e2e/chaos fixtures (default: live)",
    )


def pytest_configure(config: pytest.Config) -> None:
    chosen = config.getoption("--sim-profile")
    if chosen:
        try:
            load_profile(chosen)
        except ProfileError as exc:
            raise pytest.UsageError(str(exc)) from None
        os.environ[ENV_VAR] = chosen


def pytest_report_header(config: pytest.Config) -> str:
    return f"simulator profile: {os.environ.get(ENV_VAR) or 'live'}"


@pytest.fixture
def runtime_dir(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private per-user runtime directory (XDG_RUNTIME_DIR) with a short path, like
    /run/user/<uid>: the control socket's fallback must fit in a socket address, which a
    directory under pytest's (per-worker, deep) tmp_path may not."""
    with tempfile.TemporaryDirectory(prefix="ct-run-") as made:  # made 0700
        monkeypatch.setenv("XDG_RUNTIME_DIR", made)
        yield Path(made)
