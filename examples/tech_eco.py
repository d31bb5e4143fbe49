"""The pushdep example, as a corral task graph: one technical computation `tech(0)`, then
for i in 10, 20 ... 100 a `tech(i)` and an `eco` that needs both `tech(0)` and `tech(i)`.

    corral --app examples/tech_eco.py worker --once &
    python examples/tech_eco.py            # submits the graph, prints its batch id
    corral --app examples/tech_eco.py graph BATCH_ID

The eleven `tech` processes run at once; each `eco` waits (status `waiting`) until both
of its dependencies have completed, then reads their results from
`ctx.dependency_results`. If a `tech` fails, the `eco` processes that need it end
`canceled`, their history naming the failed one (docs/graphs.md).
"""

from __future__ import annotations

import sys

from corral import App, Context

app = App()


@app.job()
def tech(ctx: Context[object], i: int) -> dict[str, float]:
    """A technical computation: some figure of scenario `i`."""
    return {"i": i, "cost": 1000.0 + 12.5 * i}


@app.job()
def eco(ctx: Context[object], i: int) -> dict[str, float]:
    """An economic comparison of scenario `i` with the reference scenario 0: it reads the
    two `tech` results it depends on."""
    results = list(ctx.dependency_results.values())
    costs = {r["i"]: r["cost"] for r in results if isinstance(r, dict)}
    return {"i": i, "saving": costs[0] - costs[i]}


def submit_graph(target: App) -> str:
    """Submit the whole graph in one transaction; its batch id."""
    with target.batch() as b:
        t0 = b.submit("tech", {"i": 0})
        for i in range(10, 101, 10):
            ti = b.submit("tech", {"i": i})
            b.submit("eco", {"i": i}, depends_on=[t0, ti])
    return b.id


if __name__ == "__main__":
    if len(sys.argv) > 1:
        app.use_database(sys.argv[1])
    print(submit_graph(app))
