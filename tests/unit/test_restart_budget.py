"""After a restart, each earlier order request counts against Dhan's windows from when the
engine's own limiter would have let it go: its answer, or its send's timeout."""

from __future__ import annotations

from datetime import timedelta

import pytest

from engine.live.startup import request_ages
from tests.store_helpers import T0

NOW = T0 + timedelta(seconds=30)


def test_an_answered_request_counts_from_its_answer() -> None:
    written, answered = T0, T0 + timedelta(seconds=0.03)
    assert request_ages([(written, answered)], NOW, 10.0) == [pytest.approx(29.97)]


def test_an_unanswered_request_counts_from_its_sends_timeout() -> None:
    assert request_ages([(T0, None)], NOW, 10.0) == [pytest.approx(20.0)]


def test_one_whose_timeout_is_not_over_yet_counts_as_just_done() -> None:
    assert request_ages([(NOW - timedelta(seconds=2), None)], NOW, 10.0) == [0.0]


def test_each_request_of_a_follower_has_its_own_age() -> None:
    times = [(T0, T0 + timedelta(seconds=0.03)), (T0 + timedelta(seconds=25), None)]
    assert request_ages(times, NOW, 10.0) == [pytest.approx(29.97), 0.0]
