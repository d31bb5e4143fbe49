#!/usr/bin/env python3
"""corral's benchmark suite: corral on SQLite and PostgreSQL beside its peers, in one run.

    python bench/run.py            # everything (~30 min): installs the peers, updates README
    python bench/run.py --smoke    # seconds: corral only, tiny sizes; exits 1 if one breaks

Each workload runs each system in a driver subprocess (bench/workloads/driver.py) under the
right interpreter, with a time limit; the driver starts the system's real worker processes.
A system that breaks or hangs is reported as "error: ..." and the run goes on. See
bench/README.md for what each workload measures.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import os
import platform
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from workloads.systems import BY_NAME, CORRAL, PEERS, SYSTEMS  # noqa: E402

PEERS_DIR = BENCH / ".peers"
VENV = PEERS_DIR / "venv"
VENV_PYTHON = VENV / "bin" / "python"
REQUIREMENTS = BENCH / "peers" / "requirements.txt"
RESULTS = BENCH / "results"
README = BENCH / "README.md"
START_MARK = "<!-- bench:results:start -->"
END_MARK = "<!-- bench:results:end -->"
WORKLOADS = ("w1", "w2", "w3", "w4", "w5", "w6")
NO_GRAPHS = "n/a: no task graphs measured"

# --- targets (issue: for information, the engine owners optimise) --------------------------
TARGETS = {
    "w1_single": {"corral-sqlite": 3500, "corral-pg": 2000},
    "w1_bulk": {"corral-sqlite": 150_000, "corral-pg": 60_000},
    "w2": {"corral-sqlite": 10_000, "corral-pg": 10_000},
    "w3_p50": {"corral-sqlite": 2.0, "corral-pg": 2.0},
    "w3_p99": {"corral-sqlite": 10.0, "corral-pg": 10.0},
}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- options -------------------------------------------------------------------------------


def ints(text: str) -> list[int]:
    return [int(x.replace("_", "")) for x in text.split(",") if x.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="corral's benchmark suite (see bench/README.md).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--smoke", action="store_true", help="tiny sizes, corral only, no peers (CI)")
    p.add_argument(
        "--systems", help=f"comma-separated subset of: {', '.join(s.name for s in SYSTEMS)}"
    )
    p.add_argument("--workloads", default=",".join(WORKLOADS), help="comma-separated subset")
    p.add_argument("--workers", type=int, default=2, help="worker processes in W2 and W3")
    p.add_argument(
        "--concurrency",
        type=int,
        default=16,
        help="jobs in flight per worker process (threads, async tasks) for every system",
    )
    p.add_argument(
        "--defaults",
        action="store_true",
        help="every system at its own defaults: no concurrency or batch option passed "
        "(--concurrency is ignored)",
    )
    p.add_argument("--w1-jobs", type=int, default=5000)
    p.add_argument("--w2-jobs", type=int, default=20_000)
    p.add_argument("--w3-jobs", type=int, default=200)
    p.add_argument("--w3-interval-ms", type=float, default=20.0)
    p.add_argument("--w4-depths", type=ints, default=[10_000, 100_000, 1_000_000])
    p.add_argument("--w4-claims", type=int, default=200)
    p.add_argument("--w5-nodes", type=int, default=100_000)
    p.add_argument("--w5-width", type=int, default=1_000, help="W5 nodes per layer")
    p.add_argument("--w6-jobs", type=ints, default=[10_000, 100_000])
    p.add_argument(
        "--w6-budget", type=float, default=120.0, help="seconds W6 lets a peer's worker run"
    )
    p.add_argument(
        "--w6-budget-corral",
        type=float,
        default=300.0,
        help="seconds W6 lets corral's worker run (its memory target is at 100k jobs)",
    )
    p.add_argument(
        "--retries",
        type=int,
        default=2,
        help="re-runs, at the end, of a system/workload that errored (the table says so)",
    )
    p.add_argument("--timeout", type=float, default=600.0, help="max seconds per system/workload")
    p.add_argument("--no-install", action="store_true", help="use bench/.peers/venv as it is")
    p.add_argument(
        "--readme",
        choices=("auto", "yes", "no"),
        default="auto",
        help="write the table into bench/README.md (auto: full runs of every system)",
    )
    p.add_argument(
        "--workdir",
        help="databases, records, logs (default: bench/results/work, smoke-work with --smoke)",
    )
    args = p.parse_args(argv)
    if args.smoke:
        args.systems = args.systems or ",".join(CORRAL)
        args.w1_jobs, args.w2_jobs = 200, 400
        args.w3_jobs, args.w3_interval_ms = 20, 10.0
        args.w4_depths, args.w4_claims = [200, 2000], 20
        args.w5_nodes, args.w5_width = 400, 20
        args.w6_jobs, args.w6_budget, args.w6_budget_corral = [200, 1000], 20.0, 20.0
        args.retries = 0
        # Its own files and PostgreSQL database: a smoke run may overlap a full one.
        os.environ.setdefault("BENCH_CORRAL_DATABASE", "corral_bench_smoke")
        if args.concurrency is not None:
            args.concurrency = min(args.concurrency, 8)
        args.timeout = min(args.timeout, 60.0)
    if args.defaults:
        args.concurrency = None  # each system's own default
    args.workdir = args.workdir or str(RESULTS / ("smoke-work" if args.smoke else "work"))
    args.systems = (args.systems or ",".join(s.name for s in SYSTEMS)).split(",")
    unknown = [s for s in args.systems if s not in BY_NAME]
    if unknown:
        p.error(f"unknown systems: {', '.join(unknown)}")
    args.workloads = args.workloads.split(",")
    bad = [w for w in args.workloads if w not in WORKLOADS]
    if bad:
        p.error(f"unknown workloads: {', '.join(bad)}")
    return args


# --- the peers' virtual environment --------------------------------------------------------


def install_peers() -> str | None:
    """Create bench/.peers/venv and install the peers; None when ready, else why not."""
    digest = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    stamp = PEERS_DIR / "installed.sha256"
    if VENV_PYTHON.exists() and stamp.exists() and stamp.read_text().strip() == digest:
        return None
    log(f"installing the peers into {VENV} ...")
    try:
        if not VENV_PYTHON.exists():
            subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run(
            [
                str(VENV_PYTHON),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "-r",
                str(REQUIREMENTS),
            ],
            check=True,
            timeout=900,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        return f"peer install failed: {exc}"
    stamp.write_text(digest + "\n")
    return None


# --- running one workload on one system ----------------------------------------------------


@dataclass
class Run:
    args: argparse.Namespace
    workdir: Path
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    peers_broken: str | None = None
    peer_versions: str = ""
    #: 1-minute load average after each measurement: how busy the machine was.
    loads: list[float] = field(default_factory=list)

    def params(self, system: str, workload: str) -> tuple[dict[str, Any], float]:
        a = self.args
        if workload == "w1":
            return {"jobs": a.w1_jobs}, a.timeout
        if workload == "w2":
            inner = a.timeout - 60 if a.timeout > 120 else a.timeout * 0.7
            return {
                "jobs": a.w2_jobs,
                "workers": a.workers,
                "concurrency": a.concurrency,
                "timeout": inner,
            }, a.timeout
        if workload == "w3":
            return {
                "jobs": a.w3_jobs,
                "interval": a.w3_interval_ms / 1000,
                "workers": a.workers,
                "concurrency": a.concurrency,
                "timeout": min(60.0, a.timeout * 0.7),
                "idle": 0.2 if a.smoke else 1.0,
            }, a.timeout
        if workload == "w4":
            return {"depths": a.w4_depths, "claims": a.w4_claims}, max(a.timeout, 900.0)
        if workload == "w5":
            inner = a.timeout - 60 if a.timeout > 120 else a.timeout * 0.7
            return {
                "nodes": a.w5_nodes,
                "width": a.w5_width,
                "workers": a.workers,
                "concurrency": a.concurrency,
                "timeout": inner,
            }, a.timeout
        if workload == "w6":
            budget = a.w6_budget_corral if system in CORRAL else a.w6_budget
            return {
                "checkpoints": a.w6_jobs,
                "concurrency": a.concurrency,
                "timeout": budget,
            }, a.timeout + budget
        raise ValueError(workload)

    def one(self, system: str, workload: str) -> dict[str, Any]:
        info = BY_NAME[system]
        if info.python == "peers":
            if self.peers_broken:
                return {"error": self.peers_broken}
            python = str(VENV_PYTHON)
        else:
            python = sys.executable
        params, limit = self.params(system, workload)
        cmd = [
            python,
            str(BENCH / "workloads" / "driver.py"),
            system,
            workload,
            "--params",
            json.dumps(params),
            "--workdir",
            str(self.workdir),
        ]
        out_path = self.workdir / f"{system}-{workload}.driver.log"
        started = time.monotonic()
        with open(out_path, "wb") as out:
            proc = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=BENCH
            )
            try:
                proc.wait(timeout=limit)
            except subprocess.TimeoutExpired:
                stop_group(proc)
                return {"error": f"timed out after {limit:.0f}s"}
            finally:
                stop_group(proc, quiet=True)
        text = out_path.read_text(errors="replace")
        for line in reversed(text.splitlines()):
            if line.startswith("BENCH_RESULT "):
                result: dict[str, Any] = json.loads(line.removeprefix("BENCH_RESULT "))
                result["_seconds"] = time.monotonic() - started
                return result
        last = text.strip().splitlines()[-1:] or ["no output"]
        return {"error": f"driver exited {proc.returncode}: {last[0][:200]}"}

    def all(self) -> None:
        began = time.monotonic()

        def measure(system: str, workload: str) -> dict[str, Any]:
            t0 = time.monotonic()
            result = self.one(system, workload)
            self.loads.append(os.getloadavg()[0])
            log(
                f"[{time.monotonic() - began:6.0f}s] {workload} {system:14s} "
                f"{time.monotonic() - t0:6.1f}s  {summary(result)}"
            )
            return result

        for workload in self.args.workloads:
            for system in self.args.systems:
                if workload == "w5" and system not in CORRAL:
                    continue  # no peer here has task graphs (Celery's chords need a result backend)
                self.results.setdefault(system, {})[workload] = measure(system, workload)
        # What errored runs again at the end, when whatever disturbed it (a restart of the
        # shared PostgreSQL server by another test run...) is more likely to be over.
        for attempt in range(self.args.retries):
            failed = [
                (s, w) for s, by in self.results.items() for w, r in by.items() if "error" in r
            ]
            if not failed:
                break
            if attempt:
                time.sleep(30)
            for system, workload in failed:
                first = self.results[system][workload]
                log(f"{workload} {system}: trying again after {summary(first)}")
                result = measure(system, workload)
                result["_retried_after"] = first.get("_retried_after", first["error"])
                self.results[system][workload] = result


def stop_group(proc: subprocess.Popen[bytes], quiet: bool = False) -> None:
    """End the driver and everything it started (its process group): TERM, then KILL."""
    try:
        pgid = os.getpgid(proc.pid)
    except ProcessLookupError:
        pgid = proc.pid
    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        if sig == signal.SIGTERM:  # the driver is gone; make sure its workers are too
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
            return
    if not quiet:
        log(f"could not stop process group {pgid}")


def summary(result: dict[str, Any]) -> str:
    shown = {k: v for k, v in result.items() if not k.startswith("_")}
    return json.dumps(shown, default=str)[:160]


# --- the report ----------------------------------------------------------------------------


def fmt_rate(v: float) -> str:
    return f"{v:,.0f}"


def fmt_ms(v: float) -> str:
    return f"{v:.2f}" if v < 10 else f"{v:.1f}"


def fmt_mb(v: float) -> str:
    return f"{v:.1f}"


def clean(text: str, limit: int = 70) -> str:
    text = " ".join(str(text).split()).replace("|", "/")
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass
class Cell:
    """One measured value, or why there is none."""

    value: float | None = None
    text: str = ""

    def show(self, fmt: Any) -> str:
        return fmt(self.value) if self.value is not None else self.text


def cell(results: dict[str, Any], system: str, workload: str, *path: str) -> Cell:
    r = results.get(system, {}).get(workload)
    if r is None:
        return Cell(text="not run")
    if "error" in r:
        return Cell(text=f"error: {clean(r['error'])}")
    if "na" in r:
        return Cell(text=f"n/a: {clean(r['na'])}")
    node: Any = r
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return Cell(text="—")
        node = node[key]
    if isinstance(node, str):
        return Cell(text=clean(node))
    if node is None:
        return Cell(text="—")
    return Cell(value=float(node))


@dataclass
class Row:
    label: str
    unit: str
    higher_is_better: bool
    fmt: Any
    get: Any  # (results, system) -> Cell
    target: str = ""
    #: key of TARGETS, or "ratio" / "growth" for the W4 and W6 limits.
    goal: str = ""


def brief(c: Cell, full: bool) -> Cell:
    if not full and c.value is None and c.text.startswith("n/a"):
        c.text = "n/a"
    return c


def w6_cell(results: dict[str, Any], system: str, checkpoint: int) -> Cell:
    c = cell(results, system, "w6", str(checkpoint), "rss_mb")
    r = results.get(system, {}).get("w6", {})
    point = r.get(str(checkpoint)) if isinstance(r, dict) else None
    if c.value is not None and isinstance(point, dict) and point.get("timeout"):
        c.text = f"{fmt_mb(c.value)} (at {point['jobs']:,} jobs: budget spent)"
        c.value = None  # not comparable: fewer jobs than the checkpoint
    return c


def w6_growth(results: dict[str, Any], system: str, lo: int, hi: int) -> Cell:
    a, b = w6_cell(results, system, lo), w6_cell(results, system, hi)
    if a.value is None or b.value is None or a.value <= 0:
        return Cell(text="—")
    return Cell(value=(b.value / a.value - 1) * 100)


def w4_growth(results: dict[str, Any], system: str, lo: int, hi: int) -> Cell:
    a = cell(results, system, "w4", str(lo), "p50")
    b = cell(results, system, "w4", str(hi), "p50")
    if a.value is None or b.value is None or a.value <= 0:
        return Cell(text=a.text if a.value is None else "—")
    return Cell(value=b.value / a.value)


def rows(args: argparse.Namespace) -> list[Row]:
    out = [
        Row(
            f"W1 enqueue, {args.w1_jobs:,} one at a time",
            "jobs/s",
            True,
            fmt_rate,
            lambda r, s: cell(r, s, "w1", "single"),
            "≥ 3,500 SQLite, ≥ 2,000 PG",
            "w1_single",
        ),
        Row(
            f"W1 enqueue, {args.w1_jobs:,} in one bulk call",
            "jobs/s",
            True,
            fmt_rate,
            lambda r, s: cell(r, s, "w1", "bulk"),
            "≥ 150,000 SQLite, ≥ 60,000 PG",
            "w1_bulk",
        ),
        Row(
            f"W2 drain, {args.w2_jobs:,} jobs, {args.workers} workers",
            "jobs/s",
            True,
            fmt_rate,
            lambda r, s: cell(r, s, "w2", "rate"),
            "≥ 10,000",
            "w2",
        ),
        Row(
            f"W3 latency p50, {args.w3_jobs} jobs every {args.w3_interval_ms:g} ms",
            "ms",
            False,
            fmt_ms,
            lambda r, s: cell(r, s, "w3", "p50"),
            "≤ 2",
            "w3_p50",
        ),
        Row(
            "W3 latency p99",
            "ms",
            False,
            fmt_ms,
            lambda r, s: cell(r, s, "w3", "p99"),
            "≤ 10",
            "w3_p99",
        ),
    ]
    for n, depth in enumerate(sorted(args.w4_depths)):
        out.append(
            Row(
                f"W4 claim with {depth:,} finished",
                "ms/claim",
                False,
                fmt_ms,
                # The reason a system has no W4 is spelled out on the first row only.
                lambda r, s, d=depth, first=n == 0: brief(cell(r, s, "w4", str(d), "p50"), first),
            )
        )
    if len(args.w4_depths) > 1:
        lo, hi = min(args.w4_depths), max(args.w4_depths)
        out.append(
            Row(
                f"W4 claim at {hi:,} ÷ at {lo:,}",
                "x",
                False,
                lambda v: f"{v:.2f}x",
                lambda r, s, lo=lo, hi=hi: brief(w4_growth(r, s, lo, hi), False),
                "≤ 1.5x",
                "ratio",
            )
        )
    out.append(
        Row(
            f"W5 graph submit, {args.w5_nodes:,} nodes in one batch",
            "s",
            False,
            lambda v: f"{v:.2f}",
            lambda r, s: (
                cell(r, s, "w5", "submit_seconds") if s in CORRAL else Cell(text=NO_GRAPHS)
            ),
        )
    )
    out.append(
        Row(
            f"W5 graph drain, {args.workers} workers",
            "nodes/s",
            True,
            fmt_rate,
            lambda r, s: cell(r, s, "w5", "rate") if s in CORRAL else Cell(text=NO_GRAPHS),
        )
    )
    for checkpoint in sorted(args.w6_jobs):
        out.append(
            Row(
                f"W6 worker memory after {checkpoint:,} jobs",
                "MB",
                False,
                fmt_mb,
                lambda r, s, c=checkpoint: w6_cell(r, s, c),
            )
        )
    if len(args.w6_jobs) > 1:
        lo, hi = min(args.w6_jobs), max(args.w6_jobs)
        out.append(
            Row(
                f"W6 memory growth {lo:,} → {hi:,} jobs",
                "%",
                False,
                lambda v: f"{v:+.1f}%",
                lambda r, s, lo=lo, hi=hi: w6_growth(r, s, lo, hi),
                "≤ 10%",
                "growth",
            )
        )
    return out


def table(header: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines)


def ratio(a: Cell, b: Cell) -> str:
    if a.value is None or b.value is None or b.value == 0:
        return "—"
    return f"{a.value / b.value:.2f}x"


def machine() -> dict[str, str]:
    mem = "?"
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem = f"{int(line.split()[1]) / 1024**2:.1f} GiB"
    except OSError:
        pass
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpus": str(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else "?"),
        "cpu": cpu,
        "memory": mem,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "postgresql": postgres_version(),
        "redis": redis_version(),
        "corral": git_revision(),
    }


def postgres_version() -> str:
    try:
        import psycopg

        url = os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432")
        with psycopg.connect(f"{url}/postgres", connect_timeout=3) as conn:
            row = conn.execute("SHOW server_version").fetchone()
            return str(row[0]).split()[0] if row else "?"
    except Exception:
        return "not reachable"


def redis_version() -> str:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=3) as s:
            s.sendall(b"INFO server\r\n")
            data = b""
            while b"redis_version" not in data or not data.endswith(b"\r\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        for line in data.decode(errors="replace").splitlines():
            if line.startswith("redis_version:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "not reachable"


def git_revision() -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(BENCH.parent), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return out.stdout.strip() or "?"
    except OSError:
        return "?"


def peer_versions() -> str:
    if not VENV_PYTHON.exists():
        return ""
    code = (
        "import importlib.metadata as m\n"
        "for n in ('procrastinate','pgqueuer','celery','rq','dramatiq','huey'):\n"
        "    try: print(n, m.version(n))\n"
        "    except Exception: pass\n"
    )
    try:
        out = subprocess.run(
            [str(VENV_PYTHON), "-c", code], capture_output=True, text=True, timeout=60
        )
    except OSError:
        return ""
    return ", ".join(" ".join(line.split()) for line in out.stdout.splitlines())


def report(run: Run, info: dict[str, str]) -> str:
    args, results = run.args, run.results
    systems = list(args.systems)
    labels = [BY_NAME[s].label for s in systems]
    table_rows = [r for r in rows(args) if r.label[:2].lower() in args.workloads]
    parts = [
        f"Run of {info['date']} on {info['cpus']} CPUs ({info['cpu']}), {info['memory']}, "
        f"{info['os']}; Python {info['python']}, SQLite {info['sqlite']}, "
        f"PostgreSQL {info['postgresql']}, Redis {info['redis']}; corral {info['corral']}"
        + (f"; peers: {run.peer_versions}" if run.peer_versions else "")
        + f". The run took {info['minutes']} min; 1-minute load average after each "
        f"measurement: {info['load']} (2 would mean both cores busy all the time).",
        f"Every system: {args.workers} worker processes in W2 and W3 (1 in W6), "
        + (
            "each at its own defaults (no concurrency or batch option passed), "
            if args.concurrency is None
            else f"{args.concurrency} jobs in flight per process (threads or async tasks), "
        )
        + "logging at WARNING; otherwise its defaults.",
        "",
        table(
            ["workload", "unit", *labels],
            [
                [r.label, r.unit, *[r.get(results, s).show(r.fmt) for s in systems]]
                for r in table_rows
            ],
        ),
    ]
    retried = [
        f"{BY_NAME[s].label} {w.upper()} (first try: {clean(r['_retried_after'], 120)})"
        for w in args.workloads
        for s in systems
        if "_retried_after" in (r := results.get(s, {}).get(w, {}))
    ]
    if retried:
        parts += ["", "Run a second time after an error: " + "; ".join(retried) + "."]
    if (
        "w6" in args.workloads
        and args.w6_budget_corral != args.w6_budget
        and any(s in CORRAL for s in systems)
    ):
        parts += [
            "",
            f"W6 budget: {args.w6_budget_corral:g} s for corral, {args.w6_budget:g} s for "
            "each peer; a value read when the budget ran out shows the jobs done by then.",
        ]
    peers = [s for s in systems if s in PEERS]
    for corral in [s for s in systems if s in CORRAL]:
        if not peers:
            break
        body = []
        for r in table_rows:
            if r.unit in ("", "x", "%"):
                continue
            mine = r.get(results, corral)
            body.append([r.label, r.unit, *[ratio(mine, r.get(results, p)) for p in peers]])
        parts += [
            "",
            f"**{BY_NAME[corral].label} ÷ peer**, measured in this same run "
            "(jobs/s: above 1x is corral faster; ms and MB: below 1x is corral better):",
            "",
            table(["workload", "unit", *[BY_NAME[p].label for p in peers]], body),
        ]
    target_rows = []
    for r in table_rows:
        if not r.goal:
            continue
        cells = []
        for corral in [s for s in systems if s in CORRAL]:
            c = r.get(results, corral)
            cells.append(
                c.show(r.fmt) + (f" {verdict(r, corral, c)}" if c.value is not None else "")
            )
        target_rows.append([r.label, r.target, *cells])
    corral_labels = [BY_NAME[s].label for s in systems if s in CORRAL]
    if target_rows and corral_labels:
        parts += [
            "",
            "**corral against its targets** (✅ met, ❌ not met):",
            "",
            table(["workload", "target", *corral_labels], target_rows),
        ]
    parts += ["", "**Delivery guarantees** (as configured here):", ""]
    parts += [f"- {BY_NAME[s].label}: {BY_NAME[s].guarantee}." for s in systems]
    return "\n".join(parts) + "\n"


def verdict(row: Row, system: str, c: Cell) -> str:
    assert c.value is not None
    if row.goal == "ratio":
        ok = c.value <= 1.5
    elif row.goal == "growth":
        ok = c.value <= 10
    else:
        limit = TARGETS[row.goal][system]
        ok = c.value >= limit if row.higher_is_better else c.value <= limit
    return "✅" if ok else "❌"


def update_readme(text: str) -> bool:
    if not README.exists():
        return False
    content = README.read_text()
    if START_MARK not in content or END_MARK not in content:
        return False
    head, rest = content.split(START_MARK, 1)
    _, tail = rest.split(END_MARK, 1)
    README.write_text(f"{head}{START_MARK}\n{text}{END_MARK}{tail}")
    return True


def broken(run: Run) -> list[str]:
    """Workloads that broke on corral (errors; n/a is fine)."""
    out = []
    for system in run.args.systems:
        if system not in CORRAL:
            continue
        for workload, result in run.results.get(system, {}).items():
            if "error" in result:
                out.append(f"{system} {workload}: {result['error']}")
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = Path(args.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    RESULTS.mkdir(exist_ok=True)
    # One run at a time per working directory, and one full run at a time (they share the
    # peers' databases and Redis): a second one stops here instead of wrecking the first.
    locks = [workdir / ".lock"] + ([] if args.smoke else [RESULTS / ".full-run.lock"])
    held = []
    for path in locks:
        handle = open(path, "w")  # noqa: SIM115 - held until the process exits
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"another bench run holds {path}; wait for it to finish")
            return 2
        held.append(handle)
    for old in workdir.iterdir():
        if old.is_file() and old.name != ".lock":
            old.unlink()
    run = Run(args, workdir)
    if any(s in PEERS for s in args.systems):
        if args.no_install:
            if not VENV_PYTHON.exists():
                run.peers_broken = f"no peers environment at {VENV} (run without --no-install)"
        else:
            run.peers_broken = install_peers()
        run.peer_versions = "" if run.peers_broken else peer_versions()
    began = time.monotonic()
    started_at = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    run.all()
    info = machine()
    info["date"] = started_at
    loads = sorted(run.loads) or [os.getloadavg()[0]]
    info["load"] = f"median {loads[len(loads) // 2]:.1f}, max {loads[-1]:.1f}"
    info["minutes"] = f"{(time.monotonic() - began) / 60:.0f}"
    text = report(run, info)
    full = not args.smoke and set(args.systems) == set(BY_NAME) and len(args.workloads) == 6
    name = "smoke" if args.smoke else "latest" if full else "partial"
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.md").write_text(text)
    (RESULTS / f"{name}.json").write_text(
        json.dumps({"machine": info, "results": run.results}, indent=1, default=str)
    )
    print(text)
    if args.readme == "yes" or (args.readme == "auto" and full):
        log("bench/README.md updated" if update_readme(text) else "README markers missing")
    log(f"done in {time.monotonic() - began:.0f}s")
    problems = broken(run)
    for p in problems:
        log(f"BROKEN: {p}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
