"""Which simulator dialect profile the end-to-end, chaos and bench fixtures run against.

The default is "live" (what recordings of live Dhan show). ``pytest --sim-profile NAME`` or the
environment variable ``TEST_SIM_PROFILE`` selects another built-in profile (or a profile JSON
file); ``python -m tests.matrix`` runs the guarantees under every built-in profile.
"""

from __future__ import annotations

import os

ENV_VAR = "TEST_SIM_PROFILE"
DEFAULT = "live"


def sim_profile() -> str:
    """The profile the fixtures start their simulators with."""
    return os.environ.get(ENV_VAR, "").strip() or DEFAULT
