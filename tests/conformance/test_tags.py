"""Listing and counting by tags: a process matches when it has every tag asked for, key and
value exactly as given, whatever characters they hold (on PostgreSQL, `tags @> {...}`),
whichever way it was inserted, and no longer once it is pruned."""

from __future__ import annotations

import uuid
from dataclasses import replace
from typing import Any

import pytest

from corral.errors import CustomIdConflict, UsageError
from corral.model import Status
from corral.storage.base import NewBatch, ProcessFilter, Storage, SubmitShared
from tests.conformance.common import T0, claim, complete, new
from tests.conformance.test_dependencies import _spawning_commit

# Characters that a JSON path, an SQL literal or a LIKE pattern would treat specially.
AWKWARD = [
    'say "hi"',
    "it's",
    "a.b",
    "$.x",
    "$",
    "back\\slash",
    '\\"',
    "two  spaces ",
    "",
    "[0]",
    "*",
    "%_",
    "naïve 東京 🐄",
]


def listed(storage: Storage, tags: dict[str, str]) -> set[str]:
    return {p.id for p in storage.process_list(ProcessFilter(tags=tags, limit=1_000))}


@pytest.mark.parametrize("text", AWKWARD)
def test_any_key_and_value_match_exactly(storage: Storage, text: str) -> None:
    both = new(tags={text: text})
    other_value = new(tags={text: text + "x"})
    other_key = new(tags={text + "x": text})
    plain = new(tags={"k": text})
    storage.process_insert_many([both, other_value, other_key, plain])
    assert listed(storage, {text: text}) == {both.id}
    assert listed(storage, {"k": text}) == {plain.id}
    assert storage.process_get(both.id).tags == {text: text}  # type: ignore[union-attr]


def test_keys_that_look_alike_are_different_keys(storage: Storage) -> None:
    """A key holding a dot or a quote is one key, not a path into nested objects."""
    dotted = new(tags={"a.b": "1"})
    quoted = new(tags={'"a"': "1"})
    bare = new(tags={"a": "1"})
    storage.process_insert_many([dotted, quoted, bare])
    assert listed(storage, {"a.b": "1"}) == {dotted.id}
    assert listed(storage, {'"a"': "1"}) == {quoted.id}
    assert listed(storage, {"a": "1"}) == {bare.id}
    assert listed(storage, {"a": "1", "a.b": "1"}) == set()


def test_every_tag_asked_for_must_match(storage: Storage) -> None:
    full = new(tags={'te"am': "x", "env's": "prod", "é": "ü"})
    part = new(tags={'te"am': "x"})
    storage.process_insert_many([full, part])
    assert listed(storage, {'te"am': "x"}) == {full.id, part.id}
    assert listed(storage, {'te"am': "x", "env's": "prod", "é": "ü"}) == {full.id}
    assert listed(storage, {'te"am': "x", "env's": "dev"}) == set()
    assert listed(storage, {}) == {full.id, part.id}


def test_a_value_matches_as_text_only(storage: Storage) -> None:
    """Tags are strings: "1" matches "1", and neither a substring nor a prefix does."""
    p = new(tags={"n": "10", "s": "abc"}, at=T0)
    storage.process_insert_many([p])
    assert listed(storage, {"n": "10"}) == {p.id}
    assert listed(storage, {"n": "1"}) == set()
    assert listed(storage, {"s": "ab"}) == set()
    assert listed(storage, {"s": "%"}) == set()


# --- the filter over every path that writes or deletes processes ---------------------------
# On SQLite tags are found through the corral_tag table, written by each insert path and
# deleted by pruning; on PostgreSQL through the GIN index on `tags`. Either way a list or a
# count by tags must see exactly the processes that exist with those tags.


def found(storage: Storage, tags: dict[str, str], **kw: Any) -> set[str]:
    """The ids listed with these tags (and other filters), which the count agrees with."""
    ids = {p.id for p in storage.process_list(ProcessFilter(tags=tags, limit=1_000, **kw))}
    assert storage.process_count(ProcessFilter(tags=tags, **kw)) == len(ids)
    return ids


