"""SQLiteStore: the embedded default. Standard-library sqlite3, WAL, one worker thread."""

from __future__ import annotations

import asyncio
import functools
import os
import sqlite3
import stat
import threading
import time
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from .._anyloop import in_thread
from ..audit import revoked
from ..codec import DEFAULT_SERIALIZER, Serializer
from ..config import logger
from ..errors import ConfigurationError, SessionStoreError
from ..record import Meta, Record, SessionInfo
from . import _sqlite_ops as ops
from . import _sqlite_purge
from ._browse import Tally
from ._toolkit import SerializerChoice, store_errors
from .base import SessionTally

T = TypeVar("T")
_BUSY: Any = object()
_TABLE = ops.TABLE
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
CREATE INDEX IF NOT EXISTS {_TABLE}_last_seen ON {_TABLE} (last_seen);
"""
# The last_seen index came later: on a file made before it, the first connection builds it
# (CREATE INDEX IF NOT EXISTS above; about a second per million rows, once).


class SQLiteStore(SerializerChoice):
    """Sessions in a SQLite file, safe for several processes on one machine.

    All database work runs on one worker thread per store, so the event loop never blocks;
    WAL lets readers in other processes proceed while one writes, and `busy_timeout`
    bounds how long a write waits for another process's lock. Expired rows are invisible
    at once and deleted by `purge_expired()` (in batches) or when overwritten.

    Each connection memory-maps up to `mmap_size` bytes of the file (reads skip a copy
    through SQLite's page cache; at a million sessions a lookup takes about half the time)
    and keeps a page cache of `cache_size` KiB. With `auto_purge` (default on), expired rows
    are deleted during normal traffic, `auto_purge_batch` at most every
    `auto_purge_interval` seconds (sooner while a backlog remains), on the store's worker
    thread between requests' own queries, so no cron job is needed.

    A database file the store creates is readable by its owner only (0600), and so are
    the `-wal` and `-shm` files, which SQLite creates with the database's mode. An
    existing file keeps its mode (it may be shared on purpose); if other users can read
    it, a warning says so once, naming the file.

    It runs under asyncio and, through anyio, under trio.
    """

    anyio_compatible = True

    def __init__(
        self,
        path: str | os.PathLike[str] = "sessions.db",
        *,
        busy_timeout: float = 5.0,
        serializer: Serializer = DEFAULT_SERIALIZER,
        clock: Callable[[], float] = time.time,
        mmap_size: int = 256 * 1024 * 1024,
        cache_size: int = 16 * 1024,
        purge_window: int = 20_000,
        auto_purge: bool = True,
        auto_purge_interval: float = 60.0,
        auto_purge_batch: int = 500,
    ) -> None:
        if mmap_size < 0 or cache_size < 0 or purge_window < 1 or auto_purge_batch < 1:
            raise ConfigurationError(
                "SQLiteStore mmap_size and cache_size must be >= 0, purge_window and auto_purge_batch >= 1"
            )
        if not auto_purge_interval >= 0:
            raise ConfigurationError(
                f"SQLiteStore auto_purge_interval must be >= 0 seconds, got {auto_purge_interval!r}"
            )
        if not str(path):
            raise ConfigurationError("SQLiteStore needs a file path, e.g. SQLiteStore('sessions.db')")
        self.path = Path(path) if str(path) != ":memory:" else path
        self._busy_ms = int(busy_timeout * 1000)
        self._serializer = serializer
        self._clock = clock
        self._executor: ThreadPoolExecutor | None = None
        self._pid = 0
        self._local = threading.local()
        self._pragmas = (f"PRAGMA mmap_size = {int(mmap_size)}", f"PRAGMA cache_size = -{int(cache_size)}")
        self._purge_window = purge_window
        self._auto = ops.AutoPurge(auto_purge_interval, auto_purge_batch) if auto_purge else None

    def __repr__(self) -> str:
        return f"SQLiteStore({str(self.path)!r})"

    # ---- plumbing ---------------------------------------------------------------------
    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            _create_owner_only(self.path)
            conn = sqlite3.connect(
                self.path,
                timeout=self._busy_ms / 1000,
                isolation_level=None,
                check_same_thread=True,
            )
            conn.execute(f"PRAGMA busy_timeout = {self._busy_ms}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            for pragma in self._pragmas:
                conn.execute(pragma)
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

        self._maybe_purge()
        return await in_thread(self._executor, call)

    def _maybe_purge(self) -> None:
        """Queue a small automatic purge step when one is due: on every call, the reads that
        skip the worker thread included (asyncio callers only; under trio purge by hand)."""
        if self._auto is None or self._executor is None or not self._auto.due():
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._purge_soon(loop)

    def _purge_soon(self, loop: asyncio.AbstractEventLoop) -> None:
        """Queue one small purge step ahead of this call on the worker thread; nobody awaits
        it, and a failure is logged (the request's own query reports a broken database)."""
        auto = self._auto
        assert auto is not None and self._executor is not None
        now, batch = self._clock(), auto.batch

        def step() -> int:
            return ops.purge_step(self._connection(), now, batch)

        def finished(future: asyncio.Future[int]) -> None:
            error = None if future.cancelled() else future.exception()
            if error is not None:
                logger.warning("coatcheck: automatic purge of %r failed: %s", str(self.path), error)
            auto.done(None if error is not None or future.cancelled() else future.result())

        loop.run_in_executor(self._executor, step).add_done_callback(finished)

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
        else:
            self._maybe_purge()
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
        for pragma in self._pragmas:
            conn.execute(pragma)
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

    async def claim(self, key: str, names: Collection[str]) -> frozenset[str]:
        """`FlashClaiming`: one write transaction, so processes sharing the file claim in turn."""
        now = self._clock()
        dumps, loads = self._serializer.dumps, self._serializer.loads

        def apply(conn: sqlite3.Connection) -> frozenset[str]:
            conn.execute("BEGIN IMMEDIATE")  # the database write lock, across processes
            try:
                row = conn.execute(
                    f"SELECT data FROM {_TABLE} WHERE key = ? AND (expires IS NULL OR expires > ?)",
                    (key, now),
                ).fetchone()
                data = loads(row[0]) if row is not None else {}
                taken = frozenset(name for name in names if name in data)
                if taken:
                    for name in taken:
                        del data[name]
                    conn.execute(f"UPDATE {_TABLE} SET data = ? WHERE key = ?", (dumps(data), key))
                return taken
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
        revoked(self, user_id, int(cursor.rowcount))
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
        """Delete expired rows, in table order, `purge_window` rowids per transaction; or,
        when nearly every row is expired and few are live, by keeping the live rows and
        emptying the table in one transaction (see `_sqlite_purge`). `progress(done,
        expected)`, if given, is called after each transaction, on the store's worker thread
        (the CLI's progress bar uses it)."""
        now = self._clock()
        return await self._run(lambda conn: _sqlite_purge.purge(conn, now, self._purge_window, progress))

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

    # ---- browsing ----------------------------------------------------------------------
    ordered = True  # list_sessions(limit=n) reads n rows of the last_seen index

    def _infos(self, rows: list[ops.Row]) -> list[SessionInfo]:
        loads = self._serializer.loads
        return [SessionInfo.from_meta(key, Meta.from_dict(loads(meta))) for key, meta in rows]

    async def find_sessions(self, prefix: str, *, limit: int) -> list[SessionInfo]:
        now = self._clock()
        return self._infos(await self._run(lambda conn: ops.find(conn, prefix, now, limit)))

    async def scan(self, *, batch: int = 1000) -> AsyncIterator[list[SessionInfo]]:
        after = ""
        now = self._clock()
        while True:
            rows = await self._run(functools.partial(_page, after=after, now=now, limit=batch))
            if rows:
                yield self._infos(rows)
            if len(rows) < batch:
                return
            after = rows[-1][0]

    async def tally(self, age_bounds: Sequence[float], top: int) -> SessionTally:
        now = self._clock()
        try:
            return await self._run(lambda conn: ops.tally(conn, now, age_bounds, top))
        except SessionStoreError:
            if self._serializer is DEFAULT_SERIALIZER:
                raise
        counter = Tally(age_bounds, now)  # metadata that is not JSON: count page by page
        async for infos in self.scan():
            counter.add(infos)
        return counter.result(top)

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

            await in_thread(executor, shut)
            executor.shutdown(wait=True)


def _page(conn: sqlite3.Connection, *, after: str, now: float, limit: int) -> list[ops.Row]:
    return ops.page(conn, after, now, limit)


def _create_owner_only(path: str | os.PathLike[str]) -> None:
    """Create the database file with mode 0600 if it does not exist; warn if an existing
    one, or its -wal/-shm file, is readable by other users (session data is credentials)."""
    if not isinstance(path, Path):  # ":memory:"
        return
    try:
        os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))
        return
    except FileExistsError:
        pass
    except OSError:
        return  # e.g. a missing directory: sqlite3.connect reports it
    for name in (str(path), f"{path}-wal", f"{path}-shm"):
        try:
            mode = os.stat(name).st_mode
        except OSError:
            continue
        if mode & (stat.S_IRWXG | stat.S_IRWXO) and name not in _WARNED:
            _WARNED.add(name)
            logger.warning(
                "coatcheck: the SQLite session file %r is readable by other users (mode %o): "
                "chmod 600 it unless sharing it is intended",
                name,
                stat.S_IMODE(mode),
            )


_WARNED: set[str] = set()  # files already warned about: once per process
