"""Rate limits, the pure part: declarations and the token bucket's arithmetic."""

from __future__ import annotations

import pydantic
import pytest

from corral.errors import ConfigurationError
from corral.rates import Rate, parse_rate, take


class Params(pydantic.BaseModel):
    customer: str = "x"


def test_a_rate_reads_per_second_minute_or_hour() -> None:
    assert parse_rate("j", "10/s", None, Params) == Rate(10, 1.0)
    assert parse_rate("j", "600 / minute", None, Params) == Rate(600, 60.0)
    assert parse_rate("j", "3/h", "customer", Params) == Rate(3, 3600.0, "customer")
    assert parse_rate("j", None, None, Params) is None
    assert str(Rate(3, 3600.0, "customer")) == "3/h per customer"


@pytest.mark.parametrize(
    ("rate", "key", "message"),
    [
        ("10", None, "rate must be N/s, N/m or N/h"),
        ("0/s", None, "rate must be N/s"),
        ("10/day", None, "rate must be N/s"),
        (10, None, "rate must be N/s"),
        ("10/s", "nope", "rate_key must name a parameter of the job"),
        (None, "customer", "rate_key needs rate="),
    ],
)
def test_a_bad_rate_is_one_clear_error(rate: object, key: object, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        parse_rate("j", rate, key, Params)


def test_the_bucket_holds_a_burst_then_refills_at_the_rate() -> None:
    rate = Rate(2, 1.0)  # 2 a second, at most 2 at once
    tokens, at = rate.burst, 0.0
    waits = []
    for now in (0.0, 0.0, 0.0, 0.25, 0.5, 0.5):
        tokens, wait = take(tokens, at, now, rate)
        at = now
        waits.append(wait)
    # Two at once, then the third waits half a second; a token is back at 0.5 s.
    assert waits == [0.0, 0.0, 0.5, 0.25, 0.0, 0.5]
    # Never more than the burst, however long the bucket sat unused.
    assert take(0.0, 0.0, 1_000.0, rate)[0] == 1.0


def test_each_key_value_has_a_bucket_of_its_own() -> None:
    rate = Rate(1, 1.0, "customer")
    assert rate.bucket("call", {"customer": "a"}) != rate.bucket("call", {"customer": "b"})
    assert Rate(1, 1.0).bucket("call", {"customer": "a"}) == "rate:call"
