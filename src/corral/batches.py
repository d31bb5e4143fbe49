"""Graphs in one go: `app.batch()` collects processes and their dependencies, and writes
them in one transaction when the block ends, or nothing if it raised (docs/graphs.md).

    with app.batch() as b:
        t0 = b.submit("tech", {"i": 0})
        b.submit("eco", {"a": 0}, depends_on=[t0])

Each `submit` checks its job and parameters at once and returns a `Node` whose `id` is
final: later nodes depend on it by that id (or on the node itself). A dependency must be
a process that exists or a node submitted earlier in the batch, so a batch cannot build
a cycle; the storage checks the rest in the batch's transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

from corral import ids
from corral.errors import UsageError
from corral.graph import GraphCounts
from corral.model import Process, Status
from corral.storage.base import BatchInfo, NewBatch, NewProcess, SubmitShared, evolve

if TYPE_CHECKING:
    from corral.app import App, Submitted


@dataclass(frozen=True, slots=True)
class Node:
    """A process of a batch, before the batch is written: its id is already final."""

    id: str
    job: str
    position: int


def dependency_ids(depends_on: object, *, where: str = "depends_on") -> tuple[str, ...]:
    """The ids a `depends_on` names (processes, nodes of a batch or their ids), checked: a
    list of ids, none of them repeated. UsageError naming the first problem."""
    if depends_on is None:
        return ()
    if isinstance(depends_on, str | bytes | Node) or not isinstance(depends_on, Iterable):
        raise UsageError(f"{where} must be a list of process ids, not {depends_on!r}")
    from corral.app import parse_id  # the app module imports this one

    out: list[str] = []
    for item in depends_on:
        if isinstance(item, Node):
            pid = item.id  # made by a batch: a valid id already
        else:
            ref = getattr(item, "id", item)  # a Submitted, or an id
            try:
                pid = parse_id(ref)
            except UsageError:
                raise UsageError(f"{where}: {ref!r} is not a process id") from None
        out.append(pid)
    if len(set(out)) != len(out):
        twice = next(p for p in out if out.count(p) > 1)
        raise UsageError(f"{where}: {twice} is listed twice")
    return tuple(out)


class Batch:
    """The processes of one `app.batch()` block. After the block: `id`, `outcome`
    (`created`, or `existing` when a batch with the same custom id was written before:
    nothing new was), and `submitted`, one `Submitted` per node in order."""

    def __init__(self, app: App, custom_id: str | None, client_id: str | None) -> None:
        if custom_id is not None and (not isinstance(custom_id, str) or not custom_id):
            raise UsageError("a batch's custom_id must be a non-empty string")
        self._app = app
        self.id = ids.new_id()
        self.custom_id = custom_id
        self.client_id = app.client_id if client_id is None else client_id
        self._nodes: list[NewProcess] = []
        self._shared: dict[Any, SubmitShared] = {}
        self._written = False
        self.submitted: list[Submitted] = []
        self.outcome: Literal["created", "existing"] | None = None

    def submit(
        self,
        job: str,
        params: Mapping[str, Any] | None = None,
        *,
        depends_on: Sequence[Node | str] = (),
        on_dependency_failure: str | None = None,
        custom_id: str | None = None,
        priority: int | None = None,
        run_at: float | datetime | None = None,
        queue: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> Node:
        """Add a process to the batch (options as `app.submit`'s); its parameters are checked
        now. Returns its node, whose id later nodes may depend on."""
        if self._written:
            raise UsageError("this batch was written already: start another app.batch()")
        deps = dependency_ids(depends_on)
        new = self._app.new_process(
            job,
            params,
            custom_id=custom_id,
            client_id=self.client_id,
            priority=priority,
            run_at=run_at,
            queue=queue,
            tags=tags,
            shared_cache=self._shared,
        )
        # The storage checks each dependency (an earlier node or an existing process) in
        # the batch's transaction, where none can change meanwhile.
        policy = self._app.dependency_policy(new.job, on_dependency_failure)
        self._nodes.append(
            evolve(new, depends_on=deps, on_dependency_failure=policy, batch_id=self.id)
        )
        return Node(new.id, new.job, len(self._nodes))

    def __enter__(self) -> Batch:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            return  # the block failed: nothing is written
        self.write()

    def write(self) -> list[Submitted]:
        """Write the batch now (the block does it when it ends)."""
        from corral.app import Submitted

        if self._written:
            return self.submitted
        created_at = self._nodes[0].created_at if self._nodes else self._app.clock()
        inserted = self._app.storage.process_insert_many(
            self._nodes,
            batch=NewBatch(self.id, self.client_id, self.custom_id, created_at),
        )
        self._written = True
        self.outcome = "created"
        if self.custom_id is not None and all(i.outcome == "existing" for i in inserted):
            found = self._app.storage.batch_by_custom_id(self.client_id, self.custom_id)
            if found is not None and found.id != self.id:
                self.outcome = "existing"
                self.id = found.id
        self.submitted = [Submitted(i.process, i.outcome) for i in inserted]
        return self.submitted


@dataclass(frozen=True, slots=True)
class Graph:
    """A batch as `app.graph()` reads it: its counts by status (from an index of the
    batch's rows) and, when asked for, its processes and edges `(dependent, dependency)`."""

    batch: BatchInfo
    counts: GraphCounts
    processes: tuple[Process, ...] = ()
    edges: tuple[tuple[str, str], ...] = ()

    @property
    def id(self) -> str:
        return self.batch.id

    @property
    def done(self) -> bool:
        return self.counts.done

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.batch.id,
            "custom_id": self.batch.custom_id,
            "size": self.batch.size,
            "counts": self.counts.to_json(),
            "done": self.done,
            "nodes": [{"id": p.id, "job": p.job, "status": p.status.value} for p in self.processes],
            "edges": [list(e) for e in self.edges],
        }


def counts_of(by_status: Mapping[Status, int]) -> GraphCounts:
    return GraphCounts(**{s.value: n for s, n in by_status.items()})
