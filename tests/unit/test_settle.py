"""The settle rule and the claim-time decisions, every branch, without a database or a
thread: (process as claimed, policy, outcome, time) -> the Change a worker commits."""

from __future__ import annotations

import math
from typing import Any

import pytest

from corral.model import Change, Process, Status
from corral.settle import (
    CancelledOutcome,
    InvalidOutcome,
    Policy,
    Raised,
    RetryLaterOutcome,
    Returned,
    on_claim,
    outcome_from_json,
    outcome_to_json,
    settle,
    timed_out,
)

T = 1_000.0
PROCESS_PHASES = {
    Status.STARTING: Status.RUNNING,
    Status.RUNNING: Status.ENDING,
    Status.ENDING: Status.COMPLETED,
}


def claimed(status: Status = Status.STARTING, **kw: Any) -> Process:
    """A process as a claim returns it: leased, with its attempt counted."""
    fields: dict[str, Any] = {
        "attempt": 1,
        "lease_token": 1,
        "lease_expires_at": T + 30,
        "lease_owner": "w",
        "store": {"kept": 1},
        "run_at": T - 5,
        "iteration_since": T - 5,
    }
    fields.update(kw)
    return Process(id="p", job="j", params={}, status=status, **fields)


def moves(change: Change) -> list[tuple[Status | None, Status | None, Any]]:
    return [
        (e.from_status, e.to_status, e.detail.get("reason"))
        for e in change.events
        if e.kind == "transition"
    ]


# --- returned -----------------------------------------------------------------------------------


def test_a_function_job_that_returned_completes_with_its_result() -> None:
    change = settle(claimed(), Policy(), Returned({"n": 1}, (1, 2), result=3), T)
    assert (change.status, change.result, change.store) == (Status.COMPLETED, 3, {"n": 1})
    assert (change.attempt, change.finished_at, change.run_at) == (0, T, T)
    assert (change.progress_done, change.progress_total) == (1, 2)


def test_a_start_moves_to_the_next_phase_that_has_a_handler() -> None:
    policy = Policy(next_phase={**PROCESS_PHASES, Status.STARTING: Status.ENDING})
    change = settle(claimed(), policy, Returned({}, result="ignored"), T)
    assert change.status is Status.ENDING and change.result is None


def test_a_step_not_done_stays_running_and_a_done_one_moves_on() -> None:
    policy = Policy(next_phase=PROCESS_PHASES)
    again = settle(claimed(Status.RUNNING), policy, Returned({"i": 2}, done=False), T)
    assert again.status is Status.RUNNING and again.events == () and again.store == {"i": 2}
    done = settle(claimed(Status.RUNNING), policy, Returned({}, done=True), T)
    assert done.status is Status.ENDING


def test_a_finish_completes_with_its_result() -> None:
    change = settle(
        claimed(Status.ENDING), Policy(next_phase=PROCESS_PHASES), Returned({}, result=[1]), T
    )
    assert (change.status, change.result) == (Status.COMPLETED, [1])


@pytest.mark.parametrize(
    ("cancel_requested", "error", "end"),
    [(False, None, Status.FAILED), (True, None, Status.CANCELED)],
)
def test_a_rollback_done_ends_the_process(cancel_requested: bool, error: Any, end: Status) -> None:
    p = claimed(Status.FAILING, cancel_requested=cancel_requested, error=error)
    assert settle(p, Policy(), Returned({}, done=True), T).status is end
    again = settle(p, Policy(), Returned({"undone": 1}, done=False), T)
    assert again.status is Status.FAILING and again.store == {"undone": 1}


# --- raised -------------------------------------------------------------------------------------


def test_a_retryable_error_waits_out_its_backoff_and_restarts_schedule_to_close() -> None:
    policy = Policy(max_attempts=3, backoff=lambda attempt: 10.0 * attempt)
    change = settle(claimed(attempt=2), policy, Raised("KeyError", "k"), T)
    assert change.status is Status.STARTING and change.run_at == T + 20
    assert change.iteration_since == T + 20  # waiting is not time spent on the iteration
    assert change.store == {"kept": 1}  # a failed iteration writes none of its store
    assert [e.kind for e in change.events] == ["error", "retry_scheduled"]


