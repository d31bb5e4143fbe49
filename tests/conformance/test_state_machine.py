"""Model-based test: random sequences of storage operations, checked against a reference.

A Hypothesis state machine drives submit (with dependencies on earlier processes, under
either failure policy), claim, commit (step, complete, fail), commits with stale tokens,
cancel, retry, renew, release and clock advances against a backend, with an injected
clock. After every step each process read back from the backend must equal the
reference, a small pure model whose transitions come from `corral.model` (the rules),
whose task graphs follow `corral.graph` applied to the whole graph in memory (the
cascade of docs/graphs.md), and whose leases follow docs/state-machine.md and
docs/leases-and-fencing.md. Some processes have a concurrency key
(docs/flow-control.md): a claim takes no more of a key than its free slots. Some belong
to a batch, whose counts by status (counter rows kept by the backend) must equal the
reference's.
"""

from __future__ import annotations

import tempfile
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from corral import graph, model
from corral.errors import IllegalTransition
from corral.model import CLAIMABLE, Change, ErrorInfo, Process, Status
from corral.storage.base import Claim, IterationCommit, NewProcess, Storage
from tests.backends import BACKENDS, make_storage

LEASE = 10.0
RANK = {Status.FAILING: 2, Status.ENDING: 3, Status.RUNNING: 4, Status.STARTING: 5}
#: The concurrency keys some processes have, and their limits.
LIMITS = {"k1": 1, "k2": 2}
#: The batches some processes belong to: their counts by status are checked.
BATCHES = ("b-1", "b-2")


@dataclass
class Ref:
    """The reference's view of one process."""

    id: str
    priority: int
    run_at: float
    status: Status = Status.STARTING
    store: dict[str, int] = field(default_factory=dict)
    attempt: int = 0
    token: int = 0
    owner: str | None = None
    expires: float | None = None
    cancel_requested: bool = False
    stopped_status: Status | None = None
    deps: tuple[str, ...] = ()
    policy: graph.OnDependencyFailure = graph.OnDependencyFailure.CANCEL
    pending: int = 0
    key: str | None = None
    batch: str | None = None

    def live(self, now: float) -> bool:
        return self.expires is not None and self.expires >= now

    def runnable(self, now: float) -> bool:
        return self.status in CLAIMABLE and not self.live(now) and self.run_at <= now

    def claim_key(self, now: float) -> tuple[int, int, float]:
        if self.expires is not None:
            klass = 0
        elif self.cancel_requested:
            klass = 1
        else:
            klass = RANK[self.status]
        return (klass, -self.priority, self.run_at)


