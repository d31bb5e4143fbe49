"""The App: a registry of jobs bound to one database, and the public API."""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import inspect
import math
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal, TypeVar, overload

import pydantic
import pydantic_core

from corral import ids, model
from corral.batches import Batch, Graph, counts_of, dependency_ids
from corral.errors import (
    ConfigurationError,
    InvalidId,
    InvalidParams,
    NotStorable,
    ProcessNotFound,
    UnknownJob,
    UsageError,
)
from corral.explain import Reason, explain
from corral.graph import parse_on_dependency_failure
from corral.jobs import (
    Handler,
    Job,
    Registry,
    Retry,
    Timeouts,
    check_concurrency,
    external_job,
    function_job,
    handler_name,
    process_job,
)
from corral.model import Event, Process, Status
from corral.rates import parse_rate
from corral.scheduler import ScheduleInfo, describe
from corral.schedules import CronOptions
from corral.storage import codec, default_url, open_storage
from corral.storage.base import NewProcess, ProcessFilter, Storage, SubmitShared, WorkerInfo

F = TypeVar("F", bound=Callable[..., Any])
C = TypeVar("C", bound=type)

#: The largest parameters document accepted: bytes of its stored JSON (canonical, UTF-8).
MAX_PARAMS_BYTES = 1024 * 1024
#: The longest concurrency key accepted, in bytes of UTF-8: an index holds it (PostgreSQL's
#: refuses entries past about 2,700 bytes).
MAX_KEY_BYTES = 1024
#: Priorities fit a 32-bit integer column on every backend.
PRIORITY_RANGE = (-(2**31), 2**31 - 1)


@dataclass(frozen=True, slots=True)
class SubmitOptions:
    """What `submit` takes besides the job, its parameters and its custom id."""

    client_id: str | None = None
    priority: int | None = None
    run_at: float | datetime | None = None
    queue: str | None = None
    tags: Mapping[str, str] | None = None
    timeouts: Mapping[str, float | None] = field(default_factory=dict)

    def check(self) -> None:
        """Raise UsageError naming the first option that is wrong."""
        check_priority(self.priority)
        if self.queue is not None:
            check_queue(self.queue, allow_all=False)
        _check_tags(self.tags)
        if self.client_id is not None:
            if not isinstance(self.client_id, str):
                raise UsageError(f"client_id must be a string, not {self.client_id!r}")
            check_text("client_id", self.client_id)


@dataclass(frozen=True, slots=True)
class Submitted:
    """What `submit` returns: the process, and whether this call created it."""

    process: Process
    outcome: Literal["created", "existing"]

    @property
    def id(self) -> str:
        return self.process.id

    @property
    def job(self) -> str:
        return self.process.job

    @property
    def status(self) -> Status:
        return self.process.status


@dataclass(frozen=True, slots=True)
class QueueInfo:
    """A queue as `corral queues` shows it."""

    name: str
    counts: Mapping[Status, int]
    paused: bool


