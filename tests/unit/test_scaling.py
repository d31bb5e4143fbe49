"""The supervisor's scaling rule, without a database: up at once on the runnable backlog,
down only after a quiet window and idle workers first, never past the bounds or the
connection budget."""

from __future__ import annotations

import re

import pytest

from corral.errors import UsageError
from corral.scaling import Bounds, Decision, Observed, Running, decide, parse_processes, wanted

B = Bounds(minimum=1, maximum=4, concurrency=10, window=60.0, patience=5.0)


def workers(*running: int | None) -> list[Running]:
    return [Running(f"w{i}", r, started_at=float(i)) for i, r in enumerate(running)]


def look(backlog: int, *running: int | None, age: float = 0.0, budget: int | None = None,
         now: float = 1000.0) -> Observed:  # fmt: skip
    return Observed(backlog, age, workers(*running), budget, now)


def test_a_burst_scales_up_at_once_to_the_maximum() -> None:
    d = decide(B, look(2000, 10), None)
    assert (d.desired, d.quiet, d.start(1)) == (4, (), 3)
    assert "held to 4 by the maximum" in d.reason


def test_the_load_counts_running_iterations_and_the_backlog() -> None:
    # 2 workers, 10 and 8 running, 13 waiting: 31 iterations fill 4 workers.
    assert wanted(B, look(13, 10, 8))[0] == 4
    # Free slots absorb a small fresh backlog: no new worker.
    assert decide(B, look(3, 4), None).desired == 1


def test_an_old_backlog_adds_a_worker_even_with_free_slots_on_paper() -> None:
    assert decide(B, look(3, 4, age=2.0), None).desired == 1
    assert decide(B, look(3, 4, age=6.0), None).desired == 2
    # ...but not past the maximum.
    assert decide(B, look(3, 4, 4, 4, 4, age=60.0), None).desired == 4


def test_a_worker_not_registered_yet_counts_as_busy() -> None:
    d = decide(B, look(0, None, None, 0), None)
    assert d.desired == 3 and d.quiet == ()


def test_down_only_after_the_window_and_idle_workers_first() -> None:
    first = decide(B, look(0, 0, 3, 0, 0, now=1000.0), None)
    assert (first.desired, first.quiet, first.low_since) == (4, (), 1000.0)
    assert "waiting" in first.reason
    # Still low 59 s later: nothing yet.
    held = decide(B, look(0, 0, 3, 0, 0, now=1059.0), first.low_since)
    assert (held.desired, held.quiet, held.low_since) == (4, (), 1000.0)
    # 60 s of low need: down to what the load needs (1), quieting idle workers, the
    # youngest first; the busy one (w1, running 3) is kept.
    down = decide(B, look(0, 0, 3, 0, 0, now=1060.0), held.low_since)
    assert (down.desired, down.quiet, down.low_since) == (1, ("w3", "w2", "w0"), None)


def test_a_rise_in_the_load_restarts_the_window() -> None:
    low = decide(B, look(0, 0, 0, now=1000.0), None)
    assert low.low_since == 1000.0
    busy = decide(B, look(15, 5, 5, now=1030.0), low.low_since)
    assert (busy.desired, busy.low_since) == (3, None)
    again = decide(B, look(0, 0, 0, now=1080.0), busy.low_since)
    assert (again.desired, again.quiet, again.low_since) == (2, (), 1080.0)


def test_busy_workers_are_quieted_least_busy_first_when_no_idle_one_is_left() -> None:
    bounds = Bounds(minimum=1, maximum=4, concurrency=10, window=0.0)
    d = decide(bounds, look(0, 7, 2, 5), None)
    # 14 running need 2 workers: the least busy one goes (quieted: it finishes its 2).
    assert (d.desired, d.quiet) == (2, ("w1",))


def test_never_below_the_minimum_nor_above_the_maximum() -> None:
    bounds = Bounds(minimum=2, maximum=3, concurrency=5, window=0.0)
    assert decide(bounds, look(0), None).desired == 2
    assert decide(bounds, look(0, 0, 0, 0), None) == Decision(
        2, ("w2",), None, "0 running + 0 runnable: shrinking"
    )
    assert decide(bounds, look(500, 5, 5), None).desired == 3


def test_never_above_the_connection_budget() -> None:
    d = decide(B, look(2000, 10, budget=2), None)
    assert d.desired == 2 and "held to 2 by the connection budget" in d.reason
    # A budget below the minimum wins over it, but one worker is always allowed.
    bounds = Bounds(minimum=3, maximum=4, concurrency=10)
    assert decide(bounds, look(0, budget=2), None).desired == 2
    assert decide(bounds, look(0, budget=0), None).desired == 1


def test_a_budget_that_shrinks_quiets_workers_at_once() -> None:
    d = decide(B, look(2000, 10, 10, 10, 0, budget=2, now=5.0), None)
    assert (d.desired, d.quiet) == (2, ("w3", "w2"))
    assert "over budget" in d.reason


def test_processes_reads_n_or_a_range_and_refuses_the_rest() -> None:
    assert parse_processes("4") == (4, 4)
    assert parse_processes("1..8") == (1, 8)
    assert parse_processes(" 2 .. 3 ") == (2, 3)
    for bad, words in [
        ("0", "the minimum must be 1 or more"),
        ("5..2", "the maximum (2) is below the minimum (5)"),
        ("1-4", "must be N or MIN..MAX"),
        ("", "must be N or MIN..MAX"),
        ("..4", "must be N or MIN..MAX"),
    ]:
        with pytest.raises(UsageError, match=re.escape(words)):
            parse_processes(bad)
