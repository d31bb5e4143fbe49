"""Fixtures of the integration tests: `app`, an App on each backend (a file may define its
own, with jobs of its own)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from corral import App
from tests.backends import backend_url


@pytest.fixture
def app(backend: str, tmp_path: Path) -> Iterator[App]:
    with backend_url(backend, tmp_path) as url:
        a = App(url, lease_seconds=5)
        yield a
        a.close()
