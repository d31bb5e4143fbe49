"""PostgreSQL goes away and comes back, played by a TCP proxy in front of the real server
(restarting the shared server would disturb every other test)."""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import pytest

from corral.errors import StorageUnavailable
from corral.storage.base import NewProcess
from corral.storage.postgres import PostgresStorage
from tests.backends import POSTGRES_URL, require_postgres
from tests.pg import isolated_schema_url

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


class Proxy:
    """Forwards TCP connections to `target`; `stop` refuses new ones and cuts the open ones,
    as a server that goes down does."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        self._server: socket.socket | None = None

    def start(self) -> None:
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", self.port))
        server.listen(16)
        self.port = server.getsockname()[1]
        self._server = server
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()

    def stop(self) -> None:
        assert self._server is not None
        with self._lock:
            for s in [self._server, *self._open]:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)  # wakes the threads blocked on it
                s.close()
            self._open = []

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
                upstream = socket.create_connection(self.target)
            except OSError:
                return
            with self._lock:
                self._open += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        try:
            while True:
                ready, _, _ = select.select([a, b], [], [], 1.0)
                for s in ready:
                    data = s.recv(65536)
                    if not data:
                        return
                    (b if s is a else a).sendall(data)
        except (OSError, ValueError):
            return
        finally:
            a.close()
            b.close()


@pytest.fixture
def proxied_url() -> Iterator[tuple[str, Proxy]]:
    require_postgres()
    with isolated_schema_url(POSTGRES_URL, f"t_{uuid.uuid4().hex[:12]}") as url:
        parts = urlsplit(url)
        proxy = Proxy((parts.hostname or "127.0.0.1", parts.port or 5432))
        proxy.start()
        netloc = parts.netloc.replace(f":{parts.port}", "") + f":{proxy.port}"
        yield urlunsplit(parts._replace(netloc=netloc)), proxy
        proxy.stop()


def new() -> NewProcess:
    return NewProcess(id=str(uuid.uuid4()), job="add", params={}, created_at=1.0, run_at=1.0)


def test_a_server_outage_is_reported_once_and_the_storage_recovers(
    proxied_url: tuple[str, Proxy], caplog: pytest.LogCaptureFixture
) -> None:
    url, proxy = proxied_url
    caplog.set_level(logging.WARNING, logger="corral.storage.postgres")
    with PostgresStorage(url) as storage:
        storage.wait_for_change(storage.change_epoch(), 0.01)  # listening
        p = new()
        storage.process_insert_many([p])
        # Given the server goes away, verbs fail with one clear error...
        proxy.stop()
        with pytest.raises(StorageUnavailable, match="is unavailable"):
            storage.process_get(p.id)
        # ...and when it is back, the same storage object works again, wake-ups included.
        proxy.start()
        deadline = time.monotonic() + 30
        while True:
            try:
                assert storage.process_get(p.id) is not None
                break
            except StorageUnavailable:
                assert time.monotonic() < deadline
                time.sleep(0.5)
        while storage.wait_for_change(
            storage.change_epoch(), 0.5
        ):  # the listener reports its reconnection
            assert time.monotonic() < deadline
        epoch = storage.change_epoch()  # read before the write it must see
        with PostgresStorage(url) as other:
            other.process_insert_many([new()])
        assert storage.wait_for_change(epoch, 5.0)
    messages = [r.getMessage() for r in caplog.records if r.name == "corral.storage.postgres"]
    assert len([m for m in messages if "is unavailable" in m]) == 1, messages
    assert len([m for m in messages if "reachable again" in m]) == 1, messages
