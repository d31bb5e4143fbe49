"""corral's errors as HTTP answers, one status per kind, never 500 for bad input:

- 401 no token, or an unknown or revoked one (with `WWW-Authenticate: Bearer`);
- 404 no such process, or one of another client (the same words for both);
- 409 a custom id already used with another job or other parameters, or a transition the
  process's status does not allow (retrying a completed process);
- 422 bad input, every field error listed (`detail`: a list of `loc`, `msg`, `type`);
- 503 the database cannot be reached now, with `Retry-After` (transient: try again).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from corral.errors import (
    CustomIdConflict,
    IllegalTransition,
    InvalidId,
    ProcessNotFound,
    StorageError,
    StorageUnavailable,
    UnknownJob,
    UsageError,
    ValueRejected,
)
from corral.http.answers import Detail, answer
from corral.http.answers import FieldErrors as FieldErrorsView
from corral.http.auth import Unauthorized

#: The answers every route may give, for the OpenAPI document.
RESPONSES: dict[int | str, dict[str, Any]] = {
    401: answer(Detail, "No token, or an unknown or revoked one."),
    422: answer(FieldErrorsView, "Invalid input: every field error."),
    503: {
        **answer(Detail, "The database cannot be reached now: try again after `Retry-After`."),
        "headers": {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds."}},
    },
}

#: Seconds a client is asked to wait before it tries again after a 503.
RETRY_AFTER = 5


class FieldErrors(UsageError):
    """Bad input, with every field error (pydantic's shape: `loc`, `msg`, `type`)."""

    def __init__(self, errors: Sequence[dict[str, Any]]) -> None:
        super().__init__("; ".join(str(e["msg"]) for e in errors))
        self.errors = list(errors)


def field_error(loc: Sequence[str | int], message: str) -> FieldErrors:
    return FieldErrors([{"loc": list(loc), "msg": message, "type": "value_error"}])


def install(app: FastAPI) -> None:
    """Answer corral's errors as the module's docstring says."""
    app.add_exception_handler(Unauthorized, _unauthorized)
    app.add_exception_handler(ProcessNotFound, _status(404))
    app.add_exception_handler(CustomIdConflict, _status(409))
    app.add_exception_handler(IllegalTransition, _status(409))
    app.add_exception_handler(FieldErrors, _field_errors)
    app.add_exception_handler(UnknownJob, _unknown_job)
    app.add_exception_handler(InvalidId, _invalid_id)
    app.add_exception_handler(UsageError, _usage)
    app.add_exception_handler(ValueRejected, _usage)
    app.add_exception_handler(StorageUnavailable, _unavailable)
    app.add_exception_handler(StorageError, _storage_error)
    app.add_exception_handler(HTTPException, _http)


def _status(code: int) -> Any:
    async def handle(_request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=code)

    return handle


async def _unauthorized(_request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(
        {"detail": str(exc)}, status_code=401, headers={"WWW-Authenticate": "Bearer"}
    )


async def _field_errors(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, FieldErrors)
    return JSONResponse({"detail": exc.errors}, status_code=422)


async def _unknown_job(_request: Request, exc: Exception) -> JSONResponse:
    return await _field_errors(_request, field_error(["body", "job"], str(exc)))


async def _invalid_id(_request: Request, exc: Exception) -> JSONResponse:
    # Ids in a body are checked where they are read, and named there: this one is the path's.
    return await _field_errors(_request, field_error(["path", "process_id"], str(exc)))


async def _usage(_request: Request, exc: Exception) -> JSONResponse:
    return await _field_errors(_request, field_error(["body"], str(exc)))


async def _unavailable(_request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(
        {"detail": str(exc)}, status_code=503, headers={"Retry-After": str(RETRY_AFTER)}
    )


async def _storage_error(_request: Request, exc: Exception) -> JSONResponse:
    # The database failed for good (a corrupt or replaced file, a newer schema): the
    # server's fault, not the request's, and trying again does not help.
    return JSONResponse({"detail": str(exc)}, status_code=500)


async def _http(request: Request, exc: Exception) -> Response:
    """Starlette's answer, but a 400 is a 422, and a 405 lists in `Allow` every method of
    the path: Starlette names those of the one route it matched (GET and POST /processes
    are two routes)."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == 400:
        # FastAPI's answer to a body it cannot even decode (bytes that are not UTF-8): bad
        # input, said as every other is.
        problem = field_error(["body"], f"the body is not JSON text in UTF-8 ({exc.detail})")
        return await _field_errors(request, problem)
    if exc.status_code == 405:
        allowed = ", ".join(_methods(request.app, request.url.path))
        exc = HTTPException(405, exc.detail, headers={"Allow": allowed})
    return await http_exception_handler(request, exc)


def _methods(app: FastAPI, path: str) -> list[str]:
    """The methods the OpenAPI document gives the path."""
    for template, operations in app.openapi()["paths"].items():
        if re.fullmatch(re.sub(r"\\{[^/]+?\\}", "[^/]+", re.escape(template)), path):
            return sorted(method.upper() for method in operations)
    return []
