"""Cron schedules, the pure part: validation, due occurrences under the missed-run policy,
their ids, the next run, the overlap policy, and DST days in Europe/Paris. Every time is
passed in: no clock, no sleep."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter
from hypothesis import given, settings
from hypothesis import strategies as st

from corral.errors import ConfigurationError
from corral.schedules import (
    DEFAULT_CATCH_UP_LIMIT,
    DEFAULT_GRACE,
    MAX_NAME,
    Missed,
    Overlap,
    Schedule,
    due,
    firing,
    may_fire,
    next_run,
    occurrence_id,
    occurrence_iso,
)

PARIS = "Europe/Paris"


def utc(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0) -> float:
    return datetime(y, mo, d, h, mi, s, tzinfo=UTC).timestamp()


def paris(y: int, mo: int, d: int, h: int = 0, mi: int = 0, *, fold: int = 0) -> float:
    """A wall-clock time in Paris; `fold=1` picks the second of a time that happens twice."""
    return datetime(y, mo, d, h, mi, tzinfo=ZoneInfo(PARIS), fold=fold).timestamp()


def isos(times: tuple[float, ...]) -> list[str]:
    return [occurrence_iso(t) for t in times]


# --- the value and its checks -----------------------------------------------------------------


def test_a_schedule_has_the_defaults_of_the_issue() -> None:
    s = Schedule.of("nightly", "0 3 * * *")
    assert (s.name, s.timezone, s.missed, s.overlap) == ("nightly", "UTC", Missed.SKIP,
                                                         Overlap.SKIP)  # fmt: skip
    assert (s.grace, s.catch_up_limit, s.late_limit) == (DEFAULT_GRACE, DEFAULT_CATCH_UP_LIMIT, 0)
    c = Schedule.of("j", "0 3 * * *", missed="catch_up", catch_up_limit=4, overlap="allow",
                    name="other", timezone=PARIS, grace=5)  # fmt: skip
    assert (c.missed, c.late_limit, c.overlap, c.name, c.grace) == (
        Missed.CATCH_UP, 4, Overlap.ALLOW, "other", 5)  # fmt: skip
    assert Schedule.of("j", "* * * * *", missed="catch_up").late_limit == DEFAULT_CATCH_UP_LIMIT


ACCEPTED = ["*/5 * * * *", "0 3 * * * 30", "@daily", "@hourly", "0 0 L * *", "0 9 * * mon#2",
            "0 0 29 2 *", "0 3 * * MON-FRI"]  # fmt: skip


@pytest.mark.parametrize("cron", ACCEPTED)
def test_croniter_expressions_of_5_or_6_fields_and_the_usual_aliases_are_accepted(
    cron: str,
) -> None:
    assert Schedule.of("j", cron).cron == cron


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"cron": "* * * *"}, r"cron '\* \* \* \*' has 4 fields; give 5 .* or 6 \(the sixth"),
        ({"cron": "0 0 1 1 * 0 2030"}, "has 7 fields"),
        ({"cron": ""}, "cron must be a cron expression, not ''"),
        ({"cron": 5}, "cron must be a cron expression, not 5"),
        ({"cron": "61 * * * *"}, r"cron '61 \* \* \* \*' is not a valid cron expression: "),
        ({"cron": "0 0 31 2 *"}, "is not a valid cron expression: failed to find next date"),
        ({"cron": "@reboot"}, "is not a valid cron expression"),
        ({"cron": "a b c d e"}, "is not a valid cron expression"),
        ({"cron": "H 3 * * *"}, "the H and R forms are not supported"),
        ({"cron": "0 1,R * * *"}, "the H and R forms are not supported"),
        ({"timezone": "Mars/Olympus"}, "timezone 'Mars/Olympus' is not a time zone name of the "
                                       "IANA database"),
        ({"timezone": "../../etc/passwd"}, "is not a time zone name"),
        ({"timezone": ""}, "is not a time zone name"),
        ({"missed": "later"}, "missed must be 'skip' or 'catch_up', not 'later'"),
        ({"overlap": "queue"}, "overlap must be 'skip' or 'allow', not 'queue'"),
        ({"catch_up_limit": 3}, "catch_up_limit applies to missed='catch_up' only"),
        ({"missed": "catch_up", "catch_up_limit": 0}, "catch_up_limit must be an integer >= 1"),
        ({"missed": "catch_up", "catch_up_limit": True}, "catch_up_limit must be an integer"),
        ({"grace": -1}, "grace must be a number of seconds >= 0, not -1"),
        ({"grace": float("inf")}, "grace must be a number of seconds >= 0"),
        ({"name": "x" * (MAX_NAME + 1)}, "at most 225 fit in its occurrences' ids"),
        ({"name": "a\nb"}, "holds a control character"),
    ],
)  # fmt: skip
def test_a_bad_schedule_is_a_clear_configuration_error(kw: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = {"cron": "0 3 * * *", **kw}
    with pytest.raises(ConfigurationError, match=message):
        Schedule.of("job", args.pop("cron"), **args)


def test_the_value_itself_refuses_words_where_policies_belong() -> None:
    with pytest.raises(ConfigurationError, match=r"missed must be a schedules\.Missed"):
        Schedule("j", "* * * * *", missed="skip")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match=r"overlap must be a schedules\.Overlap"):
        Schedule("j", "* * * * *", overlap="allow")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="name must be a non-empty string"):
        Schedule("", "* * * * *")


def test_the_longest_name_still_makes_an_id_that_a_custom_id_holds() -> None:
    s = Schedule.of("j", "* * * * *", name="n" * MAX_NAME)
    assert len(occurrence_id(s, utc(2024, 1, 1))) == 255


# --- ids and the next run ---------------------------------------------------------------------


def test_an_occurrence_id_names_the_schedule_and_the_instant_in_utc() -> None:
    s = Schedule.of("nightly", "0 3 * * *", timezone=PARIS)
    assert occurrence_id(s, paris(2024, 7, 1, 3)) == "schedule:nightly:2024-07-01T01:00:00Z"
    again = Schedule.of("nightly", "0 3 * * *", timezone=PARIS)
    assert occurrence_id(again, paris(2024, 7, 1, 3)) == occurrence_id(s, paris(2024, 7, 1, 3))


def test_the_next_run_is_strictly_after_now_in_the_zone() -> None:
    s = Schedule.of("j", "0 3 * * *", timezone=PARIS)
    assert next_run(s, paris(2024, 7, 1, 2, 59)) == paris(2024, 7, 1, 3)
    assert next_run(s, paris(2024, 7, 1, 3)) == paris(2024, 7, 2, 3)
    seconds = Schedule.of("j", "* * * * * */15")
    assert next_run(seconds, utc(2024, 1, 1, 0, 0, 1)) == utc(2024, 1, 1, 0, 0, 15)


# --- due occurrences --------------------------------------------------------------------------


def test_nothing_due_leaves_the_cursor_where_it_was() -> None:
    s = Schedule.of("j", "0 * * * *")
    result = due(s, utc(2024, 1, 1, 10, 0), utc(2024, 1, 1, 10, 59, 59))
    assert (result.fire, result.cursor, result.missed_first) == ((), utc(2024, 1, 1, 10), None)


def test_an_occurrence_is_due_at_its_second_and_not_again_after_it_fired() -> None:
    s = Schedule.of("j", "0 * * * *")
    at = utc(2024, 1, 1, 11)
    assert due(s, utc(2024, 1, 1, 10, 30), at).fire == (at,)
    assert due(s, utc(2024, 1, 1, 10, 30), at + 0.999).fire == (at,)
    assert due(s, at, at + 10).fire == ()


def test_a_clock_that_went_back_fires_nothing() -> None:
    s = Schedule.of("j", "* * * * *")
    result = due(s, utc(2024, 1, 1, 12), utc(2024, 1, 1, 11))
    assert (result.fire, result.cursor) == ((), utc(2024, 1, 1, 12))


def test_under_skip_on_time_occurrences_fire_and_late_ones_are_dropped() -> None:
    s = Schedule.of("j", "* * * * * *", grace=3)
    result = due(s, 1000.5, 1010.25)
    assert result.fire == (1008.0, 1009.0, 1010.0)  # at most 3 s late, oldest first
    assert (result.missed_first, result.missed_last, result.cursor) == (1001.0, 1007.0, 1010.0)


def test_under_skip_a_nightly_job_missed_by_an_outage_waits_for_the_next_night() -> None:
    s = Schedule.of("j", "0 3 * * *", timezone=PARIS)
    result = due(s, paris(2024, 7, 1, 3), paris(2024, 7, 3, 15))
    assert result.fire == ()
    assert (result.missed_first, result.missed_last) == (paris(2024, 7, 2, 3), paris(2024, 7, 3, 3))
    assert result.cursor == paris(2024, 7, 3, 3)
    assert next_run(s, paris(2024, 7, 3, 15)) == paris(2024, 7, 4, 3)


def test_under_catch_up_the_latest_late_ones_fire_up_to_the_limit() -> None:
    s = Schedule.of("j", "* * * * * *", missed="catch_up", catch_up_limit=3, grace=2)
    result = due(s, 1000.5, 1010.25)
    # 1009 and 1010 are on time; 1006-1008 are the 3 latest late ones; 1001-1005 are dropped.
    assert result.fire == (1006.0, 1007.0, 1008.0, 1009.0, 1010.0)
    assert (result.missed_first, result.missed_last) == (1001.0, 1005.0)
    few = due(s, 1006.5, 1010.25)
    assert few.fire == (1007.0, 1008.0, 1009.0, 1010.0) and few.missed_first is None


def test_catch_up_after_a_long_outage_does_bounded_work() -> None:
    # A year of seconds behind: only the limit and the on-time ones are looked at.
    s = Schedule.of("j", "* * * * * *", missed="catch_up", catch_up_limit=2, grace=0)
    now = utc(2025, 1, 1)
    result = due(s, utc(2024, 1, 1), now)
    assert result.fire == (now - 2, now - 1, now)  # 2 late ones, and the one on time
    assert (result.missed_first, result.missed_last) == (utc(2024, 1, 1, 0, 0, 1), now - 3)


# --- daylight saving time in Europe/Paris -----------------------------------------------------


def test_spring_forward_a_local_time_that_does_not_exist_fires_at_the_jump() -> None:
    # 2024-03-31: 02:00 CET becomes 03:00 CEST; 02:30 does not exist that night.
    s = Schedule.of("j", "30 2 * * *", timezone=PARIS, missed="catch_up", grace=0)
    result = due(s, paris(2024, 3, 29, 12), paris(2024, 4, 1, 12))
    assert isos(result.fire) == [
        "2024-03-30T01:30:00Z",  # 02:30 CET
        "2024-03-31T01:00:00Z",  # 03:00 CEST, the jump
        "2024-04-01T00:30:00Z",  # 02:30 CEST
    ]
    half_hours = Schedule.of("j", "*/30 * * * *", timezone=PARIS, missed="catch_up", grace=0)
    night = due(half_hours, paris(2024, 3, 31, 1), paris(2024, 3, 31, 4))
    assert isos(night.fire) == ["2024-03-31T00:30:00Z", "2024-03-31T01:00:00Z",
                                "2024-03-31T01:30:00Z", "2024-03-31T02:00:00Z"]  # fmt: skip


def test_fall_back_a_local_time_that_happens_twice_fires_twice_under_two_ids() -> None:
    # 2024-10-27: 03:00 CEST becomes 02:00 CET; 02:30 happens in each offset.
    s = Schedule.of("j", "30 2 * * *", timezone=PARIS, missed="catch_up", grace=0)
    result = due(s, paris(2024, 10, 26, 12), paris(2024, 10, 28, 12))
    assert isos(result.fire) == [
        "2024-10-27T00:30:00Z",  # 02:30 CEST
        "2024-10-27T01:30:00Z",  # 02:30 CET
        "2024-10-28T01:30:00Z",
    ]
    assert len({occurrence_id(s, o) for o in result.fire}) == 3
    # The sweep that handled the first 02:30 fires the second one next, and then no other.
    first = paris(2024, 10, 27, 2, 30)
    second = paris(2024, 10, 27, 2, 30, fold=1)
    assert second - first == 3600
    assert due(s, first, second + 5).fire == (second,)
    assert next_run(s, first) == second and next_run(s, second) == paris(2024, 10, 28, 2, 30)


CRONS = ["*/7 * * * *", "30 2 * * *", "0 * * * *", "15 1,2,3 * * *", "*/20 * * * * */15",
         "0 0 * * sun", "59 23 L * *"]  # fmt: skip
# Zones whose DST shifts are whole hours, one changing at midnight (Santiago). Not
# Australia/Lord_Howe: in its repeated half hour, croniter's answers depend on where its
# walk starts (see docs/graphs.md).
ZONES = ["UTC", PARIS, "America/New_York", "America/Santiago"]


def _forward(s: Schedule, after: float, now: float) -> list[float]:
    it = croniter(s.cron, datetime.fromtimestamp(after, ZoneInfo(s.timezone)))
    out: list[float] = []
    while (o := it.get_next(datetime).timestamp()) <= now:
        out.append(o)
    return out


@settings(max_examples=300, deadline=None)
@given(
    cron=st.sampled_from(CRONS),
    zone=st.sampled_from(ZONES),
    # Windows around the 2024 DST changes of those zones, a few days wide.
    start=st.sampled_from([datetime(2024, 3, 9), datetime(2024, 3, 29), datetime(2024, 4, 5),
                           datetime(2024, 10, 5), datetime(2024, 10, 25), datetime(2024, 11, 2)]),
    offset=st.integers(0, 3 * 86400),
    span=st.integers(0, 2 * 86400),
    limit=st.integers(1, 5),
    grace=st.sampled_from([0, 59, 3600]),
)  # fmt: skip
def test_due_agrees_with_walking_forward_through_every_occurrence(
    cron: str, zone: str, start: datetime, offset: int, span: int, limit: int, grace: int
) -> None:
    after = (start.replace(tzinfo=UTC) + timedelta(seconds=offset)).timestamp() + 0.5
    now = after + span
    s = Schedule.of("j", cron, timezone=zone, missed="catch_up", catch_up_limit=limit,
                    grace=grace)  # fmt: skip
    every = _forward(s, after, now)
    on_time = [o for o in every if now - o <= grace]
    late = [o for o in every if now - o > grace]
    result = due(s, after, now)
    assert list(result.fire) == late[-limit:] + on_time
    dropped = late[:-limit]
    assert (result.missed_first, result.missed_last) == (
        (dropped[0], dropped[-1]) if dropped else (None, None)
    )
    assert result.cursor == (every[-1] if every else after)
    skip = Schedule.of("j", cron, timezone=zone, grace=grace)
    assert list(due(skip, after, now).fire) == on_time


# --- overlap ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overlap", "running", "fires"),
    [("skip", False, True), ("skip", True, False), ("allow", False, True), ("allow", True, True)],
)
def test_may_fire_follows_the_overlap_policy(overlap: str, running: bool, fires: bool) -> None:
    assert may_fire(Schedule.of("j", "* * * * *", overlap=overlap), running) is fires


def test_under_overlap_skip_one_fires_per_sweep_and_none_while_the_last_one_runs() -> None:
    s = Schedule.of("tick", "* * * * * *", grace=10)
    idle = firing(s, 1000.5, 1003.0, previous_running=False)
    assert (idle.fire, idle.overlapped, idle.cursor) == ((1001.0,), (1002.0, 1003.0), 1003.0)
    assert idle.ids == ("schedule:tick:1970-01-01T00:16:41Z",)
    busy = firing(s, 1000.5, 1003.0, previous_running=True)
    assert (busy.fire, busy.ids, busy.overlapped) == ((), (), (1001.0, 1002.0, 1003.0))


def test_under_overlap_allow_every_due_occurrence_fires_and_missed_ones_are_reported() -> None:
    s = Schedule.of("tick", "* * * * * *", grace=1, overlap="allow")
    result = firing(s, 1000.5, 1005.0, previous_running=True)
    assert result.fire == (1004.0, 1005.0) and len(result.ids) == 2
    assert (result.missed_first, result.missed_last, result.overlapped) == (1001.0, 1003.0, ())
