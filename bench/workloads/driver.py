"""Run one workload against one system, in its own process, and print the result as JSON.

    python bench/workloads/driver.py SYSTEM WORKLOAD --params '{...}' --workdir DIR

`bench/run.py` starts this under the right interpreter (the project's for corral, the peers'
virtual environment for the others), in a process group of its own that it kills on a
timeout. The last line of output is `BENCH_RESULT {json}`: the workload's numbers, or
{"na": reason} when the workload does not apply, or {"error": message}.
"""

from __future__ import annotations

import argparse
import importlib
import json
import signal
import sys
import traceback
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from workloads import (
    w1_enqueue,
    w2_drain,
    w3_latency,
    w4_depth,
    w5_graph,
    w6_memory,
)
from workloads.common import NotApplicable, Settings, System
from workloads.systems import BY_NAME

MARK = "BENCH_RESULT "


def load(name: str, settings: Settings) -> System:
    module, _, cls = BY_NAME[name].adapter.partition(":")
    system: System = getattr(importlib.import_module(module), cls)(settings)
    return system


def run(system: System, workload: str, p: dict[str, Any]) -> dict[str, Any]:
    if workload == "w1":
        return w1_enqueue.run(system, p["jobs"])
    if workload == "w2":
        return w2_drain.run(system, p["jobs"], p["workers"], p["concurrency"], p["timeout"])
    if workload == "w3":
        return w3_latency.run(
            system,
            p["jobs"],
            p["interval"],
            p["workers"],
            p["concurrency"],
            p["timeout"],
            p.get("idle", 1.0),
        )
    if workload == "w4":
        if system.depth_na:
            raise NotApplicable(system.depth_na)
        return w4_depth.run(system, p["depths"], p["claims"])
    if workload == "w5":
        return w5_graph.run(
            system, p["nodes"], p["width"], p["workers"], p["concurrency"], p["timeout"]
        )
    if workload == "w6":
        return w6_memory.run(system, p["checkpoints"], p["concurrency"], p["timeout"])
    raise SystemExit(f"unknown workload {workload}")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("system", choices=sorted(BY_NAME))
    parser.add_argument("workload")
    parser.add_argument("--params", default="{}")
    parser.add_argument("--workdir", required=True)
    args = parser.parse_args()
    params = json.loads(args.params)
    workdir = Path(args.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    settings = Settings(
        workdir=workdir,
        record_file=workdir / f"{args.system}-{args.workload}.records",
        concurrency=params.get("concurrency", 1),
    )
    # SIGTERM from the harness: unwind, so that context managers stop the workers.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    result: dict[str, Any]
    system: System | None = None
    try:
        system = load(args.system, settings)
        reason = system.unavailable()
        result = {"na": reason} if reason else run(system, args.workload, params)
    except NotApplicable as exc:
        result = {"na": str(exc)}
    except Exception as exc:
        traceback.print_exc()
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        result = {"error": f"{type(exc).__name__}: {message}"[:300]}
    finally:
        if system is not None:
            try:
                system.close()
            except Exception:
                traceback.print_exc()
    print(MARK + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
