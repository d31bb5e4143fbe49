"""Job definitions, their parameter schemas, retry policies and handler resolution.

Resolution is unambiguous: for a process of job J in status S, J's own handler for S
runs; failing that, the generic handler registered for S with the lowest priority
number (default 100). Two generic handlers may not share a status and a priority.
"""

from __future__ import annotations

import inspect
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import pydantic

from corral.context import Context
from corral.errors import ConfigurationError, InvalidParams
from corral.model import FORWARD, TIMEOUTS, Status, backoff
from corral.rates import Rate
from corral.schedules import Schedule
from corral.settle import Policy

HandlerFn = Callable[[Context[Any]], Any]
#: How a job names its processes' concurrency key: a parameter's name, or a function of
#: the validated parameters; None: the job's name.
KeyHow = str | Callable[[Any], str] | None
#: The method names of a process class, by the status each one moves a process out of.
PHASES: Mapping[Status, str] = {
    Status.STARTING: "start",
    Status.RUNNING: "step",
    Status.ENDING: "finish",
    Status.FAILING: "rollback",
}
#: Iterations a crashed worker's process gets by default before it fails.
DEFAULT_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class Retry:
    """How often an iteration is tried, and how long to wait between tries.

    `attempts` counts every try of one iteration, the first included; it also bounds
    how often an iteration whose worker died is tried again. Only exceptions of the
    types in `on` are retried; others send the process to `failing` at once.
    """

    attempts: int = 3
    backoff: float = 1.0
    max_delay: float = 300.0
    jitter: float = 0.1
    on: tuple[type[BaseException], ...] = (Exception,)

    def __post_init__(self) -> None:
        if not isinstance(self.attempts, int) or self.attempts < 1:
            raise ConfigurationError(f"Retry(attempts={self.attempts!r}): must be an int >= 1")
        numbers = (self.backoff, self.max_delay, self.jitter)
        if not all(isinstance(n, int | float) and math.isfinite(n) for n in numbers):
            raise ConfigurationError("Retry: backoff, max_delay and jitter must be finite numbers")
        if self.backoff < 0 or self.max_delay < 0 or not 0 <= self.jitter <= 1:
            raise ConfigurationError(
                "Retry: backoff and max_delay must be >= 0 and jitter between 0 and 1"
            )

    def delay(self, attempt: int) -> float:
        return backoff(attempt, base=self.backoff, max_delay=self.max_delay, jitter=self.jitter)

    def retries(self, exc: BaseException) -> bool:
        return isinstance(exc, self.on)


@dataclass(frozen=True, slots=True)
class Timeouts:
    """The four timeouts (docs/timeouts.md), in seconds; None: no limit."""

    process_timeout: float | None = None
    schedule_to_close: float | None = None
    start_to_close: float | None = None
    heartbeat_timeout: float | None = None

    def __post_init__(self) -> None:
        for name in TIMEOUTS:
            value = getattr(self, name)
            ok = value is None or (
                isinstance(value, int | float)
                and not isinstance(value, bool)
                and math.isfinite(value)
                and value > 0
            )
            if not ok:
                raise ConfigurationError(f"{name} must be a number of seconds > 0, not {value!r}")

    def merged(self, overrides: Mapping[str, float | None]) -> Timeouts:
        """These timeouts with the ones given (not None) replacing them."""
        given = {k: v for k, v in overrides.items() if v is not None}
        if not given:  # most submits: nothing to check again
            return self
        return Timeouts(**{**{n: getattr(self, n) for n in TIMEOUTS}, **given})


@dataclass(frozen=True, slots=True)
class Handler:
    """A function that handles a status, or (`method`) the method of that name of a
    process class, called on the instance made for the iteration."""

    status: Status
    fn: HandlerFn | None
    name: str
    is_async: bool
    generic: bool = False
    priority: int = 100
    method: str | None = None

    def call(self, ctx: Context[Any], instance: Callable[[], Any]) -> Any:
        """Call the handler; `instance()` gives the iteration's instance of the process
        class (made on first use, shared by the handlers of one iteration)."""
        if self.method is not None:
            return getattr(instance(), self.method)(ctx)
        assert self.fn is not None
        return self.fn(ctx)

    def describe(self) -> str:
        if self.generic:
            return f"{self.name} (generic, order {self.priority})"
        return self.name


