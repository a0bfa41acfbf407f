"""LogBudget: a few lines per key per period, then a count of what was left out; keys bounded."""

from __future__ import annotations

import logging

import pytest

from controlplane.log_budget import LogBudget


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_key_gets_its_burst_then_the_next_line_after_the_period_says_how_many_were_left_out(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock, log = Clock(), logging.getLogger("test.log_budget")
    budget = LogBudget(log, burst=2, per=60, clock=clock)
    with caplog.at_level(logging.WARNING, logger="test.log_budget"):
        logged = [budget.log(logging.WARNING, "client-a", "refused %s", n) for n in range(10)]
        assert budget.log(logging.WARNING, "client-b", "refused %s", "b")  # another key has its own budget
        clock.now = 60.0
        assert budget.log(logging.WARNING, "client-a", "refused %s", "again")
    assert logged == [True, True] + [False] * 8
    assert [r.getMessage() for r in caplog.records] == [
        "refused 0", "refused 1", "refused b", "refused again (8 more like it not logged)"]


def test_keys_are_bounded_oldest_first() -> None:
    clock = Clock()
    budget = LogBudget(logging.getLogger("test.log_budget"), burst=1, per=60, max_keys=3, clock=clock)
    for key in ("a", "b", "c", "d"):  # "a" is forgotten when "d" comes
        assert budget.log(logging.DEBUG, key, "x")
    assert budget.log(logging.DEBUG, "a", "x")  # a fresh budget: it was forgotten
    assert not budget.log(logging.DEBUG, "d", "x")
