"""DjangoSQLStore: the ``django_session`` table on PostgreSQL or MySQL/MariaDB.

Same SQLAlchemy async plumbing as `SQLStore` (psycopg 3, asyncmy), on Django's table::

    session_key   varchar(40) PRIMARY KEY   the raw Django session key
    session_data  text                      django.core.signing object (see coatcheck.django_format)
    expire_date   PostgreSQL timestamptz; MySQL datetime(6), naive UTC (Django with USE_TZ = True)

Django owns the table: it is never created here, and a missing one is a ConfigurationError
naming ``manage.py migrate``. A delta commit locks the row (``SELECT ... FOR UPDATE``),
applies the change to the decoded session and writes it back in one transaction, so a
concurrent coatcheck commit is never lost and a session Django deleted is never written
back. (Django's own saves replace the whole row, as they always do.)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Collection
from datetime import UTC, datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import mysql
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncEngine

from ..django_format import DjangoFormat
from ..errors import ConfigurationError, SessionStoreError
from ..record import Meta, Record
from ._django_table import DEFAULT_TABLE, check_table_name, missing_table
from ._sql_dialect import describe_sql_error as _describe
from ._sql_dialect import make_engine as _make_engine

T = TypeVar("T")


class DjangoSQLStore:
    """Django's database session backend on PostgreSQL or MySQL/MariaDB; implements Store and
    PatchingStore. `engine` is a URL (``postgresql://user@host/db``, ``mysql://...``,
    ``mariadb://...``) or an `AsyncEngine` the store uses but never disposes."""

    def __init__(
        self,
        engine: str | AsyncEngine,
        *,
        table: str = DEFAULT_TABLE,
        timeout: float = 5.0,
        pool_size: int = 5,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not timeout > 0:
            raise ConfigurationError(f"DjangoSQLStore timeout must be positive seconds, got {timeout!r}")
        if isinstance(engine, AsyncEngine):
            self._engine, self._owns_engine = engine, False
        else:
            self._engine, self._owns_engine = _make_engine(engine, timeout, pool_size), True
        dialect = self._engine.dialect.name
        if dialect not in ("postgresql", "mysql", "mariadb"):
            raise ConfigurationError(
                f"DjangoSQLStore supports PostgreSQL and MySQL/MariaDB, not {dialect!r}; "
                "for SQLite use 'sqlite:///path/to/db.sqlite3'"
            )
        self._pg = dialect == "postgresql"
        self.table_name = check_table_name(table)
        when = sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
        self._table = sa.Table(
            self.table_name,
            sa.MetaData(),
            sa.Column("session_key", sa.String(40), primary_key=True),
            sa.Column("session_data", sa.Text(), nullable=False),
            sa.Column("expire_date", when, nullable=False),
        )
        self._timeout = float(timeout)
        self._clock = clock
        self._format: DjangoFormat | None = None
        self._checked = False
        url = self._engine.url
        self._where = (
            f"{'PostgreSQL' if self._pg else 'MySQL'} {url.host or 'localhost'}/{url.database or ''}"
        )

    def __repr__(self) -> str:
        return f"DjangoSQLStore({self._where!r}, table={self.table_name!r})"

    def with_format(self, record_format: DjangoFormat) -> DjangoSQLStore:
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

    # ---- plumbing -----------------------------------------------------------------------
    async def _run(self, what: str, work: Callable[[], Awaitable[T]], key: str | None = None) -> T:
        try:
            async with asyncio.timeout(self._timeout):
                if not self._checked:
                    await self._check_table()
                return await work()
        except (SessionStoreError, ConfigurationError):
            raise
        except TimeoutError:
            raise SessionStoreError(f"{self!r}: {what} timed out after {self._timeout:g}s") from None
        except (sa_exc.SQLAlchemyError, OSError, UnicodeError) as exc:
            raise SessionStoreError(f"{self!r}: {what} failed: {_describe(exc, key)}") from None

    async def _check_table(self) -> None:
        async with self._engine.connect() as conn:
            found = await conn.run_sync(lambda sync: sa.inspect(sync).has_table(self.table_name))
        if not found:
            raise missing_table(self.table_name, repr(self))
        self._checked = True

    async def check(self) -> None:
        """Raise ConfigurationError now if the table is missing (SessionStoreError if the
        database cannot be reached)."""
        self._checked = False
        await self._run("checking the table", _nothing)

    def _when(self, timestamp: float) -> datetime:
        when = datetime.fromtimestamp(timestamp, UTC)
        return when if self._pg else when.replace(tzinfo=None)

    @staticmethod
    def _seconds(value: Any) -> float | None:
        if not isinstance(value, datetime):
            return None
        return (value if value.tzinfo is not None else value.replace(tzinfo=UTC)).timestamp()

    def _row(self, key: str) -> sa.ColumnElement[bool]:
        t = self._table
        return sa.and_(t.c.session_key == key, t.c.expire_date > self._when(self._clock()))

    # ---- Store --------------------------------------------------------------------------
    async def get(self, key: str) -> Record | None:
        fmt = self.format
        if not fmt.valid_id(key):
            return None
        t = self._table
        query = sa.select(t.c.session_data, t.c.expire_date).where(self._row(key))

        async def read() -> Any:
            async with self._engine.connect() as conn:
                return (await conn.execute(query)).first()

        row = await self._run("loading a session", read, key)
        if row is None:
            return None
        data = fmt.decode(row.session_data)
        expires_at = self._seconds(row.expire_date)
        if data is None or expires_at is None:
            return None
        return fmt.record(data, now=self._clock(), expires_at=expires_at)

    async def set(self, key: str, record: Record) -> None:
        fmt = self.format
        deadline = fmt.deadline(record.meta, record.data)
        text = fmt.encode(fmt.session_object(record.data, record.meta))
        if deadline <= self._clock():
            await self.destroy(key)
            return
        values = {"session_key": key, "session_data": text, "expire_date": self._when(deadline)}
        statement: Any
        if self._pg:
            pg_insert = pg.insert(self._table).values(values)
            statement = pg_insert.on_conflict_do_update(
                index_elements=[self._table.c.session_key],
                set_={c: pg_insert.excluded[c] for c in ("session_data", "expire_date")},
            )
        else:
            my_insert = mysql.insert(self._table).values(values)
            statement = my_insert.on_duplicate_key_update(
                {c: my_insert.inserted[c] for c in ("session_data", "expire_date")}
            )
        await self._run("saving a session", lambda: self._execute(statement), key)

    async def patch(self, key: str, changed: dict[str, Any], removed: Collection[str], meta: Meta) -> bool:
        fmt = self.format
        t = self._table
        lock = sa.select(t.c.session_data).where(self._row(key)).with_for_update()

        async def apply() -> bool:
            async with self._engine.begin() as conn:
                row = (await conn.execute(lock)).first()
                current = None if row is None else fmt.decode(row.session_data)
                if current is None:
                    return False
                merged = fmt.merge(current, changed, removed, meta)
                await conn.execute(
                    sa.update(t)
                    .where(t.c.session_key == key)
                    .values(
                        session_data=fmt.encode(merged), expire_date=self._when(fmt.deadline(meta, merged))
                    )
                )
                return True

        return await self._run("saving a session", apply, key)

    async def touch(self, key: str, meta: Meta) -> None:
        statement = (
            sa.update(self._table)
            .where(self._row(key))
            .values(expire_date=self._when(self.format.deadline(meta)))
        )
        await self._run("touching a session", lambda: self._execute(statement), key)

    async def destroy(self, key: str) -> None:
        statement = sa.delete(self._table).where(self._table.c.session_key == key)
        await self._run("destroying a session", lambda: self._execute(statement), key)

    async def _execute(self, statement: Any) -> int:
        async with self._engine.begin() as conn:
            return int((await conn.execute(statement)).rowcount)

    # ---- maintenance --------------------------------------------------------------------
    async def count(self) -> int:
        """Live rows (what Django would load)."""
        t = self._table
        query = sa.select(sa.func.count()).select_from(t).where(t.c.expire_date > self._when(self._clock()))

        async def read() -> int:
            async with self._engine.connect() as conn:
                return int((await conn.execute(query)).scalar_one())

        return await self._run("counting sessions", read)

    async def purge_expired(self) -> int:
        """`manage.py clearsessions`: delete expired rows; returns how many."""
        t = self._table
        statement = sa.delete(t).where(t.c.expire_date < self._when(self._clock()))
        return await self._run("purging expired sessions", lambda: self._execute(statement))

    async def close(self) -> None:
        if self._owns_engine:
            await self._engine.dispose()


async def _nothing() -> None:
    return None
