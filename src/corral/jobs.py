"""Job definitions, their parameter schemas, retry policies and handler resolution.

Resolution is unambiguous: for a process of job J in status S, J's own handler for S
runs; failing that, the generic handler registered for S with the lowest priority
number (default 100). Two generic handlers may not share a status and a priority.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import pydantic

from corral.context import Context
from corral.errors import ConfigurationError, InvalidParams
from corral.model import FORWARD, TIMEOUTS, Status, backoff

HandlerFn = Callable[[Context[Any]], Any]
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
    """The four timeouts of DESIGN §6, in seconds; None: no limit."""

    process_timeout: float | None = None
    schedule_to_close: float | None = None
    start_to_close: float | None = None
    heartbeat_timeout: float | None = None

    def __post_init__(self) -> None:
        for name in TIMEOUTS:
            value = getattr(self, name)
            ok = value is None or (
                isinstance(value, int | float) and not isinstance(value, bool) and value > 0
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
    status: Status
    fn: HandlerFn
    name: str
    is_async: bool
    generic: bool = False
    priority: int = 100

    def describe(self) -> str:
        if self.generic:
            return f"{self.name} (generic, priority {self.priority})"
        return self.name


@dataclass(slots=True)
class Job:
    name: str
    kind: Literal["function", "process"]
    params_model: type[pydantic.BaseModel]
    handlers: dict[Status, Handler] = field(default_factory=dict)
    validate: Handler | None = None
    retry: Retry | None = None
    priority: int = 0
    queue: str = "default"
    timeouts: Timeouts = field(default_factory=Timeouts)

    @property
    def max_attempts(self) -> int:
        return self.retry.attempts if self.retry else DEFAULT_ATTEMPTS

    def retry_delay(self, exc: BaseException, attempt: int) -> float | None:
        """Seconds before trying again, or None if this error is not retried."""
        if self.retry is None or not self.retry.retries(exc):
            return None
        return self.retry.delay(attempt)

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
    """A multi-step process: an instance of `cls` whose methods handle each phase."""
    if params is None:
        params = pydantic.create_model(
            f"{cls.__name__}Params", __config__=pydantic.ConfigDict(extra="forbid")
        )
    instance = cls()
    handlers: dict[Status, Handler] = {}
    for status, method in PHASES.items():
        fn = getattr(instance, method, None)
        if fn is not None:
            handlers[status] = Handler(status, fn, f"{handler_name(cls)}.{method}", _is_async(fn))
    if not any(s in handlers for s in FORWARD):
        raise ConfigurationError(
            f"process {name!r}: class {cls.__qualname__} defines none of start, step, finish"
        )
    validate_fn = getattr(instance, "validate", None)
    validate = (
        Handler(
            Status.STARTING, validate_fn, f"{handler_name(cls)}.validate", _is_async(validate_fn)
        )
        if validate_fn is not None
        else None
    )
    return Job(
        name,
        "process",
        params,
        handlers,
        validate=validate,
        retry=retry,
        priority=priority,
        queue=queue,
        timeouts=timeouts or Timeouts(),
    )


def handler_name(obj: Any) -> str:
    """A readable name for `corral jobs`: the qualified name without `<locals>` parts."""
    qualname = str(getattr(obj, "__qualname__", getattr(obj, "__name__", repr(obj))))
    return qualname.rpartition("<locals>.")[2]


def _is_async(fn: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(fn)


# --- the registry ----------------------------------------------------------------------------


class Registry:
    def __init__(self) -> None:
        self.jobs: dict[str, Job] = {}
        self.generic: dict[Status, list[Handler]] = {}

    def add_job(self, job: Job) -> None:
        if job.name in self.jobs:
            raise ConfigurationError(f"job {job.name!r} is registered twice")
        self.jobs[job.name] = job

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
                    f"{handler.status.value!r} with priority {handler.priority}: give one "
                    "another priority so that resolution is unambiguous"
                )
        same.append(handler)
        same.sort(key=lambda h: h.priority)

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
        if job.kind == "function":
            return Status.COMPLETED
        later = FORWARD[FORWARD.index(status) + 1 :]
        for candidate in later:
            if self.resolve(job, candidate) is not None:
                return candidate
        return Status.COMPLETED

    def has_rollback(self, job: Job | None) -> bool:
        if job is None:
            return bool(self.generic.get(Status.FAILING))
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
                elif job.kind == "function" and status is not Status.FAILING:
                    continue
                else:
                    by_status[status] = "-"
            rows.append((job.name, str(job.kind), by_status))
        return rows
