"""Task graphs: what a dependency's end does to its dependents, batches, graph counts.

Pure: no I/O, no clock. Like `model.py`, this module decides and the backends apply. The
rule of what a dependency's end does to a dependent is data (`RULE`), so that a backend
can mirror it in one set-wise statement and the reference model of the state-machine
test can apply it with `settle_dependents` / `cascade`; both must agree with `decide`.
See docs/graphs.md for the rules in words.

Vocabulary: a *dependent* depends on a *dependency* (an edge `(dependent, dependency)`).
A dependent is `waiting` while it has *pending* (unfinished) dependencies.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import TypedDict

from corral.errors import UsageError
from corral.model import JSON, TERMINAL, ErrorInfo, Event, Status, check_transition

# --- the failure policy -------------------------------------------------------------------


class OnDependencyFailure(StrEnum):
    """What a dependent does when one of its dependencies ends `failed` or `canceled`."""

    #: The dependent ends `canceled` at once, naming the dependency and the root cause.
    CANCEL = "cancel"
    #: The dependent runs once every dependency is terminal, whatever their outcome.
    RUN = "run"


DEFAULT_ON_DEPENDENCY_FAILURE = OnDependencyFailure.CANCEL


def parse_on_dependency_failure(
    value: object, *, error: type[UsageError] = UsageError
) -> OnDependencyFailure:
    """The policy `value` names. `error` is what to raise otherwise: `UsageError` for a
    submit, `ConfigurationError` for a job's declaration."""
    if isinstance(value, str):
        try:
            return OnDependencyFailure(value)
        except ValueError:
            pass
    choices = " or ".join(repr(p.value) for p in OnDependencyFailure)
    raise error(f"on_dependency_failure must be {choices}, not {value!r}")


# --- the rule, as data --------------------------------------------------------------------


class OnEnd(StrEnum):
    """What the end of one dependency does to a dependent that is still `waiting`."""

    #: One dependency fewer to wait for: the last one makes the dependent runnable.
    COUNT_DOWN = "count_down"
    #: The dependent ends `canceled` (and so cascades to its own dependents).
    CANCEL = "cancel"


#: (policy of the dependent, terminal status of the dependency) -> action. The whole rule:
#: a backend's statement mirrors this table (its CANCEL rows are the CASE that cancels).
RULE: Mapping[tuple[OnDependencyFailure, Status], OnEnd] = {
    (OnDependencyFailure.CANCEL, Status.COMPLETED): OnEnd.COUNT_DOWN,
    (OnDependencyFailure.CANCEL, Status.FAILED): OnEnd.CANCEL,
    (OnDependencyFailure.CANCEL, Status.CANCELED): OnEnd.CANCEL,
    (OnDependencyFailure.RUN, Status.COMPLETED): OnEnd.COUNT_DOWN,
    (OnDependencyFailure.RUN, Status.FAILED): OnEnd.COUNT_DOWN,
    (OnDependencyFailure.RUN, Status.CANCELED): OnEnd.COUNT_DOWN,
}

#: The reason written in the history of a dependent canceled by a dependency's end, by the
#: dependency's status.
CANCEL_REASONS: Mapping[Status, str] = {
    Status.FAILED: "dependency_failed",
    Status.CANCELED: "dependency_canceled",
}
#: The reason written in the history of a dependent promoted to `starting`.
PROMOTE_REASON = "dependencies_done"


@dataclass(frozen=True, slots=True)
class Ended:
    """A dependency that has just reached a terminal status.

    `root_cause` is set when it was itself canceled by a cascade: the process whose failure
    (or cancel) started it. Otherwise, a failed or canceled dependency is its own root cause.
    """

    id: str
    status: Status
    root_cause: str | None = None

    def __post_init__(self) -> None:
        if self.status not in TERMINAL:
            raise ValueError(f"{self.id} has not ended: it is {self.status.value}")

    @property
    def root(self) -> str:
        """The root cause it passes on to the dependents it cancels."""
        return self.root_cause or self.id


@dataclass(frozen=True, slots=True)
class Dependent:
    """What the rule needs of a dependent: its status, its policy, its pending count.

    `run_at` is when it was asked to run at the earliest (`submit(run_at=...)`): a promoted
    dependent runs at that time or at its promotion, whichever is later. `root_cause` is
    what it already carries (it was canceled by an earlier end): nothing changes it.
    """

    id: str
    status: Status
    policy: OnDependencyFailure
    pending: int
    run_at: float = 0.0
    root_cause: str | None = None
    #: Where a parent waiting for the children it spawned resumes (`running` or `ending`);
    #: None: a dependent that never ran starts (`starting`).
    resume: Status | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    """A dependent after some of its dependencies ended: `waiting` with `pending` left,
    runnable (`starting`), `canceled` (with `caused_by` and `root_cause`), or, when it was
    not waiting, unchanged (`changed` False)."""

    status: Status
    pending: int
    changed: bool = True
    caused_by: str | None = None
    #: The status the cause ended with (`failed` or `canceled`): the history says which.
    cause_status: Status | None = None
    root_cause: str | None = None