@dataclass(slots=True)
class Job:
    name: str
    #: "external": declared here, run elsewhere (a worker over HTTP); no handler in Python.
    kind: Literal["function", "process", "external"]
    params_model: type[pydantic.BaseModel]
    handlers: dict[Status, Handler] = field(default_factory=dict)
    validate: Handler | None = None
    retry: Retry | None = None
    priority: int = 0
    queue: str = "default"
    timeouts: Timeouts = field(default_factory=Timeouts)
    #: A process job's class: a fresh instance serves each iteration.
    cls: type[Any] | None = None
    #: What a failed or canceled dependency does to a process of this job (docs/graphs.md):
    #: "cancel" it, or "run" it once every dependency has ended; a submit may override it.
    on_dependency_failure: str = "cancel"
    #: Its cron schedule, if it has one: the recovery sweep submits a process per occurrence.
    schedule: Schedule | None = None
    #: At most this many processes of one concurrency key leased at once (None: no limit),
    #: the key being the job's name, a parameter's value or a function's (docs/flow-control.md).
    concurrency: int | None = None
    concurrency_key: KeyHow = None
    #: At most this many iterations start per period across the fleet (docs/flow-control.md).
    rate: Rate | None = None

    def key_of(self, parsed: Any, data: Mapping[str, Any]) -> str | None:
        """The concurrency key of a process with these validated parameters (`parsed` as a
        handler sees them in `ctx.params`, `data` as stored); None without `concurrency`.
        A key function that raises or returns anything but a non-empty string is the
        submitter's error: InvalidParams, and nothing is written."""
        if self.concurrency is None:
            return None
        how = self.concurrency_key
        if how is None:
            return self.name
        if isinstance(how, str):
            value = data.get(how)
            return f"{self.name}:{value if isinstance(value, str) else _key_text(value)}"
        try:
            key = how(parsed)
        except Exception as exc:
            said = str(exc).strip().splitlines()
            raise InvalidParams(
                f"job {self.name!r}: its concurrency_key function raised "
                f"{type(exc).__name__}{': ' + said[0] if said else ''}"
            ) from None
        if not isinstance(key, str) or not key:
            raise InvalidParams(
                f"job {self.name!r}: its concurrency_key function must return a non-empty "
                f"string, not {key!r}"
            )
        return key

    #: Seconds a completed process of this job is kept after it finished: the recovery
    #: sweep deletes it then (docs/timeouts.md, "Retention"). None: until `corral prune`.
    keep_for: float | None = None

    @property
    def max_attempts(self) -> int:
        return self.retry.attempts if self.retry else DEFAULT_ATTEMPTS

    def retries(self, exc: BaseException) -> bool:
        """Whether the job's retry policy covers this error (none: nothing is retried)."""
        return self.retry is not None and self.retry.retries(exc)

    def parse_params(self, params: Mapping[str, Any] | pydantic.BaseModel | None) -> Any:
        """Validate parameters against the schema; raise InvalidParams naming the field."""
        if type(params) is dict:  # the common case, first: a submit_many validates thousands
            return self._validate(params)
        if isinstance(params, pydantic.BaseModel):
            params = params.model_dump(mode="json")
        if params is None:
            params = {}
        if not isinstance(params, Mapping):
            raise InvalidParams(
                f"job {self.name!r}: parameters must be a mapping of names to values, "
                f"not {type(params).__name__}"
            )
        return self._validate(dict(params))

    def _validate(self, params: dict[str, Any]) -> Any:
        try:
            return self.params_model.__pydantic_validator__.validate_python(params)
        except pydantic.ValidationError as exc:
            raise InvalidParams(f"job {self.name!r}: {describe_validation_error(exc)}") from None
        except RecursionError:
            raise InvalidParams(f"job {self.name!r}: parameters nested too deep") from None


