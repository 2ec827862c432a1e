"""SQLStore: sessions in PostgreSQL or MySQL/MariaDB, through SQLAlchemy 2 async Core, with
the per-request statements on the driver itself when the store owns its engine (_sql_direct).

One row per session::

    key         VARCHAR(255) PRIMARY KEY   storage key (hash of the id)
    data        PostgreSQL: JSONB {key: JSON text of the value}; MySQL: LONGTEXT (a JSON object)
    meta        TEXT (JSON)                deadlines, last seen, user id, hints
    user_id     VARCHAR(255) NULL          indexed: the user index (MySQL: VARBINARY(1020), see below)
    expires_at  TIMESTAMP (UTC) NULL       indexed: the earlier deadline; NULL never expires
    last_seen   TIMESTAMP (UTC)            for listing, most recent first

Why PostgreSQL keeps each value as JSON *text* inside JSONB: JSONB cannot hold the NUL
character, which is valid in JSON session data; wrapping each value as text keeps every
value exact while the top-level object stays JSONB, so a delta commit is one UPDATE with
`data - removed_keys || changed`. Top-level keys containing NUL or `%` are percent-escaped
(reversibly) for the same reason.

Why MySQL/MariaDB keep user ids as VARBINARY (UTF-8 bytes): `utf8mb4_bin` is a PAD SPACE
collation, so in a VARCHAR column "alice" would equal "alice  " and `sessions_for` /
`destroy_user` would reach another user's sessions. Binary strings compare byte for byte.
A table created before this (a VARCHAR user_id) is altered in place the first time a store
ensures the table, under the same lock that serializes table creation across processes.
"""

from __future__ import annotations

import asyncio
import functools
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

try:
    import sqlalchemy as sa
    from sqlalchemy.ext.asyncio import AsyncEngine

    from . import _sql_browse as browse
    from ._sql_dialect import (
        ERRORS,
        SCHEMES,
        Dialect,
        describe_sql_error,
        make_engine,
        url_arguments,
    )
    from ._sql_direct import direct_path
    from ._sql_table import MAX_COLUMN as _MAX_COLUMN
    from ._sql_table import define_table as _define_table
    from ._sql_table import ensure_table
except ModuleNotFoundError as exc:  # keep the missing module's name for from_url
    raise ModuleNotFoundError(
        f"SQLStore needs the {exc.name!r} package: pip install 'coatcheck[sql]'", name=exc.name
    ) from exc

from .._deadline import Deadlines
from ..audit import revoked
from ..codec import DEFAULT_SERIALIZER, Serializer
from ..errors import ConfigurationError, SessionStoreError
from ..record import Meta, Record, SessionInfo
from . import _sql_claim
from ._toolkit import SerializerChoice, guarded, kept_to
from .base import SessionTally
from .url import register_scheme

if TYPE_CHECKING:
    from ._sql_direct import Direct

__all__ = ["SQLStore"]

T = TypeVar("T")

DEFAULT_TABLE = "coatcheck_sessions"
_TABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,47}\Z")