def action(policy: OnDependencyFailure, dependency_status: Status) -> OnEnd:
    """One row of `RULE`; ValueError for a status that is not terminal."""
    try:
        return RULE[policy, dependency_status]
    except KeyError:
        raise ValueError(
            f"a dependency ends completed, failed or canceled, not {dependency_status.value}"
        ) from None


def decide(dependent: Dependent, *ended: Ended) -> Decision:
    """What the end of `ended` (dependencies of `dependent`, ending together) does to it.

    Only a `waiting` dependent changes. Its pending count goes down by one per ended
    dependency, whatever the outcome. Then, if one of them cancels it (`RULE`), it ends
    `canceled`, caused by the first such dependency in id order (ids are time-ordered,
    and a set-wise statement picks the same with `min(id)`); else it is runnable when
    nothing is pending any more, and still waiting otherwise.
    """
    if dependent.status is not Status.WAITING or not ended:
        return Decision(
            dependent.status, dependent.pending, changed=False, root_cause=dependent.root_cause
        )
    ids = [e.id for e in ended]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{dependent.id}: a dependency cannot end twice at once ({ids})")
    pending = dependent.pending - len(ended)
    if pending < 0:
        # The count and the edges disagree: a dependency counted as finished twice.
        raise ValueError(
            f"{dependent.id} waits for {dependent.pending} dependencies, but {len(ended)} ended"
        )
    cancels = sorted(
        (e for e in ended if action(dependent.policy, e.status) is OnEnd.CANCEL),
        key=lambda e: e.id,
    )
    if cancels:
        cause = cancels[0]
        return Decision(
            Status.CANCELED,
            pending,
            caused_by=cause.id,
            cause_status=cause.status,
            root_cause=cause.root,
        )
    return Decision(Status.STARTING if pending == 0 else Status.WAITING, pending)


def reopened(dependent: Dependent) -> Decision:
    """A dependency of `dependent` left its terminal status (`retry`): a waiting dependent
    has one more to wait for again, so that its count still means "not terminal". A
    dependent that is no longer waiting is unchanged (resuming a canceled one is the
    business of `retry --with-dependents`)."""
    if dependent.status is not Status.WAITING:
        return Decision(
            dependent.status, dependent.pending, changed=False, root_cause=dependent.root_cause
        )
    return Decision(Status.WAITING, dependent.pending + 1)


# --- the rule over a set of dependents (one statement of a backend) ----------------------------


@dataclass(frozen=True, slots=True)
class DependentChange:
    """What to write to one dependent: its new status and pending count, when it may run,
    its end, its cause, and the history events to insert (`Event.process_id` names it).

    No event is written for a dependent that only counts down: the history of the
    dependency that ended tells it, and this keeps a wide fan-in to one row per edge."""

    id: str
    status: Status
    pending: int
    run_at: float
    iteration_since: float | None
    finished_at: float | None
    caused_by: str | None
    root_cause: str | None
    events: tuple[Event, ...] = ()

    def ended(self) -> Ended | None:
        """This dependent as a dependency that has just ended (canceled), or None."""
        if self.status is Status.CANCELED:
            return Ended(self.id, self.status, self.root_cause)
        return None


def change_of(dependent: Dependent, decision: Decision, at: float) -> DependentChange | None:
    """The write a decision asks for, None when it asks for none."""
    if not decision.changed:
        return None
    base = DependentChange(
        id=dependent.id,
        status=decision.status,
        pending=decision.pending,
        run_at=dependent.run_at,
        iteration_since=None,
        finished_at=None,
        caused_by=decision.caused_by,
        root_cause=decision.root_cause,
    )
    if decision.status is Status.WAITING:
        return base
    if decision.status is Status.STARTING:
        # Runnable: it starts, or a parent resumes where it spawned its children. Queued
        # from when it became runnable (not from its submit), unless it was asked to run
        # later still; its schedule_to_close clock starts then too.
        to = dependent.resume or Status.STARTING
        check_transition(Status.WAITING, to)
        run_at = max(dependent.run_at, at)
        event = Event(
            "transition", at, Status.WAITING, to, 0, {"reason": PROMOTE_REASON}, dependent.id
        )
        return replace(base, status=to, run_at=run_at, iteration_since=run_at, events=(event,))
    check_transition(Status.WAITING, decision.status)
    assert decision.cause_status is not None  # a cancel always has a cause
    detail: dict[str, JSON] = {
        "reason": CANCEL_REASONS[decision.cause_status],
        "caused_by": decision.caused_by,
        "root_cause": decision.root_cause,
    }
    event = Event("transition", at, Status.WAITING, Status.CANCELED, 0, detail, dependent.id)
    return replace(base, finished_at=at, events=(event,))


