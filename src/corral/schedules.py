"""Cron schedules: which occurrences are due, their ids, the next run. Pure: no I/O, and
no clock of its own (every time is passed in, in seconds since the epoch).

A schedule submits one process of its job per occurrence. The recovery sweep (one leader
across the fleet) asks `firing` what to submit between the last occurrence it handled and
now, submits each with `occurrence_id` as its custom id (so a second sweeper, or a sweep
retried after a crash, finds it `existing` instead of firing twice), and stores the
returned cursor with the submits, in one transaction. See docs/graphs.md.

Occurrences are computed by croniter in the schedule's time zone, and handled as instants
(UTC): on a day the clocks go forward, a local time that does not exist fires at the jump
(`30 2 * * *` in Europe/Paris fires at 03:00 CEST); on a day they go back, a local time
that happens twice fires twice, once in each offset, each with its own id.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterError, croniter

from corral.errors import ConfigurationError


class Missed(StrEnum):
    """What happens to occurrences that were not fired in time (no worker, a long outage)."""

    #: They are dropped: only occurrences at most `grace` seconds late fire.
    SKIP = "skip"
    #: The latest `catch_up_limit` of them still fire, oldest first; older ones are dropped.
    CATCH_UP = "catch_up"


class Overlap(StrEnum):
    """What happens to an occurrence while the previous one's process has not ended."""

    #: It is skipped (dropped): never two processes of a schedule at once.
    SKIP = "skip"
    #: It fires anyway.
    ALLOW = "allow"


#: How late (seconds) an occurrence may fire and still count as on time. It covers a sweep
#: that runs every second or so and a new leader taking over after one stopped.
DEFAULT_GRACE = 60.0
DEFAULT_CATCH_UP_LIMIT = 10
PREFIX = "schedule:"
E = TypeVar("E", bound=StrEnum)
#: Custom ids hold at most 255 characters: `schedule:NAME:` and a 20-character instant.
MAX_NAME = 255 - len(PREFIX) - 1 - len("2024-01-01T00:00:00Z")


@dataclass(frozen=True, slots=True)
class Schedule:
    """A job's periodic schedule, checked when it is made (`ConfigurationError`).

    `cron`: 5 fields, or 6 where the sixth counts seconds (croniter's convention), or one
    of `@hourly`, `@daily`, `@midnight`, `@weekly`, `@monthly`, `@yearly`/`@annually`.
    `timezone`: an IANA time zone name. `name` is the schedule's name in occurrence ids
    (the job's name when empty). `catch_up_limit` counts under `Missed.CATCH_UP` only.
    """

    job: str
    cron: str
    timezone: str = "UTC"
    missed: Missed = Missed.SKIP
    catch_up_limit: int = DEFAULT_CATCH_UP_LIMIT
    overlap: Overlap = Overlap.SKIP
    grace: float = DEFAULT_GRACE
    name: str = ""

    def __post_init__(self) -> None:
        if not self.name:
            object.__setattr__(self, "name", self.job)
        _check_name(self.name)
        if not isinstance(self.missed, Missed):
            raise ConfigurationError(f"missed must be a schedules.Missed, not {self.missed!r}")
        if not isinstance(self.overlap, Overlap):
            raise ConfigurationError(f"overlap must be a schedules.Overlap, not {self.overlap!r}")
        limit = self.catch_up_limit
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise ConfigurationError(f"catch_up_limit must be an integer >= 1, not {limit!r}")
        grace = self.grace
        if (
            not isinstance(grace, int | float)
            or isinstance(grace, bool)
            or not (math.isfinite(grace) and grace >= 0)
        ):
            raise ConfigurationError(f"grace must be a number of seconds >= 0, not {grace!r}")
        zone = _zone(self.timezone)
        _check_cron(self.cron, zone)

    @classmethod
    def of(
        cls,
        job: str,
        cron: str,
        *,
        timezone: str = "UTC",
        missed: str = "skip",
        catch_up_limit: int | None = None,
        overlap: str = "skip",
        grace: float = DEFAULT_GRACE,
        name: str | None = None,
    ) -> Schedule:
        """A schedule from the words a job's declaration uses (`missed="catch_up"`...)."""
        missed_policy = _choice(Missed, "missed", missed)
        if catch_up_limit is not None and missed_policy is not Missed.CATCH_UP:
            raise ConfigurationError(
                "catch_up_limit applies to missed='catch_up' only, not to "
                f"missed={missed_policy.value!r}"
            )
        return cls(
            job=job,
            cron=cron,
            timezone=timezone,
            missed=missed_policy,
            catch_up_limit=DEFAULT_CATCH_UP_LIMIT if catch_up_limit is None else catch_up_limit,
            overlap=_choice(Overlap, "overlap", overlap),
            grace=grace,
            name=name or "",
        )

    @property
    def late_limit(self) -> int:
        """How many late occurrences still fire (the latest ones)."""
        return self.catch_up_limit if self.missed is Missed.CATCH_UP else 0


