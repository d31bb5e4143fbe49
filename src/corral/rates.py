"""Rate limits: at most N iterations of a job start per period, across the fleet.

Pure: the declaration (`"10/s"`, `"600/m"`, `"100/h"`, optionally per parameter value) and
the token bucket's arithmetic. Each (job, key) has a bucket of N tokens, refilled at N
per period; a worker takes a token when it is about to start an iteration (the storage
does the arithmetic in one atomic statement, with the database's clock, so that every
worker of the fleet shares the bucket). A process that finds no token is not polled: its
iteration is deferred to when the next token is due, without using an attempt
(docs/flow-control.md).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import pydantic

from corral.errors import ConfigurationError

#: Seconds per period, by the names a rate may use.
PERIODS = {
    "s": 1.0, "sec": 1.0, "second": 1.0,
    "m": 60.0, "min": 60.0, "minute": 60.0,
    "h": 3600.0, "hour": 3600.0,
}  # fmt: skip
_RATE = re.compile(r"^\s*(\d+)\s*/\s*([a-z]+)\s*$")


@dataclass(frozen=True, slots=True)
class Rate:
    """N starts per `period` seconds: a bucket of `burst` (= N) tokens refilled at
    `per_second`. `key`: a parameter whose value gets a bucket of its own (None: one
    bucket for the job)."""

    count: int
    period: float
    key: str | None = None

    @property
    def per_second(self) -> float:
        return self.count / self.period

    @property
    def burst(self) -> float:
        return float(self.count)

    def bucket(self, job: str, params: dict[str, Any]) -> str:
        """The bucket of a process of `job` with these (stored) parameters."""
        if self.key is None:
            return f"rate:{job}"
        value = params.get(self.key)
        return f"rate:{job}:{value if isinstance(value, str) else repr(value)}"

    def __str__(self) -> str:
        unit = {1.0: "s", 60.0: "m", 3600.0: "h"}.get(self.period, f"{self.period:g}s")
        return f"{self.count}/{unit}" + (f" per {self.key}" if self.key else "")


def parse_rate(
    job: str, rate: object, rate_key: object, params_model: type[pydantic.BaseModel]
) -> Rate | None:
    """`rate=` and `rate_key=` as declared, checked: ConfigurationError naming the mistake."""
    if rate is None:
        if rate_key is not None:
            raise ConfigurationError(f"job {job!r}: rate_key needs rate= (such as '10/s')")
        return None
    match = _RATE.match(rate) if isinstance(rate, str) else None
    if match is None or match.group(2) not in PERIODS or int(match.group(1)) < 1:
        raise ConfigurationError(
            f"job {job!r}: rate must be N/s, N/m or N/h with N >= 1 (such as '10/s'), not {rate!r}"
        )
    count, period = int(match.group(1)), PERIODS[match.group(2)]
    if count > 2**31 - 1 or not math.isfinite(count / period):
        raise ConfigurationError(f"job {job!r}: rate {rate!r} is too large")
    if rate_key is not None and (
        not isinstance(rate_key, str) or rate_key not in params_model.model_fields
    ):
        known = ", ".join(sorted(params_model.model_fields)) or "none"
        raise ConfigurationError(
            f"job {job!r}: rate_key must name a parameter of the job (its parameters: "
            f"{known}), not {rate_key!r}"
        )
    return Rate(count, period, rate_key)


def take(tokens: float, updated_at: float, now: float, rate: Rate) -> tuple[float, float]:
    """The bucket after one try to take a token at `now`: (tokens left, seconds until a
    token is due: 0 when one was taken). `tokens` was its level at `updated_at`."""
    level = min(rate.burst, tokens + max(now - updated_at, 0.0) * rate.per_second)
    if level >= 1.0:
        return level - 1.0, 0.0
    return level, (1.0 - level) / rate.per_second
