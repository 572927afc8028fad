"""After a resume: the leader's open orders some follower has no working copy of, and placing
them again when the trader asks.

"No working copy" means the copy was cancelled by the trader's kill, the order arrived while
the engine was killed, or it was never copied (placed while frozen). A copy the trader
cancelled by hand stays cancelled, a copy filled is not missing, and a copy the follower's
rules skip is not missing either.
"""

from __future__ import annotations

from collections.abc import Iterable

from engine.control.protocol import UncopiedOrder
from engine.domain import MirrorState, OrderSnapshot, OrderStatus
from engine.live.accounts import FollowerRuntime
from engine.live.book import ReplicationBook
from engine.records import MirrorRecord
from engine.transitions import KILLED_SKIP_CODE, regenerated

_KILL_CANCEL_WORDS = "engine killed"  # the replicator's reason for a kill's cancel


def missing_copy(leader: OrderSnapshot, mirror: MirrorRecord | None) -> bool:
    """Does this follower lack a working copy of this open leader order because of a kill
    (or a freeze), so that the trader may have it placed again?"""
    if not leader.is_open:
        return False
    if mirror is None:
        return True
    if mirror.state is MirrorState.SKIPPED:
        return mirror.skip_code == KILLED_SKIP_CODE
    if mirror.state is MirrorState.DONE and mirror.broker_status is OrderStatus.CANCELLED:
        return _KILL_CANCEL_WORDS in mirror.reason
    return False


def uncopied_orders(book: ReplicationBook, followers: Iterable[str]) -> list[UncopiedOrder]:
    names = tuple(followers)
    out: list[UncopiedOrder] = []
    for leader in book.leader_orders():
        missing = tuple(n for n in names if missing_copy(leader, book.mirror(n, leader.order_id)))
        if missing:
            out.append(
                UncopiedOrder(
                    leader.order_id,
                    leader.trading_symbol or leader.security_id,
                    leader.side.value,
                    leader.order_type.value,
                    max(leader.quantity - leader.filled_qty, 0),
                    leader.price,
                    leader.trigger_price,
                    missing,
                )
            )
    return out


def release_for_replace(
    book: ReplicationBook, followers: dict[str, FollowerRuntime], order: UncopiedOrder
) -> bool:
    """Let the executor place the copies of `order` again: each missing copy becomes its next
    generation (a fresh correlationId, so nothing is ever placed twice under one), and its
    follower looks at the order again. True when something was released."""
    released = False
    for name in order.followers:
        f = followers.get(name)
        mirror = book.mirror(name, order.leader_order_id)
        if f is None:
            continue
        if mirror is not None:
            book.set_mirror(regenerated(mirror, mirror.filled_qty))
        f.dispatcher.mark(order.leader_order_id)
        released = True
    return released