@dataclass(frozen=True, slots=True)
class Settlement:
    """The writes that the end of some processes asks of their dependents.

    `changes`: one per dependent to write, in id order. `canceled`: the dependents it
    canceled, as dependencies that have just ended: their own dependents are next (the
    cascade), in the same transaction."""

    changes: tuple[DependentChange, ...] = ()
    canceled: tuple[Ended, ...] = ()

    @property
    def events(self) -> tuple[Event, ...]:
        """Every history event to insert, each naming its process."""
        return tuple(e for c in self.changes for e in c.events)


def settle_dependents(
    ended: Sequence[Ended],
    edges: Iterable[tuple[str, str]],
    dependents: Mapping[str, Dependent],
    at: float,
) -> Settlement:
    """`decide` over every dependent of the processes in `ended` at once: what one
    set-wise statement of a backend does when a commit ends them.

    `edges` are `(dependent, dependency)` pairs (those of other dependencies are ignored);
    `dependents` must hold every dependent they name. Work is proportional to the edges.
    """
    by_id = {e.id: e for e in ended}
    ends: defaultdict[str, list[Ended]] = defaultdict(list)
    for dependent_id, dependency_id in edges:
        end = by_id.get(dependency_id)
        if end is not None:
            ends[dependent_id].append(end)
    changes: list[DependentChange] = []
    for dependent_id in sorted(ends):
        dependent = dependents[dependent_id]
        change = change_of(dependent, decide(dependent, *ends[dependent_id]), at)
        if change is not None:
            changes.append(change)
    canceled = tuple(e for c in changes if (e := c.ended()) is not None)
    return Settlement(tuple(changes), canceled)


def cascade(
    ended: Sequence[Ended],
    dependents_of: Mapping[str, Sequence[str]],
    dependents: Mapping[str, Dependent],
    at: float,
) -> Settlement:
    """`settle_dependents`, then again over the dependents it canceled, until none is:
    the whole effect of `ended` on a graph held in memory (the reference model's way; a
    backend runs the same rounds, one statement each, in one transaction).

    `dependents_of` maps a process id to the ids of its dependents. A cascade ends: the
    graph has no cycle, and a process is canceled at most once. A dependent changed in
    several rounds (counted down, then canceled) appears once, with every event.
    """
    current = dict(dependents)
    merged: dict[str, DependentChange] = {}
    canceled: list[Ended] = []
    wave: Sequence[Ended] = ended
    while wave:
        edges = [(d, e.id) for e in wave for d in dependents_of.get(e.id, ())]
        round_ = settle_dependents(wave, edges, current, at)
        for change in round_.changes:
            before = merged.get(change.id)
            if before is not None:
                change = replace(change, events=(*before.events, *change.events))
            merged[change.id] = change
            current[change.id] = replace(
                current[change.id],
                status=change.status,
                pending=change.pending,
                root_cause=change.root_cause,
            )
        canceled.extend(round_.canceled)
        wave = round_.canceled
    return Settlement(tuple(merged[i] for i in sorted(merged)), tuple(canceled))


# --- resuming what a failure canceled (`retry --with-dependents`) -------------------------


#: The reason written in the history of a dependent resumed with the process it depends on.
RESUME_REASON = "retry_with_dependencies"


def resume_order(root: str, canceled: Iterable[str], edges: Iterable[tuple[str, str]]) -> list[str]:
    """The dependents a cascade from `root` canceled (`canceled`: the processes whose root
    cause is `root`), each after every one of them it depends on, so that it is resumed
    once its resumed dependencies are running again. `edges`: `(dependent, dependency)`
    pairs among them and `root`. Ties in id order."""
    wanted = set(canceled) - {root}
    waits: dict[str, int] = dict.fromkeys(wanted, 0)
    below: defaultdict[str, list[str]] = defaultdict(list)
    for dependent, dependency in set(edges):
        if dependent in wanted and dependency in wanted:
            waits[dependent] += 1
            below[dependency].append(dependent)
    ready = sorted(pid for pid, n in waits.items() if n == 0)
    order: list[str] = []
    while ready:
        pid = ready.pop(0)
        order.append(pid)
        for dependent in sorted(below.get(pid, ())):
            waits[dependent] -= 1
            if waits[dependent] == 0:
                ready.append(dependent)
        ready.sort()
    return order