@dataclass(frozen=True, slots=True)
class CronOptions:
    """The schedule options of `@app.job` and `@app.process`, as given (None: not given)."""

    cron: str | None = None
    timezone: str | None = None
    missed: str | None = None
    catch_up_limit: int | None = None
    overlap: str | None = None

    def schedule(self, job: str) -> Schedule | None:
        """The job's schedule (None without `cron`); a `ConfigurationError` naming the job
        and the option that is wrong, such as a policy given without a cron."""
        if self.cron is None:
            for option in ("timezone", "missed", "catch_up_limit", "overlap"):
                if getattr(self, option) is not None:
                    raise ConfigurationError(
                        f"job {job!r}: {option}= applies to a cron schedule; give cron= too"
                    )
            return None
        try:
            return Schedule.of(
                job,
                self.cron,
                timezone="UTC" if self.timezone is None else self.timezone,
                missed="skip" if self.missed is None else self.missed,
                catch_up_limit=self.catch_up_limit,
                overlap="skip" if self.overlap is None else self.overlap,
            )
        except ConfigurationError as exc:
            raise ConfigurationError(f"job {job!r}: {exc}") from None


def _choice(kind: type[E], what: str, value: object) -> E:
    if isinstance(value, str):
        try:
            return kind(value)
        except ValueError:
            pass
    choices = " or ".join(repr(m.value) for m in kind)
    raise ConfigurationError(f"{what} must be {choices}, not {value!r}")


def _check_name(name: object) -> None:
    if not isinstance(name, str) or not name:
        raise ConfigurationError(f"a schedule's name must be a non-empty string, not {name!r}")
    if len(name) > MAX_NAME:
        raise ConfigurationError(
            f"schedule name {name[:40]!r}... is {len(name)} characters long, at most "
            f"{MAX_NAME} fit in its occurrences' ids: give the schedule a shorter name"
        )
    if not name.isprintable():
        raise ConfigurationError(f"schedule name {name!r} holds a control character")


def _zone(name: object) -> ZoneInfo:
    if isinstance(name, str) and name:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    raise ConfigurationError(
        f"timezone {name!r} is not a time zone name of the IANA database (such as 'UTC' or "
        "'Europe/Paris')"
    )


def _check_cron(cron: object, zone: ZoneInfo) -> None:
    if not isinstance(cron, str) or not cron.strip():
        raise ConfigurationError(f"cron must be a cron expression, not {cron!r}")
    fields = cron.split()
    if not (len(fields) == 1 and cron.strip().startswith("@")) and len(fields) not in (5, 6):
        raise ConfigurationError(
            f"cron {cron!r} has {len(fields)} fields; give 5 (minute hour day month weekday) "
            "or 6 (the sixth counts seconds)"
        )
    for part in (p for f in fields for p in f.split(",")):
        # croniter's H (hashed) and R (random) forms: R changes at every reading, which
        # would fire an occurrence under a different id each time.
        if part[:1] in ("H", "h", "R", "r"):
            raise ConfigurationError(
                f"cron {cron!r}: the H and R forms are not supported; give the times"
            )
    try:
        # One occurrence proves the expression can happen (`0 0 31 2 *` cannot).
        croniter(cron, datetime(2000, 1, 1, tzinfo=zone)).get_next(datetime)
    except (CroniterError, ValueError, KeyError, TypeError) as exc:
        raise ConfigurationError(f"cron {cron!r} is not a valid cron expression: {exc}") from None


# --- occurrences -----------------------------------------------------------------------------