class App:
    """Jobs and the database their processes live in.

    >>> app = App("memory://")
    >>> @app.job()
    ... def add(ctx, a: int, b: int) -> int:
    ...     return a + b
    >>> app.submit("add", {"a": 1, "b": 2}).status.value
    'starting'
    """

    def __init__(
        self,
        database_url: str | None = None,
        *,
        client_id: str = "",
        lease_seconds: float = 30.0,
        max_params_bytes: int = MAX_PARAMS_BYTES,
    ) -> None:
        if not _positive_number(lease_seconds):
            raise ConfigurationError(f"lease_seconds must be a number > 0, not {lease_seconds!r}")
        self.database_url = database_url
        self.client_id = client_id
        self.lease_seconds = lease_seconds
        self.max_params_bytes = max_params_bytes
        self.registry = Registry()
        self._storage: Storage | None = None
        self._opening = threading.Lock()
        #: Now, in seconds since the epoch, by the database's clock (see `Storage.now`).
        #: Tests replace it to drive time.
        self.clock: Callable[[], float] = self._database_now

    def _database_now(self) -> float:
        return self.storage.now()

    # --- the database --------------------------------------------------------------------
    @property
    def storage(self) -> Storage:
        if self._storage is None:
            with self._opening:  # threads of one app share one database object
                if self._storage is None:
                    self._storage = open_storage(self.database_url or default_url())
        return self._storage

    def use_database(self, url: str) -> None:
        """Point this app at another database (the CLI's --database); before first use."""
        if self._storage is not None:
            self._storage.close()
            self._storage = None
        self.database_url = url

    def close(self) -> None:
        if self._storage is not None:
            self._storage.close()
            self._storage = None

    # --- declaring jobs ------------------------------------------------------------------
    @overload
    def job(self, fn: F, /) -> F: ...
    @overload
    def job(
        self,
        name: str | None = None,
        *,
        params: type[pydantic.BaseModel] | None = None,
        retry: Retry | None = None,
        priority: int = 0,
        queue: str = "default",
        process_timeout: float | None = None,
        schedule_to_close: float | None = None,
        start_to_close: float | None = None,
        heartbeat_timeout: float | None = None,
        on_dependency_failure: str = "cancel",
        cron: str | None = None,
        timezone: str | None = None,
        missed: str | None = None,
        catch_up_limit: int | None = None,
        overlap: str | None = None,
        concurrency: int | None = None,
        concurrency_key: str | Callable[[Any], str] | None = None,
        keep_for: float | None = None,
        rate: str | None = None,
        rate_key: str | None = None,
    ) -> Callable[[F], F]: ...

    def job(
        self,
        name: Any = None,
        *,
        params: type[pydantic.BaseModel] | None = None,
        retry: Retry | None = None,
        priority: int = 0,
        queue: str = "default",
        process_timeout: float | None = None,
        schedule_to_close: float | None = None,
        start_to_close: float | None = None,
        heartbeat_timeout: float | None = None,
        on_dependency_failure: str = "cancel",
        cron: str | None = None,
        timezone: str | None = None,
        missed: str | None = None,
        catch_up_limit: int | None = None,
        overlap: str | None = None,
        concurrency: int | None = None,
        concurrency_key: str | Callable[[Any], str] | None = None,
        keep_for: float | None = None,
        rate: str | None = None,
        rate_key: str | None = None,
    ) -> Any:
        """Register a function as a simple job: one iteration completes the process and its
        return value is the result. Parameters come from the signature (after `ctx`).
        Timeouts (docs/timeouts.md) are in seconds; `submit` may override them.
        `on_dependency_failure` (docs/graphs.md): "cancel" a process whose dependency failed
        or was canceled, or "run" it once every dependency has ended.

        `cron` (with `timezone`, `missed`, `catch_up_limit`, `overlap`): a schedule, on which
        the workers submit a process of the job, with its default parameters, once per
        occurrence (docs/graphs.md, "Schedules").

        `concurrency=N`: at most N processes of the job run at once across every worker, or
        N per value of `concurrency_key` (docs/flow-control.md).

        `keep_for`: seconds a completed process is kept after it finished, then the workers
        delete it (0: at their next sweep); None keeps it until `corral prune`. Failed and
        canceled processes are kept until `corral prune` (docs/timeouts.md, "Retention").

        `rate="10/s"` (or `/m`, `/h`): at most that many iterations of the job start per
        period across every worker, or per value of the parameter `rate_key`; one held back
        waits for the next token (docs/flow-control.md)."""
        timeouts = Timeouts(process_timeout, schedule_to_close, start_to_close, heartbeat_timeout)
        _check_job_options(priority, queue)
        policy = parse_on_dependency_failure(on_dependency_failure, error=ConfigurationError)
        schedule = CronOptions(cron, timezone, missed, catch_up_limit, overlap)

        def register(fn: F) -> F:
            job_name = name if isinstance(name, str) else fn.__name__
            job = function_job(
                job_name, fn, params=params, retry=retry, priority=priority, queue=queue,
                timeouts=timeouts,
            )  # fmt: skip
            self.registry.add_job(
                _rated(
                    _limited(self._scheduled(job, schedule), concurrency, concurrency_key),
                    rate,
                    rate_key,
                ),
                on_dependency_failure=policy.value,
                keep_for=keep_for,
            )
            return fn

        if callable(name):
            fn, name = name, None
            return register(fn)
        return register

    @overload
    def process(self, cls: C, /) -> C: ...
    @overload
    def process(
        self,
        name: str | None = None,
        *,
        params: type[pydantic.BaseModel] | None = None,
        retry: Retry | None = None,
        priority: int = 0,
        queue: str = "default",
        process_timeout: float | None = None,
        schedule_to_close: float | None = None,
        start_to_close: float | None = None,
        heartbeat_timeout: float | None = None,
        on_dependency_failure: str = "cancel",
        cron: str | None = None,
        timezone: str | None = None,
        missed: str | None = None,
        catch_up_limit: int | None = None,
        overlap: str | None = None,
        concurrency: int | None = None,
        concurrency_key: str | Callable[[Any], str] | None = None,
        keep_for: float | None = None,
        rate: str | None = None,
        rate_key: str | None = None,
    ) -> Callable[[C], C]: ...

    def process(
        self,
        name: Any = None,
        *,
        params: type[pydantic.BaseModel] | None = None,
        retry: Retry | None = None,
        priority: int = 0,
        queue: str = "default",
        process_timeout: float | None = None,
        schedule_to_close: float | None = None,
        start_to_close: float | None = None,
        heartbeat_timeout: float | None = None,
        on_dependency_failure: str = "cancel",
        cron: str | None = None,
        timezone: str | None = None,
        missed: str | None = None,
        catch_up_limit: int | None = None,
        overlap: str | None = None,
        concurrency: int | None = None,
        concurrency_key: str | Callable[[Any], str] | None = None,
        keep_for: float | None = None,
        rate: str | None = None,
        rate_key: str | None = None,
    ) -> Any:
        """Register a class as a multi-step process: its `start`, `step`, `finish` and
        `rollback` methods handle the phases (docs/state-machine.md); `validate` runs
        before `start`.
        Each iteration gets a fresh instance of the class: keep what must last in
        `ctx.store`, not in attributes. `on_dependency_failure`, `cron` and its options,
        `keep_for`, `rate`, `rate_key`: as for `job`. `concurrency` and `concurrency_key` as
        for `job`: a slot is held while an iteration runs, not between iterations."""
        timeouts = Timeouts(process_timeout, schedule_to_close, start_to_close, heartbeat_timeout)
        _check_job_options(priority, queue)
        policy = parse_on_dependency_failure(on_dependency_failure, error=ConfigurationError)
        schedule = CronOptions(cron, timezone, missed, catch_up_limit, overlap)

        def register(cls: C) -> C:
            job = process_job(
                name if isinstance(name, str) else getattr(cls, "__name__", str(cls)),
                cls, params=params, retry=retry, priority=priority, queue=queue,
                timeouts=timeouts,
            )  # fmt: skip
            self.registry.add_job(
                _rated(
                    _limited(self._scheduled(job, schedule), concurrency, concurrency_key),
                    rate,
                    rate_key,
                ),
                on_dependency_failure=policy.value,
                keep_for=keep_for,
            )
            return cls

        if name is not None and not isinstance(name, str):  # @app.process, no parentheses
            cls, name = name, None
            return register(cls)
        return register

    def external(
        self,
        name: str,
        *,
        params: type[pydantic.BaseModel] | None = None,
        retry: Retry | None = None,
        priority: int = 0,
        queue: str = "default",
        process_timeout: float | None = None,
        schedule_to_close: float | None = None,
        start_to_close: float | None = None,
        heartbeat_timeout: float | None = None,
        on_dependency_failure: str = "cancel",
        keep_for: float | None = None,
    ) -> None:
        """Declare a job whose handler runs outside Python: a worker in any language claims
        its processes over HTTP (`corral serve`, docs/http-api.md, "Worker protocol") and
        reports each iteration's outcome, which this job's policies settle exactly as for
        a Python job. In-process workers never claim it. Without `params`, any parameters
        are accepted.

            app.external("resize", params=ResizeParams, retry=Retry(attempts=5),
                         start_to_close=60)
        """
        if not isinstance(name, str) or not name:
            raise ConfigurationError(f"an external job needs a name, not {name!r}")
        timeouts = Timeouts(process_timeout, schedule_to_close, start_to_close, heartbeat_timeout)
        _check_job_options(priority, queue)
        policy = parse_on_dependency_failure(on_dependency_failure, error=ConfigurationError)
        job = external_job(
            name, params=params, retry=retry, priority=priority, queue=queue, timeouts=timeouts
        )
        self.registry.add_job(job, on_dependency_failure=policy.value, keep_for=keep_for)

    def _scheduled(self, job: Job, options: CronOptions) -> Job:
        """`job` with its schedule, if it has one. A schedule submits the job's default
        parameters: a job that needs others cannot have one."""
        job.schedule = options.schedule(job.name)
        if job.schedule is not None:
            try:
                self._params(job, {})
            except InvalidParams as exc:
                problem = str(exc).removeprefix(f"job {job.name!r}: ")
                raise ConfigurationError(
                    f"job {job.name!r}: a cron schedule submits it with its default "
                    f"parameters, and they do not do ({problem}): give every parameter a "
                    "default"
                ) from None
        return job

    def handler(
        self, *, status: str | Status, order: int | None = None, priority: int | None = None
    ) -> Callable[[F], F]:
        """Register a generic handler for a status, used by every job without its own.

        `order` (default 100) ranks generic handlers of one status: the lowest order runs,
        as in a list read from the top; the job's own handler always comes first. It is not
        a process's `priority` (higher runs first): `priority=` is the old name of `order`,
        still accepted, with the same meaning."""
        try:
            st = Status(status)
        except ValueError:
            raise ConfigurationError(f"unknown status {status!r}") from None
        if order is not None and priority is not None and order != priority:
            raise ConfigurationError("give a generic handler's order once (order=, not priority=)")
        rank = order if order is not None else priority if priority is not None else 100
        if not isinstance(rank, int) or isinstance(rank, bool):
            raise ConfigurationError(f"a generic handler's order is an integer, not {rank!r}")

        def register(fn: F) -> F:
            is_async = inspect.iscoroutinefunction(fn)
            self.registry.add_generic(Handler(st, fn, handler_name(fn), is_async, True, rank))
            return fn

        return register

    def get_job(self, name: str) -> Job:
        if not isinstance(name, str):
            raise UnknownJob(f"a job name is a string, not {type(name).__name__}")
        job = self.registry.jobs.get(name)
        if job is None:
            known = ", ".join(sorted(self.registry.jobs)) or "none"
            raise UnknownJob(f"unknown job {name!r} (known jobs: {known})")
        return job

    # --- submitting ----------------------------------------------------------------------
    def submit(
        self,
        job: str,
        params: Mapping[str, Any] | pydantic.BaseModel | None = None,
        *,
        custom_id: str | None = None,
        client_id: str | None = None,
        depends_on: Sequence[str] = (),
        priority: int | None = None,
        run_at: float | datetime | None = None,
        queue: str | None = None,
        tags: Mapping[str, str] | None = None,
        process_timeout: float | None = None,
        schedule_to_close: float | None = None,
        start_to_close: float | None = None,
        heartbeat_timeout: float | None = None,
        on_dependency_failure: str | None = None,
        connection: object | None = None,
    ) -> Submitted:
        """Create a process of `job`, or return the existing one with the same `custom_id`.

        Parameters are validated first: a bad one raises `InvalidParams` and nothing is
        written. A custom id already used with another job or other parameters raises
        `CustomIdConflict`. Timeouts given here replace the job's.

        `depends_on`: ids of processes that must end first (docs/graphs.md); the process
        is `waiting` until they have. `on_dependency_failure` ("cancel" or "run")
        overrides the job's policy for a dependency that fails or is canceled.

        `connection`: transactional enqueue, on PostgreSQL only. Pass your own
        `psycopg.Connection` (same database and schema) inside your transaction: the
        process exists, and wakes workers, if and only if your transaction commits.
        """
        new, shared = self._prepare(
            job,
            params,
            custom_id=custom_id,
            client_id=client_id,
            priority=priority,
            run_at=run_at,
            queue=queue,
            tags=tags,
            process_timeout=process_timeout,
            schedule_to_close=schedule_to_close,
            start_to_close=start_to_close,
            heartbeat_timeout=heartbeat_timeout,
        )
        deps = dependency_ids(depends_on)
        if deps:
            policy = self.dependency_policy(new.job, on_dependency_failure)
            new = replace(new, depends_on=deps, on_dependency_failure=policy)
        elif on_dependency_failure is not None:
            parse_on_dependency_failure(on_dependency_failure)
        [inserted] = self.storage.process_insert_many(
            [new], shared=None if deps else shared, connection=connection
        )
        return Submitted(inserted.process, inserted.outcome)

    def new_process(
        self,
        job: str,
        params: Mapping[str, Any] | pydantic.BaseModel | None = None,
        *,
        custom_id: str | None = None,
        client_id: str | None = None,
        priority: int | None = None,
        run_at: float | datetime | None = None,
        queue: str | None = None,
        tags: Mapping[str, str] | None = None,
        process_timeout: float | None = None,
        schedule_to_close: float | None = None,
        start_to_close: float | None = None,
        heartbeat_timeout: float | None = None,
        shared_cache: dict[Any, SubmitShared] | None = None,
    ) -> NewProcess:
        """A process of `job` ready to insert, every option checked and resolved against
        the job's defaults (UsageError naming the first problem): what `submit` and a
        batch's `submit` write. `shared_cache`: where a batch keeps the options its nodes
        resolved, so that nodes with the same ones resolve them once."""
        return self._prepare(
            job,
            params,
            custom_id=custom_id,
            client_id=client_id,
            priority=priority,
            run_at=run_at,
            queue=queue,
            tags=tags,
            process_timeout=process_timeout,
            schedule_to_close=schedule_to_close,
            start_to_close=start_to_close,
            heartbeat_timeout=heartbeat_timeout,
            shared_cache=shared_cache,
        )[0]

    def _prepare(
        self,
        job: str,
        params: Mapping[str, Any] | pydantic.BaseModel | None,
        *,
        custom_id: str | None,
        client_id: str | None,
        priority: int | None,
        run_at: float | datetime | None,
        queue: str | None,
        tags: Mapping[str, str] | None,
        process_timeout: float | None,
        schedule_to_close: float | None,
        start_to_close: float | None,
        heartbeat_timeout: float | None,
        shared_cache: dict[Any, SubmitShared] | None = None,
    ) -> tuple[NewProcess, SubmitShared]:
        target = self.get_job(job)
        key: Any = None
        shared: SubmitShared | None = None
        if shared_cache is not None and not (
            process_timeout or schedule_to_close or start_to_close or heartbeat_timeout
        ):
            # A batch: nodes with the same options share what they resolve to.
            tag_key = tuple(sorted(tags.items())) if isinstance(tags, Mapping) else tags
            key = (job, client_id, priority, run_at, queue, tag_key)
            try:
                shared = shared_cache.get(key)
            except TypeError:  # something unhashable: checked below, as for a submit
                key = None
        if shared is None:
            shared = self._resolve(
                target, client_id, priority, run_at, queue, tags,
                process_timeout, schedule_to_close, start_to_close, heartbeat_timeout,
            )  # fmt: skip
            if key is not None and shared_cache is not None:
                shared_cache[key] = shared
        data, text, key = self._params(target, params)
        if custom_id is not None:
            if not isinstance(custom_id, str) or not custom_id or len(custom_id) > 255:
                raise UsageError("custom_id must be a non-empty string of at most 255 characters")
            check_text("custom_id", custom_id)
        return shared.new_process(ids.new_id(), data, text, custom_id, key), shared

    def _resolve(
        self,
        target: Job,
        client_id: str | None,
        priority: int | None,
        run_at: float | datetime | None,
        queue: str | None,
        tags: Mapping[str, str] | None,
        process_timeout: float | None,
        schedule_to_close: float | None,
        start_to_close: float | None,
        heartbeat_timeout: float | None,
    ) -> SubmitShared:
        """A submit's options checked and resolved against the job's defaults."""
        options = SubmitOptions(
            client_id=client_id,
            priority=priority,
            run_at=run_at,
            queue=queue,
            tags=tags,
            timeouts={
                "process_timeout": process_timeout,
                "schedule_to_close": schedule_to_close,
                "start_to_close": start_to_close,
                "heartbeat_timeout": heartbeat_timeout,
            },
        )
        return self._shared(target, options, self.clock())

    def dependency_policy(self, job: str, override: str | None) -> str:
        """The failure policy of a process of `job`: `override` if given, else the job's."""
        if override is not None:
            return parse_on_dependency_failure(override).value
        return self.get_job(job).on_dependency_failure

    def batch(self, *, custom_id: str | None = None, client_id: str | None = None) -> Batch:
        """A graph in one go (docs/graphs.md): processes submitted in the block, with their
        dependencies, are written in one transaction when it ends, or none of them if it
        raises. With a `custom_id` already used by a batch of the same client, nothing new
        is written and the batch's `outcome` is `existing`."""
        return Batch(self, custom_id, client_id)

    def graph(self, batch_id: str, *, nodes: bool = True) -> Graph:
        """A batch's counts by status (read from the batch's rows only) and, unless
        `nodes=False`, its processes and edges."""
        pid = parse_id(batch_id)
        info = self.storage.batch_get(pid)
        if info is None:
            raise ProcessNotFound(f"no batch with id {pid}")
        counts = counts_of(self.storage.batch_counts(pid))
        if not nodes:
            return Graph(info, counts)
        processes, edges = self.storage.batch_graph(pid)
        return Graph(info, counts, tuple(processes), tuple(edges))

    def dependencies(self, process_id: str) -> tuple[list[str], list[str]]:
        """The ids a process depends on, and the ids of the processes that depend on it."""
        return self.storage.process_edges(self.get(process_id).id)

    def submit_many(
        self,
        job: str,
        params: Iterable[Mapping[str, Any] | pydantic.BaseModel | None],
        *,
        priority: int | None = None,
        run_at: float | datetime | None = None,
        queue: str | None = None,
        tags: Mapping[str, str] | None = None,
        connection: object | None = None,
    ) -> list[Submitted]:
        """Create one process of `job` per parameters, in one transaction: all or none.
        Every parameters document is validated before anything is written.
        `connection`: transactional enqueue, as for `submit`."""
        items = list(params)
        if not items:
            return []
        options = SubmitOptions(priority=priority, run_at=run_at, queue=queue, tags=tags)
        target = self.get_job(job)
        # What every process of the batch shares is checked and computed once.
        shared = self._shared(target, options, self.clock())
        encoded = [self._params(target, p) for p in items]
        new = shared.new_process
        batch = [
            new(pid, data, text, None, key)
            for pid, (data, text, key) in zip(ids.new_ids(len(encoded)), encoded, strict=True)
        ]
        inserted = self.storage.process_insert_many(batch, shared=shared, connection=connection)
        return [Submitted(i.process, i.outcome) for i in inserted]

    def _occurrence(self, job: Job, custom_id: str, now: float) -> NewProcess:
        """The process of a schedule's occurrence (corral.scheduler): the job's defaults,
        runnable now (not from the occurrence: a late one's schedule_to_close would have
        run out before it was submitted)."""
        shared = self._shared(job, SubmitOptions(), now)
        data, text, key = self._params(job, {})
        return shared.new_process(ids.new_id(), data, text, custom_id, key)

    def _shared(self, job: Job, options: SubmitOptions, now: float) -> SubmitShared:
        """Check the options of a submit and resolve them against the job's defaults."""
        options.check()
        try:
            timeouts = job.timeouts.merged(options.timeouts)
        except ConfigurationError as exc:
            raise UsageError(str(exc)) from None
        return SubmitShared(
            job=job.name,
            created_at=now,
            run_at=_epoch(options.run_at, now),
            priority=job.priority if options.priority is None else options.priority,
            queue=options.queue or job.queue,
            client_id=self.client_id if options.client_id is None else options.client_id,
            tags=dict(options.tags or {}),
            deadline_at=None
            if timeouts.process_timeout is None
            else now + timeouts.process_timeout,
            schedule_to_close=timeouts.schedule_to_close,
            start_to_close=timeouts.start_to_close,
            heartbeat_timeout=timeouts.heartbeat_timeout,
            concurrency_limit=job.concurrency,
        )

    def _params(self, job: Job, params: Any) -> tuple[dict[str, Any], str, str | None]:
        """Validated parameters as JSON data and as their canonical text (what is stored),
        whose size is checked against `max_params_bytes`; and their concurrency key."""
        parsed = job.parse_params(params)
        try:
            data = job.params_model.__pydantic_serializer__.to_python(parsed, mode="json")
        except pydantic_core.PydanticSerializationError as exc:
            raise InvalidParams(f"job {job.name!r}: parameters are not JSON: {exc}") from None
        except (RecursionError, ValueError):  # pydantic: "Circular reference detected"
            raise InvalidParams(
                f"job {job.name!r}: parameters nested more than {codec.MAX_DEPTH} levels deep"
            ) from None
        try:
            text = codec.dumps_tree(data, "params")
        except NotStorable as exc:
            raise InvalidParams(f"job {job.name!r}: {exc}") from None
        size = len(text) if text.isascii() else len(text.encode())
        if size > self.max_params_bytes:
            raise InvalidParams(
                f"job {job.name!r}: parameters are {size} bytes of JSON, over the limit of "
                f"{self.max_params_bytes}"
            )
        if job.concurrency is None:
            return data, text, None
        key = job.key_of(parsed, data)
        assert key is not None
        check_text(f"job {job.name!r}: its concurrency key", key)
        size = len(key) if key.isascii() else len(key.encode())
        if size > MAX_KEY_BYTES:
            raise InvalidParams(
                f"job {job.name!r}: its concurrency key is {size} bytes, over the limit of "
                f"{MAX_KEY_BYTES}: key on a shorter value, or give a function that makes one"
            )
        return data, text, key

    # --- reading -------------------------------------------------------------------------
    def get(self, process_id: str) -> Process:
        pid = parse_id(process_id)
        process = self.storage.process_get(pid)
        if process is None:
            raise ProcessNotFound(f"no process with id {pid}")
        return process

    def history(self, process_id: str) -> list[Event]:
        return self.storage.history_list(self.get(process_id).id)

    def list(
        self,
        status: str | Status | None = None,
        job: str | None = None,
        tags: Mapping[str, str] | None = None,
        limit: int = 50,
        *,
        queue: str | None = None,
        custom_id: str | None = None,
    ) -> list[Process]:
        """Processes, newest first: those in `status`, of `job`, with every tag of `tags`,
        in `queue`, submitted with `custom_id` (by this app's client)."""
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise UsageError(f"limit must be a positive integer, not {limit!r}")
        where = self._filter(status, job, tags, queue, custom_id)
        return self.storage.process_list(replace(where, limit=limit))

    def count(
        self,
        status: str | Status | None = None,
        job: str | None = None,
        tags: Mapping[str, str] | None = None,
        *,
        queue: str | None = None,
        custom_id: str | None = None,
    ) -> int:
        """How many processes `list` with the same filters would give without a limit."""
        return self.storage.process_count(self._filter(status, job, tags, queue, custom_id))

    def _filter(
        self,
        status: str | Status | None,
        job: str | None,
        tags: Mapping[str, str] | None,
        queue: str | None,
        custom_id: str | None,
    ) -> ProcessFilter:
        try:
            st = None if status is None else Status(status)
        except ValueError:
            raise UsageError(
                f"unknown status {status!r}; use one of {', '.join(s.value for s in Status)}"
            ) from None
        for name, value in (("job", job), ("queue", queue), ("custom_id", custom_id)):
            if value is not None and not isinstance(value, str):
                raise UsageError(f"{name} must be a string, not {value!r}")
        _check_tags(tags)
        return ProcessFilter(
            status=st,
            job=job,
            tags=tags,
            queue=queue,
            custom_id=custom_id,
            client_id=None if custom_id is None else self.client_id,
        )

    def find(self, ref: str) -> Process:
        """The process a person named: its full id, or a prefix of at least 8 characters
        that starts one id only (as `corral list` shows them). An ambiguous prefix is an
        error listing the processes it could mean."""
        whole, prefix = parse_ref(ref)
        if whole is not None:
            return self.get(whole)
        found = self.storage.process_list(ProcessFilter(id_prefix=prefix, limit=6))
        if not found:
            raise ProcessNotFound(f"no process id starts with {prefix}")
        if len(found) > 1:
            shown = ", ".join(f"{p.id} ({p.job}, {p.status.value})" for p in found[:5])
            more = " and more" if len(found) > 5 else ""
            raise InvalidId(f"{prefix} starts more than one id: {shown}{more}; type more of it")
        return found[0]

    def find_custom(self, custom_id: str) -> Process:
        """The process this app's client submitted with `custom_id`."""
        if not isinstance(custom_id, str) or not custom_id:
            raise UsageError(f"custom_id must be a non-empty string, not {custom_id!r}")
        where = ProcessFilter(custom_id=custom_id, client_id=self.client_id, limit=1)
        found = self.storage.process_list(where)
        if not found:
            raise ProcessNotFound(f"no process with custom id {custom_id!r}")
        return found[0]

    def short_ids(self, process_ids: Sequence[str]) -> dict[str, str]:
        """For each id, the shortest prefix (8 characters or more) that starts no other
        stored id: what `corral list` shows, and `find` takes back."""
        neighbors = self.storage.process_id_neighbors(list(process_ids))
        return {pid: ids.short_id(pid, *neighbors[pid]) for pid in process_ids}

    def explain(self, process_id: str) -> builtins.list[Reason]:
        """Every reason the process is not running now (the dependencies it waits for, its
        status, its run_at, a paused queue, an expired lease, its concurrency key full, no
        live worker for its job or queue, all of them busy, a cancel request), or the one
        line that says it runs or is next. A worker counts as live while it refreshed its
        registry row within one lease."""
        process = self.get(process_id)
        now = self.clock()
        return explain(
            process,
            now,
            paused=self.storage.queue_paused(),
            workers=self.storage.worker_list(),
            stale_after=self.lease_seconds,
            dependencies=self.storage.dependencies_of([process.id]).get(process.id, ())
            if process.status is Status.WAITING
            else (),
            slots=self.storage.process_concurrency(process.id, now),
            rate_limited=process.run_at > now and _rate_limited(self.history(process.id)),
        )

    def workers(self) -> builtins.list[WorkerInfo]:
        """The registered workers, oldest first (see `WorkerInfo`)."""
        return self.storage.worker_list()

    def queues(self) -> builtins.list[QueueInfo]:
        """Every queue that holds processes, is paused, or is a job's: counts by status."""
        counts = self.storage.queue_counts()
        paused = set(self.storage.queue_paused())
        names = set(counts) | (paused - {"*"}) | {j.queue for j in self.registry.jobs.values()}
        return [
            QueueInfo(name, counts.get(name, {}), name in paused or "*" in paused)
            for name in sorted(names)
        ]

    def schedules(self) -> builtins.list[ScheduleInfo]:
        """The app's cron schedules, by job: each one's last run (occurrence, process and
        its status now) and its next run after now."""
        return describe(self.registry, self.storage.schedule_list(), self.clock())

    def wait(self, process_id: str, timeout: float | None = None) -> Process:
        """Block until the process is terminal; raise TimeoutError after `timeout` seconds."""
        if timeout is not None:
            _check_seconds("timeout", timeout, allow_zero=True)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            epoch = self.storage.change_epoch()
            process = self.get(process_id)
            if process.status.terminal:
                return process
            remaining = 0.5 if deadline is None else deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(
                    f"process {process.id} is still {process.status.value} after {timeout}s"
                )
            self.storage.wait_for_change(epoch, min(remaining, 0.5))

    # --- for event loops (FastAPI and friends) ----------------------------------------
    # Each runs its blocking twin in a worker thread (asyncio.to_thread), so that an event
    # loop never waits on the database.

    async def asubmit(
        self, job: str, params: Mapping[str, Any] | pydantic.BaseModel | None = None, **kw: Any
    ) -> Submitted:
        """`submit`, awaitable: `await app.asubmit("add", {"a": 1, "b": 2})`."""
        return await asyncio.to_thread(self.submit, job, params, **kw)

    async def aget(self, process_id: str) -> Process:
        """`get`, awaitable."""
        return await asyncio.to_thread(self.get, process_id)

    async def await_result(self, process_id: str, timeout: float | None = None) -> Process:
        """`wait`, awaitable: the process once it is terminal (TimeoutError after
        `timeout` seconds); its `result`, `error` and `status` say how it ended."""
        return await asyncio.to_thread(self.wait, process_id, timeout)

    async def acancel(self, process_id: str) -> Process:
        """`cancel`, awaitable."""
        return await asyncio.to_thread(self.cancel, process_id)

    # --- commands ------------------------------------------------------------------------
    def cancel(self, process_id: str) -> Process:
        """Cancel: at once if the process never started, else its rollback runs first."""
        return self._update(process_id, model.cancel)

    def retry(self, process_id: str, *, with_dependents: bool = False) -> Process:
        """Resume a failed or canceled process where it stopped, with its store.
        `with_dependents`: also resume what its failure canceled down the graph (see
        `resume_dependents`)."""
        process = self._update(process_id, model.retry)
        if with_dependents:
            self.resume_dependents(process.id)
        return process

    def resume_dependents(self, process_id: str) -> builtins.list[str]:
        """Resume the processes that the failure (or cancel) of `process_id` canceled down
        its graph, once it has been retried: each waits again for its dependencies that
        have not completed; one that also depends on another failed process stays
        canceled. The ids resumed (docs/graphs.md)."""
        return self.storage.process_resume_dependents(self.get(process_id).id, self.clock())

    def _update(self, process_id: str, decide: Callable[[Process, float], model.Change]) -> Process:
        # Optimistic: a worker may write between our read and our write; then decide again.
        while True:
            process = self.get(process_id)
            now = self.clock()
            change = decide(process, now)
            if change == model.Change.of(process):
                return process
            if self.storage.process_update(process.id, process.version, change, now):
                return self.get(process.id)

    def pause(self, queue: str = "*") -> None:
        """Stop workers claiming from `queue` (`*`: every queue); running iterations finish."""
        self.storage.queue_pause(_queue_name(queue), True)

    def resume(self, queue: str = "*") -> None:
        self.storage.queue_pause(_queue_name(queue), False)

    def prune(self, older_than: float) -> int:
        """Delete processes that ended more than `older_than` seconds ago."""
        _check_seconds("older_than", older_than, allow_zero=True)
        return self.storage.process_prune(self.clock() - older_than)

    def prunable(self, older_than: float) -> dict[str, int]:
        """What `prune(older_than)` would delete now, by job; nothing is written."""
        _check_seconds("older_than", older_than, allow_zero=True)
        return self.storage.process_prunable(self.clock() - older_than)


