"""Huey (SQLite storage): the task its consumers load, and the harness's adapter.

Workers: `huey_consumer peers.huey_peer.huey -k thread -w N` (WAL, SQLite's default
synchronous=FULL, polling from 0.1 s backing off to 10 s when idle: the defaults).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from huey import SqliteHuey
from workloads.common import Settings, System
from workloads.record import record

FILE_ENV = "BENCH_HUEY_FILE"

huey = SqliteHuey(filename=os.environ.get(FILE_ENV, "huey-bench.db"))


@huey.task(name="noop")
def noop(i: int, t: float = 0.0) -> None:
    record(i, t)


class Huey(System):
    name = "huey"
    depth_na = "finished jobs leave the queue"

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.path = settings.workdir / "huey-bench.db"
        huey.storage.filename = str(self.path)

    def reset(self) -> None:
        huey.storage.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)
        huey.storage.initialize_schema()

    def close(self) -> None:
        huey.storage.close()

    def enqueue_one(self, i: int, t: float) -> None:
        noop(i, t)

    def worker_command(self, concurrency: int | None, index: int) -> list[str]:
        given = [] if concurrency is None else ["-w", str(concurrency)]
        return [
            sys.executable,
            "-m",
            "huey.bin.huey_consumer",
            "peers.huey_peer.huey",
            "-k",
            "thread",
            *given,
            "-q",
        ]

    def worker_env(self) -> dict[str, str]:
        return {FILE_ENV: str(self.path)}