def _key_text(value: Any) -> str:
    """A parameter's value that is not a string (already JSON data), as key text: its
    JSON, keys sorted, so that equal values give equal keys."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def check_concurrency(
    job: str,
    params_model: type[pydantic.BaseModel],
    concurrency: object,
    concurrency_key: object,
) -> tuple[int | None, KeyHow]:
    """`concurrency=` and `concurrency_key=` as given, checked: ConfigurationError if wrong."""
    if concurrency is None:
        if concurrency_key is not None:
            raise ConfigurationError(
                f"job {job!r}: concurrency_key needs concurrency=N (the processes per key)"
            )
        return None, None
    if not isinstance(concurrency, int) or isinstance(concurrency, bool) or concurrency < 1:
        raise ConfigurationError(
            f"job {job!r}: concurrency must be an integer >= 1, not {concurrency!r}"
        )
    if concurrency > 2**31 - 1:
        raise ConfigurationError(f"job {job!r}: concurrency must be below 2**31")
    if concurrency_key is None or callable(concurrency_key):
        return concurrency, concurrency_key
    if not isinstance(concurrency_key, str):
        raise ConfigurationError(
            f"job {job!r}: concurrency_key must be a parameter's name or a function of the "
            f"parameters, not {concurrency_key!r}"
        )
    if concurrency_key not in params_model.model_fields:
        known = ", ".join(sorted(params_model.model_fields)) or "none"
        raise ConfigurationError(
            f"job {job!r}: concurrency_key {concurrency_key!r} names no parameter of the job "
            f"(its parameters: {known})"
        )
    return concurrency, concurrency_key


def describe_validation_error(exc: pydantic.ValidationError) -> str:
    problems = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "parameters"
        if err["type"] == "extra_forbidden":
            problems.append(f"unknown parameter {where!r}")
        elif err["type"] == "missing":
            problems.append(f"missing parameter {where!r}")
        else:
            problems.append(f"parameter {where!r}: {err['msg']}")
    return "; ".join(problems)


# --- building jobs from user code ----------------------------------------------------------


def _takes_context(fn: Callable[..., Any]) -> tuple[bool, list[inspect.Parameter]]:
    """Whether `fn`'s first parameter is the Context, and the parameters after it."""
    try:
        signature = inspect.signature(fn, eval_str=True)
    except (NameError, TypeError):  # an annotation that cannot be evaluated: keep it as text
        signature = inspect.signature(fn)
    params = list(signature.parameters.values())
    if params and (
        params[0].name in ("ctx", "context")
        or params[0].annotation is Context
        or getattr(params[0].annotation, "__origin__", None) is Context
        or str(params[0].annotation).startswith("Context")
    ):
        return True, params[1:]
    return False, params


def params_model_from_signature(name: str, fn: Callable[..., Any]) -> type[pydantic.BaseModel]:
    _, params = _takes_context(fn)
    fields: dict[str, Any] = {}
    for p in params:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD, p.POSITIONAL_ONLY):
            raise ConfigurationError(
                f"job {name!r}: parameter {p.name!r} must be an ordinary named parameter"
            )
        annotation = Any if p.annotation is p.empty else p.annotation
        default = ... if p.default is p.empty else p.default
        fields[p.name] = (annotation, default)
    model_name = "".join(part.capitalize() for part in name.replace("-", "_").split("_"))
    return pydantic.create_model(
        f"{model_name or 'Job'}Params",
        __config__=pydantic.ConfigDict(extra="forbid"),
        **fields,
    )


def function_job(
    name: str,
    fn: Callable[..., Any],
    *,
    params: type[pydantic.BaseModel] | None,
    retry: Retry | None,
    priority: int,
    queue: str,
    timeouts: Timeouts | None = None,
) -> Job:
    """A simple job: one iteration of `fn` completes the process with its return value."""
    takes_ctx, rest = _takes_context(fn)
    model = params or params_model_from_signature(name, fn)
    if params is not None:
        if len(rest) > (0 if takes_ctx else 1):
            raise ConfigurationError(
                f"job {name!r}: with params={params.__name__}, the function takes only ctx"
            )

        def call(ctx: Context[Any]) -> Any:
            return fn(ctx) if takes_ctx else fn()
    else:
        names = [p.name for p in rest]

        def call(ctx: Context[Any]) -> Any:
            kwargs = {n: getattr(ctx.params, n) for n in names}
            return fn(ctx, **kwargs) if takes_ctx else fn(**kwargs)

    handler = Handler(Status.STARTING, call, handler_name(fn), _is_async(fn))
    return Job(
        name,
        "function",
        model,
        {Status.STARTING: handler},
        retry=retry,
        priority=priority,
        queue=queue,
        timeouts=timeouts or Timeouts(),
    )


