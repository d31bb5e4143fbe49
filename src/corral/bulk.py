"""Cancel or retry every process that matches a filter (the HTTP API's bulk actions).

The matches are walked status by status (only those the action applies to), in chunks,
newest first, by the same keyset as the process list
(`ProcessFilter.page_after`), so that a change that moves a process out of the filter
(a retried process is no longer `failed`) neither hides nor repeats another. Each chunk
is one `process_update_many`: one transaction, fenced by each process's version. A
process a worker wrote meanwhile is read again and decided again, as `App.cancel` does,
so a busy process is not skipped. Each change's events name who asked (`by`) and say it
was a bulk action, so the history tells a person where a cancel came from.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace

from corral import model
from corral.errors import IllegalTransition
from corral.model import Process, Status
from corral.storage.base import ProcessFilter, Storage, Update

#: Processes changed per transaction.
CHUNK = 500
#: Times a process whose version moved under us is read and decided again.
RACES = 5

Decide = Callable[[Process, float], model.Change]


@dataclass(frozen=True, slots=True)
class Action:
    """A bulk action: its name, the rule that decides each process's change, and which
    statuses it applies to (the others match the filter but are left alone)."""

    name: str
    decide: Decide
    applies_to: frozenset[Status]


CANCEL = Action("cancel", model.cancel, frozenset(s for s in Status if not s.terminal))
RETRY = Action("retry", model.retry, frozenset({Status.FAILED, Status.CANCELED}))


def applies(action: Action, p: Process) -> bool:
    return p.status in action.applies_to


def statuses(where: ProcessFilter, action: Action) -> list[Status]:
    """The statuses whose processes matching `where` the action would change."""
    wanted = action.applies_to if where.status is None else {where.status} & action.applies_to
    return sorted(wanted)


def preview(
    storage: Storage, where: ProcessFilter, action: Action, sample: int
) -> tuple[int, list[Process]]:
    """How many processes `action` would change now, and the newest `sample` of them (a
    dry run: nothing is written). Counted status by status, as `corral list` counts."""
    wanted = statuses(where, action)
    count = sum(storage.process_count(replace(where, status=s)) for s in wanted)
    shown: list[Process] = []
    for s in wanted:
        for chunk in _chunks(storage, replace(where, status=s)):
            shown.extend(chunk)
            if len(shown) >= sample:
                return count, shown[:sample]
    return count, shown


def apply(
    storage: Storage,
    where: ProcessFilter,
    action: Action,
    *,
    by: str,
    clock: Callable[[], float],
) -> list[str]:
    """Apply `action` to every process matching `where` that it applies to; the ids
    changed, in the order they were changed."""
    changed: list[str] = []
    # One status at a time, so that the walk reads only what the action may change (not
    # the completed processes a filter without a status also matches). A process the
    # action moves into a status walked later is not changed twice: a cancel requested
    # already, or a retried process no longer failed, decides no change.
    for s in statuses(where, action):
        for chunk in _chunks(storage, replace(where, status=s)):
            found = [p for p in chunk if applies(action, p)]
            changed.extend(_apply_chunk(storage, found, action, by, clock))
    return changed


def _chunks(storage: Storage, where: ProcessFilter) -> Iterator[list[Process]]:
    """The matches, a chunk at a time, each read after the one before was changed: the
    keyset (created_at, id) does not move when a status does."""
    after = None
    while True:
        chunk = storage.process_list(replace(where, limit=CHUNK, page_after=after))
        if chunk:
            yield chunk
        if len(chunk) < CHUNK:
            return
        after = (chunk[-1].created_at, chunk[-1].id)


def _apply_chunk(
    storage: Storage,
    processes: Sequence[Process],
    action: Action,
    by: str,
    clock: Callable[[], float],
) -> list[str]:
    changed: list[str] = []
    pending = list(processes)
    for _ in range(RACES):
        now = clock()
        updates = []
        for p in pending:
            update = _update(p, action, by, now)
            if update is not None:
                updates.append(update)
        if not updates:
            break
        done = storage.process_update_many(updates)
        changed.extend(done)
        lost = {u.process_id for u in updates} - set(done)
        # A worker (or another request) wrote these since they were read: decide again.
        pending = [p for p in map(storage.process_get, sorted(lost)) if p is not None]
        if not pending:
            break
    return changed


def _update(p: Process, action: Action, by: str, now: float) -> Update | None:
    if not applies(action, p):
        return None  # it moved out of what the action applies to since it was read
    try:
        change = action.decide(p, now)
    except IllegalTransition:
        return None
    if change == model.Change.of(p):
        return None  # nothing to do (a cancel already requested)
    events = tuple(
        replace(e, detail={**e.detail, "by": by, "bulk": action.name}) for e in change.events
    )
    return Update(p.id, p.version, change.with_(events=events), now)
