"""A client's processes: submit (one, or a graph in one batch), read, list, cancel, retry,
history, graph and explain. Each answer about a process is `corral show --json`'s shape
(corral.views); another client's process answers 404 as a missing one does."""

from __future__ import annotations

import contextlib
import re
import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from fastapi.responses import JSONResponse

from corral.app import App
from corral.errors import CustomIdConflict
from corral.http.answers import (
    BatchView,
    CancelView,
    ConflictView,
    Detail,
    ExplainView,
    GraphView,
    HistoryPage,
    ProcessPage,
    ProcessView,
    SubmittedView,
    answer,
)
from corral.http.auth import CallerDep, CorralDep
from corral.http.errors import FieldErrors, field_error
from corral.http.routes import pages
from corral.http.routes.submit import (
    check_params,
    param_errors,
    visible_dependencies,
    visible_dependency,
)
from corral.http.schemas import BatchBody, SubmitBody
from corral.model import Process, Status
from corral.storage.base import ProcessFilter
from corral.views import edges_json, event_json, process_json

router = APIRouter(tags=["processes"])

#: A time in a query: RFC 3339 (ISO 8601 with a zone), as the document says.
DATE_TIME = Query(json_schema_extra={"format": "date-time"})
_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})", re.ASCII
)

#: A process's id in a path: a UUID (FastAPI answers 422 for anything else).
ProcessId = Annotated[uuid.UUID, Path(description="The process's id.")]

PROCESS = answer(ProcessView, "The process, as `corral show --json` gives it (no history).")
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: answer(Detail, "No such process, or another client's.")
}


def _shown(corral: App, p: Process, **extra: Any) -> dict[str, Any]:
    return {**process_json(p, now=corral.clock()), **extra}


@router.post(
    "/processes",
    status_code=201,
    responses={
        201: answer(SubmittedView, "Created."),
        200: answer(SubmittedView, "A process with this custom id, job and params existed."),
        409: answer(ConflictView, "The custom id names a process of another job or params."),
    },
)
def submit(body: SubmitBody, caller: CallerDep, corral: CorralDep) -> JSONResponse:
    """Submit a process of `job`; idempotent by `custom_id`."""
    check_params(corral, body.job, body.params, ["body", "params"])
    deps = visible_dependencies(corral, caller, body.depends_on, ["body", "depends_on"])
    options = body.model_dump(exclude={"job", "params", "depends_on"})
    try:
        s = corral.submit(
            body.job, body.params, client_id=caller.client, depends_on=deps, **options
        )
    except CustomIdConflict as exc:
        assert body.custom_id is not None
        existing = corral.storage.process_list(
            ProcessFilter(custom_id=body.custom_id, client_id=caller.client, limit=1)
        )
        shown = _shown(corral, existing[0]) if existing else None
        return JSONResponse({"detail": str(exc), "process": shown}, status_code=409)
    code = 201 if s.outcome == "created" else 200
    return JSONResponse(_shown(corral, s.process, outcome=s.outcome), status_code=code)


@router.post(
    "/processes:batch",
    status_code=201,
    responses={
        201: answer(BatchView, "The batch was written."),
        200: answer(BatchView, "A batch with this custom id existed: nothing new was written."),
        409: answer(Detail, "A node's custom id names a process of another job or params."),
    },
)
def submit_batch(body: BatchBody, caller: CallerDep, corral: CorralDep) -> JSONResponse:
    """Submit a graph in one transaction: every process, or none."""
    errors = [
        e
        for n, node in enumerate(body.processes)
        for e in param_errors(corral, node.job, node.params, ["body", "processes", n, "params"])
    ]
    if errors:
        raise FieldErrors(errors)
    keys: dict[str, str] = {}
    with corral.batch(custom_id=body.custom_id, client_id=caller.client) as batch:
        for n, node in enumerate(body.processes):
            # An earlier node by its key, else a process the caller may see by its id.
            deps = [
                keys[d]
                if d in keys
                else visible_dependency(
                    corral, caller, d, ["body", "processes", n, "depends_on", i]
                )
                for i, d in enumerate(node.depends_on)
            ]
            options = node.model_dump(exclude={"key", "job", "params", "depends_on"})
            added = batch.submit(node.job, node.params, depends_on=deps, **options)
            if node.key is not None:
                if node.key in keys:
                    raise field_error(["body", "processes", n, "key"], "a key names one node")
                keys[node.key] = added.id
    names = {pid: key for key, pid in keys.items()}
    shown = [
        _shown(corral, s.process, outcome=s.outcome, key=names.get(s.id)) for s in batch.submitted
    ]
    code = 201 if batch.outcome == "created" else 200
    body_out = {"id": batch.id, "outcome": batch.outcome, "processes": shown}
    return JSONResponse(body_out, status_code=code)


@router.get("/processes/{process_id}", responses={200: PROCESS, **NOT_FOUND})
def get_process(process_id: ProcessId, caller: CallerDep, corral: CorralDep) -> JSONResponse:
    """One process."""
    return JSONResponse(_shown(corral, caller.process(corral, str(process_id))))


