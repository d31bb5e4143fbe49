"""Task graphs, the pure part: what a dependency's end does to its dependents, batches,
counters and what a handler sees of its dependencies. No database, no clock."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corral.errors import ConfigurationError, UsageError
from corral.graph import (
    CANCEL_REASONS,
    DEFAULT_ON_DEPENDENCY_FAILURE,
    RULE,
    BatchNode,
    Decision,
    DependencyRow,
    Dependent,
    Ended,
    Existing,
    GraphCounts,
    OnDependencyFailure,
    OnEnd,
    action,
    cascade,
    change_of,
    decide,
    dependencies_view,
    dependency_results,
    parse_on_dependency_failure,
    plan_batch,
    reopened,
    settle_dependents,
)
from corral.model import TERMINAL, ErrorInfo, Status

T = 1_000.0
CANCEL, RUN = OnDependencyFailure.CANCEL, OnDependencyFailure.RUN
W = Status.WAITING


def waiting(pending: int, policy: OnDependencyFailure = CANCEL, **kw: Any) -> Dependent:
    return Dependent("d", W, policy, pending, **kw)


# --- the policy -------------------------------------------------------------------------------


def test_the_policy_is_cancel_by_default_and_parses_its_two_names() -> None:
    assert DEFAULT_ON_DEPENDENCY_FAILURE is CANCEL
    assert parse_on_dependency_failure("cancel") is CANCEL
    assert parse_on_dependency_failure("run") is RUN
    assert parse_on_dependency_failure(RUN) is RUN


@pytest.mark.parametrize("bad", ["Run", "ignore", "", None, 1])
def test_any_other_policy_is_a_clear_error_of_the_kind_asked_for(bad: object) -> None:
    with pytest.raises(UsageError, match=r"on_dependency_failure must be 'cancel' or 'run', not"):
        parse_on_dependency_failure(bad)
    with pytest.raises(ConfigurationError):
        parse_on_dependency_failure(bad, error=ConfigurationError)


# --- the rule as a table ----------------------------------------------------------------------


def test_the_table_covers_every_policy_and_terminal_status_and_cancels_only_on_failure() -> None:
    assert set(RULE) == {(p, s) for p in OnDependencyFailure for s in TERMINAL}
    cancels = {k for k, v in RULE.items() if v is OnEnd.CANCEL}
    assert cancels == {(CANCEL, Status.FAILED), (CANCEL, Status.CANCELED)}
    assert action(RUN, Status.FAILED) is OnEnd.COUNT_DOWN


def test_only_terminal_statuses_end_a_dependency() -> None:
    with pytest.raises(ValueError, match="not ended: it is running"):
        Ended("a", Status.RUNNING)
    with pytest.raises(ValueError, match="not waiting"):
        action(CANCEL, Status.WAITING)


# --- the rule, one dependent ------------------------------------------------------------------


def test_a_completed_dependency_counts_down_and_the_last_one_makes_it_runnable() -> None:
    assert decide(waiting(2), Ended("a", Status.COMPLETED)) == Decision(W, 1)
    assert decide(waiting(1), Ended("a", Status.COMPLETED)) == Decision(Status.STARTING, 0)


@pytest.mark.parametrize("status", [Status.FAILED, Status.CANCELED])
def test_under_cancel_a_failed_or_canceled_dependency_cancels_naming_it_as_root(
    status: Status,
) -> None:
    decision = decide(waiting(3), Ended("a", status))
    assert decision == Decision(Status.CANCELED, 2, caused_by="a", cause_status=status,
                                root_cause="a")  # fmt: skip


def test_a_dependency_canceled_by_a_cascade_passes_its_root_cause_on() -> None:
    decision = decide(waiting(1), Ended("b", Status.CANCELED, root_cause="root"))
    assert (decision.caused_by, decision.root_cause) == ("b", "root")


@pytest.mark.parametrize("status", sorted(TERMINAL))
def test_under_run_any_end_counts_down(status: Status) -> None:
    assert decide(waiting(2, RUN), Ended("a", status)) == Decision(W, 1)
    assert decide(waiting(1, RUN), Ended("a", status)) == Decision(Status.STARTING, 0)


@pytest.mark.parametrize("status", [s for s in Status if s is not W])
def test_a_dependent_that_is_not_waiting_is_left_alone(status: Status) -> None:
    dependent = Dependent("d", status, CANCEL, 1, root_cause="r")
    decision = decide(dependent, Ended("a", Status.FAILED))
    assert decision == Decision(status, 1, changed=False, root_cause="r")
    assert change_of(dependent, decision, T) is None


def test_nothing_ended_changes_nothing() -> None:
    assert not decide(waiting(1)).changed


def test_several_ends_at_once_count_down_together_and_the_smallest_failed_id_is_the_cause() -> None:
    ends = [Ended("c", Status.FAILED), Ended("a", Status.COMPLETED), Ended("b", Status.CANCELED)]
    decision = decide(waiting(4), *ends)
    assert (decision.status, decision.pending, decision.caused_by) == (Status.CANCELED, 1, "b")
    assert decide(waiting(3, RUN), *ends) == Decision(Status.STARTING, 0)


def test_counts_that_disagree_with_the_edges_are_a_bug_not_a_silent_write() -> None:
    with pytest.raises(ValueError, match="waits for 1 dependencies, but 2 ended"):
        decide(waiting(1), Ended("a", Status.COMPLETED), Ended("b", Status.COMPLETED))
    with pytest.raises(ValueError, match="cannot end twice"):
        decide(waiting(2), Ended("a", Status.COMPLETED), Ended("a", Status.COMPLETED))


def test_a_retried_dependency_is_waited_for_again() -> None:
    assert reopened(waiting(1, RUN)) == Decision(W, 2)
    assert not reopened(Dependent("d", Status.STARTING, RUN, 0)).changed


# --- the write a decision asks for ------------------------------------------------------------


def test_a_dependent_that_only_counts_down_gets_no_history_event() -> None:
    change = change_of(waiting(2), Decision(W, 1), T)
    assert change is not None and (change.status, change.pending, change.events) == (W, 1, ())
    assert change.finished_at is None and change.iteration_since is None


def test_a_promoted_dependent_runs_from_its_promotion_or_its_run_at_if_later() -> None:
    change = change_of(waiting(1, run_at=T - 50), Decision(Status.STARTING, 0), T)
    assert change is not None and (change.run_at, change.iteration_since) == (T, T)
    (event,) = change.events
    assert (event.kind, event.from_status, event.to_status, event.process_id) == (
        "transition", W, Status.STARTING, "d")  # fmt: skip
    assert event.detail == {"reason": "dependencies_done"}
    later = change_of(waiting(1, run_at=T + 50), Decision(Status.STARTING, 0), T)
    assert later is not None and (later.run_at, later.iteration_since) == (T + 50, T + 50)


@pytest.mark.parametrize("status", [Status.FAILED, Status.CANCELED])
def test_a_canceled_dependent_ends_now_naming_its_cause_and_root_in_its_history(
    status: Status,
) -> None:
    dependent = waiting(2)
    change = change_of(dependent, decide(dependent, Ended("b", status, "root")), T)
    assert change is not None
    assert (change.status, change.finished_at, change.caused_by, change.root_cause) == (
        Status.CANCELED, T, "b", "root")  # fmt: skip
    (event,) = change.events
    assert (event.from_status, event.to_status) == (W, Status.CANCELED)
    assert event.detail == {"reason": CANCEL_REASONS[status], "caused_by": "b",
                            "root_cause": "root"}  # fmt: skip
    assert change.ended() == Ended("d", Status.CANCELED, "root")


# --- over a set of dependents, and the cascade ------------------------------------------------


def test_settle_dependents_touches_only_the_dependents_of_what_ended() -> None:
    dependents = {
        "x": Dependent("x", W, CANCEL, 2),
        "y": Dependent("y", W, CANCEL, 1),
        "z": Dependent("z", W, RUN, 1),
        "done": Dependent("done", Status.COMPLETED, CANCEL, 0),
    }
    edges = [("x", "a"), ("x", "b"), ("y", "a"), ("z", "b"), ("done", "a"), ("x", "other")]
    settlement = settle_dependents(
        [Ended("a", Status.COMPLETED), Ended("b", Status.FAILED)], edges, dependents, T
    )
    assert [(c.id, c.status, c.pending) for c in settlement.changes] == [
        ("x", Status.CANCELED, 0),
        ("y", Status.STARTING, 0),
        ("z", Status.STARTING, 0),
    ]
    assert settlement.canceled == (Ended("x", Status.CANCELED, "b"),)
    assert [e.process_id for e in settlement.events] == ["x", "y", "z"]


def test_a_failure_cascades_through_the_graph_naming_the_root_all_the_way_down() -> None:
    # root -> a -> b -> c (cancel), a -> r (run, also waits on ok), b -> w (cancel, waits on slow)
    dependents = {
        "a": Dependent("a", W, CANCEL, 1),
        "b": Dependent("b", W, CANCEL, 1),
        "c": Dependent("c", W, CANCEL, 1),
        "r": Dependent("r", W, RUN, 2),
        "w": Dependent("w", W, CANCEL, 2),
    }
    dependents_of = {"root": ["a"], "a": ["b", "r"], "b": ["c", "w"]}
    settlement = cascade([Ended("root", Status.FAILED)], dependents_of, dependents, T)
    by_id = {c.id: c for c in settlement.changes}
    assert {i: (c.status, c.caused_by, c.root_cause) for i, c in by_id.items()} == {
        "a": (Status.CANCELED, "root", "root"),
        "b": (Status.CANCELED, "a", "root"),
        "c": (Status.CANCELED, "b", "root"),
        "w": (Status.CANCELED, "b", "root"),
        "r": (W, None, None),
    }
    assert by_id["r"].pending == 1  # still waits for its other dependency
    assert [e.id for e in settlement.canceled] == ["a", "b", "c", "w"]


def test_a_dependent_changed_in_two_rounds_keeps_every_event() -> None:
    # d depends on a (run) and on b, which a's failure cancels: d counts down, then starts.
    dependents = {"b": Dependent("b", W, CANCEL, 1), "d": Dependent("d", W, RUN, 2)}
    settlement = cascade([Ended("a", Status.FAILED)], {"a": ["b", "d"], "b": ["d"]}, dependents, T)
    d = next(c for c in settlement.changes if c.id == "d")
    assert (d.status, d.pending, len(d.events)) == (Status.STARTING, 0, 1)


def test_canceling_a_process_by_hand_cascades_with_it_as_the_root() -> None:
    dependents = {"d": Dependent("d", W, CANCEL, 1)}
    settlement = cascade([Ended("p", Status.CANCELED)], {"p": ["d"]}, dependents, T)
    assert settlement.changes[0].events[0].detail["reason"] == "dependency_canceled"
    assert settlement.canceled == (Ended("d", Status.CANCELED, "p"),)


# --- a property: a random graph driven to its end ---------------------------------------------


def _run_graph(seed: int, size: int) -> None:
    """Build a random graph as a batch, end its runnable nodes at random (some fail, some
    are canceled by hand while they wait) applying `cascade`, and check the invariants the
    backends must keep after every step."""
    rng = random.Random(seed)
    nodes = [
        BatchNode(
            f"n{i:03}",
            "job",
            rng.sample([f"n{j:03}" for j in range(i)], k=rng.randint(0, min(i, 3))),
            rng.choice(list(OnDependencyFailure)),
        )
        for i in range(size)
    ]
    plan = plan_batch(nodes, {}, T)
    status = {n.ref: n.status for n in plan.nodes}
    pending = {n.ref: n.pending for n in plan.nodes}
    root: dict[str, str | None] = {n.ref: None for n in plan.nodes}
    deps = {n.ref: n.depends_on for n in plan.nodes}
    policy = {n.ref: n.on_dependency_failure for n in nodes}
    dependents_of: dict[str, list[str]] = {n.ref: [] for n in plan.nodes}
    for dependent, dependency in plan.edges:
        dependents_of[dependency].append(dependent)
    by_hand: set[str] = set()

    def end(ref: str, outcome: Status) -> None:
        status[ref] = outcome
        current = {
            i: Dependent(i, status[i], policy[i], pending[i], root_cause=root[i]) for i in status
        }
        settlement = cascade([Ended(ref, outcome)], dependents_of, current, T)
        for c in settlement.changes:
            status[c.id], pending[c.id], root[c.id] = c.status, c.pending, c.root_cause

    while not all(s in TERMINAL for s in status.values()):
        runnable = sorted(i for i, s in status.items() if s is Status.STARTING)
        waiting_now = sorted(i for i, s in status.items() if s is W)
        if waiting_now and rng.random() < 0.1:
            ref = rng.choice(waiting_now)
            by_hand.add(ref)
            end(ref, Status.CANCELED)
        else:
            ref = rng.choice(runnable)  # something is runnable while anything waits
            end(ref, rng.choice([Status.COMPLETED] * 3 + [Status.FAILED]))
        _check_graph(deps, policy, status, pending, root, by_hand)


def _check_graph(
    deps: dict[str, tuple[str, ...]],
    policy: dict[str, OnDependencyFailure],
    status: dict[str, Status],
    pending: dict[str, int],
    root: dict[str, str | None],
    by_hand: set[str],
) -> None:
    """What must hold after every step: a waiting node counts exactly its unfinished
    dependencies, a runnable one has none (and, under cancel, only completed ones), and a
    root cause is a process that failed or was canceled by hand."""
    for i, s in status.items():
        unfinished = [d for d in deps[i] if status[d] not in TERMINAL]
        if s is W:
            assert pending[i] == len(unfinished) > 0
            if policy[i] is CANCEL:
                assert all(status[d] is Status.COMPLETED or d in unfinished for d in deps[i])
        if s is Status.STARTING:
            assert not unfinished
            if policy[i] is CANCEL:
                assert all(status[d] is Status.COMPLETED for d in deps[i])
        r = root[i]
        if r is not None:
            assert status[r] is Status.FAILED or r in by_hand


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32), st.integers(1, 40))
def test_random_graphs_keep_counts_causes_and_order(seed: int, size: int) -> None:
    _run_graph(seed, size)


# --- batches ----------------------------------------------------------------------------------


def test_a_batch_is_written_in_order_with_its_edges_and_initial_statuses() -> None:
    plan = plan_batch(
        [
            BatchNode("t0", "tech"),
            BatchNode("t10", "tech"),
            BatchNode("e10", "eco", ["t0", "t10", "old"]),
            BatchNode("r", "report", ["done"]),
        ],
        {"old": Existing(Status.RUNNING), "done": Existing(Status.COMPLETED)},
        T,
    )
    assert [(n.ref, n.status, n.pending) for n in plan.nodes] == [
        ("t0", Status.STARTING, 0),
        ("t10", Status.STARTING, 0),
        ("e10", W, 3),
        ("r", Status.STARTING, 0),
    ]
    assert plan.edges == (("e10", "t0"), ("e10", "t10"), ("e10", "old"), ("r", "done"))
    assert GraphCounts.of(n.status for n in plan.nodes) == GraphCounts(starting=3, waiting=1)
    assert all(n.events == () and n.submitted_status is n.status for n in plan.nodes)


def test_a_batch_node_under_cancel_on_an_already_failed_dependency_is_canceled_at_once() -> None:
    plan = plan_batch(
        [
            BatchNode("a", "j", ["failed"]),
            BatchNode("b", "j", ["a"]),
            BatchNode("c", "j", ["a"], RUN),
            BatchNode("d", "j", ["gone"], RUN),
        ],
        {"failed": Existing(Status.FAILED), "gone": Existing(Status.CANCELED, "root")},
        T,
    )
    a, b, c, d = plan.nodes
    assert (a.status, a.caused_by, a.root_cause) == (Status.CANCELED, "failed", "failed")
    assert (b.status, b.caused_by, b.root_cause) == (Status.CANCELED, "a", "failed")
    assert (c.status, c.pending) == (Status.STARTING, 0)  # under run, a canceled dep is done
    assert (d.status, d.pending) == (Status.STARTING, 0)
    assert a.submitted_status is W
    (event,) = a.events
    assert (event.from_status, event.to_status, event.process_id) == (W, Status.CANCELED, "a")
    assert GraphCounts.of(n.status for n in plan.nodes) == GraphCounts(canceled=2, starting=2)


@pytest.mark.parametrize(
    ("nodes", "message"),
    [
        ([BatchNode("a", "j", ["nope"])], r"batch node 1 \(j\): depends on 'nope', which is "
         r"neither a process that exists nor an earlier node of the batch"),
        ([BatchNode("a", "j", ["b"]), BatchNode("b", "k")],
         r"batch node 1 \(j\): depends on node 2, which comes later in the batch"),
        ([BatchNode("a", "j", ["a"])], r"batch node 1 \(j\): depends on itself"),
        ([BatchNode("a", "j"), BatchNode("b", "k", ["a", "a"])],
         r"batch node 2 \(k\): depends on 'a' twice"),
        ([BatchNode("a", "j"), BatchNode("a", "k")],
         r"batch: nodes 1 and 2 have the same ref 'a'"),
        ([BatchNode("a", "j", "old")],
         r"batch node 1 \(j\): depends_on must be a list of ids, not the string 'old'"),
    ],
)  # fmt: skip
def test_a_bad_batch_is_one_clear_line_naming_the_problem(
    nodes: list[BatchNode], message: str
) -> None:
    with pytest.raises(UsageError, match=message) as info:
        plan_batch(nodes, {"old": Existing(Status.COMPLETED)}, T)
    assert "\n" not in str(info.value)


def test_an_empty_batch_plans_nothing() -> None:
    plan = plan_batch([], {}, T)
    assert (plan.nodes, plan.edges) == ((), ())


# --- counters ---------------------------------------------------------------------------------


def test_counts_by_status() -> None:
    counts = GraphCounts.of([W, W, Status.STARTING, Status.COMPLETED])
    assert (counts.total, counts.finished, counts.done, counts[W]) == (4, 1, False, 2)
    assert counts.to_json()["waiting"] == 2 and counts.to_json()["canceled"] == 0
    assert GraphCounts.of([Status.COMPLETED, Status.CANCELED]).done


# --- what a handler sees ----------------------------------------------------------------------


def test_ctx_dependencies_shows_each_status_result_and_error_and_results_only_completed() -> None:
    error = ErrorInfo("ValueError", "bad", "tb")
    rows = [
        DependencyRow("b", Status.COMPLETED, result={"x": 1}),
        DependencyRow("a", Status.FAILED, result="stale", error=error),
        DependencyRow("c", Status.CANCELED),
    ]
    assert dependencies_view(rows) == {
        "b": {"status": "completed", "result": {"x": 1}, "error": None},
        "a": {"status": "failed", "result": None, "error": error.to_json()},
        "c": {"status": "canceled", "result": None, "error": None},
    }
    assert list(dependencies_view(rows)) == ["b", "a", "c"]  # the order of the rows
    assert dependency_results(rows) == {"b": {"x": 1}}


# --- resuming what a failure canceled -------------------------------------------------------


def test_resume_order_puts_each_dependent_after_its_resumed_dependencies() -> None:
    from corral.graph import resume_order

    # root <- c <- d, and d also depends on root directly; e depends on d; x is unrelated.
    edges = [("c", "root"), ("d", "root"), ("d", "c"), ("e", "d"), ("x", "other")]
    assert resume_order("root", ["e", "d", "c"], edges) == ["c", "d", "e"]
    assert resume_order("root", [], edges) == []


def test_a_resumed_dependent_waits_for_what_has_not_completed() -> None:
    from corral.graph import resumed

    assert resumed([Status.COMPLETED, Status.STARTING]) == Decision(Status.WAITING, 1)
    assert resumed([Status.COMPLETED]) == Decision(Status.STARTING, 0)
    assert resumed([Status.WAITING, Status.FAILED]) is None
    assert resumed([Status.CANCELED]) is None


def test_a_parent_waiting_for_its_children_resumes_where_it_left_off() -> None:
    parent = Dependent("p", Status.WAITING, OnDependencyFailure.RUN, 1, resume=Status.ENDING)
    change = change_of(parent, decide(parent, Ended("c", Status.FAILED)), 50.0)
    assert change is not None and change.status is Status.ENDING
    [event] = change.events
    assert (event.from_status, event.to_status) == (Status.WAITING, Status.ENDING)
