"""The replication book: the only owner of the leader's orders and of the followers' copies
(follower-order records), and of what changed since the store last took them.

Everyone else reads it and changes it through these methods; a record's new state itself
comes from `engine.transitions`.
"""

from __future__ import annotations

from collections.abc import Callable

from engine.clock import Clock
from engine.domain import MirrorState, OrderSnapshot, Segment
from engine.events import EngineEvent, FollowerOrderChanged
from engine.records import MirrorRecord
from engine.replication.correlation import correlation_generation
from engine.replication.correlation import correlation_id as correlation_id_of
from engine.transitions import follower_update_applies, unsent

MirrorKey = tuple[str, str]  # (follower, leader order id)


class ReplicationBook:
    def __init__(
        self,
        clock: Clock,
        publish: Callable[[EngineEvent], None],
        on_change: Callable[[], None],
    ) -> None:
        self._clock = clock
        self._publish = publish
        self._on_change = on_change  # something is waiting to be stored
        self._leader: dict[str, OrderSnapshot] = {}
        self._leader_seen_mono: dict[str, float] = {}
        self._mirrors: dict[MirrorKey, MirrorRecord] = {}
        # The copies open at Dhan, by follower: read on every account view, lagging scan and
        # poll round, which would otherwise walk every copy of the day (200 followers x a few
        # thousand copies, several times a second).
        self._open: dict[str, dict[str, MirrorRecord]] = {}
        self._by_cid: dict[str, MirrorKey] = {}
        self._copy_orders: set[tuple[str, str]] = set()  # (follower, Dhan order id) of copies
        self._follower_progress: dict[tuple[str, str], tuple[int, int, float]] = {}
        self._last_price: dict[tuple[Segment, str], float] = {}
        self._dirty_leaders: set[str] = set()
        self._dirty_mirrors: set[MirrorKey] = set()
        self._copy_watchers: list[Callable[[str, str], None]] = []

    # --- leader orders ---------------------------------------------------------------------

    def leader(self, order_id: str) -> OrderSnapshot | None:
        return self._leader.get(order_id)

    def leader_orders(self) -> list[OrderSnapshot]:
        return list(self._leader.values())

    def seen_mono(self, order_id: str) -> float | None:
        """Monotonic time this process first saw the leader order (for the latency)."""
        return self._leader_seen_mono.get(order_id)

    def put_leader(self, snap: OrderSnapshot) -> None:
        self._leader[snap.order_id] = snap
        self._leader_seen_mono.setdefault(snap.order_id, self._clock.monotonic())
        self._dirty_leaders.add(snap.order_id)
        self._on_change()

    def restore_leader(self, snap: OrderSnapshot) -> None:
        """As the store remembers it (nothing to write back)."""
        self._leader[snap.order_id] = snap

    # --- follower copies -------------------------------------------------------------------

    def watch_copies(self, watcher: Callable[[str, str], None]) -> None:
        """`watcher(follower, leader order id)` after each change of a copy record (so a
        reader keeping figures from copies looks again only at the ones that changed)."""
        self._copy_watchers.append(watcher)

    def _copy_changed(self, key: MirrorKey) -> None:
        for watcher in self._copy_watchers:
            watcher(*key)

    def mirror(self, follower: str, leader_order_id: str) -> MirrorRecord | None:
        return self._mirrors.get((follower, leader_order_id))

    def mirrors(self) -> list[MirrorRecord]:
        return list(self._mirrors.values())

    def accept_follower_update(self, follower: str, snap: OrderSnapshot) -> MirrorRecord | None:
        """The copy a follower's order update belongs to; None for the follower's own manual
        order, another engine's, an earlier generation's, or an update behind one already
        taken. The update's progress is remembered."""
        key = self._by_cid.get(snap.correlation_id)
        if key is None or key[0] != follower:
            return None
        mirror = self._mirrors.get(key)
        progress_key = (follower, snap.order_id)
        if not follower_update_applies(mirror, snap, self._follower_progress.get(progress_key)):
            return None
        self._follower_progress[progress_key] = snap.progress_key()
        return mirror

    def owns_correlation(self, follower: str, correlation_id: str) -> bool:
        """Did this engine give `correlation_id` to one of `follower`'s copies (any of its
        generations, including the ones before a restart)?"""
        key = self._by_cid.get(correlation_id)
        if key is not None:
            return key[0] == follower
        generation = correlation_generation(correlation_id)
        if generation is None:
            return False
        return any(
            m.follower == follower
            and m.generation >= generation
            and correlation_id_of(m.leader_order_id, follower, generation) == correlation_id
            for m in self._mirrors.values()
        )

    def is_copy_order(self, follower: str, order_id: str) -> bool:
        """Was this order in the follower's account placed by the engine, as a copy or a slice
        of one (under any correlationId Dhan reports, or none)?"""
        return (follower, order_id) in self._copy_orders

    def open_copies(self, follower: str | None = None) -> list[MirrorRecord]:
        if follower is not None:
            return list(self._open.get(follower, {}).values())
        return [m for copies in self._open.values() for m in copies.values()]

    def count_open(self, follower: str) -> int:
        return len(self._open.get(follower, ()))

    def _store(self, key: MirrorKey, rec: MirrorRecord | None) -> None:
        """The one place a copy record is put or removed, so the open index stays true."""
        follower, leader_order_id = key
        if rec is None:
            self._mirrors.pop(key, None)
        else:
            self._mirrors[key] = rec
        if rec is not None:
            if rec.follower_order_id:
                self._copy_orders.add((follower, rec.follower_order_id))
            self._copy_orders.update((follower, s.order_id) for s in rec.slices)
        if rec is not None and rec.is_open_at_broker:
            self._open.setdefault(follower, {})[leader_order_id] = rec
        else:
            open_of_follower = self._open.get(follower)
            if open_of_follower is not None:
                open_of_follower.pop(leader_order_id, None)

    def count_placing(self) -> int:
        return sum(1 for m in self._mirrors.values() if m.state is MirrorState.PLACING)

    def set_mirror(self, rec: MirrorRecord) -> None:
        key = (rec.follower, rec.leader_order_id)
        self._store(key, rec)
        self._by_cid[rec.correlation_id] = key
        self._dirty_mirrors.add(key)
        self._copy_changed(key)
        self._on_change()
        self._publish(FollowerOrderChanged(self._clock.now(), rec.to_view()))

    def forget(self, rec: MirrorRecord) -> None:
        """A placement that never reached Dhan: decide again from scratch (same correlationId)."""
        kept = unsent(rec)
        if kept is not None:
            self.set_mirror(kept)
            return
        key = (rec.follower, rec.leader_order_id)
        self._store(key, None)
        self._dirty_mirrors.add(key)
        self._copy_changed(key)
        self._on_change()

    def restore_mirror(self, rec: MirrorRecord) -> None:
        key = (rec.follower, rec.leader_order_id)
        self._store(key, rec)
        self._by_cid[rec.correlation_id] = key
        self._copy_changed(key)

    # --- market prices ---------------------------------------------------------------------

    def note_price(self, snap: OrderSnapshot) -> None:
        """The last known market price of an instrument, for the fat-finger price band."""
        price = snap.ref_ltp or (snap.avg_price if snap.filled_qty else 0.0)
        if price > 0:
            self._last_price[(snap.segment, snap.security_id)] = price

    def last_price(self, segment: Segment, security_id: str) -> float | None:
        return self._last_price.get((segment, security_id))

    # --- what the store has yet to take ----------------------------------------------------

    def take_changes(
        self,
    ) -> tuple[list[OrderSnapshot], list[MirrorRecord], list[MirrorKey]]:
        """The *current* state of every leader order and copy changed since the last take
        (so a late write is never stale), and the copies deleted meanwhile."""
        leaders = [self._leader[i] for i in self._dirty_leaders if i in self._leader]
        mirrors: list[MirrorRecord] = []
        deleted: list[MirrorKey] = []
        for key in self._dirty_mirrors:
            rec = self._mirrors.get(key)
            if rec is None:
                deleted.append(key)
            else:
                mirrors.append(rec)
        self._dirty_leaders.clear()
        self._dirty_mirrors.clear()
        return leaders, mirrors, deleted

    def mark_unstored(self, leader_ids: list[str], mirror_keys: list[MirrorKey]) -> None:
        """A write the store refused: these are written again (in their then-current state)."""
        self._dirty_leaders.update(leader_ids)
        self._dirty_mirrors.update(mirror_keys)
