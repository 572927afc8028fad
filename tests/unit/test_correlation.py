import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.replication.correlation import (
    MAX_GENERATION,
    correlation_generation,
    correlation_id,
    is_engine_correlation_id,
)

_ALLOWED = re.compile(r"^[A-Za-z0-9_-]{1,25}$")


@given(
    leader=st.text(min_size=1, max_size=200),
    follower=st.text(min_size=1, max_size=200),
    generation=st.integers(min_value=0, max_value=MAX_GENERATION),
)
def test_length_and_charset(leader: str, follower: str, generation: int) -> None:
    cid = correlation_id(leader, follower, generation)
    assert _ALLOWED.match(cid), cid
    assert len(cid) <= 25
    assert cid.startswith("CPY-")
    assert cid.endswith(f"-{generation}")
    assert is_engine_correlation_id(cid)
    assert correlation_generation(cid) == generation


def test_deterministic() -> None:
    assert correlation_id("1122334455", "alice") == correlation_id("1122334455", "alice", 0)
    assert correlation_id("1122334455", "alice", 3) == correlation_id("1122334455", "alice", 3)
    assert len(correlation_id("1122334455", "alice")) == 22


def test_pinned_values_are_stable() -> None:
    # If these change, ids stored before an upgrade no longer match and a restart could place
    # a second copy of an order: never change the derivation.
    assert correlation_id("52250311123456", "follower-1", 0) == "CPY-EFAIMP2AZG36KQ6B-0"
    assert correlation_id("52250311123456", "follower-1", 12) == "CPY-SQUBAK35IOFJYFS3-12"


def test_followers_and_generations_differ() -> None:
    base = correlation_id("1001", "alice", 0)
    assert correlation_id("1001", "bob", 0) != base
    assert correlation_id("1001", "alice", 1) != base
    assert correlation_id("1002", "alice", 0) != base
    # no ambiguity from concatenation
    assert correlation_id("10", "01alice") != correlation_id("1001", "alice")


@given(st.lists(st.tuples(st.text(min_size=1), st.text(min_size=1)), min_size=2, unique=True))
def test_no_collisions_among_distinct_inputs(pairs: list[tuple[str, str]]) -> None:
    ids = {correlation_id(leader, follower) for leader, follower in pairs}
    assert len(ids) == len(pairs)


@pytest.mark.parametrize(
    "cid",
    [
        "",
        "CPY-",
        "cpy-ABCDEFGHIJKLMNOP-0",
        "CPY-ABCDEFGHIJKLMNOP",
        "CPY-ABCDEFGHIJKLMNO1-0",
        "CPY-ABCDEFGHIJKLMNOP-01",
        "CPY-ABCDEFGHIJKLMNOP-10000",
        "manual-order",
        "CPY-abcdefghijklmnop-0",
    ],
)
def test_foreign_ids_are_not_ours(cid: str) -> None:
    assert not is_engine_correlation_id(cid)
    assert correlation_generation(cid) is None


def test_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        correlation_id("", "alice")
    with pytest.raises(ValueError):
        correlation_id("1", "")
    with pytest.raises(ValueError):
        correlation_id("1", "alice", -1)
    with pytest.raises(ValueError):
        correlation_id("1", "alice", MAX_GENERATION + 1)
