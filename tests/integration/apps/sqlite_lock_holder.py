"""Holds a SQLite database's write lock in a process of its own, for the lock tests.

    python sqlite_lock_holder.py URL corral   # a corral write transaction (its file lock too)
    python sqlite_lock_holder.py PATH sqlite  # a plain sqlite3 BEGIN IMMEDIATE (another program)

Prints "held" once it holds the lock, then waits for a line on stdin, commits, prints
"done" and exits.
"""

from __future__ import annotations

import sqlite3
import sys


def main() -> None:
    target, kind = sys.argv[1], sys.argv[2]
    if kind == "corral":
        from corral.storage import open_storage
        from corral.storage.sqlite import SQLiteStorage

        storage = open_storage(target)
        assert isinstance(storage, SQLiteStorage)
        with storage._write() as conn:
            conn.execute("INSERT INTO corral_paused_queue VALUES ('held')")
            print("held", flush=True)
            sys.stdin.readline()
        storage.close()
    else:
        conn = sqlite3.connect(target, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO corral_paused_queue VALUES ('held')")
        print("held", flush=True)
        sys.stdin.readline()
        conn.execute("COMMIT")
        conn.close()
    print("done", flush=True)


if __name__ == "__main__":
    main()