def _check_seconds(name: str, value: object, *, allow_zero: bool) -> None:
    ok = (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and (value > 0 or (allow_zero and value == 0))
    )
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise UsageError(f"{name} must be a number of seconds {bound}, not {value!r}")


def _queue_name(queue: object) -> str:
    return check_queue(queue, allow_all=True)


def _check_tags(tags: object) -> None:
    if tags is None:
        return
    if not (
        isinstance(tags, Mapping)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in tags.items())
    ):
        raise UsageError("tags must be a mapping of strings to strings")
    for key, value in tags.items():
        if not key:
            raise UsageError("a tag's key must not be empty")
        check_text(f"tag {key!r}", key)
        check_text(f"tag {key!r}", value)


def _rate_limited(history: Sequence[Event]) -> bool:
    """Whether the process's last deferral was its rate limit's."""
    deferrals = [e for e in history if e.kind in ("retry_later", "retry_scheduled", "error")]
    last = deferrals[-1] if deferrals else None
    return (
        last is not None
        and last.kind == "retry_later"
        and (last.detail.get("reason") == "rate_limited")
    )


def _rated(job: Job, rate: object, rate_key: object) -> Job:
    """`job` with its rate limit (docs/flow-control.md), checked."""
    job.rate = parse_rate(job.name, rate, rate_key, job.params_model)
    return job


