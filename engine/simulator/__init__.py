"""The Dhan paper exchange: Dhan's REST v2 and order-update WebSocket on loopback.

It stands apart from the engine it tests (import-linter contract): it writes its own Dhan
encoding (``wire``) so that it checks the engine's codec instead of echoing it.

    sim = DhanSimulator(accounts={"1000000001": "tokL"})  # profile="live" by default
    await sim.start(port=0)
    ctx = DhanContext("1000000001", "tokL"); ctx.dhan_http.base_url = sim.rest_url
"""

from .errors import SimError
from .exchange import Exchange
from .instruments import DEFAULT_INSTRUMENTS, InstrumentMaster, SimInstrument
from .profile import BUILTIN_PROFILES, ProfileError, SimProfile, load_profile
from .server import DhanSimulator

__all__ = [
    "BUILTIN_PROFILES",
    "DEFAULT_INSTRUMENTS",
    "DhanSimulator",
    "Exchange",
    "InstrumentMaster",
    "ProfileError",
    "SimError",
    "SimInstrument",
    "SimProfile",
    "load_profile",
]