def test_an_error_not_retried_or_past_the_attempts_starts_failing() -> None:
    policy = Policy(max_attempts=3, backoff=lambda attempt: 1.0, has_rollback=True)
    no_retry = settle(claimed(), policy, Raised("X", "m", retryable=False), T)
    spent = settle(claimed(attempt=3), policy, Raised("X", "m"), T)
    for change in (no_retry, spent):
        assert change.status is Status.FAILING and change.error is not None
        assert change.stopped_status is Status.STARTING and change.attempt == 0


def test_an_error_without_rollback_ends_failed() -> None:
    change = settle(claimed(Status.RUNNING), Policy(), Raised("X", "m"), T)
    assert change.status is Status.FAILED
    assert moves(change) == [
        (Status.RUNNING, Status.FAILING, "error"),
        (Status.FAILING, Status.FAILED, "no rollback handler"),
    ]


def test_an_error_in_a_rollback_ends_the_process() -> None:
    change = settle(claimed(Status.FAILING), Policy(has_rollback=True), Raised("X", "m"), T)
    assert change.status is Status.FAILED


# --- retry later, invalid, cancelled ------------------------------------------------------------


def test_retry_later_keeps_store_and_progress_and_costs_no_attempt() -> None:
    outcome = RetryLaterOutcome(60, "not yet", {"asked": True}, (1, 4))
    change = settle(claimed(attempt=2), Policy(), outcome, T)
    assert (change.status, change.run_at, change.iteration_since) == (
        Status.STARTING,
        T + 60,
        T + 60,
    )
    assert change.attempt == 1 and change.store == {"asked": True}
    assert (change.progress_done, change.progress_total) == (1, 4)


@pytest.mark.parametrize("delay", [math.nan, math.inf, -1.0, "soon"])
def test_retry_later_refuses_a_delay_that_is_not_a_time(delay: Any) -> None:
    with pytest.raises(ValueError, match="RetryLater"):
        RetryLaterOutcome(delay)


def test_invalid_ends_a_starting_process_failed_without_rollback() -> None:
    change = settle(claimed(), Policy(has_rollback=True), InvalidOutcome("no such file"), T)
    assert change.status is Status.FAILED and change.error is not None
    assert (change.error.reason, change.error.message) == ("invalid", "no such file")


@pytest.mark.parametrize(
    ("has_rollback", "status"), [(True, Status.FAILING), (False, Status.CANCELED)]
)
def test_cancelled_rolls_back_or_ends_canceled(has_rollback: bool, status: Status) -> None:
    # The request reached the handler after the claim: the process as claimed knows nothing.
    p = claimed(Status.RUNNING, cancel_requested=False)
    change = settle(p, Policy(has_rollback=has_rollback), CancelledOutcome(), T)
    assert change.status is status and change.cancel_requested and change.error is None


# --- claim time ---------------------------------------------------------------------------------


def test_a_plain_claim_runs_the_iteration() -> None:
    assert on_claim(claimed(), Policy(), T, recovered=False, previous_owner=None) == ((), None)


def test_a_retried_claim_notes_the_attempt() -> None:
    events, change = on_claim(claimed(attempt=2), Policy(), T, recovered=False, previous_owner=None)
    assert change is None and [(e.kind, e.detail["cause"]) for e in events] == [
        ("attempt", "retry")
    ]


def test_a_recovered_lease_is_retried_while_attempts_remain_then_fails() -> None:
    policy = Policy(max_attempts=2, has_rollback=True)
    events, change = on_claim(claimed(attempt=2), policy, T, recovered=True, previous_owner="dead")
    assert change is None and [e.kind for e in events] == ["lease_expired", "attempt"]
    assert events[0].detail == {"previous_owner": "dead"}
    _, spent = on_claim(claimed(attempt=3), policy, T, recovered=True, previous_owner="dead")
    assert spent is not None and spent.status is Status.FAILING
    assert spent.error is not None and spent.error.type == "LeaseExpired"
    assert spent.events[0].kind == "lease_expired"


