"""The bodies the API takes, by the names `app.submit` and `app.batch` use (the client id is
not among them: it is the token's). Unknown fields are refused (422), so that a misspelt
option is said rather than ignored."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from corral.model import Status

Seconds = float | None


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SubmitBody(_Body):
    """POST /processes: a process of `job` with `params`, and the optional arguments of
    `app.submit`."""

    job: str = Field(description="The job's name.")
    params: dict[str, Any] = Field(default_factory=dict, description="The job's parameters.")
    custom_id: str | None = Field(
        None, description="Idempotency key: the same key, job and params give the same process."
    )
    depends_on: list[str] = Field(
        default_factory=list, description="Ids of processes that must end first."
    )
    on_dependency_failure: str | None = Field(None, description="'cancel' (default) or 'run'.")
    priority: int | None = Field(None, description="Higher runs first (default: the job's).")
    run_at: datetime | float | None = Field(
        None, description="Not before: ISO 8601 with a zone, or epoch seconds."
    )
    queue: str | None = Field(None, description="The queue (default: the job's).")
    tags: dict[str, str] | None = None
    process_timeout: Seconds = None
    schedule_to_close: Seconds = None
    start_to_close: Seconds = None
    heartbeat_timeout: Seconds = None


class BatchNode(_Body):
    """A process of a batch. `key` names it within the batch, so that a later node's
    `depends_on` can name it (by its key) as well as processes that exist (by their id)."""

    key: str | None = Field(None, description="A name for this node, unique in the batch.")
    job: str
    params: dict[str, Any] = Field(default_factory=dict)
    depends_on: list[str] = Field(
        default_factory=list, description="Keys of earlier nodes, or ids of existing processes."
    )
    on_dependency_failure: str | None = None
    custom_id: str | None = None
    priority: int | None = None
    run_at: datetime | float | None = None
    queue: str | None = None
    tags: dict[str, str] | None = None


class BatchBody(_Body):
    """POST /processes:batch: a graph written in one transaction, all or nothing."""

    custom_id: str | None = Field(
        None, description="Idempotency key of the batch: sent again, nothing new is written."
    )
    processes: list[BatchNode] = Field(min_length=1, max_length=10_000)


class BulkBody(_Body):
    """POST /processes:cancel and /processes:retry: the list's filters (every process
    they match, not one page), and whether to only count (`dry_run`)."""

    status: Status | None = None
    job: str | None = None
    queue: str | None = None
    tags: dict[str, str] | None = Field(None, description="Every key must have this value.")
    custom_id: str | None = None
    reason: str | None = Field(None, description="The error's reason: invalid, timeout, error...")
    created_from: AwareDatetime | None = Field(None, description="Created at or after.")
    created_until: AwareDatetime | None = Field(None, description="Created before.")
    dry_run: bool = Field(False, description="Count and show a sample; change nothing.")
    sample: int = Field(10, ge=0, le=100, description="How many to show in a dry run.")
