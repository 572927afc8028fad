"""The engine in its own process, so a test can SIGKILL it at any point and start it again.

Child side (``python -m bench.engine_proc``): builds `Engine` from the ``COPYTRADE_*``
environment (the simulator's URLs included, its scrip master as the instruments) and the real
``DhanBroker`` wrapped by `RecordingBroker`, which appends every place/modify/cancel it starts,
and every engine state change, to the JSONL file named by ``CHAOS_CALL_LOG`` (read by
`bench.convergence.CallLog.read`). It prints ``{"ready": ...}`` once started and recovered,
then obeys one command per line on stdin: ``kill``, ``resume``, ``resync``, ``stop``, each
answered by ``{"ack": cmd, "t": monotonic}`` on stdout.

Test hook (test code only, nothing in the engine): ``CHAOS_HOLD_PLACE_S`` makes every follower
place wait that long *after* the engine wrote its intent and decided to send, and before the
request leaves: the window "between intent and send" for a SIGKILL. ``CHAOS_HOLD_PLACE_AFTER``
(default 0) lets that many places through first.

Parent side: `EngineProcess`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import IO, Any

from bench.convergence import CallLog
from engine.dhan.errors import BrokerResult
from engine.domain import OrderParams

for _var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
    os.environ.pop(_var, None)
os.environ["NO_PROXY"] = "127.0.0.1,localhost"


class RecordingBroker:
    """A broker that notes each mutation it starts, then calls the real one."""

    def __init__(
        self, inner: Any, account: str, log: CallLog, hold_s: float = 0.0, hold_after: int = 0
    ) -> None:
        self._inner = inner
        self._account = account
        self._log = log
        self._hold_s = hold_s
        self._hold_after = hold_after
        self._places = 0

    async def place(self, params: OrderParams) -> BrokerResult:
        self._log.call(self._account, "place", params.correlation_id or "")
        self._places += 1
        if self._hold_s and self._places > self._hold_after:
            await asyncio.sleep(self._hold_s)
        result: BrokerResult = await self._inner.place(params)
        return result

    async def modify(self, order_id: str, params: OrderParams, leg_name: str = "") -> BrokerResult:
        self._log.call(self._account, "modify", params.correlation_id or "", order_id)
        result: BrokerResult = await self._inner.modify(order_id, params, leg_name)
        return result

    async def cancel(self, order_id: str) -> BrokerResult:
        self._log.call(self._account, "cancel", "", order_id)
        result: BrokerResult = await self._inner.cancel(order_id)
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def recording_factory(log: CallLog, hold_s: float = 0.0, hold_after: int = 0) -> Any:
    from engine.engine import default_broker_factory

    def factory(account: str, client_id: str, token: str, rest_url: str, timeout_s: float) -> Any:
        inner = default_broker_factory(account, client_id, token, rest_url, timeout_s)
        if account == "leader":
            return inner
        return RecordingBroker(inner, account, log, hold_s, hold_after)

    return factory


def _say(out: IO[str], obj: dict[str, Any]) -> None:
    out.write(json.dumps(obj) + "\n")
    out.flush()


async def _child() -> None:
    import logging

    from engine.config import load_settings
    from engine.engine import Engine
    from engine.events import EngineEvent, EngineStateChanged, RecoveryCompleted

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    log = CallLog(path=Path(os.environ["CHAOS_CALL_LOG"]))
    settings = load_settings(env_file=None)
    if "COPYTRADE_INSTRUMENTS_URL" not in os.environ:  # else no instrument book at all
        raise SystemExit(
            "bench.engine_proc: set COPYTRADE_INSTRUMENTS_URL (the simulator's master)"
        )
    engine = Engine(
        settings,
        broker_factory=recording_factory(
            log,
            float(os.environ.get("CHAOS_HOLD_PLACE_S", "0") or 0),
            int(os.environ.get("CHAOS_HOLD_PLACE_AFTER", "0") or 0),
        ),
    )
    recovered = asyncio.Event()

    def on_event(event: EngineEvent) -> None:
        if isinstance(event, EngineStateChanged) and event.state.value in ("ARMED", "KILLED"):
            log.state(event.state.value)
        elif isinstance(event, RecoveryCompleted):
            recovered.set()

    engine.subscribe(on_event)
    task = asyncio.create_task(engine.run())
    await engine.wait_started()
    await asyncio.wait(
        {task, asyncio.ensure_future(recovered.wait())},
        timeout=60,
        return_when=asyncio.FIRST_COMPLETED,
    )
    if task.done():
        task.result()
    _say(sys.stdout, {"ready": time.monotonic(), "state": engine.state.value})
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while not task.done():
        line = (await reader.readline()).decode().strip()
        if not line:
            break  # the parent went away
        cmd = line.split()[0]
        t = time.monotonic()
        if cmd == "kill":
            log.state("KILLED", t)
            await engine.kill(line[5:] or "chaos")
        elif cmd == "resume":
            await engine.resume()
            log.state("ARMED", t)  # logged after: a place may start the moment state flips
        elif cmd == "resync":
            await engine.resync()
        elif cmd == "stop":
            _say(sys.stdout, {"ack": cmd, "t": t})
            break
        _say(sys.stdout, {"ack": cmd, "t": t})
    await engine.stop()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(task, 30)


class EngineProcess:
    """Parent side: start the engine subprocess, command it, SIGKILL it."""

    def __init__(self, env: dict[str, str], call_log: Path, stderr: Path) -> None:
        self.env = env
        self.call_log = call_log
        self.stderr_path = stderr
        self.proc: asyncio.subprocess.Process | None = None
        self._lines: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._pump: asyncio.Task[None] | None = None
        self.starts = 0

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def start(self, extra_env: dict[str, str] | None = None, timeout: float = 60) -> float:
        """Start and wait until recovered; returns the seconds it took."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("COPYTRADE_")}
        env.update(self.env)
        env.update(extra_env or {})
        env["CHAOS_CALL_LOG"] = str(self.call_log)
        t0 = time.monotonic()
        with self.stderr_path.open("ab") as err:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bench.engine_proc",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=err,
                env=env,
            )
        self._lines = asyncio.Queue()
        self._pump = asyncio.create_task(self._read(self.proc))
        self.starts += 1
        line = await self._next(timeout)
        if "ready" not in line:
            raise RuntimeError(f"engine did not start: {line}")
        return time.monotonic() - t0

    async def _read(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        while True:
            raw = await proc.stdout.readline()
            if not raw:
                await self._lines.put({"eof": True})
                return
            with contextlib.suppress(ValueError):
                await self._lines.put(json.loads(raw))

    async def _next(self, timeout: float) -> dict[str, Any]:
        line = await asyncio.wait_for(self._lines.get(), timeout)
        if line.get("eof"):
            raise RuntimeError(f"engine process exited; see {self.stderr_path}")
        return line

    async def command(self, cmd: str, timeout: float = 30) -> float:
        """Send a command; returns the monotonic time the child took it."""
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write((cmd + "\n").encode())
        await self.proc.stdin.drain()
        while True:
            line = await self._next(timeout)
            if line.get("ack") == cmd.split()[0]:
                return float(line["t"])

    async def sigkill(self) -> None:
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGKILL)
        await self.proc.wait()
        await self._drain()

    async def stop(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        try:
            await self.command("stop", timeout=30)
            await asyncio.wait_for(self.proc.wait(), 30)
        except Exception:
            await self.sigkill()
        await self._drain()

    async def _drain(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._pump
            self._pump = None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None


if __name__ == "__main__":
    asyncio.run(_child())
