"""Many processes opening a database that does not exist yet, at once (a worker and a
submit started together): each connects, the file is switched to WAL and migrated once,
and nobody waits for the busy timeout.

The race these guard against is narrow (a connection that read the file before another
switched it to WAL tries to switch it too, and waits for the other's shared lock until the
busy timeout): CI met it twice in one run. Connections are now set up in the writers'
turn, one at a time; these tests run the scenario many times over."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

from corral.storage import open_storage
from corral.storage.base import ProcessFilter
from tests.conformance.common import new

OPEN_AND_INSERT = """
import sys
from corral.storage import open_storage
from tests.conformance.common import new
with open_storage(sys.argv[1] + "?busy_timeout=5") as s:
    s.process_insert_many([new()])
"""


def test_threads_creating_one_database_at_once(tmp_path: Path) -> None:
    for round_ in range(5):
        url = f"sqlite:///{tmp_path / f'round-{round_}.db'}?busy_timeout=5"
        errors: list[BaseException] = []
        start = threading.Barrier(8)

        def open_and_insert(
            url: str = url,
            start: threading.Barrier = start,
            errors: list[BaseException] = errors,
        ) -> None:
            try:
                start.wait()
                with open_storage(url) as s:
                    s.process_insert_many([new()])
            except BaseException as exc:  # reported below, with the others
                errors.append(exc)

        threads = [threading.Thread(target=open_and_insert) for _ in range(8)]
        began = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        # Well under the busy timeout: nobody waited it out.
        assert time.monotonic() - began < 5
        with open_storage(url) as s:
            assert s.process_count(ProcessFilter()) == 8


def test_processes_creating_one_database_at_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'corral.db'}"
    root = Path(__file__).resolve().parents[2]
    procs = [
        subprocess.Popen([sys.executable, "-c", OPEN_AND_INSERT, url], cwd=root) for _ in range(6)
    ]
    assert [p.wait(timeout=60) for p in procs] == [0] * 6
    with open_storage(url) as s:
        assert s.process_count(ProcessFilter()) == 6
