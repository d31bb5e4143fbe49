"""The worker protocol's routes (corral.http.protocol): claim, heartbeat, complete, with a
worker token (`corral token create --worker`); any other token answers 403. A stale lease
token answers 409 with the reason, and changes nothing."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from corral.http import protocol
from corral.http.answers import Detail, answer
from corral.http.auth import CallerDep, CorralDep
from corral.storage.base import TokenInfo
from corral.views import process_json

router = APIRouter(prefix="/worker", tags=["worker protocol"])

Name = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f]+$")]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ClaimBody(_Body):
    """Lease up to `max` processes of `jobs` (all external jobs if left out)."""

    worker: Name = Field(description="Who holds the leases (unique per worker process).")
    jobs: list[Name] | None = Field(None, description="External jobs this worker runs.")
    max: int = Field(1, ge=1, le=100, description="At most this many leases.")
    wait: float = Field(0, ge=0, le=protocol.MAX_WAIT, description="Long poll, seconds.")
    claim_id: Name | None = Field(
        None, description="Chosen by the worker: the same id sent again gets the same answer."
    )


class ProgressBody(_Body):
    done: float | None = None
    total: float | None = None


class BeatBody(_Body):
    process_id: uuid.UUID
    token: int
    progress: ProgressBody | None = None


class HeartbeatBody(_Body):
    worker: Name
    leases: list[BeatBody] = Field(max_length=1000)


class ErrorBody(_Body):
    type: str = "Error"
    message: str = ""
    traceback: str = ""
    retryable: bool = True


class OutcomeBody(_Body):
    """An iteration's outcome, as the settle rule takes it."""

    kind: Literal["returned", "raised", "retry_later", "invalid", "cancelled"]
    result: Any = None
    store: dict[str, Any] | None = Field(None, description="Left out: the store is kept.")
    progress: ProgressBody | None = None
    done: bool = Field(True, description="A step or rollback with nothing left to do.")
    error: ErrorBody | None = Field(None, description="raised: the error; invalid: message.")
    delay: float | None = Field(None, description="retry_later: seconds.")
    reason: str | None = None
    message: str | None = Field(None, description="invalid: why.")


class CompleteBody(_Body):
    process_id: uuid.UUID
    attempt: int
    token: int
    outcome: OutcomeBody
    next: ClaimBody | None = Field(None, description="Claim again in the same round trip.")


# --- answers ----------------------------------------------------------------------------------


class _Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LeaseView(_Answer):
    process_id: str
    job: str
    status: str
    attempt: int
    token: int
    params: dict[str, Any]
    store: dict[str, Any]
    progress: ProgressBody


class ClaimView(_Answer):
    leases: list[LeaseView]


class BeatView(_Answer):
    process_id: str
    action: Literal["extend", "cancel"]
    reason: str | None = None


class HeartbeatView(_Answer):
    leases: list[BeatView]
    worker: Literal["continue", "quiet", "stop"]


class CompleteView(_Answer):
    process_id: str
    status: str
    leases: list[LeaseView] | None = None


class RefusedView(_Answer):
    detail: str
    reason: Literal["lease_expired", "superseded", "canceled", "not_found"]
    attempt: int | None = None


FORBIDDEN: dict[int | str, dict[str, Any]] = {403: answer(Detail, "Not a worker token.")}


def worker_token(caller: CallerDep) -> TokenInfo:
    if not caller.token.worker:
        raise HTTPException(403, "the worker protocol needs a worker token (--worker)")
    return caller.token


WorkerDep = Annotated[TokenInfo, Depends(worker_token)]


def _claim(corral: Any, token: TokenInfo, body: ClaimBody, host: str) -> dict[str, Any]:
    answer = protocol.claim(
        corral,
        token,
        worker=body.worker,
        jobs=body.jobs,
        limit=body.max,
        wait=body.wait,
        claim_id=body.claim_id,
    )
    took = [lease["process_id"] for lease in answer["leases"]]
    protocol.note_worker(
        corral, token, body.worker, host, took=took, jobs=body.jobs, limit=body.max
    )
    return answer


def _host(request: Request) -> str:
    return request.client.host if request.client is not None else "unknown"


@router.post("/claim", responses={**FORBIDDEN, 200: answer(ClaimView, "The leases.")})
def claim(body: ClaimBody, token: WorkerDep, corral: CorralDep, request: Request) -> JSONResponse:
    """Lease runnable processes of external jobs, waiting up to `wait` seconds for one.
    The worker appears in the worker registry (`corral workers`) while it calls."""
    return JSONResponse(_claim(corral, token, body, _host(request)))


@router.post("/heartbeat", responses={**FORBIDDEN, 200: answer(HeartbeatView, "Per lease.")})
def heartbeat(
    body: HeartbeatBody, token: WorkerDep, corral: CorralDep, request: Request
) -> JSONResponse:
    """Extend every lease the worker holds, saving each one's progress."""
    beats = [
        protocol.Beat(
            str(b.process_id),
            b.token,
            None if b.progress is None or b.progress.done is None
            else (b.progress.done, b.progress.total),
        )
        for b in body.leases
    ]  # fmt: skip
    answer = protocol.heartbeat(corral, token, body.worker, beats)
    # Asked to cancel, a worker still holds the lease until it completes `cancelled`.
    held = [
        a["process_id"]
        for a in answer["leases"]
        if a["action"] == "extend" or a.get("reason") == "cancel_requested"
    ]
    protocol.note_worker(corral, token, body.worker, _host(request), running=held)
    return JSONResponse(answer)


@router.post(
    "/complete",
    responses={
        **FORBIDDEN,
        200: answer(CompleteView, "Committed."),
        409: answer(RefusedView, "The token no longer holds the lease: nothing was written."),
    },
)
def complete(
    body: CompleteBody, token: WorkerDep, corral: CorralDep, request: Request
) -> JSONResponse:
    """Commit an iteration's outcome, fenced by its lease token; `next` claims again."""
    outcome = body.outcome.model_dump(exclude_unset=True)
    if body.outcome.progress is not None:
        outcome["progress"] = body.outcome.progress.model_dump()
    try:
        done = protocol.complete(
            corral, token, str(body.process_id), body.attempt, body.token, outcome
        )
    except protocol.Refused as refused:
        shown: dict[str, Any] = {"detail": refused.detail(), "reason": refused.reason}
        if refused.attempt is not None:
            shown["attempt"] = refused.attempt
        return JSONResponse(shown, status_code=409)
    view: dict[str, Any] = {"process_id": done.id, "status": process_json(done)["status"]}
    if body.next is not None:
        view["leases"] = _claim(corral, token, body.next, _host(request))["leases"]
    return JSONResponse(view)