@router.get("/processes", responses={200: answer(ProcessPage, "A page of processes.")})
def list_processes(
    caller: CallerDep,
    corral: CorralDep,
    status: Status | None = None,
    job: str | None = None,
    queue: str | None = None,
    tag: Annotated[
        list[str] | None, Query(description="key=value (repeatable: all must match).")
    ] = None,
    custom_id: str | None = None,
    reason: Annotated[
        str | None, Query(description="The error's reason: invalid, timeout, error...")
    ] = None,
    created_from: Annotated[str | None, DATE_TIME] = None,
    created_until: Annotated[str | None, DATE_TIME] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: str | None = None,
) -> JSONResponse:
    """Processes, newest first, filtered; `next_cursor` (null on the last page) gives the
    next page."""
    where = ProcessFilter(
        status=status,
        job=job,
        queue=queue,
        tags=_tags(tag),
        custom_id=custom_id,
        reason=reason,
        client_id=caller.scope,
        created_from=_epoch(created_from, "created_from"),
        created_until=_epoch(created_until, "created_until"),
        limit=limit + 1,
        page_after=None if cursor is None else pages.process_cursor(cursor),
    )
    found = corral.storage.process_list(where)
    page = found[:limit]
    more = len(found) > limit
    next_cursor = pages.encode([page[-1].created_at, page[-1].id]) if more else None
    now = corral.clock()
    return JSONResponse(
        {"processes": [process_json(p, now=now) for p in page], "next_cursor": next_cursor}
    )


@router.post(
    "/processes/{process_id}/cancel",
    responses={
        200: answer(CancelView, "Canceled, or a cancel requested."),
        409: answer(Detail, "It has ended already."),
        **NOT_FOUND,
    },
)
def cancel(process_id: ProcessId, caller: CallerDep, corral: CorralDep) -> JSONResponse:
    """Cancel: at once if it never started, else after its rollback (`cancel requested`)."""
    p = corral.cancel(caller.process(corral, str(process_id)).id)
    what = "canceled" if p.status is Status.CANCELED else "cancel requested"
    return JSONResponse(_shown(corral, p, outcome=what))


@router.post(
    "/processes/{process_id}/retry",
    responses={200: PROCESS, 409: answer(Detail, "Neither failed nor canceled."), **NOT_FOUND},
)
def retry(process_id: ProcessId, caller: CallerDep, corral: CorralDep) -> JSONResponse:
    """Resume a failed or canceled process where it stopped, with its store."""
    p = corral.retry(caller.process(corral, str(process_id)).id)
    return JSONResponse(_shown(corral, p))


@router.get(
    "/processes/{process_id}/history",
    responses={200: answer(HistoryPage, "A page of its history."), **NOT_FOUND},
)
def history(
    process_id: ProcessId,
    caller: CallerDep,
    corral: CorralDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: str | None = None,
) -> JSONResponse:
    """The process's history, oldest first; `next_cursor` gives the next page."""
    p = caller.process(corral, str(process_id))
    start = pages.offset_cursor(cursor)
    # One more than the page: whether another page follows, without counting them all.
    events = corral.storage.history_list(p.id, start, limit + 1)
    page = events[:limit]
    return JSONResponse(
        {
            "id": p.id,
            "events": [event_json(e) for e in page],
            "next_cursor": pages.encode(start + limit) if len(events) > limit else None,
        }
    )


@router.get(
    "/processes/{process_id}/graph",
    responses={200: answer(GraphView, "Its place in its graph."), **NOT_FOUND},
)
def graph(process_id: ProcessId, caller: CallerDep, corral: CorralDep) -> JSONResponse:
    """The process's place in its task graph: it, its dependencies and its dependents
    (nodes), and the edges `[dependent, dependency]` between them."""
    p = caller.process(corral, str(process_id))
    deps = corral.storage.dependencies_of([p.id]).get(p.id, [])
    _, dependent_ids = corral.storage.process_edges(p.id)
    dependents = [d for d in map(corral.storage.process_get, dependent_ids) if d is not None]
    nodes = [_node(p)]
    edges: list[list[str]] = []
    for d in deps:
        found = corral.storage.process_get(d.id)
        if found is not None and caller.sees(found):
            nodes.append(_node(found))
            edges.append([p.id, found.id])
    for dependent in dependents:
        if caller.sees(dependent):
            nodes.append(
                {"id": dependent.id, "job": dependent.job, "status": dependent.status.value}
            )
            edges.append([dependent.id, p.id])
    seen = {n["id"] for n in nodes}
    shown = edges_json([d for d in deps if d.id in seen], [i for i in dependent_ids if i in seen])
    return JSONResponse({"id": p.id, "nodes": nodes, "edges": edges, **shown})


@router.get(
    "/processes/{process_id}/explain",
    responses={200: answer(ExplainView, "Why it is not running now."), **NOT_FOUND},
)
def explain(process_id: ProcessId, caller: CallerDep, corral: CorralDep) -> JSONResponse:
    """Every reason the process is not running now, as `corral why --json` gives them."""
    p = caller.process(corral, str(process_id))
    reasons = corral.explain(p.id)
    return JSONResponse(
        {"id": p.id, "reasons": [{"code": r.code, "message": r.message} for r in reasons]}
    )


def _node(p: Process) -> dict[str, str]:
    return {"id": p.id, "job": p.job, "status": p.status.value}


def _tags(pairs: list[str] | None) -> dict[str, str] | None:
    tags: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise field_error(["query", "tag"], f"tag {pair!r}: write key=value")
        tags[key] = value
    return tags or None


def _epoch(when: str | None, name: str) -> float | None:
    if when is None:
        return None
    if _RFC3339.fullmatch(when):
        with contextlib.suppress(ValueError):  # a 30th of February
            return datetime.fromisoformat(when.upper()).timestamp()
    raise field_error(
        ["query", name], "write a time as 2026-01-31T09:00:00Z or 2026-01-31T09:00:00+02:00"
    )