def test_a_cancel_request_is_honoured_at_claim() -> None:
    p = claimed(Status.RUNNING, cancel_requested=True)
    _, change = on_claim(p, Policy(has_rollback=True), T, recovered=False, previous_owner=None)
    assert change is not None and change.status is Status.FAILING
    _, unwinding = on_claim(
        claimed(Status.FAILING, cancel_requested=True), Policy(), T, recovered=False,
        previous_owner=None,
    )  # fmt: skip
    assert unwinding is None  # its rollback runs: it ends canceled then


def test_a_job_nobody_registers_fails_with_unknown_job() -> None:
    _, change = on_claim(claimed(), None, T, recovered=False, previous_owner=None)
    assert change is not None and change.status is Status.FAILED
    assert change.error is not None and change.error.reason == "unknown_job"


def test_a_timeout_is_retried_after_the_backoff_then_fails() -> None:
    policy = Policy(max_attempts=2, backoff=lambda attempt: 5.0)
    p = claimed(start_to_close=1.0, claimed_at=T - 2)
    retried = timed_out(p, policy, "start_to_close", T)
    assert retried is not None and retried.status is Status.STARTING and retried.run_at == T + 5
    spent = timed_out(claimed(attempt=2, start_to_close=1.0), policy, "start_to_close", T)
    assert spent is not None and spent.status is Status.FAILED


# --- outcomes as JSON ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "outcome",
    [
        Returned({"a": 1}, (1.0, 2.0), result=[1], done=False),
        Raised("E", "m", "tb", retryable=False),
        RetryLaterOutcome(3.5, "r", {"s": 1}, (1.0, None)),
        InvalidOutcome("bad"),
        CancelledOutcome(),
    ],
)
def test_an_outcome_goes_through_json_unchanged(outcome: Any) -> None:
    data = outcome_to_json(outcome)
    assert data["kind"] == outcome.kind
    assert outcome_from_json(data) == outcome


@pytest.mark.parametrize(
    "data",
    [{"kind": "exploded"}, {"kind": "raised"}, {"kind": "retry_later", "delay": "NaN"}],
)
def test_a_malformed_outcome_is_a_value_error(data: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        outcome_from_json(data)


# --- children spawned (ctx.spawn) -----------------------------------------------------------


def test_an_iteration_that_spawned_children_waits_for_them_then_resumes_where_it_moved() -> None:
    policy = Policy(next_phase=PROCESS_PHASES)
    change = settle(claimed(), policy, Returned({"n": 1}, spawned=3), T)
    assert (change.status, change.stopped_status, change.store) == (
        Status.WAITING,
        Status.RUNNING,
        {"n": 1},
    )
    assert (change.attempt, change.finished_at, change.result) == (0, None, None)
    assert moves(change) == [(Status.STARTING, Status.WAITING, "children")]
    [event] = change.events
    assert dict(event.detail) == {"reason": "children", "children": 3, "resume": "running"}
    # A step with more to do resumes at running; the last one at ending (it ends after
    # its children, never before).
    more = settle(claimed(Status.RUNNING), policy, Returned({}, done=False, spawned=1), T)
    last = settle(claimed(Status.RUNNING), policy, Returned({}, done=True, spawned=1), T)
    only_start = settle(claimed(), Policy(), Returned({}, spawned=1), T)
    assert [c.stopped_status for c in (more, last, only_start)] == [
        Status.RUNNING,
        Status.ENDING,
        Status.ENDING,
    ]


def test_an_iteration_that_failed_after_spawning_spawns_nothing() -> None:
    change = settle(claimed(), Policy(), Raised("RuntimeError", "boom"), T)
    assert change.status is not Status.WAITING and change.stopped_status is not Status.WAITING


def test_a_waiting_parent_that_ran_rolls_back_when_canceled() -> None:
    from corral import model

    parent = claimed(Status.WAITING, lease_expires_at=None, stopped_status=Status.RUNNING)
    change = model.cancel(parent, T)
    assert (change.status, change.cancel_requested) == (Status.FAILING, True)
    never_ran = claimed(Status.WAITING, lease_token=0, lease_expires_at=None)
    assert model.cancel(never_ran, T).status is Status.CANCELED
