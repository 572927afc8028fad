"""Control without the terminal: a local channel to status, kill, resume and resync the engine.

The engine serves it (`ControlServer`), the `copytrade status|kill|resume|resync` commands use
it (`send_command`); `ControlledEngine` is the contract between them.
"""

from engine.control.client import (
    ControlClientError,
    EngineNotRunning,
    EngineRefused,
    send_command,
)
from engine.control.protocol import (
    Command,
    ControlledEngine,
    ControlRefused,
    Request,
    ResumeReport,
    UncopiedOrder,
)
from engine.control.server import ControlServer, ControlSocketError

__all__ = [
    "Command",
    "ControlClientError",
    "ControlRefused",
    "ControlServer",
    "ControlSocketError",
    "ControlledEngine",
    "EngineNotRunning",
    "EngineRefused",
    "Request",
    "ResumeReport",
    "UncopiedOrder",
    "send_command",
]
