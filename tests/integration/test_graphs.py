"""Task graphs through the App, on every backend: `depends_on` at submit, `app.batch()`
(all or nothing), `app.graph()`, the job's failure policy and a submit's override, what
handlers read in `ctx.dependencies`, `explain`, and the errors a caller meets."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from corral import App, Context
from corral.errors import ConfigurationError, ProcessNotFound, UsageError
from corral.model import Status
from tests.integration.common import drain


@pytest.fixture
def g(app: App) -> App:
    @app.job()
    def value(ctx: Context[Any], n: int) -> int:
        if n < 0:
            raise ValueError(f"negative: {n}")
        return n

    @app.job()
    def total(ctx: Context[Any]) -> dict[str, Any]:
        return {
            "sum": sum(v for v in ctx.dependency_results.values() if isinstance(v, int)),
            "seen": {k: (d["status"], d["error"] and d["error"]["type"])
                     for k, d in ctx.dependencies.items()},
        }  # fmt: skip

    @app.job(on_dependency_failure="run")
    def report(ctx: Context[Any]) -> list[str]:
        return sorted(d["status"] for d in ctx.dependencies.values())

    return app


def test_a_dependent_runs_after_its_dependencies_and_reads_their_results(g: App) -> None:
    a = g.submit("value", {"n": 2})
    b = g.submit("value", {"n": 3})
    t = g.submit("total", depends_on=[a.id, b.id])
    assert t.status is Status.WAITING
    assert next(r.code for r in g.explain(t.id)) == "waiting_on_dependencies"
    drain(g)
    done = g.get(t.id)
    assert done.status is Status.COMPLETED
    assert done.result == {
        "sum": 5,
        "seen": {a.id: ["completed", None], b.id: ["completed", None]},
    }
    assert g.dependencies(t.id) == (sorted([a.id, b.id]), [])


def test_the_policy_of_the_job_and_of_a_submit(g: App) -> None:
    bad = g.submit("value", {"n": -1})
    ok = g.submit("value", {"n": 1})
    canceled = g.submit("total", depends_on=[bad.id, ok.id])
    overridden = g.submit("total", depends_on=[bad.id, ok.id], on_dependency_failure="run")
    by_job = g.submit("report", depends_on=[bad.id, ok.id])
    drain(g)
    assert g.get(canceled.id).status is Status.CANCELED
    assert g.get(overridden.id).result == {
        "sum": 1,
        "seen": {bad.id: ["failed", "ValueError"], ok.id: ["completed", None]},
    }
    assert g.get(by_job.id).result == ["completed", "failed"]


def test_a_batch_is_written_whole_or_not_at_all(g: App) -> None:
    with pytest.raises(RuntimeError), g.batch() as b:
        first = b.submit("value", {"n": 1})
        raise RuntimeError("the caller changed its mind")
    with pytest.raises(ProcessNotFound):
        g.get(first.id)
    with pytest.raises(UsageError, match="neither a process that exists"), g.batch() as b2:
        b2.submit("value", {"n": 1})
        b2.submit("total", depends_on=[str(uuid.uuid4())])
    assert g.list() == []
    with pytest.raises(UsageError, match="not a process id"), g.batch() as b3:
        b3.submit("total", depends_on=["nope"])
    with pytest.raises(UsageError, match="list of process ids"):
        g.submit("total", depends_on="01a2")  # type: ignore[arg-type]


def test_a_batch_counts_its_graph_and_is_existing_when_submitted_again(g: App) -> None:
    def submit() -> Any:
        with g.batch(custom_id="nightly-2026-12-01") as b:
            t0 = b.submit("value", {"n": 1})
            for n in (2, 3):
                b.submit("total", depends_on=[t0, b.submit("value", {"n": n})])
        return b

    first = submit()
    assert first.outcome == "created" and len(first.submitted) == 5
    graph = g.graph(first.id)
    assert (graph.counts.waiting, graph.counts.starting, graph.counts.total) == (2, 3, 5)
    assert len(graph.edges) == 4 and not graph.done
    again = submit()
    assert again.outcome == "existing" and again.id == first.id
    assert len(g.list(limit=100)) == 5
    drain(g)
    done = g.graph(first.id, nodes=False)
    assert done.done and done.counts.completed == 5 and done.processes == ()
    with pytest.raises(ProcessNotFound):
        g.graph(str(uuid.uuid4()))


def test_a_bad_policy_is_a_clear_error(app: App) -> None:
    with pytest.raises(ConfigurationError, match="on_dependency_failure must be"):

        @app.job(on_dependency_failure="sometimes")
        def nope(ctx: Context[Any]) -> None: ...

    @app.job()
    def fine(ctx: Context[Any]) -> None: ...

    with pytest.raises(UsageError, match="on_dependency_failure must be"):
        app.submit("fine", on_dependency_failure="later")
    assert app.list() == []
