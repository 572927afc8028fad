"""Test-wide options: ``--sim-profile NAME`` runs the simulator-backed fixtures under another
dialect profile (see tests/sim_profile.py and ``python -m tests.matrix``)."""

from __future__ import annotations

import os

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