class SQLStore(SerializerChoice):
    """Sessions in a PostgreSQL or MySQL/MariaDB table; implements Store, PatchingStore,
    UserIndex, Inventory and FlashClaiming.

    `engine` is a URL (`postgresql://user@host/db`, `mysql://root@host/db`,
    `mariadb://...`; the async drivers psycopg 3 and asyncmy are used) or an existing
    `AsyncEngine`, which the store uses but never disposes. The table (default
    `coatcheck_sessions`) is created on first use unless `create_table=False`; call
    `await store.create_table()` to create it ahead of time (idempotent and safe to run from
    several processes at once). Every operation is bounded by `timeout` seconds and every
    failure raises SessionStoreError. Expired rows are invisible at once and deleted by
    `purge_expired()` in batches of `purge_batch` rows.
    """

    # One constructor on purpose: each option is validated next to where it is kept.
    def __init__(
        self,
        engine: str | AsyncEngine,
        *,
        table: str = DEFAULT_TABLE,
        create_table: bool = True,
        timeout: float = 5.0,
        purge_batch: int = 1000,
        pool_size: int = 5,
        serializer: Serializer = DEFAULT_SERIALIZER,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not isinstance(table, str) or not _TABLE_NAME.match(table):
            raise ConfigurationError(
                f"SQLStore table name {table!r} is not allowed: use 1-48 letters, digits or '_', "
                "not starting with a digit (e.g. 'coatcheck_sessions')"
            )
        if not timeout > 0:
            raise ConfigurationError(
                f"SQLStore timeout must be a positive number of seconds, got {timeout!r}"
            )
        if purge_batch < 1:
            raise ConfigurationError(f"SQLStore purge_batch must be at least 1, got {purge_batch!r}")
        if isinstance(engine, AsyncEngine):
            self._engine, self._owns_engine = engine, False
        elif isinstance(engine, str):
            self._engine, self._owns_engine = make_engine(engine, timeout, pool_size), True
        else:
            raise ConfigurationError(
                "SQLStore needs a database URL ('postgresql://user@host/db', 'mysql://user@host/db') "
                f"or a SQLAlchemy AsyncEngine, got {type(engine).__name__}"
            )
        dialect = self._engine.dialect.name
        if dialect not in ("postgresql", "mysql", "mariadb"):
            raise ConfigurationError(
                f"SQLStore supports PostgreSQL and MySQL/MariaDB, not {dialect!r}; "
                "for SQLite use SQLiteStore('sessions.db')"
            )
        self._pg = dialect == "postgresql"
        self._dialect = Dialect(self._pg, serializer)
        self.table_name = table
        self._auto_create = create_table
        self._ready = False
        self._ready_lock: asyncio.Lock | None = None
        self._timeout = float(timeout)
        self._deadlines = Deadlines(self._timeout)  # for `_direct_call`
        self._purge_batch = purge_batch
        self._serializer = serializer
        self._clock = clock
        self._metadata = sa.MetaData()
        self._table = _define_table(self._metadata, table)
        url = self._engine.url
        self._where = (
            f"{'PostgreSQL' if self._pg else 'MySQL'} {url.host or 'localhost'}/{url.database or ''}"
        )
        self._label = f"SQL store ({self._where})"  # the start of every error message
        self._direct: Direct | None = None
        self._errors: tuple[type[BaseException], ...] = ERRORS
        if self._owns_engine:  # our own engine: the hot statements skip SQLAlchemy (_sql_direct)
            self._direct, errors = direct_path(
                self._engine, timeout, table, pool_size, self._dialect, repr(self)
            )
            self._errors = ERRORS + errors

    def use_serializer(self, serializer: Serializer) -> None:
        self._serializer = serializer
        self._dialect = Dialect(self._pg, serializer)

    def __repr__(self) -> str:
        return f"SQLStore({self._where!r}, table={self.table_name!r})"

    @property
    def engine(self) -> AsyncEngine:
        """The SQLAlchemy engine the store runs on."""
        return self._engine

    # ---- plumbing -----------------------------------------------------------------------
    async def _run(
        self, what: str, work: Callable[[], Awaitable[T]], key: str | None = None, *, ensure: bool = True
    ) -> T:
        """Run `work`, creating the table first if needed; every failure becomes
        SessionStoreError whose message never contains the key. psycopg has no read timeout,
        so `timeout` bounds the whole call here (a silent server would hang a script or the CLI)."""

        async def ensure_then_work() -> T:
            await self._create(ensure_only=True)
            return await work()

        first = ensure and not self._ready and self._auto_create  # the table may not exist yet
        return await guarded(
            self._label,
            what,
            ensure_then_work if first else work,
            errors=self._errors,
            key=key,
            time_limit=self._timeout,
            describe=describe_sql_error,
        )

    def _direct_call(
        self, what: str, key: str, method: Callable[..., Awaitable[T]], *args: Any
    ) -> Awaitable[T]:
        """`_run` for a direct statement, one coroutine in all once the table is known: the
        store's `timeout` kept by its Deadlines (one timer per loop) instead of a timer per call."""
        if not self._ready and self._auto_create:
            return self._run(what, functools.partial(method, *args), key)
        return kept_to(
            self._deadlines, self._label, what, method(*args), self._errors, key, describe_sql_error
        )

    def _when(self, timestamp: float | None) -> Any:
        return self._dialect.when(timestamp)

    def _live(self, now: float) -> sa.ColumnElement[bool]:
        expires = self._table.c.expires_at
        return sa.or_(expires.is_(None), expires > self._when(now))

    def _decode(self, data: Any, meta: str) -> Record:
        try:
            values = self._dialect.decode_data(data)
            return Record(data=values, meta=Meta.from_dict(self._serializer.loads(meta.encode())))
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise SessionStoreError(f"corrupt session record in {self!r}: {exc}") from None

    def _meta_columns(self, meta: Meta) -> dict[str, Any]:
        if meta.user_id is not None and len(meta.user_id) > _MAX_COLUMN:
            raise SessionStoreError(f"SQLStore user ids are limited to {_MAX_COLUMN} characters")
        return {
            "meta": self._serializer.dumps(meta.to_dict()).decode(),
            "user_id": meta.user_id,
            "expires_at": self._when(meta.expires),
            "last_seen": self._when(meta.last_seen),
        }

    # ---- schema -------------------------------------------------------------------------
    async def create_table(self) -> None:
        """Create the table and its indexes if they do not exist. Idempotent; several
        processes may call it at once (a database lock serializes them)."""
        await self._run("creating the table", lambda: self._create(ensure_only=False), ensure=False)

    async def _create(self, *, ensure_only: bool) -> None:
        if self._ready_lock is None:
            self._ready_lock = asyncio.Lock()
        async with self._ready_lock:
            if self._ready and ensure_only:
                return
            await ensure_table(self._engine, self._table, self._pg, self._timeout, self._where)
            self._ready = True

    async def drop_table(self) -> None:
        """Drop the table with every session in it (for tests and uninstalling)."""

        async def drop() -> None:
            async with self._engine.begin() as conn:
                await conn.run_sync(self._metadata.drop_all, checkfirst=True)
            self._ready = False

        await self._run("dropping the table", drop, ensure=False)

    # ---- Store --------------------------------------------------------------------------
    async def get(self, key: str) -> Record | None:
        if self._direct is not None:
            row = await self._direct_call("loading a session", key, self._direct.get, key, self._clock())
            return None if row is None else self._decode(row[0], row[1])
        t = self._table
        query = sa.select(t.c.data, t.c.meta).where(t.c.key == key, self._live(self._clock()))
        rows = await self._run("loading a session", lambda: self._select(query), key)
        return self._decode(rows[0].data, rows[0].meta) if rows else None

    async def set(self, key: str, record: Record) -> None:
        _check_key(key)
        if self._direct is not None:
            data = self._dialect.data_text(record.data)
            columns = self._meta_columns(record.meta)
            return await self._direct_call("saving a session", key, self._direct.set, key, data, columns)
        values = {
            "key": key,
            "data": self._dialect.encode_data(record.data),
            **self._meta_columns(record.meta),
        }
        replace = ("data", "meta", "user_id", "expires_at", "last_seen")
        statement = self._dialect.upsert(self._table, values, replace)
        await self._run("saving a session", lambda: self._execute(statement), key)

    async def patch(self, key: str, changed: dict[str, Any], removed: Collection[str], meta: Meta) -> bool:
        columns = self._meta_columns(meta)
        now = self._clock()
        removed = [name for name in removed if name not in changed]
        if self._direct is not None:
            return await self._direct_call(
                "saving a session",
                key,
                self._direct.patch,
                key,
                changed,
                removed,
                columns,
                now,
                self._dialect,
            )
        if self._pg:
            work = self._patch_pg(key, changed, removed, columns, now)
        else:
            work = self._patch_mysql(key, changed, removed, columns, now)
        return await self._run("saving a session", work, key)

    def _patch_pg(
        self, key: str, changed: dict[str, Any], removed: list[str], columns: dict[str, Any], now: float
    ) -> Callable[[], Awaitable[bool]]:
        # One statement: the row lock is held for the UPDATE alone, and a missing or expired
        # row matches nothing, so a destroyed session is never written back.
        t = self._table
        new_data = self._dialect.patch_data(t, changed, removed)
        statement = sa.update(t).where(t.c.key == key, self._live(now)).values(data=new_data, **columns)

        async def apply() -> bool:
            return await self._execute(statement) == 1

        return apply

    def _patch_mysql(
        self, key: str, changed: dict[str, Any], removed: list[str], columns: dict[str, Any], now: float
    ) -> Callable[[], Awaitable[bool]]:
        # One short transaction: lock the row (SELECT ... FOR UPDATE), merge, write back.
        # Concurrent patches of one session queue on the row lock, so none is lost.
        t = self._table
        lock = sa.select(t.c.data).where(t.c.key == key, self._live(now)).with_for_update()
        loads, dumps = self._serializer.loads, self._serializer.dumps

        async def apply() -> bool:
            async with self._engine.begin() as conn:
                row = (await conn.execute(lock)).first()
                if row is None:
                    return False
                try:
                    data = loads(row.data.encode() if isinstance(row.data, str) else row.data)
                except ValueError as exc:
                    raise SessionStoreError(f"corrupt session record in {self!r}: {exc}") from None
                for name in removed:
                    data.pop(name, None)
                data.update(changed)
                await conn.execute(
                    sa.update(t).where(t.c.key == key).values(data=dumps(data).decode(), **columns)
                )
                return True

        return apply

    async def touch(self, key: str, meta: Meta) -> None:
        if self._direct is not None:
            columns = self._meta_columns(meta)
            return await self._direct_call(
                "touching a session", key, self._direct.touch, key, columns, self._clock()
            )
        t = self._table
        statement = (
            sa.update(t).where(t.c.key == key, self._live(self._clock())).values(**self._meta_columns(meta))
        )
        await self._run("touching a session", lambda: self._execute(statement), key)

    async def destroy(self, key: str) -> None:
        if self._direct is not None:
            return await self._direct_call("destroying a session", key, self._direct.destroy, key)
        statement = sa.delete(self._table).where(self._table.c.key == key)
        await self._run("destroying a session", lambda: self._execute(statement), key)

    async def claim(self, key: str, names: Collection[str]) -> frozenset[str]:
        """`FlashClaiming`: one locking UPDATE (PostgreSQL) or a compare-and-set (MySQL)."""
        if not names:
            return frozenset()
        now = self._clock()
        if self._pg:
            work = functools.partial(
                _sql_claim.claim_pg, self._engine, self._direct, self.table_name, key, names, self._when(now)
            )
        else:
            work = functools.partial(
                _sql_claim.claim_mysql,
                self._engine,
                self._table,
                self._live(now),
                key,
                names,
                self._serializer,
            )
        return await self._run("claiming flash messages", work, key)

    # ---- user index ---------------------------------------------------------------------
    async def sessions_for(self, user_id: str) -> list[SessionInfo]:
        t = self._table
        query = (
            sa.select(t.c.key, t.c.meta)
            .where(t.c.user_id == str(user_id), self._live(self._clock()))
            .order_by(t.c.last_seen.desc())
        )
        rows = await self._run("listing a user's sessions", lambda: self._fetch(query))
        return [SessionInfo.from_meta(k, self._meta(m)) for k, m in rows]

    async def destroy_user(self, user_id: str) -> int:
        statement = sa.delete(self._table).where(self._table.c.user_id == str(user_id))

        async def delete() -> int:
            async with self._engine.begin() as conn:
                return int((await conn.execute(statement)).rowcount)

        deleted = await self._run("destroying a user's sessions", delete)
        revoked(self, user_id, deleted)
        return deleted

    # ---- inventory ----------------------------------------------------------------------
    async def count(self) -> int:
        query = sa.select(sa.func.count()).select_from(self._table).where(self._live(self._clock()))
        rows = await self._run("counting sessions", lambda: self._select(query))
        return int(rows[0][0])

    async def purge_expired(self, *, progress: Callable[[int, int], None] | None = None) -> int:
        """Delete expired rows, `purge_batch` per short transaction. `progress(done, expected)`,
        if given, is called after each batch (the CLI's progress bar uses it)."""
        t = self._table
        dead = sa.and_(t.c.expires_at.is_not(None), t.c.expires_at <= self._when(self._clock()))
        statement = self._dialect.purge_batch(t, dead, self._purge_batch)
        expected = 0
        if progress is not None:
            count = sa.select(sa.func.count()).select_from(t).where(dead)
            expected = int((await self._run("counting expired sessions", lambda: self._select(count)))[0][0])
        total = 0
        while True:  # one short transaction per batch keeps locks brief for live traffic
            deleted = await self._run("purging expired sessions", lambda: self._execute(statement))
            total += deleted
            if progress is not None:
                progress(total, max(expected, total))
            if deleted < self._purge_batch:
                return total

    async def list_sessions(self, *, limit: int | None = None) -> list[SessionInfo]:
        t = self._table
        query = sa.select(t.c.key, t.c.meta).where(self._live(self._clock())).order_by(t.c.last_seen.desc())
        if limit is not None:
            query = query.limit(limit)
        rows = await self._run("listing sessions", lambda: self._fetch(query))
        return [SessionInfo.from_meta(k, self._meta(m)) for k, m in rows]

    # ---- browsing -----------------------------------------------------------------------
    ordered = True  # list_sessions(limit=n) reads n entries of the last_seen index

    async def find_sessions(self, prefix: str, *, limit: int) -> list[SessionInfo]:
        query = browse.find(self._table, prefix, self._live(self._clock()), limit)
        rows = await self._run("looking sessions up by hint", lambda: self._fetch(query))
        return [SessionInfo.from_meta(k, self._meta(m)) for k, m in rows]

    async def scan(self, *, batch: int = 1000) -> AsyncIterator[list[SessionInfo]]:
        live, after = self._live(self._clock()), ""
        while True:
            query = browse.page(self._table, after, live, batch)
            rows = await self._run("listing sessions", functools.partial(self._fetch, query))
            if rows:
                yield [SessionInfo.from_meta(k, self._meta(m)) for k, m in rows]
            if len(rows) < batch:
                return
            after = rows[-1][0]

    async def tally(self, age_bounds: Sequence[float], top: int) -> SessionTally:
        queries = browse.tally(
            self._table, self._pg, self._live(self._clock()), self._clock(), age_bounds, top
        )

        async def run() -> SessionTally:
            async with self._engine.connect() as conn:
                return await browse.run_tally(conn, queries, age_bounds)

        return await self._run("counting sessions", run)

    async def _fetch(self, query: sa.Select[Any]) -> list[tuple[str, str]]:
        return [(row[0], row[1]) for row in await self._select(query)]

    async def _select(self, query: sa.Select[Any]) -> list[Any]:
        """The rows `query` reads."""
        async with self._engine.connect() as conn:
            return list((await conn.execute(query)).all())

    async def _execute(self, statement: Any) -> int:
        """Run one write statement in its own transaction; returns the rows it matched."""
        async with self._engine.begin() as conn:
            return int((await conn.execute(statement)).rowcount)

    def _meta(self, blob: str) -> Meta:
        try:
            return Meta.from_dict(self._serializer.loads(blob.encode()))
        except (ValueError, TypeError, KeyError) as exc:
            raise SessionStoreError(f"corrupt session metadata in {self!r}: {exc}") from None

    async def close(self) -> None:
        if self._direct is not None:
            await self._direct.close()
        if self._owns_engine:
            await self._engine.dispose()


def _check_key(key: str) -> None:
    if len(key) > _MAX_COLUMN:
        raise SessionStoreError(f"SQLStore storage keys are limited to {_MAX_COLUMN} characters")


@register_scheme(*SCHEMES)
def _from_url(url: str) -> SQLStore:
    """postgresql://user@host/db?table=sessions&timeout=5, mysql://..., mariadb://..."""
    driver_url, kwargs = url_arguments(url)
    return SQLStore(driver_url, **kwargs)