def resumed(dependencies: Iterable[Status]) -> Decision | None:
    """A canceled dependent, resumed with the dependencies it had: `waiting` for those not
    completed (the retried root and the dependents resumed before it are running again),
    or `starting` when none is left; None when one of them is still failed or canceled
    (it would cancel it again: it stays as it is)."""
    statuses = list(dependencies)
    if any(s in (Status.FAILED, Status.CANCELED) for s in statuses):
        return None
    pending = sum(1 for s in statuses if s is not Status.COMPLETED)
    return Decision(Status.WAITING if pending else Status.STARTING, pending)


def resume_event(pid: str, decision: Decision, root: str, at: float) -> Event:
    """The history event of a dependent resumed with `root`."""
    detail: dict[str, JSON] = {"reason": RESUME_REASON, "root_cause": root}
    return Event("transition", at, Status.CANCELED, decision.status, 0, detail, pid)


# --- batches: a graph submitted in one go ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BatchNode:
    """One process of a batch, before it is written. `ref` names it inside the batch (its
    new id, or a temporary name); each `depends_on` entry is the ref of an earlier node or
    the id of a process that exists already."""

    ref: str
    job: str
    depends_on: Sequence[str] = ()
    on_dependency_failure: OnDependencyFailure = DEFAULT_ON_DEPENDENCY_FAILURE


@dataclass(frozen=True, slots=True)
class Existing:
    """A process that exists already, as a batch that depends on it sees it (read in the
    batch's own transaction, so that it cannot end unseen before the edges are written)."""

    status: Status
    root_cause: str | None = None


@dataclass(frozen=True, slots=True)
class PlannedNode:
    """A node of a batch as it is to be written: its initial status and pending count,
    its dependencies (without repeats, in the order given), its cause when it is canceled
    at once, and the history events to write after its `submitted` one."""

    ref: str
    job: str
    status: Status
    pending: int
    depends_on: tuple[str, ...]
    caused_by: str | None = None
    root_cause: str | None = None
    events: tuple[Event, ...] = ()

    @property
    def submitted_status(self) -> Status:
        """The status its `submitted` event names: a node canceled at once was submitted
        `waiting`, and its next event moves it to `canceled`."""
        return Status.WAITING if self.status is Status.CANCELED else self.status


@dataclass(frozen=True, slots=True)
class BatchPlan:
    """A batch checked and decided: its nodes in order, and its edges `(dependent,
    dependency)` in the same order."""

    nodes: tuple[PlannedNode, ...]
    edges: tuple[tuple[str, str], ...]


def plan_batch(
    nodes: Sequence[BatchNode], existing: Mapping[str, Existing], at: float
) -> BatchPlan:
    """Check a batch and decide each node's initial status; UsageError naming the first
    problem (nothing is to be written then).

    A dependency is the ref of an earlier node or an id in `existing`; a reference to a
    later node, to the node itself, a repeated dependency or an unknown id is an error, so
    that a batch cannot build a cycle. A node is `starting` when none of its dependencies
    is unfinished, else `waiting` with their count: dependencies already terminal (existing
    ones, or earlier nodes canceled at once) count as finished, through the same `decide`
    as at run time. Under `cancel`, a dependency that already ended `failed` or `canceled`
    therefore cancels the new node at once, with its cause and root cause, and so on down
    the batch: the graph is written as it would be had it been submitted a moment earlier.
    """
    planned: dict[str, PlannedNode] = {}
    positions: dict[str, int] = {}
    for position, node in enumerate(nodes, 1):
        if node.ref in positions:
            raise UsageError(
                f"batch: nodes {positions[node.ref]} and {position} have the same ref {node.ref!r}"
            )
        positions[node.ref] = position
    out: list[PlannedNode] = []
    for position, node in enumerate(nodes, 1):
        deps = _check_dependencies(node, position, positions, existing)
        finished: list[Ended] = []
        for dep in deps:
            status, root = _state(dep, planned, existing)
            if status in TERMINAL:
                finished.append(Ended(dep, status, root))
        events: tuple[Event, ...] = ()
        if finished:
            dependent = Dependent(node.ref, Status.WAITING, node.on_dependency_failure, len(deps))
            decision = decide(dependent, *finished)
            if decision.status is Status.CANCELED:
                change = change_of(dependent, decision, at)
                events = change.events if change is not None else ()
        else:  # the common case, and a graph may have 100,000 nodes: nothing to decide
            decision = Decision(Status.STARTING if not deps else Status.WAITING, len(deps))
        plan = PlannedNode(
            ref=node.ref,
            job=node.job,
            status=decision.status,
            pending=decision.pending,
            depends_on=deps,
            caused_by=decision.caused_by,
            root_cause=decision.root_cause,
            events=events,
        )
        planned[node.ref] = plan
        out.append(plan)
    edges = tuple((n.ref, d) for n in out for d in n.depends_on)
    return BatchPlan(tuple(out), edges)


