"""Wake-ups: idle workers wait for a NOTIFY that every write creating runnable work sends
when its transaction commits.

One listener thread per storage object holds a dedicated connection and moves the local
wake-up epoch (shared.Wakeups) on each notification; writes through this storage move it
themselves (`notify_local`). With `notify=false` in the URL (PgBouncer in transaction mode
cannot LISTEN), waiting falls back to polling.
"""

from __future__ import annotations

import select
import socket
import threading
from typing import Any

import psycopg
from psycopg import sql

from corral.storage.postgres.connection import Connected, Connection, verb

#: Seconds of silence after which the listener pings the server, to notice a dead one.
_LISTEN_PING = 30.0
#: Polling interval of `wait_for_change` when LISTEN/NOTIFY is off.
_POLL = 0.05


class Listening(Connected):
    """The wake-up verbs, and the listener thread behind them."""

    _conninfo: str
    _connect_kwargs: dict[str, Any]
    _notify_on: bool
    _closed: bool
    _listen_lock: threading.Lock
    _listener: threading.Thread | None
    #: A socket pair: a byte on _wake_w stops the listener at once.
    _wake_r: socket.socket
    _wake_w: socket.socket

    @verb
    def change_epoch(self) -> int:
        # LISTEN first: a NOTIFY sent after the epoch is read must move it on.
        if self._notify_on:
            self._start_listener()
        return self._wakeups.epoch()

    def wait_for_change(self, epoch: int, timeout: float) -> bool:
        """True when something may have changed since `epoch` was read.

        Without LISTEN/NOTIFY, waits at most 50 ms and returns True: the caller polls.
        """
        if not self._notify_on or not self._start_listener():
            self._wakeups.wait(epoch, min(timeout, _POLL))
            return True
        return self._wakeups.wait(epoch, timeout)

    def _start_listener(self) -> bool:
        """LISTEN before returning, so that no later commit's NOTIFY is missed."""
        with self._listen_lock:
            if self._listener is not None:
                return True
            if self._closed:
                return False
            try:
                conn = self._listen_connect()
            except psycopg.Error as exc:
                self._health(exc)
                return False
            self._listener = threading.Thread(
                target=self._listen,
                args=(conn,),
                name=f"corral-listen-{self._channel}",
                daemon=True,
            )
            self._listener.start()
            return True

    def _listen_connect(self) -> Connection:
        conn = psycopg.connect(self._conninfo, autocommit=True, **self._connect_kwargs)
        try:
            conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._channel)))
        except BaseException:
            conn.close()
            raise
        return conn

    def _listen(self, conn: Connection | None) -> None:
        """The listener thread: count notifications, reconnect with backoff when the server
        goes away (counting a wake-up then, since notifications were missed)."""
        backoff = 0.1
        while not self._closed:
            try:
                if conn is None:
                    conn = self._listen_connect()
                    self._health(None)
                    self.notify_local()
                wake = self._wake_r.fileno()
                ready, _, _ = select.select([conn.fileno(), wake], [], [], _LISTEN_PING)
                if wake in ready:
                    break
                if not ready:
                    conn.execute("SELECT 1")  # a dead server shows only when spoken to
                if sum(1 for _ in conn.notifies(timeout=0)):
                    self.notify_local()
                backoff = 0.1
            except (psycopg.Error, OSError) as exc:
                self._health(exc)
                if conn is not None:
                    conn.close()
                    conn = None
                select.select([self._wake_r], [], [], backoff)
                backoff = min(backoff * 2, 5.0)
        if conn is not None:
            conn.close()

    def _stop_listener(self) -> None:
        with self._listen_lock:
            listener = self._listener
        if listener is not None:
            self._wake_w.send(b"x")
            listener.join(timeout=5.0)
        self._wake_r.close()
        self._wake_w.close()
