"""The one embedded SQLite database of a data root (WAL, short transactions).

Each store declares its own tables with `ensure_schema`; the connection lives on the daemon's
event-loop thread, so stores never share it across threads.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class Database:
    def __init__(self, path: str) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.conn.row_factory = sqlite3.Row
        self.conn.execute("PRAGMA journal_mode=WAL")
        # NORMAL is durable across a process crash in WAL mode (only a power loss can drop the
        # last transactions), and avoids an fsync per container state change.
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute("PRAGMA foreign_keys=ON")
        # Image ingest runs in worker threads; one lock keeps the single connection serial.
        self.lock = threading.RLock()

    def ensure_schema(self, sql: str) -> None:
        with self.lock:
            self.conn.executescript(sql)

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        with self.lock:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")

    def query(self, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        with self.lock:
            return self.conn.execute(sql, args).fetchall()

    def close(self) -> None:
        self.conn.close()
