"""The pure core: statuses, transition rules and what each outcome leads to. No database."""

from __future__ import annotations

import random

import pytest

from corral import model
from corral.errors import IllegalTransition, ProcessTerminal
from corral.model import Change, ErrorInfo, Process, Status

T = 100.0
ERR = ErrorInfo("ValueError", "boom", "tb")


def proc(status: Status = Status.STARTING, **kw: object) -> Process:
    return Process(id="p", job="j", params={}, status=status, **kw)  # type: ignore[arg-type]


# --- the rules -------------------------------------------------------------------------------

LEGAL = {
    (Status.WAITING, Status.STARTING),
    (Status.WAITING, Status.FAILED),
    (Status.WAITING, Status.CANCELED),
    # A parent that spawned children waits for them from its start or a step, then
    # resumes at running or ending, or rolls back if it is canceled meanwhile.
    (Status.STARTING, Status.WAITING),
    (Status.RUNNING, Status.WAITING),
    (Status.WAITING, Status.RUNNING),
    (Status.WAITING, Status.ENDING),
    (Status.WAITING, Status.FAILING),
    (Status.STARTING, Status.RUNNING),
    (Status.STARTING, Status.ENDING),
    (Status.STARTING, Status.COMPLETED),
    (Status.STARTING, Status.FAILING),
    (Status.STARTING, Status.FAILED),
    (Status.STARTING, Status.CANCELED),
    (Status.RUNNING, Status.ENDING),
    (Status.RUNNING, Status.COMPLETED),
    (Status.RUNNING, Status.FAILING),
    (Status.ENDING, Status.COMPLETED),
    (Status.ENDING, Status.FAILING),
    (Status.FAILING, Status.FAILED),
    (Status.FAILING, Status.CANCELED),
}


@pytest.mark.parametrize("src", list(Status))
@pytest.mark.parametrize("dst", list(Status))
def test_only_the_transitions_of_design_section_2_are_legal(src: Status, dst: Status) -> None:
    change = Change.of(proc(src))
    if (src, dst) in LEGAL:
        assert change.to(dst, T).status is dst
    else:
        with pytest.raises(IllegalTransition):
            change.to(dst, T)


def test_nothing_leaves_a_terminal_status_or_returns_to_starting() -> None:
    for terminal in model.TERMINAL:
        assert not any(model.can_transition(terminal, s) for s in Status)
    for later in (Status.RUNNING, Status.ENDING, Status.FAILING):
        assert not model.can_transition(later, Status.STARTING)
    # Only a parent waiting for its children goes back to waiting, from a forward phase
    # that its next handler follows (never from ending or failing).
    for late in (Status.ENDING, Status.FAILING):
        assert not model.can_transition(late, Status.WAITING)


def test_a_transition_is_recorded_and_terminal_ones_set_finished_at() -> None:
    change = Change.of(proc(Status.ENDING, attempt=2)).to(Status.COMPLETED, T, reason="x")
    [event] = change.events
    assert (event.kind, event.from_status, event.to_status, event.attempt) == (
        "transition",
        Status.ENDING,
        Status.COMPLETED,
        2,
    )
    assert event.detail == {"reason": "x"}
    assert change.finished_at == T


# --- outcomes of an iteration ----------------------------------------------------------------


def test_a_committed_iteration_saves_the_store_and_resets_attempts() -> None:
    change = model.committed(proc(Status.RUNNING, attempt=2), T, store={"n": 1}, progress=(1, 10))
    assert (change.status, change.store, change.attempt) == (Status.RUNNING, {"n": 1}, 0)
    assert (change.progress_done, change.progress_total, change.run_at) == (1, 10, T)
    assert change.events == ()  # staying in a status is not a transition


def test_a_simple_job_completes_with_its_result() -> None:
    change = model.committed(
        proc(), T, store={}, progress=(None, None), to=Status.COMPLETED, result={"sum": 3}
    )
    assert (change.status, change.result, change.finished_at) == (Status.COMPLETED, {"sum": 3}, T)


def test_a_retryable_error_keeps_the_status_and_schedules_a_retry() -> None:
    p = proc(Status.RUNNING, attempt=1, store={"kept": True})
    change = model.errored(p, T, ERR, retry_delay=5, max_attempts=3, has_rollback=True)
    assert (change.status, change.run_at, change.store, change.error) == (
        Status.RUNNING,
        T + 5,
        {"kept": True},
        None,
    )
    assert [e.kind for e in change.events] == ["error", "retry_scheduled"]


def test_an_error_without_attempts_left_goes_to_failing_to_roll_back() -> None:
    p = proc(Status.RUNNING, attempt=3)
    change = model.errored(p, T, ERR, retry_delay=5, max_attempts=3, has_rollback=True)
    assert (change.status, change.error, change.stopped_status) == (
        Status.FAILING,
        ERR,
        Status.RUNNING,
    )
    assert change.attempt == 0 and change.run_at == T


