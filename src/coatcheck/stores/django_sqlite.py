"""DjangoSQLiteStore: the ``django_session`` table of a Django project's SQLite database.

Django owns the table (``manage.py migrate`` creates it); this store never creates or alters
anything, not even the database's journal mode. Django's SQLite backend keeps datetimes as
text in UTC (``USE_TZ = True``, the default), ``YYYY-MM-DD HH:MM:SS[.ffffff]``; the store
writes them the same way so Django's ``expire_date > now`` comparisons keep working.
Records are keyed by the raw Django session key. Implements Store and PatchingStore.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from ..django_format import DjangoFormat
from ..errors import ConfigurationError, SessionStoreError
from ..record import Meta, Record
from ._django_table import DEFAULT_TABLE, check_table_name, missing_table

T = TypeVar("T")


def sqlite_when(timestamp: float) -> str:
    """A Unix time as Django's SQLite backend stores a datetime (naive UTC text)."""
    return str(datetime.fromtimestamp(timestamp, UTC).replace(tzinfo=None))


def from_sqlite_when(text: Any) -> float | None:
    try:
        return datetime.fromisoformat(str(text)).replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None


class DjangoSQLiteStore:
    """Django's database session backend on SQLite, one worker thread per store."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        table: str = DEFAULT_TABLE,
        busy_timeout: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not str(path):
            raise ConfigurationError("DjangoSQLiteStore needs the Django database file, e.g. 'db.sqlite3'")
        self.path = Path(path)
        self.table = check_table_name(table)
        self._busy = busy_timeout
        self._clock = clock
        self._format: DjangoFormat | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._pid = 0
        self._local = threading.local()
        self._checked = False

    def __repr__(self) -> str:
        return f"DjangoSQLiteStore({str(self.path)!r}, table={self.table!r})"

    def with_format(self, record_format: DjangoFormat) -> DjangoSQLiteStore:
        """Adopt the middleware's `DjangoFormat` (one middleware per store)."""
        self._format = record_format
        return self

    @property
    def format(self) -> DjangoFormat:
        if self._format is None:
            raise RuntimeError(
                "this store has no DjangoFormat: pass it to SessionMiddleware(compat='django')"
            )
        return self._format

    # ---- plumbing ---------------------------------------------------------------------
    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            if not self.path.exists():  # sqlite3.connect would create an empty database
                raise ConfigurationError(
                    f"the Django database {str(self.path)!r} does not exist: check the path "
                    "(sqlite:///relative/db.sqlite3 or sqlite:////absolute/db.sqlite3) and run `manage.py migrate`"
                )
            conn = sqlite3.connect(self.path, timeout=self._busy, isolation_level=None)
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy * 1000)}")
            self._local.conn = conn
        if not self._checked:
            found = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (self.table,)
            ).fetchone()
            if found is None:
                raise missing_table(self.table, repr(self))
            self._checked = True
        return conn

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._executor is None or self._pid != os.getpid():  # a forked child needs its own thread
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="coatcheck-django-sqlite")
            self._local = threading.local()
            self._pid = os.getpid()

        def call() -> T:
            try:
                return fn(self._connection())
            except sqlite3.Error as exc:
                raise SessionStoreError(f"{self!r}: {exc}") from exc

        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    async def check(self) -> None:
        """Raise ConfigurationError now if the database or its ``django_session`` table is missing."""
        await self._run(lambda conn: None)

    # ---- Store ------------------------------------------------------------------------
    async def get(self, key: str) -> Record | None:
        fmt = self.format
        if not fmt.valid_id(key):
            return None
        now = self._clock()
        row = await self._run(
            lambda conn: conn.execute(
                f"SELECT session_data, expire_date FROM {self.table} WHERE session_key = ? AND expire_date > ?",
                (key, sqlite_when(now)),
            ).fetchone()
        )
        if row is None:
            return None
        data = fmt.decode(row[0])
        expires_at = from_sqlite_when(row[1])
        if data is None or expires_at is None:
            return None  # Django too treats undecodable data as an empty session
        return fmt.record(data, now=now, expires_at=expires_at)

    async def set(self, key: str, record: Record) -> None:
        fmt = self.format
        deadline = fmt.deadline(record.meta, record.data)
        text = fmt.encode(fmt.session_object(record.data, record.meta))
        if deadline <= self._clock():
            await self.destroy(key)
            return
        await self._run(
            lambda conn: conn.execute(
                f"INSERT INTO {self.table} (session_key, session_data, expire_date) VALUES (?, ?, ?) "
                "ON CONFLICT (session_key) DO UPDATE SET session_data = excluded.session_data, "
                "expire_date = excluded.expire_date",
                (key, text, sqlite_when(deadline)),
            )
        )

    async def patch(self, key: str, changed: dict[str, Any], removed: Collection[str], meta: Meta) -> bool:
        fmt = self.format
        now = self._clock()

        def apply(conn: sqlite3.Connection) -> bool:
            conn.execute("BEGIN IMMEDIATE")  # read-modify-write under the database write lock
            try:
                row = conn.execute(
                    f"SELECT session_data FROM {self.table} WHERE session_key = ? AND expire_date > ?",
                    (key, sqlite_when(now)),
                ).fetchone()
                current = None if row is None else fmt.decode(row[0])
                if current is None:
                    return False
                merged = fmt.merge(current, changed, removed, meta)
                conn.execute(
                    f"UPDATE {self.table} SET session_data = ?, expire_date = ? WHERE session_key = ?",
                    (fmt.encode(merged), sqlite_when(fmt.deadline(meta, merged)), key),
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
        deadline = self.format.deadline(meta)
        now = self._clock()
        await self._run(
            lambda conn: conn.execute(
                f"UPDATE {self.table} SET expire_date = ? WHERE session_key = ? AND expire_date > ?",
                (sqlite_when(deadline), key, sqlite_when(now)),
            )
        )

    async def destroy(self, key: str) -> None:
        await self._run(lambda conn: conn.execute(f"DELETE FROM {self.table} WHERE session_key = ?", (key,)))

    # ---- maintenance ------------------------------------------------------------------
    async def count(self) -> int:
        """Live rows (what Django would load)."""
        now = sqlite_when(self._clock())
        row = await self._run(
            lambda conn: conn.execute(
                f"SELECT COUNT(*) FROM {self.table} WHERE expire_date > ?", (now,)
            ).fetchone()
        )
        return int(row[0])

    async def purge_expired(self) -> int:
        """`manage.py clearsessions`: delete expired rows; returns how many."""
        now = sqlite_when(self._clock())
        cursor = await self._run(
            lambda conn: conn.execute(f"DELETE FROM {self.table} WHERE expire_date < ?", (now,))
        )
        return int(cursor.rowcount)

    async def close(self) -> None:
        executor, self._executor = self._executor, None
        if executor is not None:

            def shut() -> None:
                conn = getattr(self._local, "conn", None)
                if conn is not None:
                    conn.close()
                    self._local.conn = None

            await asyncio.get_running_loop().run_in_executor(executor, shut)
            executor.shutdown(wait=True)
