"""Listing by tags: a process matches when it has every tag asked for, key and value
exactly as given, whatever characters they hold (on PostgreSQL, `tags @> {...}`)."""

from __future__ import annotations

import pytest

from corral.storage.base import ProcessFilter, Storage
from tests.conformance.common import T0, new

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
