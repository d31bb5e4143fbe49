"""What `POST /processes` and `POST /processes:batch` check before the App writes: every
field error of the parameters at once (the App stops at the first), and dependencies that
the caller may see (another client's process is named as missing)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pydantic

from corral.app import App
from corral.errors import InvalidId, ProcessNotFound, UnknownJob
from corral.http.auth import Caller
from corral.http.errors import FieldErrors, field_error

Loc = Sequence[str | int]


def param_errors(
    corral: App, job: str, params: Mapping[str, Any], loc: Loc
) -> list[dict[str, Any]]:
    """Every error of `params` against `job`'s schema, located under `loc`; an unknown job
    is one error at the job's place."""
    try:
        model = corral.get_job(job).params_model
    except UnknownJob as exc:
        return [{"loc": [*loc[:-1], "job"], "msg": str(exc), "type": "value_error"}]
    try:
        model.__pydantic_validator__.validate_python(dict(params))
    except pydantic.ValidationError as exc:
        found = exc.errors(include_url=False, include_context=False, include_input=False)
        return [{"loc": [*loc, *e["loc"]], "msg": e["msg"], "type": e["type"]} for e in found]
    return []


def check_params(corral: App, job: str, params: Mapping[str, Any], loc: Loc) -> None:
    errors = param_errors(corral, job, params, loc)
    if errors:
        raise FieldErrors(errors)


def visible_dependencies(
    corral: App, caller: Caller, depends_on: Sequence[str], loc: Loc
) -> list[str]:
    """The ids `depends_on` names, each a process the caller may see."""
    return [visible_dependency(corral, caller, ref, [*loc, n]) for n, ref in enumerate(depends_on)]


def visible_dependency(corral: App, caller: Caller, ref: str, loc: Loc) -> str:
    """The id of the process `ref` names, if the caller may see it; else an error at `loc`
    worded as for a process that does not exist."""
    try:
        return caller.process(corral, ref).id
    except (InvalidId, ProcessNotFound) as exc:
        raise field_error(loc, str(exc)) from None
