"""`GET /stats`: the caller's processes (every client's for an admin) counted by status, job
and queue, and their completions per minute over the last hour."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from corral.http.answers import StatsView, answer
from corral.http.auth import CallerDep, CorralDep
from corral.storage.base import ProcessStats
from corral.views import iso

router = APIRouter(tags=["stats"])

#: The window of `completions_per_minute`, in minutes.
WINDOW = 60


@router.get("/stats", responses={200: answer(StatsView, "The counts.")})
def stats(caller: CallerDep, corral: CorralDep) -> JSONResponse:
    """Counts by status, by job and by queue (each by status), and one entry per minute of
    the last hour (the oldest first, the current minute last) with its completions."""
    now = corral.clock()
    current = now // 60 * 60
    since = current - (WINDOW - 1) * 60
    return JSONResponse(stats_json(corral.storage.process_stats(since, caller.scope), since))


def stats_json(found: ProcessStats, since: float) -> dict[str, Any]:
    by_status: dict[str, int] = {}
    by_job: dict[str, dict[str, int]] = {}
    by_queue: dict[str, dict[str, int]] = {}
    for queue, job, status, n in found.counts:
        by_status[status.value] = by_status.get(status.value, 0) + n
        per_job = by_job.setdefault(job, {})
        per_job[status.value] = per_job.get(status.value, 0) + n
        per_queue = by_queue.setdefault(queue, {})
        per_queue[status.value] = per_queue.get(status.value, 0) + n
    done = dict(found.completions)
    minutes = [since + 60 * i for i in range(WINDOW)]
    return {
        "total": sum(by_status.values()),
        "by_status": by_status,
        "by_job": by_job,
        "by_queue": by_queue,
        "completions_per_minute": [
            {"minute": iso(m), "completed": done.get(m, 0)} for m in minutes
        ],
    }