def _limited(job: Job, concurrency: object, concurrency_key: object) -> Job:
    """`job` with its concurrency limit and key (docs/flow-control.md), checked."""
    job.concurrency, job.concurrency_key = check_concurrency(
        job.name, job.params_model, concurrency, concurrency_key
    )
    return job


def _check_job_options(priority: object, queue: object) -> None:
    try:
        check_priority(priority)
        check_queue(queue, allow_all=False)
    except UsageError as exc:
        raise ConfigurationError(str(exc)) from None


def check_text(name: str, text: str) -> None:
    """Refuse text that a backend cannot store (a lone surrogate: bytes that were not
    UTF-8, decoded with surrogateescape; a NUL character), naming where it was given."""
    if "\x00" in text:
        raise UsageError(f"{name} holds a NUL character (\\x00), which cannot be stored")
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise UsageError(
                f"{name} holds a lone surrogate (bytes that are not UTF-8), which cannot be "
                "stored; give it as valid UTF-8"
            ) from None


def check_priority(priority: object) -> None:
    if priority is None:
        return
    if not isinstance(priority, int) or isinstance(priority, bool):
        raise UsageError(f"priority must be an integer, not {priority!r}")
    low, high = PRIORITY_RANGE
    if not low <= priority <= high:
        raise UsageError(f"priority must be between {low} and {high}, not {priority}")


