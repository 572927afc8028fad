"""The cockpit's read models, from a replication book and a hand-moved clock: copies in step,
a lagging copy's timer, what is published (changes only), and each account's state."""

from __future__ import annotations

from pathlib import Path

from engine.alerts import AlertCenter
from engine.clock import ManualClock
from engine.demo import demo_settings
from engine.domain import (
    EngineState,
    FreezeCause,
    MirrorState,
    OrderParams,
    OrderSnapshot,
    OrderStatus,
    OrderType,
    Product,
    Segment,
    Side,
    Validity,
)
from engine.events import AccountsChanged, CopyStepsChanged, EngineEvent, EventBus
from engine.instruments import InstrumentBook
from engine.live.accounts import Accounts
from engine.live.arming import ENGINE_SCOPE, Arming
from engine.live.book import ReplicationBook
from engine.live.cockpit import Cockpit
from engine.live.funds import FundsWatcher
from engine.live.notifier import Notifier
from engine.live.write_behind import WriteBehind
from engine.records import MirrorRecord
from engine.views import AccountState


def leader(order_id: str, status: OrderStatus, filled: int, qty: int = 130) -> OrderSnapshot:
    return OrderSnapshot(
        order_id=order_id,
        client_id="1",
        status=status,
        side=Side.BUY,
        order_type=OrderType.LIMIT,
        product=Product.INTRADAY,
        validity=Validity.DAY,
        segment=Segment.NSE_FNO,
        security_id="48211",
        quantity=qty,
        filled_qty=filled,
        price=150.0,
    )


def copy(
    follower: str,
    order_id: str,
    *,
    qty: int,
    filled: int,
    status: OrderStatus = OrderStatus.PART_TRADED,
    state: MirrorState = MirrorState.LIVE,
) -> MirrorRecord:
    params = OrderParams(
        Side.BUY,
        OrderType.LIMIT,
        Product.INTRADAY,
        Validity.DAY,
        Segment.NSE_FNO,
        "48211",
        qty,
        price=150.0,
    )
    return MirrorRecord(
        follower,
        order_id,
        f"cid-{follower}-{order_id}",
        state,
        broker_status=status,
        params=params,
        filled_qty=filled,
    )


class World:
    def __init__(self, tmp_path: Path) -> None:
        self.clock = ManualClock()
        self.events: list[EngineEvent] = []
        self.book = ReplicationBook(self.clock, lambda e: None, lambda: None)
        self.arming = Arming(state=EngineState.ARMED)
        self.accounts = Accounts()
        settings = demo_settings(tmp_path / "t.db")
        funds = FundsWatcher(self.clock, self.accounts, _notifier(self.clock))
        self.cockpit = Cockpit(
            settings,
            self.clock,
            self.accounts,
            self.book,
            self.arming,
            InstrumentBook(),
            funds,
            self.events.append,
        )

    def steps(self) -> list[CopyStepsChanged]:
        return [e for e in self.events if isinstance(e, CopyStepsChanged)]


def _notifier(clock: ManualClock) -> Notifier:
    book = ReplicationBook(clock, lambda e: None, lambda: None)
    return Notifier(clock, EventBus(), AlertCenter(clock), WriteBehind(book, lambda exc: None))


def test_copies_in_step_and_a_lagging_copy_with_its_timer(tmp_path: Path) -> None:
    w = World(tmp_path)
    w.book.put_leader(leader("L1", OrderStatus.PENDING, 0))
    w.book.set_mirror(copy("alpha", "L1", qty=260, filled=0, status=OrderStatus.PENDING))
    w.book.set_mirror(copy("beta", "L1", qty=65, filled=0, status=OrderStatus.PENDING))
    (step,) = w.cockpit.copy_steps()
    assert step.label == "2/2"  # both working, the leader too
    w.book.put_leader(leader("L1", OrderStatus.TRADED, 130))
    w.book.set_mirror(copy("beta", "L1", qty=65, filled=65, status=OrderStatus.TRADED))
    (step,) = w.cockpit.copy_steps()
    assert step.label == "1/2 behind 0 s"
    w.clock.advance(14)
    (step,) = w.cockpit.copy_steps()
    assert step.label == "1/2 behind 14 s"
    assert [(c.follower, c.filled, c.quantity) for c in step.lagging] == [("alpha", 0, 260)]
    w.book.set_mirror(
        copy("alpha", "L1", qty=260, filled=260, status=OrderStatus.TRADED, state=MirrorState.DONE)
    )
    (step,) = w.cockpit.copy_steps()
    assert step.label == "2/2"


def test_skipped_copies_are_not_expected_and_failed_ones_are_named(tmp_path: Path) -> None:
    w = World(tmp_path)
    w.book.put_leader(leader("L2", OrderStatus.TRADED, 130))
    w.book.set_mirror(copy("alpha", "L2", qty=0, filled=0, state=MirrorState.SKIPPED))
    w.book.set_mirror(copy("beta", "L2", qty=65, filled=0, state=MirrorState.FAILED))
    (step,) = w.cockpit.copy_steps()
    assert (step.copies, step.in_step, step.failed, step.label) == (1, 0, 1, "0/1 failed")
    w.book.put_leader(leader("L3", OrderStatus.PENDING, 0))
    w.book.set_mirror(copy("alpha", "L3", qty=0, filled=0, state=MirrorState.SKIPPED))
    assert [s.leader_order_id for s in w.cockpit.copy_steps()] == ["L2"]  # nothing to copy


def test_only_changed_steps_and_accounts_are_published(tmp_path: Path) -> None:
    w = World(tmp_path)
    w.book.put_leader(leader("L1", OrderStatus.PENDING, 0))
    w.book.set_mirror(copy("alpha", "L1", qty=260, filled=0, status=OrderStatus.PENDING))
    w.cockpit.publish_steps()
    w.cockpit.publish_steps()
    assert [[s.label for s in e.steps] for e in w.steps()] == [["1/1"]]
    w.cockpit.publish_accounts()
    w.cockpit.publish_accounts()
    published = [e for e in w.events if isinstance(e, AccountsChanged)]
    assert len(published) == 1 and [v.account for v in published[0].views] == ["leader"]


def test_account_states_follow_the_arming(tmp_path: Path) -> None:
    w = World(tmp_path)
    (view,) = w.cockpit.account_views()
    assert (view.account, view.state, view.is_leader) == ("leader", AccountState.ARMED, True)
    w.arming.add(ENGINE_SCOPE, FreezeCause.TOKEN_REFUSED, "leader token refused")
    (view,) = w.cockpit.account_views()
    assert (view.state, view.why) == (AccountState.FROZEN, "leader token refused")
    w.arming.state = EngineState.KILLED
    (view,) = w.cockpit.account_views()
    assert view.state is AccountState.KILLED
    assert view.token_renewal == "pasted token (not renewed)"  # no keeper in this world