def process_job(
    name: str,
    cls: type[Any],
    *,
    params: type[pydantic.BaseModel] | None,
    retry: Retry | None,
    priority: int,
    queue: str,
    timeouts: Timeouts | None = None,
) -> Job:
    """A multi-step process: its class's methods handle each phase. Each iteration gets a
    fresh instance (threads never share one), so the class keeps nothing between
    iterations: what must last goes in `ctx.store`."""
    if not isinstance(cls, type):
        raise ConfigurationError(
            f"process {name!r}: @app.process decorates a class, not {type(cls).__name__}"
        )
    _check_constructible(name, cls)
    if params is None:
        params = pydantic.create_model(
            f"{cls.__name__}Params", __config__=pydantic.ConfigDict(extra="forbid")
        )
    handlers: dict[Status, Handler] = {}
    for status, method in PHASES.items():
        handler = _method_handler(cls, status, method)
        if handler is not None:
            handlers[status] = handler
    if not any(s in handlers for s in FORWARD):
        raise ConfigurationError(
            f"process {name!r}: class {cls.__qualname__} defines none of start, step, finish"
        )
    return Job(
        name,
        "process",
        params,
        handlers,
        validate=_method_handler(cls, Status.STARTING, "validate"),
        retry=retry,
        priority=priority,
        queue=queue,
        timeouts=timeouts or Timeouts(),
        cls=cls,
    )


def external_job(
    name: str,
    *,
    params: type[pydantic.BaseModel] | None,
    retry: Retry | None,
    priority: int,
    queue: str,
    timeouts: Timeouts | None = None,
) -> Job:
    """A job run by workers outside this process (the worker protocol over HTTP): its
    schema checks what is submitted, its policies settle what those workers report; one
    iteration completes it, as a simple job."""
    if params is None:
        params = pydantic.create_model(
            f"{name.replace('-', '_').title().replace('_', '')}Params",
            __config__=pydantic.ConfigDict(extra="allow"),
        )
    return Job(
        name,
        "external",
        params,
        retry=retry,
        priority=priority,
        queue=queue,
        timeouts=timeouts or Timeouts(),
    )


def _method_handler(cls: type[Any], status: Status, method: str) -> Handler | None:
    fn = getattr(cls, method, None)
    if fn is None:
        return None
    if not callable(fn):
        raise ConfigurationError(f"{cls.__qualname__}.{method} is not a method")
    return Handler(status, None, f"{handler_name(cls)}.{method}", _is_async(fn), method=method)