class StorageMachine(RuleBasedStateMachine):
    backend = "memory"

    def __init__(self) -> None:
        super().__init__()
        self.tmp = tempfile.TemporaryDirectory()
        self._storage_cm = make_storage(self.backend, Path(self.tmp.name))
        self.storage: Storage = self._storage_cm.__enter__()
        self.now = 1_000.0
        self.refs: dict[str, Ref] = {}
        # Every claim ever made: (process id, token); some become stale.
        self.claims: list[tuple[str, int]] = []

    def teardown(self) -> None:
        self._storage_cm.__exit__(None, None, None)
        self.tmp.cleanup()

    @initialize()
    def start(self) -> None:
        pass

    def _get(self, pid: str) -> Process:
        p = self.storage.process_get(pid)
        assert p is not None
        return p

    # --- rules -----------------------------------------------------------------------------------
    @rule(
        priority=st.integers(0, 2),
        delay=st.sampled_from([0.0, 0.0, 5.0]),
        picks=st.lists(st.integers(0, 1_000), max_size=2, unique=True),
        policy=st.sampled_from(list(graph.OnDependencyFailure)),
        key=st.sampled_from([None, None, "k1", "k2"]),
        batch=st.sampled_from([None, *BATCHES]),
    )
    def submit(
        self,
        priority: int,
        delay: float,
        picks: list[int],
        policy: graph.OnDependencyFailure,
        key: str | None,
        batch: str | None,
    ) -> None:
        # Deterministic ids: Hypothesis replays must draw the same choices.
        pid = str(uuid.UUID(int=len(self.refs) + 1))
        known = sorted(self.refs)
        deps = tuple(dict.fromkeys(known[i % len(known)] for i in picks)) if known else ()
        self.storage.process_insert_many(
            [
                NewProcess(
                    id=pid,
                    job="j",
                    params={},
                    created_at=self.now,
                    run_at=self.now + delay,
                    priority=priority,
                    depends_on=deps,
                    on_dependency_failure=policy.value,
                    concurrency_key=key,
                    concurrency_limit=None if key is None else LIMITS[key],
                    batch_id=batch,
                )
            ]
        )
        existing = {d: graph.Existing(self.refs[d].status) for d in deps}
        [node] = graph.plan_batch(
            [graph.BatchNode(pid, "j", deps, policy)], existing, self.now
        ).nodes
        self.refs[pid] = Ref(
            pid, priority, self.now + delay, status=node.status, deps=deps, policy=policy,
            pending=node.pending, key=key, batch=batch,
        )  # fmt: skip

    def _ended(self, pid: str, status: Status) -> None:
        """The reference's dependents after `pid` ended: the whole cascade, in memory."""
        dependents_of: dict[str, list[str]] = {}
        for ref in self.refs.values():
            for dep in ref.deps:
                dependents_of.setdefault(dep, []).append(ref.id)
        dependents = {
            r.id: graph.Dependent(r.id, r.status, r.policy, r.pending, r.run_at)
            for r in self.refs.values()
        }
        settlement = graph.cascade([graph.Ended(pid, status)], dependents_of, dependents, self.now)
        for change in settlement.changes:
            ref = self.refs[change.id]
            ref.status, ref.pending, ref.run_at = change.status, change.pending, change.run_at

    def _reopened(self, pid: str) -> None:
        for ref in self.refs.values():
            if pid in ref.deps and ref.status is Status.WAITING:
                ref.pending += 1

    @rule(seconds=st.sampled_from([1.0, 4.0, 11.0]))
    def advance(self, seconds: float) -> None:
        self.now += seconds

    @rule(limit=st.integers(1, 3), owner=st.sampled_from(["a", "b"]))
    def claim(self, limit: int, owner: str) -> None:
        got = self.storage.process_claim(
            Claim(owner=owner, now=self.now, lease_seconds=LEASE, limit=limit)
        )
        runnable = [r for r in self.refs.values() if r.runnable(self.now)]
        held = Counter(r.key for r in self.refs.values() if r.key and r.live(self.now))
        free = {k: LIMITS[k] - held[k] for k in LIMITS}
        # Of each key, no more than its free slots; every process without a key.
        admissible = sum(r.key is None for r in runnable) + sum(
            min(free[k], sum(r.key == k for r in runnable)) for k in LIMITS
        )
        assert len(got) == min(limit, admissible)
        taken = {c.process.id for c in got}
        assert taken <= {r.id for r in runnable}
        per_key = Counter(self.refs[pid].key for pid in taken)
        assert all(per_key[k] <= free[k] for k in LIMITS)
        keys = [self.refs[c.process.id].claim_key(self.now) for c in got]
        assert keys == sorted(keys)  # in claim order
        left = [
            r.claim_key(self.now)
            for r in runnable
            if r.id not in taken and (r.key is None or per_key[r.key] < free[r.key])
        ]
        # Nothing left behind that the claim could have taken comes before what it took
        # (ties may go either way).
        assert not keys or not left or max(keys) <= min(left)
        for c in got:
            ref = self.refs[c.process.id]
            assert c.recovered == (ref.expires is not None)
            assert c.token > ref.token
            ref.token, ref.owner, ref.expires = c.token, owner, self.now + LEASE
            ref.attempt += 1
            self.claims.append((ref.id, c.token))

    @precondition(lambda self: self.claims)
    @rule(data=st.data(), outcome=st.sampled_from(["stay", "advance", "complete", "fail"]))
    def commit(self, data: st.DataObject, outcome: str) -> None:
        pid, token = data.draw(st.sampled_from(self.claims))
        ref = self.refs[pid]
        current = self._get(pid)
        change = self._decide(current, outcome)
        if change is None:
            return
        lost = self.storage.process_commit_many([IterationCommit(pid, token, change, self.now)])
        holds = ref.token == token and ref.expires is not None
        assert lost == ([] if holds else [pid])
        if holds:
            ref.status, ref.store, ref.attempt = change.status, change.store, change.attempt
            ref.stopped_status = change.stopped_status
            ref.run_at, ref.owner, ref.expires = change.run_at, None, None
            if change.status.terminal:
                self._ended(pid, change.status)

    def _decide(self, p: Process, outcome: str) -> Change | None:
        if p.status.terminal or p.status is Status.WAITING:
            return None
        store = {"n": p.store.get("n", 0) + 1}
        if outcome == "fail":
            return model.errored(
                p,
                self.now,
                ErrorInfo("E", "x"),
                retry_delay=None,
                max_attempts=1,
                has_rollback=True,
            )
        if p.status is Status.FAILING:
            return model.rolled_back(p, self.now, store=store, done=outcome != "stay")
        to = {"stay": None, "advance": _next(p.status), "complete": Status.COMPLETED}[outcome]
        if to is not None and not model.can_transition(p.status, to):
            to = None
        return model.committed(p, self.now, store=store, progress=(None, None), to=to)

    @precondition(lambda self: self.refs)
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        pid = data.draw(st.sampled_from(sorted(self.refs)))
        current = self._get(pid)
        try:
            change = model.cancel(current, self.now)
        except IllegalTransition:
            assert current.status.terminal
            return
        assert self.storage.process_update(pid, current.version, change, self.now)
        ref = self.refs[pid]
        ref.status, ref.cancel_requested = change.status, change.cancel_requested
        ref.run_at = change.run_at
        if change.status.terminal:
            self._ended(pid, change.status)

    @precondition(lambda self: self.refs)
    @rule(data=st.data())
    def retry(self, data: st.DataObject) -> None:
        pid = data.draw(st.sampled_from(sorted(self.refs)))
        current = self._get(pid)
        try:
            change = model.retry(current, self.now)
        except IllegalTransition:
            assert current.status not in (Status.FAILED, Status.CANCELED)
            return
        assert self.storage.process_update(pid, current.version, change, self.now)
        ref = self.refs[pid]
        ref.status, ref.attempt, ref.cancel_requested = change.status, 0, False
        ref.run_at, ref.stopped_status = change.run_at, None
        self._reopened(pid)

    @precondition(lambda self: self.claims)
    @rule(owner=st.sampled_from(["a", "b"]))
    def renew(self, owner: str) -> None:
        mine = {pid: tok for pid, tok in self.claims if self.refs[pid].owner == owner}
        renewal = self.storage.lease_renew_many(owner, mine, self.now, LEASE)
        for pid, tok in mine.items():
            ref = self.refs[pid]
            held = ref.token == tok and ref.expires is not None
            # An expired lease of a process with a key is not renewed: its slot was free.
            held = held and (ref.key is None or ref.live(self.now))
            assert (pid in renewal.lost) == (not held)
            if held:
                ref.expires = self.now + LEASE

    @precondition(lambda self: self.claims)
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        pid, token = data.draw(st.sampled_from(self.claims))
        ref = self.refs[pid]
        released = self.storage.lease_release_many({pid: token}, self.now)
        held = ref.token == token and ref.expires is not None
        assert released == ([pid] if held else [])
        if held:
            ref.owner, ref.expires, ref.attempt = None, None, max(ref.attempt - 1, 0)

    # --- the check -------------------------------------------------------------------------------
    @invariant()
    def backend_matches_reference(self) -> None:
        for ref in self.refs.values():
            p = self._get(ref.id)
            assert (p.status, p.store, p.attempt, p.lease_token, p.lease_owner) == (
                ref.status,
                ref.store,
                ref.attempt,
                ref.token,
                ref.owner,
            ), ref.id
            assert (p.lease_expires_at, p.cancel_requested, p.run_at) == (
                ref.expires,
                ref.cancel_requested,
                ref.run_at,
            ), ref.id
            assert p.stopped_status == ref.stopped_status
        # A graph's counters (moved by every path that changes a status) match its processes.
        for batch in BATCHES:
            expected = Counter(r.status for r in self.refs.values() if r.batch == batch)
            assert self.storage.batch_counts(batch) == dict(expected), batch


def _next(status: Status) -> Status | None:
    order = [Status.STARTING, Status.RUNNING, Status.ENDING, Status.COMPLETED]
    return order[order.index(status) + 1] if status in order[:-1] else None


@pytest.mark.parametrize("backend", BACKENDS)
def test_backend_follows_the_reference_model(backend: str) -> None:
    machine = type(f"Machine_{backend}", (StorageMachine,), {"backend": backend})
    machine.TestCase.settings = settings(
        max_examples=25 if backend == "postgres" else 60,
        stateful_step_count=30,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    machine.TestCase().runTest()