def _check_dependencies(
    node: BatchNode, position: int, positions: Mapping[str, int], existing: Mapping[str, Existing]
) -> tuple[str, ...]:
    where = f"batch node {position} ({node.job})"
    if isinstance(node.depends_on, str):
        # A lone id is a sequence of characters: say so rather than depend on each letter.
        raise UsageError(
            f"{where}: depends_on must be a list of ids, not the string {node.depends_on!r}"
        )
    seen: set[str] = set()
    for dep in node.depends_on:
        if dep in seen:
            raise UsageError(f"{where}: depends on {dep!r} twice")
        seen.add(dep)
        if dep == node.ref:
            raise UsageError(f"{where}: depends on itself")
        later = positions.get(dep)
        if later is not None and later > position:
            raise UsageError(
                f"{where}: depends on node {later}, which comes later in the batch; a "
                "dependency must exist already or come earlier"
            )
        if later is None and dep not in existing:
            raise UsageError(
                f"{where}: depends on {dep!r}, which is neither a process "
                "that exists nor an earlier node of the batch"
            )
    return tuple(node.depends_on)


def _state(
    dep: str, planned: Mapping[str, PlannedNode], existing: Mapping[str, Existing]
) -> tuple[Status, str | None]:
    node = planned.get(dep)
    if node is not None:
        return node.status, node.root_cause
    known = existing[dep]
    return known.status, known.root_cause


# --- graph counts: progress of a batch ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GraphCounts:
    """How many processes of a batch have each status (`app.graph()`), as the backend's
    counter rows give them: triggers keep those in step with every insert, status change
    and delete of a process of the batch (docs/graphs.md, "Graph counters")."""

    waiting: int = 0
    starting: int = 0
    running: int = 0
    ending: int = 0
    completed: int = 0
    failing: int = 0
    failed: int = 0
    canceled: int = 0

    @classmethod
    def of(cls, statuses: Iterable[Status]) -> GraphCounts:
        """The counts of a set of statuses (what a scan would find: tests compare)."""
        counts: dict[str, int] = defaultdict(int)
        for status in statuses:
            counts[status.value] += 1
        return cls(**counts)

    def __getitem__(self, status: Status) -> int:
        value: int = getattr(self, status.value)
        return value

    @property
    def total(self) -> int:
        return sum(self[s] for s in Status)

    @property
    def finished(self) -> int:
        """How many have reached a terminal status."""
        return sum(self[s] for s in TERMINAL)

    @property
    def done(self) -> bool:
        """Whether every process of the graph has ended."""
        return self.finished == self.total

    def to_json(self) -> dict[str, int]:
        return {s.value: self[s] for s in Status}


# --- what a handler sees of its dependencies ---------------------------------------------------


class DependencyState(TypedDict):
    """One dependency as `ctx.dependencies` shows it (JSON, for HTTP workers too)."""

    status: str
    #: Its result when it completed, else None.
    result: JSON
    #: Why it failed (`type`, `message`, `traceback`, `reason`), else None.
    error: dict[str, str] | None


@dataclass(frozen=True, slots=True)
class DependencyRow:
    """A dependency as read from storage for its dependent's iteration."""

    id: str
    status: Status
    result: JSON = None
    error: ErrorInfo | None = None


def dependencies_view(rows: Iterable[DependencyRow]) -> dict[str, DependencyState]:
    """`ctx.dependencies`: id -> status, result (completed only) and error, in row order."""
    return {
        row.id: DependencyState(
            status=row.status.value,
            result=row.result if row.status is Status.COMPLETED else None,
            error=row.error.to_json() if row.error is not None else None,
        )
        for row in rows
    }


def dependency_results(rows: Iterable[DependencyRow]) -> dict[str, JSON]:
    """`ctx.dependency_results`: id -> result, of the completed dependencies only."""
    return {row.id: row.result for row in rows if row.status is Status.COMPLETED}
