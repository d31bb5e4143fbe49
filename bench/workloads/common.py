"""What the workloads share: the adapter interface, worker processes, memory, percentiles.

Runs in the harness's driver process: under the project's Python for corral, under the
peers' virtual environment for the others. It imports no queue library.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from workloads import record

BENCH_DIR = Path(__file__).resolve().parents[1]
PG_BASE = os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432")
REDIS_BASE = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379")


class NotApplicable(Exception):
    """A workload that does not apply to a system; the message says why ("n/a: …")."""


@dataclass
class Settings:
    """Where a system keeps its state during one run of one workload."""

    workdir: Path
    record_file: Path
    concurrency: int | None


class System:
    """One queue system as the workloads see it. Subclasses live in bench/apps and
    bench/peers, beside the task code their workers import."""

    name = ""
    #: Enough for a reader to know what was measured: the API used, the worker command.
    bulk_api: str | None = None
    #: Why W4 does not apply, or None when `depth_*` are implemented.
    depth_na: str | None = None
    #: Count only the worker's main process for W6 (children are short-lived forks).
    memory_main_only = False

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    # --- state ---------------------------------------------------------------------------
    def start_fresh(self) -> None:
        """An empty queue and no records: what every workload starts from."""
        self.settings.record_file.unlink(missing_ok=True)
        self.reset()

    def unavailable(self) -> str | None:
        """Why this system cannot run here (its server is unreachable...), or None."""
        return None

    def reset(self) -> None:
        """Start from an empty queue (drop and recreate the database, flush the keys)."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the harness's own connections."""

    # --- enqueueing ----------------------------------------------------------------------
    def enqueue_one(self, i: int, t: float) -> None:
        """Enqueue job `i` (enqueued at `t`) through the ordinary one-at-a-time API."""
        raise NotImplementedError

    def enqueue_bulk(self, items: Sequence[tuple[int, float]]) -> None:
        """Enqueue many jobs in one call of the system's bulk API."""
        raise NotApplicable("no bulk API")

    def submit_graph(self, nodes: int, edges: Sequence[tuple[int, int]]) -> None:
        """W5: nodes 0..nodes-1 of the recording job, each waiting for the nodes `edges`
        name ((dependent, dependency) pairs), submitted in one go."""
        raise NotApplicable("no task graphs")

    def enqueue_many(self, items: Sequence[tuple[int, float]], chunk: int = 5000) -> None:
        """Pre-enqueue for the drain and memory workloads: the bulk API when there is one."""
        if self.bulk_api is None:
            for i, t in items:
                self.enqueue_one(i, t)
            return
        for start in range(0, len(items), chunk):
            self.enqueue_bulk(items[start : start + chunk])

    # --- workers -------------------------------------------------------------------------
    def worker_command(self, concurrency: int | None, index: int) -> list[str]:
        """The command of worker process `index` running `concurrency` jobs at once, or the
        system's own default when None (`bench/run.py --defaults`)."""
        raise NotImplementedError

    def worker_env(self) -> dict[str, str]:
        return {}

    # --- W4: claim cost with many finished jobs in the table -----------------------------
    def depth_fill(self, finished: int) -> None:
        """Bring the number of finished jobs kept by the system up to `finished`."""
        raise NotApplicable(self.depth_na or "not implemented")

    def depth_runnable(self, count: int) -> None:
        """Enqueue `count` fresh runnable jobs for `depth_claim` to take."""
        self.enqueue_many([(10**9 + k, time.time()) for k in range(count)])

    def depth_claim(self) -> None:
        """Claim one runnable job and record it finished, as a worker would."""
        raise NotApplicable(self.depth_na or "not implemented")


# --- worker processes ----------------------------------------------------------------------


class Workers:
    """Worker processes of one system, started together and stopped together.

    They share the driver's process group: when the harness kills the driver's group on a
    timeout, the workers go with it.
    """

    def __init__(self, system: System, count: int, concurrency: int | None, tag: str) -> None:
        self.system = system
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []
        env = dict(os.environ)
        env.update(system.worker_env())
        env[record.RECORD_FILE_ENV] = str(system.settings.record_file)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(BENCH_DIR), env.get("PYTHONPATH", "")) if p
        )
        env["PYTHONUNBUFFERED"] = "1"
        for n in range(count):
            cmd = system.worker_command(concurrency, n)
            log = system.settings.workdir / f"{system.name}-{tag}-worker{n}.log"
            self.logs.append(log)
            with open(log, "wb") as out:
                self.procs.append(
                    subprocess.Popen(
                        cmd,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        stdin=subprocess.DEVNULL,
                        env=env,
                        cwd=system.settings.workdir,
                    )
                )

    def check_alive(self) -> None:
        for proc, log in zip(self.procs, self.logs, strict=True):
            if proc.poll() is not None:
                raise RuntimeError(f"worker exited with {proc.returncode}: {tail(log)}")

    def rss_mb(self) -> float:
        """Resident memory of the workers (with their children unless main-only), in MB."""
        total = 0
        for proc in self.procs:
            pids = [proc.pid]
            if not self.system.memory_main_only:
                pids += descendants(proc.pid)
            total += sum(rss_bytes(pid) for pid in pids)
        return total / 1e6

    def stop(self, grace: float = 10.0) -> None:
        trees = {p.pid: descendants(p.pid) for p in self.procs}
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
        for proc in self.procs:
            for pid in [proc.pid, *trees[proc.pid], *descendants(proc.pid)]:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def tail(path: Path) -> str:
    """The last line of a worker's log: usually the error that ended it."""
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    lines = [line.strip() for line in text if line.strip() and not line.startswith(" ")]
    return lines[-1][-300:] if lines else "(empty log)"


def descendants(pid: int) -> list[int]:
    """Every living descendant of `pid`, read from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rfind(b")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out: list[int] = []
    stack = [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            out.append(child)
            stack.append(child)
    return out


def rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, IndexError, ValueError):
        return 0


def wait_for_records(
    workers: Workers | None, path: Path, target: int, timeout: float, poll: float = 0.005
) -> float:
    """Wait until `path` holds `target` records; return the time.monotonic() it did."""
    deadline = time.monotonic() + timeout
    checked = time.monotonic()
    while True:
        now = time.monotonic()
        if record.count(str(path)) >= target:
            return now
        if now > deadline:
            got = record.count(str(path))
            raise TimeoutError(f"{got} of {target} jobs done after {timeout:.0f}s")
        if workers is not None and now - checked > 1.0:
            workers.check_alive()
            checked = now
        time.sleep(poll)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), linear between closest ranks."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values")
    k = (len(ordered) - 1) * q / 100
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def pg_recreate(database: str) -> str:
    """Drop and create a PostgreSQL database for this run; return its URL."""
    import psycopg

    with psycopg.connect(f"{PG_BASE}/postgres", autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{database}"')
    return f"{PG_BASE}/{database}"


def pg_unavailable() -> str | None:
    try:
        import psycopg

        with psycopg.connect(f"{PG_BASE}/postgres", connect_timeout=3):
            return None
    except Exception as exc:
        return f"PostgreSQL not reachable ({str(exc).strip().splitlines()[0][:80]})"


def redis_unavailable(url: str) -> str | None:
    try:
        import redis

        redis.Redis.from_url(url, socket_connect_timeout=3).ping()
        return None
    except Exception as exc:
        return f"Redis not reachable ({str(exc)[:80]})"
