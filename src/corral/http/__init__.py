"""The HTTP API (`corral serve`): docs/http-api.md."""

from corral.http.app import create_app

__all__ = ["create_app"]