def test_one_tag_or_two_with_other_filters_order_and_limit(storage: Storage) -> None:
    xp = new("a", at=T0 + 1, tags={"team": "x", "env": "prod"})
    xd = new("b", at=T0 + 2, tags={"team": "x", "env": "dev"})
    yp = new("a", at=T0 + 3, tags={"team": "y", "env": "prod"})
    xp2 = new("a", at=T0 + 4, tags={"team": "x", "env": "prod", "extra": "1"})
    storage.process_insert_many([xp, xd, yp, xp2, new("a", at=T0 + 5)])
    assert found(storage, {"team": "x"}) == {xp.id, xd.id, xp2.id}
    assert found(storage, {"team": "x", "env": "prod"}) == {xp.id, xp2.id}
    assert found(storage, {"env": "prod", "team": "x"}) == {xp.id, xp2.id}
    assert found(storage, {"team": "y", "env": "dev"}) == set()
    assert found(storage, {"team": "x"}, job="b") == {xd.id}
    assert found(storage, {"env": "prod"}, status=Status.STARTING) == {xp.id, yp.id, xp2.id}
    assert found(storage, {"env": "prod"}, status=Status.RUNNING) == set()
    assert found(storage, {"env": "prod"}, id_prefix=yp.id) == {yp.id}
    newest = storage.process_list(ProcessFilter(tags={"team": "x"}, limit=2))
    assert [p.id for p in newest] == [xp2.id, xd.id]
    oldest = storage.process_list(ProcessFilter(tags={"team": "x"}, limit=2, newest_first=False))
    assert [p.id for p in oldest] == [xp.id, xd.id]
    assert storage.process_count(ProcessFilter(tags={"team": "x"}, limit=1)) == 3


def test_every_insert_path_makes_its_processes_findable_by_tag(storage: Storage) -> None:
    # One process alone.
    [alone] = storage.process_insert_many([new(tags={"path": "alone", "k": "v"})])
    # Processes of one submit call, sharing what they share (bound once on SQLite).
    shared = SubmitShared(
        job="add", created_at=T0, run_at=T0, priority=0, queue="default", client_id="",
        tags={"path": "shared", "k": "v"}, deadline_at=None, schedule_to_close=None,
        start_to_close=None, heartbeat_timeout=None,
    )  # fmt: skip
    many = [shared.new_process(str(uuid.uuid4()), {"a": i}, f'{{"a":{i}}}', None) for i in range(3)]
    storage.process_insert_many(many, shared=shared)
    # Several, each with options of its own and custom ids.
    each = [new(custom_id=f"c{i}", tags={"path": "each", "i": str(i)}) for i in range(3)]
    storage.process_insert_many(each)
    # A task graph, one of whose nodes is canceled at once (its dependency failed).
    failed = new()
    storage.process_insert_many([failed])
    [c] = claim(storage, process_ids=[failed.id])
    complete(storage, c, to=Status.FAILED)
    root = new(tags={"path": "graph"})
    child = new(depends_on=[root.id], tags={"path": "graph", "node": "child"})
    doomed = new(depends_on=[failed.id], tags={"path": "graph", "node": "doomed"})
    storage.process_insert_many([root, child, doomed])
    assert storage.process_get(doomed.id).status is Status.CANCELED  # type: ignore[union-attr]
    # A batch.
    batch = NewBatch(str(uuid.uuid4()), "", "b", T0)
    in_batch = [new(batch_id=batch.id, tags={"path": "batch"}) for _ in range(2)]
    storage.process_insert_many(in_batch, batch=batch)
    # Children spawned by a running process (ctx.spawn), with its iteration's commit.
    parent = new()
    storage.process_insert_many([parent])
    kids = [new(tags={"path": "spawned"}), new(tags={"path": "spawned", "node": "kid"})]
    assert _spawning_commit(storage, parent.id, kids, T0 + 1) == []

    assert found(storage, {"path": "alone"}) == {alone.process.id}
    assert found(storage, {"path": "shared"}) == {p.id for p in many}
    assert found(storage, {"k": "v"}) == {alone.process.id, *(p.id for p in many)}
    assert found(storage, {"path": "each"}) == {p.id for p in each}
    assert found(storage, {"path": "each", "i": "1"}) == {each[1].id}
    assert found(storage, {"path": "graph"}) == {root.id, child.id, doomed.id}
    assert found(storage, {"path": "graph"}, status=Status.CANCELED) == {doomed.id}
    assert found(storage, {"node": "child"}) == {child.id}
    assert found(storage, {"path": "batch"}) == {p.id for p in in_batch}
    assert found(storage, {"path": "spawned"}) == {k.id for k in kids}
    assert found(storage, {"node": "kid"}) == {kids[1].id}


