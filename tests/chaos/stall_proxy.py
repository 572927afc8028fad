"""A loopback TCP proxy that can stall silently: while stalled, nothing is forwarded either way
and nothing is closed (a dead NAT mapping or a hung peer). Pings go unanswered too, which is
what the engine's idle watchdog ("no data and no pong") exists for. New connections made after
a stall pass normally."""

from __future__ import annotations

import asyncio
import contextlib


class StallProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.stalled_conns: set[int] = set()
        self._conns: dict[int, list[asyncio.StreamWriter]] = {}
        self._next = 0
        self._stall_existing = False
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def stall(self) -> None:
        """Every connection open now goes silent (both ways), without a close."""
        self.stalled_conns |= set(self._conns)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for writers in self._conns.values():
            for w in writers:
                w.close()
        for t in list(self._tasks):
            t.cancel()
        for t in list(self._tasks):
            with contextlib.suppress(BaseException):
                await t

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = self._next
        self._next += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._conns[conn] = [writer, up_writer]
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(conn, src, dst))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(self, conn: int, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while True:
                data = await src.read(65536)
                if not data:
                    break
                if conn in self.stalled_conns:
                    continue  # swallowed: the peer hears nothing, and nothing is closed
                dst.write(data)
                await dst.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            if conn not in self.stalled_conns:
                dst.close()
