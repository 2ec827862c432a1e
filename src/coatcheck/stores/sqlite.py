"""SQLiteStore: the embedded default. Standard-library sqlite3, WAL, one worker thread."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from ..codec import DEFAULT_SERIALIZER, Serializer
from ..errors import ConfigurationError, SessionStoreError
from ..record import Meta, Record, SessionInfo
from ._toolkit import store_errors

T = TypeVar("T")
_BUSY: Any = object()
_PURGE_BATCH = 1000
_TABLE = "coatcheck_sessions"
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {_TABLE} (
    key TEXT PRIMARY KEY,
    data BLOB NOT NULL,
    meta BLOB NOT NULL,
    user_id TEXT,
    expires REAL,
    last_seen REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS {_TABLE}_expires ON {_TABLE} (expires);
CREATE INDEX IF NOT EXISTS {_TABLE}_user_id ON {_TABLE} (user_id);
"""


class SQLiteStore:
    """Sessions in a SQLite file, safe for several processes on one machine.

    All database work runs on one worker thread per store, so the event loop never blocks;
    WAL lets readers in other processes proceed while one writes, and `busy_timeout`
    bounds how long a write waits for another process's lock. Expired rows are invisible
    at once and deleted by `purge_expired()` (in batches) or when overwritten.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] = "sessions.db",
        *,
        busy_timeout: float = 5.0,
        serializer: Serializer = DEFAULT_SERIALIZER,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not str(path):
            raise ConfigurationError("SQLiteStore needs a file path, e.g. SQLiteStore('sessions.db')")
        self.path = Path(path) if str(path) != ":memory:" else path
        self._busy_ms = int(busy_timeout * 1000)
        self._serializer = serializer
        self._clock = clock
        self._executor: ThreadPoolExecutor | None = None
        self._pid = 0
        self._local = threading.local()

    def __repr__(self) -> str:
        return f"SQLiteStore({str(self.path)!r})"

    # ---- plumbing ---------------------------------------------------------------------
    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                self.path,
                timeout=self._busy_ms / 1000,
                isolation_level=None,
                check_same_thread=True,
            )
            conn.execute(f"PRAGMA busy_timeout = {self._busy_ms}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.executescript(_SCHEMA)
            self._local.conn = conn
        return conn

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._executor is None or self._pid != os.getpid():  # a forked child needs its own thread
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="coatcheck-sqlite")
            self._local = threading.local()
            self._pid = os.getpid()

        def call() -> T:
            with store_errors((sqlite3.Error,), f"SQLite store {str(self.path)!r}"):
                return fn(self._connection())

        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    def _decode(self, data: bytes, meta: bytes) -> Record:
        try:
            return Record(
                data=self._serializer.loads(data), meta=Meta.from_dict(self._serializer.loads(meta))
            )
        except (ValueError, TypeError, KeyError) as exc:
            raise SessionStoreError(f"corrupt session record in {str(self.path)!r}: {exc}") from exc

    def _row(self, record: Record) -> tuple[bytes, bytes, str | None, float | None, float]:
        meta = record.meta
        return (
            self._serializer.dumps(record.data),
            self._serializer.dumps(meta.to_dict()),
            meta.user_id,
            meta.expires,
            meta.last_seen,
        )

    # ---- Store ------------------------------------------------------------------------
    async def get(self, key: str) -> Record | None:
        """Read on the calling thread when the database answers at once (a WAL reader never
        waits for writers: a primary-key read costs microseconds, a hop to the worker thread
        ten times that); through the worker thread when it is busy (a checkpoint, recovery)."""
        now = self._clock()

        def read(conn: sqlite3.Connection) -> tuple[bytes, bytes] | None:
            return conn.execute(  # type: ignore[no-any-return]
                f"SELECT data, meta FROM {_TABLE} WHERE key = ? AND (expires IS NULL OR expires > ?)",
                (key, now),
            ).fetchone()

        row: Any = _BUSY
        with store_errors((sqlite3.DatabaseError,), f"SQLite store {str(self.path)!r}"):
            try:
                reader = self._reader()
                if reader is not None:
                    row = read(reader)
            except sqlite3.OperationalError:
                pass  # locked, busy, cannot open...: the worker waits for it, off the loop
        if row is _BUSY:
            row = await self._run(read)
        return None if row is None else self._decode(row[0], row[1])

    def _reader(self) -> sqlite3.Connection | None:
        """This thread's read connection, which never waits for a lock (busy_timeout 0), or
        None before the worker has opened the database (schema, WAL mode) in this process.
        An in-memory database exists on one connection only: it is always read by the worker."""
        pid = os.getpid()
        held: tuple[int, sqlite3.Connection] | None = getattr(self._local, "reader", None)
        if held is not None and held[0] == pid:
            return held[1]
        if self._executor is None or self._pid != pid or self.path == ":memory:":
            return None
        conn = sqlite3.connect(self.path, timeout=0, isolation_level=None, check_same_thread=True)
        conn.execute("PRAGMA busy_timeout = 0")
        conn.execute("PRAGMA query_only = 1")
        self._local.reader = (pid, conn)
        return conn

    async def set(self, key: str, record: Record) -> None:
        row = self._row(record)

        def write(conn: sqlite3.Connection) -> None:
            conn.execute(
                f"INSERT INTO {_TABLE} (key, data, meta, user_id, expires, last_seen) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET data = excluded.data, meta = excluded.meta, "
                "user_id = excluded.user_id, expires = excluded.expires, last_seen = excluded.last_seen",
                (key, *row),
            )

        await self._run(write)

    async def patch(self, key: str, changed: dict[str, Any], removed: Collection[str], meta: Meta) -> bool:
        now = self._clock()
        dumps, loads = self._serializer.dumps, self._serializer.loads
        meta_blob = dumps(meta.to_dict())

        def apply(conn: sqlite3.Connection) -> bool:
            conn.execute("BEGIN IMMEDIATE")  # read-modify-write under the database write lock
            try:
                row = conn.execute(
                    f"SELECT data FROM {_TABLE} WHERE key = ? AND (expires IS NULL OR expires > ?)",
                    (key, now),
                ).fetchone()
                if row is None:
                    return False
                data = loads(row[0])
                for name in removed:
                    data.pop(name, None)
                data.update(changed)
                conn.execute(
                    f"UPDATE {_TABLE} SET data = ?, meta = ?, user_id = ?, expires = ?, last_seen = ? WHERE key = ?",
                    (dumps(data), meta_blob, meta.user_id, meta.expires, meta.last_seen, key),
                )
                return True
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            finally:
                if conn.in_transaction:
                    conn.execute("COMMIT")

        return await self._run(apply)

    async def touch(self, key: str, meta: Meta) -> None:
        now = self._clock()
        blob = self._serializer.dumps(meta.to_dict())

        def write(conn: sqlite3.Connection) -> None:
            conn.execute(
                f"UPDATE {_TABLE} SET meta = ?, expires = ?, last_seen = ? "
                "WHERE key = ? AND (expires IS NULL OR expires > ?)",
                (blob, meta.expires, meta.last_seen, key, now),
            )

        await self._run(write)

    async def destroy(self, key: str) -> None:
        await self._run(lambda conn: conn.execute(f"DELETE FROM {_TABLE} WHERE key = ?", (key,)))

    # ---- user index ---------------------------------------------------------------------
    async def sessions_for(self, user_id: str) -> list[SessionInfo]:
        now = self._clock()
        rows = await self._run(
            lambda conn: conn.execute(
                f"SELECT key, meta FROM {_TABLE} WHERE user_id = ? AND (expires IS NULL OR expires > ?) "
                "ORDER BY last_seen DESC",
                (str(user_id), now),
            ).fetchall()
        )
        return [
            SessionInfo.from_meta(key, Meta.from_dict(self._serializer.loads(meta))) for key, meta in rows
        ]

    async def destroy_user(self, user_id: str) -> int:
        cursor = await self._run(
            lambda conn: conn.execute(f"DELETE FROM {_TABLE} WHERE user_id = ?", (str(user_id),))
        )
        return int(cursor.rowcount)

    # ---- inventory ----------------------------------------------------------------------
    async def count(self) -> int:
        now = self._clock()
        row = await self._run(
            lambda conn: conn.execute(
                f"SELECT COUNT(*) FROM {_TABLE} WHERE expires IS NULL OR expires > ?", (now,)
            ).fetchone()
        )
        return int(row[0])

    async def purge_expired(self, *, progress: Callable[[int, int], None] | None = None) -> int:
        """Delete expired rows in batches. `progress(done, expected)`, if given, is called after
        each batch, on the store's worker thread (the CLI's progress bar uses it)."""
        now = self._clock()

        def purge(conn: sqlite3.Connection) -> int:
            total = 0
            expected = 0
            if progress is not None:
                expected = conn.execute(
                    f"SELECT COUNT(*) FROM {_TABLE} WHERE expires <= ?", (now,)
                ).fetchone()[0]
            while True:  # small batches keep each write lock short for other processes
                deleted = conn.execute(
                    f"DELETE FROM {_TABLE} WHERE key IN (SELECT key FROM {_TABLE} WHERE expires <= ? LIMIT ?)",
                    (now, _PURGE_BATCH),
                ).rowcount
                total += deleted
                if progress is not None:
                    progress(total, max(expected, total))
                if deleted < _PURGE_BATCH:
                    return total

        return await self._run(purge)

    async def list_sessions(self, *, limit: int | None = None) -> list[SessionInfo]:
        now = self._clock()
        rows = await self._run(
            lambda conn: conn.execute(
                f"SELECT key, meta FROM {_TABLE} WHERE expires IS NULL OR expires > ? "
                "ORDER BY last_seen DESC LIMIT ?",
                (now, -1 if limit is None else limit),
            ).fetchall()
        )
        return [
            SessionInfo.from_meta(key, Meta.from_dict(self._serializer.loads(meta))) for key, meta in rows
        ]

    async def close(self) -> None:
        held = getattr(self._local, "reader", None)
        if held is not None and held[0] == os.getpid():
            held[1].close()
            self._local.reader = None
        executor, self._executor = self._executor, None
        if executor is not None:

            def shut() -> None:
                conn = getattr(self._local, "conn", None)
                if conn is not None:
                    conn.close()
                    self._local.conn = None

            await asyncio.get_running_loop().run_in_executor(executor, shut)
            executor.shutdown(wait=True)
