"""The engine's running life after start-up: the order streams and the background loops
(reconcile, polls, funds, stats, store and positions flushers, scrip master, lagging copies,
risk, cockpit), and the orderly stop that ends them and closes every connection.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from typing import Any

from engine.config import Settings
from engine.dhan.recorder import Recorder
from engine.domain import ConnectionState, EngineState
from engine.events import EngineStateChanged
from engine.live import scrip_loader, startup
from engine.live.collector import thaw
from engine.live.follower_poll import poll_open_follower_copies
from engine.live.leader_poll import poll_open_leader_orders
from engine.live.wiring import LiveParts, SharedState

__all__ = ["start_streams_and_loops", "stop_streams_and_loops"]


def start_streams_and_loops(
    s: Settings,
    shared: SharedState,
    live: LiveParts,
    *,
    follower_streams: bool,
    recorder: Recorder | None,
    fetch_instruments: bool,
    on_connection: Callable[[str, ConnectionState, str], None],
    on_malformed: Callable[[str, str, str], None],
    stats_loop: Callable[[], Coroutine[Any, Any, None]],
) -> None:
    """Open the streams, then start every background loop as a task of `shared.tasks`."""
    clock, accounts, book = shared.clock, shared.accounts, shared.book
    startup.open_streams(
        s,
        clock,
        accounts,
        shared.tasks,
        follower_streams=follower_streams,
        on_leader_snapshot=live.leader_feed.on_snapshot,
        on_leader_connected=live.recovery.on_leader_connected,
        follower_handler=live.follower_feed.handler_for,
        on_state=on_connection,
        on_malformed=on_malformed,
        on_instrument=shared.instruments.learn,
        recorder=recorder,
        follower_hold=live.send_line.clear,
    )
    live.tokens.run()
    spawn = shared.tasks.spawn
    spawn(live.recovery.run_periodic(s.reconcile_interval_s), "reconcile")
    if s.leader_poll_s > 0:
        spawn(
            poll_open_leader_orders(clock, accounts, book, live.leader_feed, s.leader_poll_s),
            "leader-poll",
        )
    if s.follower_poll_s > 0:
        spawn(
            poll_open_follower_copies(
                clock,
                accounts,
                book,
                live.follower_feed,
                s.follower_poll_s,
                s.follower_poll_max_per_s,
            ),
            "follower-poll",
        )
    spawn(live.funds.run(), "funds")
    spawn(stats_loop(), "stats")
    spawn(shared.writes.run(), "store-flusher")
    spawn(live.positions.run(), "positions-flusher")
    if fetch_instruments:
        spawn(
            scrip_loader.keep_loaded(
                s.instruments_url, s.db_path, clock, shared.instruments, shared.notifier
            ),
            "scrip-master",
        )
    spawn(live.lagging.run(), "lagging")
    spawn(live.supervisor.run(), "risk")
    spawn(live.cockpit.run(), "cockpit")


async def stop_streams_and_loops(shared: SharedState, live: LiveParts) -> None:
    """Streams and dispatchers first, then the loops; last writes stored, connections closed,
    and STOPPED told."""
    accounts = shared.accounts
    try:
        if accounts.leader_stream:
            await accounts.leader_stream.stop()
        for f in accounts.all():
            if f.stream:
                await f.stream.stop()
            await f.dispatcher.stop()
        await shared.tasks.cancel_all()
        live.tokens.close()
        with contextlib.suppress(Exception):  # a last try; a refusal was logged and alerted
            await asyncio.wait_for(shared.writes.flush(), 5.0)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(live.positions.flush(), 5.0)
        for f in accounts.all():
            await f.broker.close()
        if accounts.leader_broker:
            await accounts.leader_broker.close()
    finally:
        # Whatever failed above, the store is closed: its connections' threads would
        # otherwise keep the process from exiting after the engine has stopped.
        if shared.writes.store:
            await shared.writes.store.close()
        live.gc_pause.end()
        thaw()
        shared.arming.state = EngineState.STOPPED
        shared.publish(EngineStateChanged(shared.clock.now(), EngineState.STOPPED, "stopped"))
