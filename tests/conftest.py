from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.storage.base import Storage
from tests.backends import BACKENDS, make_storage


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def storage(backend: str, tmp_path: Path) -> Iterator[Storage]:
    with make_storage(backend, tmp_path) as s:
        yield s
