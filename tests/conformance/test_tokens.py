"""The HTTP API's storage: tokens kept by hash, the list's created range and cursor, and
the counts of `GET /stats`; on every backend."""

from __future__ import annotations

import uuid

from corral import model
from corral.model import ErrorInfo, Status
from corral.storage.base import IterationCommit, ProcessFilter, Storage, TokenInfo
from tests.conformance.common import T0, claim, new


def token(client: str = "shop", **kw: object) -> TokenInfo:
    fields: dict[str, object] = {
        "admin": False, "worker": False, "queues": None, "created_at": T0,
    }  # fmt: skip
    fields.update(kw)
    return TokenInfo(id=str(uuid.uuid4()), client=client, **fields)  # type: ignore[arg-type]


def test_a_token_is_found_by_its_hash_until_it_is_revoked(storage: Storage) -> None:
    shop = token("shop", worker=True, queues=("mail", "pdf"))
    root = token("ops", admin=True, created_at=T0 + 1)
    storage.token_insert(shop, "hash-shop")
    storage.token_insert(root, "hash-ops")

    assert storage.token_by_hash("hash-shop") == shop
    assert storage.token_by_hash("hash-ops") == root
    assert storage.token_by_hash("hash-nobody") is None
    assert storage.token_list() == [shop, root]

    assert storage.token_revoke(shop.id, T0 + 5) is True
    assert storage.token_by_hash("hash-shop") is None
    # Revoked once only; the list still shows it, and when.
    assert storage.token_revoke(shop.id, T0 + 6) is False
    assert storage.token_revoke("no-such-token", T0 + 6) is False
    listed = storage.token_list()
    assert [t.revoked_at for t in listed] == [T0 + 5, None]
    assert storage.token_by_hash("hash-ops") == root


def test_created_range_and_cursor_walk_the_list_once(storage: Storage) -> None:
    # Two processes share each creation time: the cursor orders them by id too.
    ps = [new(at=T0 + i // 2, client_id="shop") for i in range(10)]
    storage.process_insert_many(ps)
    expected = sorted(ps, key=lambda p: (p.created_at, p.id), reverse=True)

    seen: list[str] = []
    where = ProcessFilter(limit=3, client_id="shop")
    while True:
        page = storage.process_list(where)
        seen += [p.id for p in page]
        if len(page) < 3:
            break
        last = page[-1]
        where = ProcessFilter(limit=3, client_id="shop", page_after=(last.created_at, last.id))
    assert seen == [p.id for p in expected]

    oldest_first = storage.process_list(
        ProcessFilter(limit=100, newest_first=False, page_after=(T0 + 3, "~"))
    )
    assert [p.created_at for p in oldest_first] == [T0 + 4, T0 + 4]

    ranged = storage.process_list(ProcessFilter(created_from=T0 + 1, created_until=T0 + 3))
    assert sorted(p.created_at for p in ranged) == [T0 + 1, T0 + 1, T0 + 2, T0 + 2]
    assert storage.process_count(ProcessFilter(created_from=T0 + 4)) == 2


def test_stats_count_by_queue_job_status_and_completions_by_minute(storage: Storage) -> None:
    storage.process_insert_many(
        [
            new("add", queue="q1", client_id="shop"),
            new("add", queue="q1", client_id="shop"),
            new("mul", queue="q2", client_id="blog"),
        ]
    )
    [claimed] = claim(storage, now=T0, jobs=["mul"])
    done = model.committed(
        claimed.process, T0 + 61, store={}, progress=(None, None), to=Status.COMPLETED
    )
    assert (
        storage.process_commit_many(
            [IterationCommit(claimed.process.id, claimed.token, done, T0 + 61)]
        )
        == []
    )

    every = storage.process_stats(T0)
    assert sorted(every.counts) == [
        ("q1", "add", Status.STARTING, 2),
        ("q2", "mul", Status.COMPLETED, 1),
    ]
    minute = (T0 + 61) // 60 * 60
    assert list(every.completions) == [(minute, 1)]
    assert list(storage.process_stats(T0 + 120).completions) == []

    shop = storage.process_stats(T0, client_id="shop")
    assert list(shop.counts) == [("q1", "add", Status.STARTING, 2)]
    assert list(shop.completions) == []


def test_the_list_filters_by_the_reason_of_the_error(storage: Storage) -> None:
    invalid, timed_out, fine = new(), new(at=T0 + 1), new(at=T0 + 2)
    storage.process_insert_many([invalid, timed_out, fine])
    for p, reason in ((invalid, "invalid"), (timed_out, "timeout")):
        current = storage.process_get(p.id)
        assert current is not None
        error = ErrorInfo("Invalid", "no", reason=reason)
        change = model.Change.of(current).with_(status=Status.FAILED, error=error)
        assert storage.process_update(p.id, current.version, change, T0 + 5)

    def ids(**kw: object) -> list[str]:
        return [p.id for p in storage.process_list(ProcessFilter(**kw))]  # type: ignore[arg-type]

    assert ids(reason="invalid") == [invalid.id]
    assert ids(reason="timeout", status=Status.FAILED) == [timed_out.id]
    assert ids(reason="error") == []
    assert storage.process_count(ProcessFilter(reason="invalid")) == 1
