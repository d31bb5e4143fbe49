"""PostgreSQL's graph counters under concurrency: workers on their own connections commit
processes of one batch at once while two sweepers fold the recorded moves. No commit
waits on a counter row or deadlocks on one (the triggers append moves; only folds write
the counters, in key order, skipping each other's moves), and the counts end exact."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import psycopg
import pytest

from corral import model
from corral.model import Status
from corral.storage import open_storage
from corral.storage.base import Claim, IterationCommit, NewBatch, NewProcess, Storage
from tests.backends import backend_url

pytestmark = pytest.mark.postgres

T0 = 1_000.0
SIZE = 600
WORKERS = 4


def _drain(storage: Storage, owner: str, errors: list[BaseException]) -> None:
    """Claim and complete processes of the batch until none is left to claim."""
    try:
        while True:
            claimed = storage.process_claim(
                Claim(owner=owner, now=T0 + 1, lease_seconds=60, limit=7)
            )
            if not claimed:
                return
            commits = [
                IterationCommit(
                    c.process.id,
                    c.token,
                    model.committed(
                        c.process, T0 + 1, store={}, progress=(None, None), to=Status.COMPLETED
                    ),
                    T0 + 1,
                )
                for c in claimed
            ]
            assert storage.process_commit_many(commits) == []
    except BaseException as exc:  # reported by the main thread
        errors.append(exc)


def _fold(storage: Storage, stop: threading.Event, errors: list[BaseException]) -> None:
    try:
        while not stop.is_set():
            storage.batch_counts_fold(25)
    except BaseException as exc:
        errors.append(exc)


def test_concurrent_commits_and_folds_keep_the_counts_exact(tmp_path: Path) -> None:
    with backend_url("postgres", tmp_path) as url:
        batch = NewBatch(str(uuid.uuid4()), "", None, T0)
        ids = [str(uuid.uuid4()) for _ in range(SIZE)]
        nodes = [
            NewProcess(id=pid, job="node", params={}, created_at=T0, run_at=T0, batch_id=batch.id)
            for pid in ids
        ]
        # A fan-in over every node: each commit settles it too (counts it down).
        last = NewProcess(
            id=str(uuid.uuid4()),
            job="gather",
            params={},
            created_at=T0,
            run_at=T0,
            depends_on=tuple(ids),
            batch_id=batch.id,
        )
        storages = [open_storage(url) for _ in range(WORKERS + 2)]
        try:
            storages[0].process_insert_many([*nodes, last], batch=batch)
            errors: list[BaseException] = []
            stop = threading.Event()
            folders = [
                threading.Thread(target=_fold, args=(s, stop, errors)) for s in storages[-2:]
            ]
            workers = [
                threading.Thread(target=_drain, args=(s, f"w{i}", errors))
                for i, s in enumerate(storages[:WORKERS])
            ]
            for t in folders + workers:
                t.start()
            for t in workers:
                t.join(timeout=120)
            stop.set()
            for t in folders:
                t.join(timeout=30)
            assert errors == []
            reader = storages[0]
            # Every node completed once; the fan-in, promoted by the last, was claimed and
            # completed by a worker too.
            assert reader.batch_counts(batch.id) == {Status.COMPLETED: SIZE + 1}
            while reader.batch_counts_fold(1_000):
                pass
            assert reader.batch_counts(batch.id) == {Status.COMPLETED: SIZE + 1}
        finally:
            for s in storages:
                s.close()
        with psycopg.connect(url) as conn:
            [(left,)] = conn.execute("SELECT count(*) FROM corral_batch_delta").fetchall()
            rows = conn.execute(
                "SELECT status, n FROM corral_batch_count WHERE batch_id = %s AND n <> 0",
                (batch.id,),
            ).fetchall()
        assert left == 0
        assert rows == [("completed", SIZE + 1)]


def test_the_recovery_sweep_folds_the_moves(tmp_path: Path) -> None:
    from corral import App
    from corral.recovery import Recovery

    with backend_url("postgres", tmp_path) as url:
        app = App(url)

        @app.job
        def node(i: int) -> int:
            return i

        try:
            with app.batch() as b:
                for i in range(5):
                    b.submit("node", {"i": i})
            with psycopg.connect(url) as conn:
                [(before,)] = conn.execute("SELECT count(*) FROM corral_batch_delta").fetchall()
            assert before == 5  # one move per process inserted
            Recovery.of(app, "sweeper").sweep()
            with psycopg.connect(url) as conn:
                [(after,)] = conn.execute("SELECT count(*) FROM corral_batch_delta").fetchall()
                rows = conn.execute("SELECT status, n FROM corral_batch_count").fetchall()
            assert after == 0 and rows == [("starting", 5)]
            assert app.graph(b.id, nodes=False).counts.starting == 5
        finally:
            app.close()
