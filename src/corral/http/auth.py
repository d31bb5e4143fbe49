"""Who is asking: the bearer token of a request, looked up by its hash.

A client token sees and acts on its own processes only: another client's process answers
404, exactly like one that does not exist, so that a client cannot even learn which ids
exist. An admin token sees every process. Every request needs a token (401 otherwise).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from corral.app import App
from corral.errors import CorralError, ProcessNotFound
from corral.http.tokens import hash_token
from corral.model import Process
from corral.storage.base import TokenInfo

_bearer = HTTPBearer(auto_error=False, description="A token made by `corral token create`.")


class Unauthorized(CorralError):
    """No token, or one that is unknown or revoked: 401."""


@dataclass(frozen=True, slots=True)
class Caller:
    """The token a request came with."""

    token: TokenInfo

    @property
    def client(self) -> str:
        return self.token.client

    @property
    def scope(self) -> str | None:
        """The client whose processes this caller sees; None: every client's (admin)."""
        return None if self.token.admin else self.token.client

    def sees(self, process: Process) -> bool:
        return self.token.admin or process.client_id == self.token.client

    def process(self, corral: App, process_id: str) -> Process:
        """The process if this caller may see it; else ProcessNotFound, worded as for an id
        that names nothing."""
        found = corral.get(process_id)
        if not self.sees(found):
            raise ProcessNotFound(f"no process with id {found.id}")
        return found


def corral_app(request: Request) -> App:
    """The corral App that `create_app` was given."""
    app: App = request.app.state.corral
    return app


def caller(
    corral: Annotated[App, Depends(corral_app)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Caller:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("send a token: Authorization: Bearer TOKEN (corral token create)")
    token = corral.storage.token_by_hash(hash_token(credentials.credentials))
    if token is None:
        raise Unauthorized("unknown or revoked token")
    return Caller(token)


CallerDep = Annotated[Caller, Depends(caller)]
CorralDep = Annotated[App, Depends(corral_app)]