def _check_constructible(name: str, cls: type[Any]) -> None:
    try:
        signature = inspect.signature(cls)
    except (TypeError, ValueError):  # a builtin or C class: assume it can
        return
    required = [
        p.name
        for p in signature.parameters.values()
        if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    if required:
        raise ConfigurationError(
            f"process {name!r}: class {cls.__qualname__} must be constructible without "
            f"arguments (each iteration makes one); it requires {', '.join(required)}"
        )


def handler_name(obj: Any) -> str:
    """A readable name for `corral jobs`: the qualified name without `<locals>` parts."""
    qualname = str(getattr(obj, "__qualname__", getattr(obj, "__name__", repr(obj))))
    return qualname.rpartition("<locals>.")[2]


def _is_async(fn: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(fn)


def check_keep_for(job: str, value: object) -> float | None:
    """A job's `keep_for`: None, or a finite number of seconds >= 0 (0: the next sweep
    deletes its completed processes); anything else is a ConfigurationError."""
    if value is None:
        return None
    if (
        not isinstance(value, int | float)
        or isinstance(value, bool)
        or not math.isfinite(value)
        or value < 0
    ):
        raise ConfigurationError(
            f"job {job!r}: keep_for must be a number of seconds >= 0 or None, not {value!r}"
        )
    return float(value)


# --- the registry ----------------------------------------------------------------------------


class Registry:
    def __init__(self) -> None:
        self.jobs: dict[str, Job] = {}
        self.generic: dict[Status, list[Handler]] = {}
        self._policies: dict[str, Policy] = {}

    def local_jobs(self) -> list[str]:
        """The jobs whose handlers run in this process, sorted: what an in-process worker
        claims (external jobs are claimed over HTTP only)."""
        return sorted(name for name, job in self.jobs.items() if job.kind != "external")

    def external_jobs(self) -> list[str]:
        return sorted(name for name, job in self.jobs.items() if job.kind == "external")

    def add_job(
        self,
        job: Job,
        *,
        on_dependency_failure: str | None = None,
        keep_for: float | None = None,
    ) -> None:
        if on_dependency_failure is not None:
            job.on_dependency_failure = on_dependency_failure
        job.keep_for = check_keep_for(job.name, keep_for)
        if job.name in self.jobs:
            raise ConfigurationError(f"job {job.name!r} is registered twice")
        self.jobs[job.name] = job

    def policy(self, job: Job) -> Policy:
        """What the settle rule needs of `job` (cached: it depends on the generic handlers
        too, which are all registered before a worker runs)."""
        policy = self._policies.get(job.name)
        if policy is None:
            policy = Policy(
                max_attempts=job.max_attempts,
                backoff=job.retry.delay if job.retry is not None else None,
                has_rollback=self.has_rollback(job),
                next_phase={s: self.next_forward(job, s) for s in FORWARD},
            )
            self._policies[job.name] = policy
        return policy

    def add_generic(self, handler: Handler) -> None:
        if handler.status.terminal or handler.status is Status.WAITING:
            raise ConfigurationError(
                f"no handler runs in status {handler.status.value!r}; use starting, running, "
                "ending or failing"
            )
        same = self.generic.setdefault(handler.status, [])
        for other in same:
            if other.priority == handler.priority:
                raise ConfigurationError(
                    f"generic handlers {other.name} and {handler.name} both handle "
                    f"{handler.status.value!r} with order {handler.priority}: give one "
                    "another order so that resolution is unambiguous"
                )
        same.append(handler)
        same.sort(key=lambda h: h.priority)
        self._policies.clear()

    def resolve(self, job: Job, status: Status) -> Handler | None:
        """The handler that runs for a process of `job` in `status`, if any."""
        own = job.handlers.get(status)
        if own is not None:
            return own
        generic = self.generic.get(status)
        return generic[0] if generic else None

    def next_forward(self, job: Job, status: Status) -> Status:
        """Where a process goes when the handler of `status` is done: the next phase
        that has a handler, or `completed`."""
        if job.kind != "process":
            return Status.COMPLETED
        later = FORWARD[FORWARD.index(status) + 1 :]
        for candidate in later:
            if self.resolve(job, candidate) is not None:
                return candidate
        return Status.COMPLETED

    def has_rollback(self, job: Job | None) -> bool:
        if job is None:
            return bool(self.generic.get(Status.FAILING))
        if job.kind == "external":  # a Python rollback could not undo what ran elsewhere
            return False
        return self.resolve(job, Status.FAILING) is not None

    def table(self) -> list[tuple[str, str, dict[Status, str]]]:
        """For `corral jobs`: each job, its kind, and which handler runs in each status."""
        rows = []
        for job in sorted(self.jobs.values(), key=lambda j: j.name):
            by_status: dict[Status, str] = {}
            for status in (*FORWARD, Status.FAILING):
                handler = self.resolve(job, status)
                if status is Status.STARTING and job.validate is not None:
                    shown = f"{job.validate.name} + {handler.describe() if handler else '-'}"
                    by_status[status] = shown
                elif handler is not None:
                    by_status[status] = handler.describe()
                elif job.kind != "process" and status is not Status.FAILING:
                    continue
                else:
                    by_status[status] = "-"
            rows.append((job.name, str(job.kind), by_status))
        return rows