def test_an_existing_custom_id_keeps_its_own_tags_and_is_found_once(storage: Storage) -> None:
    [first] = storage.process_insert_many([new(custom_id="k", tags={"v": "1"})])
    again = storage.process_insert_many(
        [new(custom_id="k", tags={"v": "2"}), new(custom_id="k", tags={"v": "3"})]
    )
    assert [i.outcome for i in again] == ["existing", "existing"]
    # Through the graph path: a node whose custom id is held, and one depending on it.
    held = new(custom_id="k", tags={"v": "4"})
    after = new(depends_on=[held.id], tags={"v": "1"})
    out = storage.process_insert_many([held, after])
    assert [i.outcome for i in out] == ["existing", "created"]
    # A batch submitted again with its custom id: existing as a whole.
    batch = NewBatch(str(uuid.uuid4()), "", "nightly", T0)
    node = new(batch_id=batch.id, tags={"v": "b"})
    storage.process_insert_many([node], batch=batch)
    rerun = NewBatch(str(uuid.uuid4()), "", "nightly", T0 + 1)
    out = storage.process_insert_many([new(batch_id=rerun.id, tags={"v": "b"})], batch=rerun)
    assert [i.outcome for i in out] == ["existing"]

    assert found(storage, {"v": "1"}) == {first.process.id, after.id}
    assert found(storage, {"v": "2"}) == found(storage, {"v": "3"}) == set()
    assert found(storage, {"v": "4"}) == set()
    assert found(storage, {"v": "b"}) == {node.id}


def test_an_insert_that_fails_leaves_no_tag_behind(storage: Storage) -> None:
    storage.process_insert_many([new(custom_id="k")])
    with pytest.raises(CustomIdConflict):
        storage.process_insert_many(
            [new(tags={"t": "x"}), new(custom_id="k", params={"a": 2}, tags={"t": "x"})]
        )
    with pytest.raises(UsageError):
        storage.process_insert_many([new(tags={"t": "x"}, depends_on=[str(uuid.uuid4())])])
    assert found(storage, {"t": "x"}) == set()


@pytest.mark.parametrize("how", ["prune", "retention"])
def test_a_deleted_process_leaves_its_tags_with_it(storage: Storage, how: str) -> None:
    """Pruned (`corral prune`) or past its job's retention (the recovery sweep's chunks)."""
    old = new(tags={"t": "x", "u": "1"})
    kept = new(tags={"t": "x"})
    storage.process_insert_many([old, kept])
    [c] = claim(storage, process_ids=[old.id])
    complete(storage, c, now=T0 + 1, to=Status.COMPLETED)
    if how == "prune":
        assert storage.process_prune(T0 + 10) == 1
    else:
        assert storage.process_prune_expired({"add": T0 + 10}, 100) == 1
    assert found(storage, {"t": "x"}) == {kept.id}
    assert found(storage, {"u": "1"}) == set()
    # Its id may hold a new process: only the new one's tags find it.
    reborn = new(tags={"t": "y"}, at=T0 + 20)
    storage.process_insert_many([replace(reborn, id=old.id)])
    assert found(storage, {"t": "x"}) == {kept.id}
    assert found(storage, {"t": "y"}) == {old.id}
    assert found(storage, {"u": "1"}) == set()