def check_queue(queue: object, *, allow_all: bool) -> str:
    """A queue's name, or `*` for every queue where `allow_all`."""
    if not isinstance(queue, str) or not queue or (queue == "*" and not allow_all):
        other = "" if allow_all else " other than '*'"
        raise UsageError(f"queue must be a non-empty name{other}, not {queue!r}")
    check_text("queue", queue)
    return queue


def _positive_number(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )


def parse_id(process_id: object) -> str:
    """A process id is a UUID; anything else is a clear error, not a silent miss."""
    try:
        return str(uuid.UUID(str(process_id))) if isinstance(process_id, str) else _bad(process_id)
    except ValueError:
        return _bad(process_id)


def parse_ref(ref: object) -> tuple[str | None, str]:
    """What a person typed to name a process: (the whole id, "") or (None, a prefix of at
    least 8 characters). Anything else is a clear error, said before any database is read."""
    if isinstance(ref, str):
        with contextlib.suppress(InvalidId):
            return parse_id(ref), ""
        prefix = ids.prefix_of_id(ref)
        if prefix is not None:
            return None, prefix
    raise InvalidId(
        f"{ref!r} is not a process id: give a whole id or its first {ids.MIN_PREFIX} or more "
        "characters, as `corral list` shows them"
    )


def _bad(process_id: object) -> str:
    raise InvalidId(
        f"{process_id!r} is not a process id (a UUID such as 3f2b1c9e-8d4a-4c1e-9b7a-2e6f5d4c3b2a)"
    )


def _epoch(when: float | datetime | None, now: float) -> float:
    if when is None:
        return now
    if isinstance(when, datetime):
        if when.tzinfo is None:
            raise UsageError("run_at must be timezone-aware (e.g. datetime.now(timezone.utc))")
        return when.timestamp()
    if isinstance(when, int | float) and not isinstance(when, bool):
        if not math.isfinite(when):
            raise UsageError(f"run_at must be a finite number of epoch seconds, not {when!r}")
        return float(when)
    raise UsageError(f"run_at must be a datetime or epoch seconds, not {when!r}")
