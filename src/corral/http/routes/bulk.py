"""Bulk actions on a filter: cancel or retry every process the list's filters match (not
one page), in chunks (corral.bulk). A dry run counts them and shows a sample; the real
call records the token's client in each changed process's history (`by`)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from corral import bulk
from corral.app import App
from corral.http.answers import BulkView, answer
from corral.http.auth import Caller, CallerDep, CorralDep
from corral.http.schemas import BulkBody
from corral.storage.base import ProcessFilter
from corral.views import process_json

router = APIRouter(tags=["bulk"])

BULK: dict[int | str, dict[str, Any]] = {
    200: answer(BulkView, "How many it would change (dry run) or changed.")
}


@router.post("/processes:cancel", responses=BULK)
def cancel_matching(body: BulkBody, caller: CallerDep, corral: CorralDep) -> JSONResponse:
    """Cancel every unfinished process the filters match: at once if it never started,
    else after its rollback."""
    return _run(body, caller, corral, bulk.CANCEL)


@router.post("/processes:retry", responses=BULK)
def retry_matching(body: BulkBody, caller: CallerDep, corral: CorralDep) -> JSONResponse:
    """Retry every failed or canceled process the filters match, where it stopped."""
    return _run(body, caller, corral, bulk.RETRY)


def _run(body: BulkBody, caller: Caller, corral: App, action: bulk.Action) -> JSONResponse:
    where = ProcessFilter(
        status=body.status,
        job=body.job,
        queue=body.queue,
        tags=body.tags or None,
        custom_id=body.custom_id,
        reason=body.reason,
        client_id=caller.scope,
        created_from=None if body.created_from is None else body.created_from.timestamp(),
        created_until=None if body.created_until is None else body.created_until.timestamp(),
    )
    if body.dry_run:
        count, sample = bulk.preview(corral.storage, where, action, body.sample)
        now = corral.clock()
        shown = [process_json(p, now=now) for p in sample]
        answer_ = {"action": action.name, "dry_run": True, "count": count, "sample": shown}
        return JSONResponse(answer_)
    changed = bulk.apply(corral.storage, where, action, by=caller.client, clock=corral.clock)
    return JSONResponse(
        {"action": action.name, "dry_run": False, "count": len(changed), "sample": None}
    )
