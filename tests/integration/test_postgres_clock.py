"""One clock for the fleet: `PostgresStorage.now()` is the server's clock, whatever the local
wall clock says, without a round trip per reading, and it never fails (tests/integration/
test_clock_skew.py runs a fleet of workers whose clocks disagree)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator

import psycopg
import pytest

from corral.app import App
from corral.storage.postgres import PostgresStorage
from corral.storage.postgres import clock as pg_clock
from tests.backends import POSTGRES_URL, require_postgres
from tests.e2e.conftest import wait_until
from tests.integration.test_postgres_outage import Proxy, proxied_url  # noqa: F401
from tests.pg import isolated_schema_url

pytestmark = pytest.mark.postgres

#: How far a reading may be from the server's clock, beyond its measurement's error bound:
#: room for a loaded machine.
TOLERANCE = 0.005
SKEW = 300.0


@pytest.fixture
def url() -> Iterator[str]:
    require_postgres()
    with isolated_schema_url(POSTGRES_URL, f"t_{uuid.uuid4().hex[:12]}") as url:
        yield url


def skew_local_clock(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    """This machine's wall clock, `seconds` off (as time.time() and time.time_ns() see it)."""
    real, real_ns = time.time, time.time_ns
    monkeypatch.setattr(time, "time", lambda: real() + seconds)
    monkeypatch.setattr(time, "time_ns", lambda: real_ns() + int(seconds * 1e9))


def server_time(server: psycopg.Connection) -> float:
    [(at,)] = server.execute("SELECT extract(epoch FROM clock_timestamp())::float8")
    return float(at)


def bound(storage: PostgresStorage) -> float:
    """How far the storage's reading may be from the server's clock: the error bound of its
    measurement (half the round trip, a fraction of a millisecond here, more on a loaded
    machine), and TOLERANCE for the rest."""
    return storage._clock._base[2] + TOLERANCE


def on_server_time(
    now: Callable[[], float], server: psycopg.Connection, storage: PostgresStorage
) -> bool:
    """The server's clock, read between two readings of `now`, lies between them."""
    before, at, after = now(), server_time(server), now()
    return before - bound(storage) <= at <= after + bound(storage)


def assert_on_server_time(
    now: Callable[[], float], server: psycopg.Connection, storage: PostgresStorage
) -> None:
    for _ in range(5):
        before, at, after = now(), server_time(server), now()
        assert before - bound(storage) <= at <= after + bound(storage), (
            before - at,
            after - at,
            bound(storage),
        )


@pytest.mark.parametrize("skew", [SKEW, -SKEW])
def test_now_is_the_servers_clock_on_a_machine_whose_clock_is_off(
    url: str, monkeypatch: pytest.MonkeyPatch, skew: float
) -> None:
    skew_local_clock(monkeypatch, skew)
    with PostgresStorage(url) as storage, psycopg.connect(url, autocommit=True) as server:
        assert_on_server_time(storage.now, server, storage)
        # ...and so is the App's clock, which every verb's `now` comes from.
        app = App(url)
        try:
            assert_on_server_time(app.clock, server, storage)
        finally:
            app.close()


def test_a_step_of_the_local_clock_does_not_move_now(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """NTP steps the clock (or a VM resumes) while the storage is open."""
    with PostgresStorage(url) as storage, psycopg.connect(url, autocommit=True) as server:
        assert_on_server_time(storage.now, server, storage)
        skew_local_clock(monkeypatch, SKEW)
        assert_on_server_time(storage.now, server, storage)
        skew_local_clock(monkeypatch, -2 * SKEW)
        assert_on_server_time(storage.now, server, storage)


def test_reading_the_clock_is_no_round_trip(url: str) -> None:
    with PostgresStorage(url) as storage:
        storage.process_get("x")  # the pool's first use
        before = storage._pool.get_stats().get("requests_num", 0)
        began = time.monotonic()
        for _ in range(10_000):
            storage.now()
        # At most one background refresh, had its interval passed meanwhile.
        refreshes = 1 + int((time.monotonic() - began) / pg_clock._CLOCK_REFRESH)
        assert storage._pool.get_stats().get("requests_num", 0) - before <= refreshes


def test_a_step_of_the_servers_clock_is_caught_up_with_by_the_next_refresh(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pg_clock, "_CLOCK_REFRESH", 0.2)
    with PostgresStorage(url) as storage, psycopg.connect(url, autocommit=True) as server:
        # As if the server's clock had just stepped one second forward: the storage's last
        # measurement, a sure one, is one second behind.
        clock = storage._clock
        measured, local, _ = clock._base
        clock._base = (measured - 1.0, local, 0.0)
        clock._due = 0.0
        assert storage.now() < server_time(server) - 0.5
        # Within a refresh or two (as the measurement's error bound ages past the new
        # measurements' own), the storage reads the server's clock again.
        wait_until(lambda: on_server_time(storage.now, server, storage), timeout=10)
        assert_on_server_time(storage.now, server, storage)


def test_a_slow_round_trip_does_not_spoil_a_good_measurement(url: str) -> None:
    with PostgresStorage(url) as storage:
        clock = storage._clock
        measured, local, error = clock._base
        # A measurement whose round trip took a second (a stalled thread, a busy server)
        # is worse than the one in use: it is not taken.
        assert not clock.offer([(measured + 0.4, local + 0.01, 1.0)])
        assert clock._base == (measured, local, error)
        assert clock.offer([(measured + 0.01, local + 0.01, error)])


def test_now_answers_while_the_server_is_away(
    proxied_url: tuple[str, Proxy],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pg_clock, "_CLOCK_REFRESH", 0.05)
    url, proxy = proxied_url
    with PostgresStorage(url) as storage, psycopg.connect(POSTGRES_URL, autocommit=True) as server:
        proxy.stop()
        # Refreshes fail in the background; readings go on from the last measurement.
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            assert_on_server_time(storage.now, server, storage)
            time.sleep(0.01)
        proxy.start()