def test_an_error_without_a_rollback_handler_ends_failed_at_once() -> None:
    change = model.errored(proc(), T, ERR, retry_delay=None, max_attempts=3, has_rollback=False)
    assert change.status is Status.FAILED
    assert [(e.from_status, e.to_status) for e in change.events if e.kind == "transition"] == [
        (Status.STARTING, Status.FAILING),
        (Status.FAILING, Status.FAILED),
    ]


def test_an_error_in_the_rollback_ends_failed() -> None:
    p = proc(Status.FAILING, error=ERR)
    change = model.errored(p, T, ERR, retry_delay=None, max_attempts=3, has_rollback=True)
    assert change.status is Status.FAILED


def test_invalid_in_starting_fails_without_a_rollback() -> None:
    invalid = ErrorInfo("Invalid", "no such file", reason="invalid")
    change = model.fail(
        Change.of(proc()).with_(error=invalid), T, has_rollback=True, reason="invalid"
    )
    assert change.status is Status.FAILED and change.error == invalid


def test_rollback_returning_false_is_called_again_true_ends_it() -> None:
    p = proc(Status.FAILING, error=ERR)
    again = model.rolled_back(p, T, store={"undone": 1}, done=False)
    assert again.status is Status.FAILING and again.store == {"undone": 1}
    assert model.rolled_back(p, T, store={}, done=True).status is Status.FAILED


def test_retry_later_does_not_use_an_attempt() -> None:
    change = model.retry_later(proc(Status.RUNNING, attempt=2), T, 30, "waiting for a file")
    assert (change.status, change.run_at, change.attempt) == (Status.RUNNING, T + 30, 1)


def test_a_recovered_lease_is_retried_while_attempts_remain() -> None:
    assert (
        model.recovered(
            proc(Status.RUNNING, attempt=3), T, "dead", max_attempts=3, has_rollback=True
        )
        is None
    )
    change = model.recovered(
        proc(Status.RUNNING, attempt=4), T, "dead", max_attempts=3, has_rollback=True
    )
    assert change is not None and change.status is Status.FAILING
    assert change.error is not None and change.error.reason == "lease_lost"


# --- cancel and retry ------------------------------------------------------------------------


def test_cancel_before_start_ends_it_at_once() -> None:
    change = model.cancel(proc(), T)
    assert change.status is Status.CANCELED and change.finished_at == T


def test_cancel_of_a_started_process_only_requests_it() -> None:
    change = model.cancel(proc(Status.RUNNING), T)
    assert change.status is Status.RUNNING and change.cancel_requested
    assert model.cancel(proc(Status.RUNNING, cancel_requested=True), T) == Change.of(
        proc(Status.RUNNING, cancel_requested=True)
    )


def test_a_leased_starting_process_has_started() -> None:
    leased = proc(Status.STARTING, lease_expires_at=T + 30, lease_token=1, attempt=1)
    change = model.cancel(leased, T)
    assert change.status is Status.STARTING and change.cancel_requested


def test_cancel_of_a_terminal_process_is_refused() -> None:
    with pytest.raises(ProcessTerminal):
        model.cancel(proc(Status.COMPLETED), T)


def test_a_requested_cancel_rolls_back_then_ends_canceled() -> None:
    p = proc(Status.RUNNING, cancel_requested=True)
    change = model.cancel_now(p, T, has_rollback=True)
    assert change.status is Status.FAILING and change.error is None
    rolled = model.rolled_back(proc(Status.FAILING, cancel_requested=True), T, store={}, done=True)
    assert rolled.status is Status.CANCELED
    assert model.cancel_now(p, T, has_rollback=False).status is Status.CANCELED


def test_retry_resumes_where_it_stopped_with_its_store() -> None:
    p = proc(
        Status.FAILED,
        stopped_status=Status.RUNNING,
        error=ERR,
        store={"n": 7},
        attempt=3,
        finished_at=T,
    )
    change = model.retry(p, T + 1)
    assert (change.status, change.store, change.error, change.attempt, change.finished_at) == (
        Status.RUNNING,
        {"n": 7},
        None,
        0,
        None,
    )
    assert change.events[0].detail == {"reason": "retry"}


def test_only_failed_or_canceled_processes_are_retried() -> None:
    for status in (Status.STARTING, Status.RUNNING, Status.COMPLETED):
        with pytest.raises(IllegalTransition):
            model.retry(proc(status), T)


# --- backoff ---------------------------------------------------------------------------------


def test_backoff_doubles_up_to_the_cap() -> None:
    delays = [model.backoff(a, base=1, max_delay=10, jitter=0) for a in range(1, 7)]
    assert delays == [1, 2, 4, 8, 10, 10]


def test_backoff_jitter_stays_within_its_fraction() -> None:
    rng = random.Random(7)
    for _ in range(200):
        d = model.backoff(3, base=1, max_delay=100, jitter=0.25, rng=rng)
        assert 3.0 <= d <= 5.0