def _cron(schedule: Schedule, at: float) -> croniter[float]:
    """croniter from `at`, in the schedule's zone (its DST rules decide local times)."""
    return croniter(schedule.cron, datetime.fromtimestamp(at, ZoneInfo(schedule.timezone)))


def next_run(schedule: Schedule, now: float) -> float:
    """The first occurrence strictly after `now`."""
    return _cron(schedule, now).get_next(datetime).timestamp()


def occurrence_iso(occurrence: float) -> str:
    """An occurrence as UTC ISO 8601 to the second: `2024-03-31T01:00:00Z`."""
    return datetime.fromtimestamp(occurrence, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def occurrence_id(schedule: Schedule, occurrence: float) -> str:
    """The custom id of an occurrence's process: `schedule:NAME:2024-03-31T01:00:00Z`.
    The same for every sweeper, so that an occurrence fires once whoever fires it."""
    return f"{PREFIX}{schedule.name}:{occurrence_iso(occurrence)}"


@dataclass(frozen=True, slots=True)
class Due:
    """The occurrences after the last one handled, up to now.

    `fire`: those to submit, oldest first (every on-time one, and under `catch_up` the
    latest late ones up to the limit). `missed_first`..`missed_last`: the span of those
    dropped as too late (None when none was). `cursor`: the latest occurrence up to now,
    fired or dropped: the next call's `after` (unchanged when nothing was due)."""

    fire: tuple[float, ...]
    cursor: float
    missed_first: float | None = None
    missed_last: float | None = None


def due(schedule: Schedule, after: float, now: float) -> Due:
    """The occurrences in (`after`, `now`] and what becomes of each under the missed-run
    policy. `after` is the cursor of the previous call, or, for a schedule never handled,
    when it was first seen (occurrences before a schedule existed never fire).

    Walks back from now, so the work is bounded by what fires (on-time occurrences and the
    catch-up limit), not by the length of an outage.
    """
    # Occurrences fall on whole seconds: the latest one at or before `now` is the one
    # before the next whole second (croniter looks strictly before its start).
    walk = _cron(schedule, math.floor(now) + 1.0)
    fire: list[float] = []
    late = 0
    cursor = after
    missed_last: float | None = None
    while True:
        occurrence = walk.get_prev(datetime).timestamp()
        if occurrence <= after:
            break
        cursor = max(cursor, occurrence)
        if now - occurrence <= schedule.grace:
            fire.append(occurrence)
        elif late < schedule.late_limit:
            fire.append(occurrence)
            late += 1
        else:
            missed_last = occurrence
            break
    missed_first = None
    if missed_last is not None:
        missed_first = _cron(schedule, after).get_next(datetime).timestamp()
    return Due(tuple(reversed(fire)), cursor, missed_first, missed_last)


def may_fire(schedule: Schedule, previous_running: bool) -> bool:
    """Whether an occurrence fires under the overlap policy, given whether the process of
    the previous occurrence has not ended yet."""
    return schedule.overlap is Overlap.ALLOW or not previous_running


@dataclass(frozen=True, slots=True)
class Firing:
    """What a sweep does for one schedule: submit `fire` (each under its `ids` entry),
    drop `overlapped` (their predecessor had not ended) and the missed span, and store
    `cursor`, all in one transaction."""

    fire: tuple[float, ...]
    ids: tuple[str, ...]
    overlapped: tuple[float, ...]
    cursor: float
    missed_first: float | None = None
    missed_last: float | None = None


def firing(schedule: Schedule, after: float, now: float, *, previous_running: bool) -> Firing:
    """`due`, then the overlap policy over the occurrences due, in order: each one fired
    is the previous one of the next. So under `Overlap.SKIP` at most one fires per call
    (the oldest due, if the last process fired has ended), and the others are dropped."""
    result = due(schedule, after, now)
    fire: list[float] = []
    overlapped: list[float] = []
    running = previous_running
    for occurrence in result.fire:
        if may_fire(schedule, running):
            fire.append(occurrence)
            running = True  # just submitted: it has not ended
        else:
            overlapped.append(occurrence)
    return Firing(
        fire=tuple(fire),
        ids=tuple(occurrence_id(schedule, o) for o in fire),
        overlapped=tuple(overlapped),
        cursor=result.cursor,
        missed_first=result.missed_first,
        missed_last=result.missed_last,
    )
