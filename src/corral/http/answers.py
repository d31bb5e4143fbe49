"""The shapes of the API's answers, for its OpenAPI document. The objects themselves are
made by corral.views (the same as `corral show --json`); these models only describe them,
and tests/http/test_answers.py checks that they name the same keys. Unknown keys are
refused, so that a check against the document notices an answer that grew one."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from corral.model import Status

Time = str | None


class _Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProgressView(_Answer):
    done: float | None
    total: float | None


class ErrorView(_Answer):
    type: str
    message: str
    traceback: str
    reason: str = Field(description="error, invalid, timeout...")


class ProcessView(_Answer):
    """A process, as `corral show --json` gives it (without history)."""

    id: str
    job: str
    params: dict[str, Any]
    status: Status
    state: str = Field(description="What a person reads: queued, scheduled, retrying, or status.")
    state_until: Time
    store: dict[str, Any]
    result: Any
    error: ErrorView | None
    progress: ProgressView
    attempt: int
    priority: int
    queue: str
    run_at: Time
    lease_owner: str | None
    lease_expires_at: Time
    cancel_requested: bool
    custom_id: str | None
    client_id: str
    tags: dict[str, str]
    created_at: Time
    updated_at: Time
    finished_at: Time


class SubmittedView(ProcessView):
    outcome: Literal["created", "existing"]


class CancelView(ProcessView):
    outcome: Literal["canceled", "cancel requested"]


class ConflictView(_Answer):
    detail: str
    process: ProcessView | None


class BatchProcessView(SubmittedView):
    key: str | None


class BatchView(_Answer):
    id: str
    outcome: Literal["created", "existing"]
    processes: list[BatchProcessView]


class ProcessPage(_Answer):
    processes: list[ProcessView]
    next_cursor: str | None


class EventView(_Answer):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    at: Time
    kind: str
    from_: str | None = Field(alias="from")
    to: str | None
    attempt: int
    detail: dict[str, Any]


class HistoryPage(_Answer):
    id: str
    events: list[EventView]
    next_cursor: str | None


class NodeView(_Answer):
    id: str
    job: str
    status: Status


class DependencyView(_Answer):
    id: str
    status: Status


class GraphView(_Answer):
    id: str
    nodes: list[NodeView]
    edges: list[list[str]] = Field(description="[dependent, dependency] pairs.")
    dependencies: list[DependencyView]
    dependents: list[str]


class ReasonView(_Answer):
    code: str
    message: str


class ExplainView(_Answer):
    id: str
    reasons: list[ReasonView]


class MinuteView(_Answer):
    minute: Time
    completed: int


class StatsView(_Answer):
    total: int
    by_status: dict[str, int]
    by_job: dict[str, dict[str, int]]
    by_queue: dict[str, dict[str, int]]
    completions_per_minute: list[MinuteView]


class BulkView(_Answer):
    """A bulk action's answer: a dry run counts and shows a sample, a real one says how
    many processes it changed."""

    action: Literal["cancel", "retry"]
    dry_run: bool
    count: int
    sample: list[ProcessView] | None


class Detail(_Answer):
    detail: str


class FieldError(BaseModel):
    """One error of bad input (FastAPI's own carry more keys: `input`, `ctx`)."""

    loc: list[str | int]
    msg: str
    type: str


class FieldErrors(_Answer):
    detail: list[FieldError]


def answer(model: type[BaseModel], description: str) -> dict[str, Any]:
    """An entry of a route's `responses`."""
    return {"model": model, "description": description}
