"""Task graphs inside a backend's write transaction: what both backends do the same way.

The rules are `corral.graph`'s; this module runs them over rows. A backend gives two
functions, one that reads (and on PostgreSQL locks) the waiting dependents of some
processes, one that writes the changes decided, and `settle` runs the rounds of a
cascade in the caller's transaction: the processes that ended, then the dependents they
canceled, until none is. Work is proportional to the edges of the processes that ended.
`plan_inserts` turns a batch of new processes with dependencies into rows to insert.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from corral import graph
from corral.model import TERMINAL, Change, Status
from corral.storage import codec
from corral.storage.base import NewProcess, evolve

#: A waiting dependent as a backend reads it, one row per edge to a process that ended:
#: (dependent id, dependency id, status, policy, pending count, run_at, root cause, the
#: status a parent resumes at: its stopped_status).
DependentRow = tuple[str, str, str, str, int, float, str | None, str | None]
ReadDependents = Callable[[Sequence[str]], Iterable[DependentRow]]
WriteChanges = Callable[[Sequence[graph.DependentChange]], None]


def settle(
    ended: Sequence[graph.Ended], read: ReadDependents, write: WriteChanges, at: float
) -> list[graph.DependentChange]:
    """Apply the end of `ended` to their dependents, cascade included; the changes written
    (a dependent counted down, then canceled, appears once per round it changed in)."""
    written: list[graph.DependentChange] = []
    wave: Sequence[graph.Ended] = ended
    while wave:
        rows = list(read([e.id for e in wave]))
        if not rows:
            break
        dependents = {r[0]: _dependent(r) for r in rows}
        settlement = graph.settle_dependents(wave, [(r[0], r[1]) for r in rows], dependents, at)
        if settlement.changes:
            write(settlement.changes)
            written.extend(settlement.changes)
        wave = settlement.canceled
    return written


def dependency_row(dep: str, status: str, result: Any, error: Any) -> graph.DependencyRow:
    """A dependency as the backends' `dependencies_of` query gives it (JSON as text)."""
    return graph.DependencyRow(
        dep,
        Status(status),
        codec.loads(result) if result is not None else None,
        codec.error_loads(error) if error is not None else None,
    )


def _dependent(r: DependentRow) -> graph.Dependent:
    resume = Status(r[7]) if r[7] is not None else None
    return graph.Dependent(
        r[0], Status(r[2]), graph.OnDependencyFailure(r[3]), r[4], r[5], r[6], resume
    )


def ended_by(change: Change) -> bool:
    """Whether writing `change` ends its process (its dependents must then be settled)."""
    return change.status in TERMINAL


def reopened_by(change: Change) -> bool:
    """Whether `change` takes its process out of a terminal status (a retry): a waiting
    dependent then has one more dependency to wait for."""
    return change.status not in TERMINAL and any(
        e.from_status in TERMINAL for e in change.events if e.kind == "transition"
    )


# --- inserting a graph ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GraphInsert:
    """A batch with dependencies, decided: the processes as they are to be inserted (their
    status, `starting` or `waiting`, and pending count set), the edges, the ids that get
    dependents, and the nodes a dependency that had already failed cancels at once: they
    are inserted `waiting`, then written as any canceled dependent is."""

    processes: tuple[NewProcess, ...]
    edges: tuple[tuple[str, str], ...]
    with_dependents: frozenset[str]
    canceled: tuple[graph.DependentChange, ...]


def plan_inserts(
    processes: Sequence[NewProcess], existing: Mapping[str, graph.Existing], at: float
) -> GraphInsert:
    """Decide the initial status of each new process from its dependencies: those of the
    batch (earlier ones) and `existing` (read, and locked, in the insert's transaction).
    UsageError naming the first problem: nothing is to be written then."""
    plan = graph.plan_batch(
        [
            graph.BatchNode(
                n.id, n.job, tuple(n.depends_on), graph.OnDependencyFailure(n.on_dependency_failure)
            )
            for n in processes
        ],
        existing,
        at,
    )
    out = []
    canceled = []
    for new, node in zip(processes, plan.nodes, strict=True):
        out.append(evolve(new, status=node.submitted_status, pending_dependencies=node.pending))
        if node.status is Status.CANCELED:
            canceled.append(
                graph.DependentChange(
                    id=new.id,
                    status=Status.CANCELED,
                    pending=node.pending,
                    run_at=new.run_at,
                    iteration_since=None,
                    finished_at=at,
                    caused_by=node.caused_by,
                    root_cause=node.root_cause,
                    events=node.events,
                )
            )
    targets = frozenset(dep for _, dep in plan.edges)
    return GraphInsert(tuple(out), plan.edges, targets, tuple(canceled))


def needs_graph(processes: Sequence[NewProcess]) -> bool:
    """Whether inserting these processes takes the graph path (dependencies or a batch)."""
    return any(n.depends_on or n.batch_id is not None for n in processes)
