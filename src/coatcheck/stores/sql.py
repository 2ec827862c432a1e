"""SQLStore: sessions in PostgreSQL or MySQL/MariaDB, through SQLAlchemy 2 async Core.

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
import hashlib
import re
import time
from collections.abc import Awaitable, Callable, Collection
from datetime import UTC, datetime
from typing import Any, TypeVar

try:
    import sqlalchemy as sa
    from sqlalchemy import exc as sa_exc
    from sqlalchemy.dialects import mysql
    from sqlalchemy.dialects import postgresql as pg
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
except ModuleNotFoundError as exc:  # keep the missing module's name for from_url
    raise ModuleNotFoundError(
        f"SQLStore needs the {exc.name!r} package: pip install 'coatcheck[sql]'", name=exc.name
    ) from exc

from ..codec import DEFAULT_SERIALIZER, Serializer
from ..errors import ConfigurationError, SessionStoreError
from ..record import Meta, Record, SessionInfo
from .url import missing_extra, query_options, register_scheme

__all__ = ["SQLStore"]

T = TypeVar("T")

DEFAULT_TABLE = "coatcheck_sessions"
_MYSQL = ("mysql", "mariadb")
_TABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,47}$")
_MAX_COLUMN = 255
_USER_ID_BYTES = 4 * _MAX_COLUMN  # 255 characters of up to 4 UTF-8 bytes each
# URL scheme -> SQLAlchemy URL scheme (the async driver each dialect is tested with)
_SCHEMES = {
    "postgresql": "postgresql+psycopg",
    "postgres": "postgresql+psycopg",
    "postgresql+psycopg": "postgresql+psycopg",
    "mysql": "mysql+asyncmy",
    "mariadb": "mysql+asyncmy",
    "mysql+asyncmy": "mysql+asyncmy",
}
# driver module SQLAlchemy imports for each URL scheme, to name it when it is missing
_DRIVERS = {"postgresql+psycopg": "psycopg", "mysql+asyncmy": "asyncmy"}
_STORE_OPTIONS = ("table", "timeout", "purge_batch")


def _escape_key(name: str) -> str:
    """Top-level data keys as JSONB object keys: NUL is not allowed there, '%' is the escape."""
    if "%" not in name and "\x00" not in name:
        return name
    return name.replace("%", "%25").replace("\x00", "%00")


def _unescape_key(name: str) -> str:
    if "%" not in name:
        return name
    return re.sub(r"%(25|00)", lambda m: chr(int(m.group(1), 16)), name)


class SQLStore:
    """Sessions in a PostgreSQL or MySQL/MariaDB table; implements Store, PatchingStore,
    UserIndex and Inventory.

    `engine` is a URL (`postgresql://user@host/db`, `mysql://root@host/db`,
    `mariadb://...`; the async drivers psycopg 3 and asyncmy are used) or an existing
    `AsyncEngine`, which the store uses but never disposes. The table (default
    `coatcheck_sessions`) is created on first use unless `create_table=False`; call
    `await store.create_table()` to create it ahead of time (idempotent and safe to run from
    several processes at once). Every operation is bounded by `timeout` seconds and every
    failure raises SessionStoreError. Expired rows are invisible at once and deleted by
    `purge_expired()` in batches of `purge_batch` rows.
    """

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
            self._engine, self._owns_engine = _make_engine(engine, timeout, pool_size), True
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
        self.table_name = table
        self._auto_create = create_table
        self._ready = False
        self._ready_lock: asyncio.Lock | None = None
        self._timeout = float(timeout)
        self._purge_batch = purge_batch
        self._serializer = serializer
        self._clock = clock
        self._metadata = sa.MetaData()
        self._table = _define_table(self._metadata, table)
        url = self._engine.url
        self._where = (
            f"{'PostgreSQL' if self._pg else 'MySQL'} {url.host or 'localhost'}/{url.database or ''}"
        )

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
        """Run `work` bounded by the timeout, creating the table first if needed; every
        failure becomes SessionStoreError whose message never contains the key."""
        try:
            async with asyncio.timeout(self._timeout):
                if ensure and not self._ready and self._auto_create:
                    await self._create(ensure_only=True)
                return await work()
        except SessionStoreError:
            raise
        except TimeoutError:
            raise SessionStoreError(
                f"SQL store ({self._where}): {what} timed out after {self._timeout:g}s"
            ) from None
        except (sa_exc.SQLAlchemyError, OSError, UnicodeError) as exc:
            raise SessionStoreError(
                f"SQL store ({self._where}): {what} failed: {_describe(exc, key)}"
            ) from None

    def _when(self, timestamp: float | None) -> datetime | None:
        """A Unix time as the column type wants it: aware UTC (PostgreSQL), naive UTC (MySQL)."""
        if timestamp is None:
            return None
        when = datetime.fromtimestamp(timestamp, UTC)
        return when if self._pg else when.replace(tzinfo=None)

    def _live(self, now: float) -> sa.ColumnElement[bool]:
        expires = self._table.c.expires_at
        return sa.or_(expires.is_(None), expires > self._when(now))

    def _encode_data(self, data: dict[str, Any]) -> Any:
        if self._pg:
            dumps = self._serializer.dumps
            return {_escape_key(k): dumps(v).decode() for k, v in data.items()}
        return self._serializer.dumps(data).decode()

    def _decode(self, data: Any, meta: str) -> Record:
        loads = self._serializer.loads
        try:
            if self._pg:
                if isinstance(data, str | bytes):  # an engine configured without JSON decoding
                    data = loads(data.encode() if isinstance(data, str) else data)
                values = {_unescape_key(k): loads(v.encode()) for k, v in data.items()}
            else:
                values = loads(data.encode() if isinstance(data, str) else data)
                if not isinstance(values, dict):
                    raise ValueError("data is not a JSON object")
            return Record(data=values, meta=Meta.from_dict(loads(meta.encode())))
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
            # an advisory lock makes check-then-create atomic across processes
            lock_id = int.from_bytes(
                hashlib.sha256(f"coatcheck:{self.table_name}".encode()).digest()[:8], "big", signed=True
            )
            if self._pg:
                async with self._engine.begin() as conn:
                    await conn.execute(sa.text("SELECT pg_advisory_xact_lock(:id)"), {"id": lock_id})
                    await conn.run_sync(self._metadata.create_all, checkfirst=True)
            else:
                name = f"coatcheck-{lock_id & 0xFFFFFFFFFFFF:x}"
                async with self._engine.connect() as conn:
                    got = await conn.scalar(
                        sa.text("SELECT GET_LOCK(:name, :wait)"), {"name": name, "wait": self._timeout}
                    )
                    if got != 1:
                        raise SessionStoreError(
                            f"SQL store ({self._where}): timed out waiting to create the table"
                        )
                    try:
                        await conn.run_sync(self._metadata.create_all, checkfirst=True)
                        await self._migrate_exact_user_ids(conn)
                        await conn.commit()
                    finally:
                        await conn.execute(sa.text("SELECT RELEASE_LOCK(:name)"), {"name": name})
                        await conn.commit()
            self._ready = True

    async def _migrate_exact_user_ids(self, conn: AsyncConnection) -> None:
        """Make a MySQL table's VARCHAR (PAD SPACE) user_id column VARBINARY, keeping its bytes
        and its index. Called with the table-creation lock held, so only one process alters."""
        kind = await conn.scalar(
            sa.text(
                "SELECT DATA_TYPE FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() "
                "AND TABLE_NAME = :table AND COLUMN_NAME = 'user_id'"
            ),
            {"table": self.table_name},
        )
        if kind is not None and str(kind).lower() != "varbinary":
            # the table name matched _TABLE_NAME, so it is safe to quote into DDL
            await conn.execute(
                sa.text(f"ALTER TABLE `{self.table_name}` MODIFY user_id VARBINARY({_USER_ID_BYTES}) NULL")
            )

    async def drop_table(self) -> None:
        """Drop the table with every session in it (for tests and uninstalling)."""

        async def drop() -> None:
            async with self._engine.begin() as conn:
                await conn.run_sync(self._metadata.drop_all, checkfirst=True)
            self._ready = False

        await self._run("dropping the table", drop, ensure=False)

    # ---- Store --------------------------------------------------------------------------
    async def get(self, key: str) -> Record | None:
        t = self._table
        query = sa.select(t.c.data, t.c.meta).where(t.c.key == key, self._live(self._clock()))

        async def read() -> Any:
            async with self._engine.connect() as conn:
                return (await conn.execute(query)).first()

        row = await self._run("loading a session", read, key)
        return None if row is None else self._decode(row.data, row.meta)

    async def set(self, key: str, record: Record) -> None:
        _check_key(key)
        values = {"key": key, "data": self._encode_data(record.data), **self._meta_columns(record.meta)}
        replace = ("data", "meta", "user_id", "expires_at", "last_seen")
        statement: Any
        if self._pg:
            pg_insert = pg.insert(self._table).values(values)
            statement = pg_insert.on_conflict_do_update(
                index_elements=[self._table.c.key], set_={c: pg_insert.excluded[c] for c in replace}
            )
        else:
            my_insert = mysql.insert(self._table).values(values)
            statement = my_insert.on_duplicate_key_update({c: my_insert.inserted[c] for c in replace})

        async def write() -> None:
            async with self._engine.begin() as conn:
                await conn.execute(statement)

        await self._run("saving a session", write, key)

    async def patch(self, key: str, changed: dict[str, Any], removed: Collection[str], meta: Meta) -> bool:
        columns = self._meta_columns(meta)
        now = self._clock()
        removed = [name for name in removed if name not in changed]
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
        removed_keys = sorted(_escape_key(k) for k in removed)
        new_data = sa.type_coerce(t.c.data.op("-")(sa.literal(removed_keys, pg.ARRAY(sa.Text))), pg.JSONB).op(
            "||"
        )(sa.literal(self._encode_data(changed), pg.JSONB))
        statement = sa.update(t).where(t.c.key == key, self._live(now)).values(data=new_data, **columns)

        async def apply() -> bool:
            async with self._engine.begin() as conn:
                return (await conn.execute(statement)).rowcount == 1

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
        t = self._table
        statement = (
            sa.update(t).where(t.c.key == key, self._live(self._clock())).values(**self._meta_columns(meta))
        )

        async def write() -> None:
            async with self._engine.begin() as conn:
                await conn.execute(statement)

        await self._run("touching a session", write, key)

    async def destroy(self, key: str) -> None:
        statement = sa.delete(self._table).where(self._table.c.key == key)

        async def delete() -> None:
            async with self._engine.begin() as conn:
                await conn.execute(statement)

        await self._run("destroying a session", delete, key)

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

        return await self._run("destroying a user's sessions", delete)

    # ---- inventory ----------------------------------------------------------------------
    async def count(self) -> int:
        query = sa.select(sa.func.count()).select_from(self._table).where(self._live(self._clock()))

        async def read() -> int:
            async with self._engine.connect() as conn:
                return int((await conn.execute(query)).scalar_one())

        return await self._run("counting sessions", read)

    async def purge_expired(self, *, progress: Callable[[int, int], None] | None = None) -> int:
        """Delete expired rows, `purge_batch` per short transaction. `progress(done, expected)`,
        if given, is called after each batch (the CLI's progress bar uses it)."""
        t = self._table
        dead = sa.and_(t.c.expires_at.is_not(None), t.c.expires_at <= self._when(self._clock()))
        statement: Any
        if self._pg:  # PostgreSQL has no DELETE ... LIMIT
            batch = sa.select(t.c.key).where(dead).limit(self._purge_batch).scalar_subquery()
            statement = sa.delete(t).where(t.c.key.in_(batch))
        else:
            statement = sa.delete(t).where(dead).with_dialect_options(mysql_limit=self._purge_batch)

        async def one_batch(conn: AsyncConnection) -> int:
            return int((await conn.execute(statement)).rowcount)

        expected = 0
        if progress is not None:
            count = sa.select(sa.func.count()).select_from(t).where(dead)

            async def count_dead() -> int:
                async with self._engine.connect() as conn:
                    return int((await conn.execute(count)).scalar_one())

            expected = await self._run("counting expired sessions", count_dead)

        async def run_batch() -> int:
            async with self._engine.begin() as conn:
                return await one_batch(conn)

        total = 0
        while True:  # one short transaction per batch keeps locks brief for live traffic
            deleted = await self._run("purging expired sessions", run_batch)
            total += deleted
            if progress is not None:
                progress(total, max(expected, total))
            if deleted < self._purge_batch:
                return total

    async def list_sessions(self, *, limit: int | None = None) -> list[tuple[str, Meta]]:
        t = self._table
        query = sa.select(t.c.key, t.c.meta).where(self._live(self._clock())).order_by(t.c.last_seen.desc())
        if limit is not None:
            query = query.limit(limit)
        rows = await self._run("listing sessions", lambda: self._fetch(query))
        return [(k, self._meta(m)) for k, m in rows]

    async def _fetch(self, query: sa.Select[Any]) -> list[tuple[str, str]]:
        async with self._engine.connect() as conn:
            return [(row[0], row[1]) for row in (await conn.execute(query)).all()]

    def _meta(self, blob: str) -> Meta:
        try:
            return Meta.from_dict(self._serializer.loads(blob.encode()))
        except (ValueError, TypeError, KeyError) as exc:
            raise SessionStoreError(f"corrupt session metadata in {self!r}: {exc}") from None

    async def close(self) -> None:
        if self._owns_engine:
            await self._engine.dispose()


class _ExactUserId(sa.types.TypeDecorator[str]):
    """A user id column compared exactly: VARCHAR(255), or on MySQL/MariaDB VARBINARY
    holding the UTF-8 bytes (their utf8mb4_bin collation ignores trailing spaces)."""

    impl = sa.String(_MAX_COLUMN)
    cache_ok = True

    def load_dialect_impl(self, dialect: sa.Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name in _MYSQL:
            return dialect.type_descriptor(mysql.VARBINARY(_USER_ID_BYTES))
        return dialect.type_descriptor(sa.String(_MAX_COLUMN))

    def process_bind_param(self, value: str | None, dialect: sa.Dialect) -> Any:
        return value.encode() if value is not None and dialect.name in _MYSQL else value

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> str | None:
        return value.decode() if isinstance(value, bytes) else value


def _define_table(metadata: sa.MetaData, name: str) -> sa.Table:
    key_type = sa.String(_MAX_COLUMN)
    text = sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")
    when = sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
    return sa.Table(
        name,
        metadata,
        sa.Column("key", key_type, primary_key=True),
        sa.Column("data", text.with_variant(pg.JSONB(), "postgresql"), nullable=False),
        sa.Column("meta", sa.Text(), nullable=False),
        sa.Column("user_id", _ExactUserId(), nullable=True),
        sa.Column("expires_at", when, nullable=True),
        sa.Column("last_seen", when, nullable=False),
        sa.Index(f"{name}_expires_at", "expires_at"),
        sa.Index(f"{name}_user_id", "user_id"),
        # binary collation: keys and user ids compare exactly (case-sensitive), utf8mb4 for data
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
    )


def _check_key(key: str) -> None:
    if len(key) > _MAX_COLUMN:
        raise SessionStoreError(f"SQLStore storage keys are limited to {_MAX_COLUMN} characters")


def _describe(exc: BaseException, key: str | None) -> str:
    """The driver's own message (not SQLAlchemy's, which quotes the SQL and its parameters),
    first line only, with the storage key redacted should the driver quote it."""
    origin = exc.orig if isinstance(exc, sa_exc.DBAPIError) and exc.orig is not None else exc
    lines = str(origin).strip().splitlines()
    message = f"{type(origin).__name__}: {lines[0] if lines else ''}".strip()
    if key:
        message = message.replace(key, "<key>")
    return message[:300]


def _make_engine(url: str, timeout: float, pool_size: int) -> AsyncEngine:
    try:
        parsed = sa.make_url(url)
    except (sa_exc.ArgumentError, ValueError) as exc:
        raise ConfigurationError(
            f"malformed database URL for SQLStore: {exc} (expected e.g. 'postgresql://user@host:5432/db')"
        ) from None
    scheme = _SCHEMES.get(parsed.drivername)
    if scheme is None:
        raise ConfigurationError(
            f"SQLStore does not know the URL scheme {parsed.drivername + '://'!r}: use postgresql://, "
            "postgresql+psycopg://, mysql://, mariadb:// or mysql+asyncmy://, or pass an AsyncEngine"
        )
    parsed = parsed.set(drivername=scheme)
    connect_args: dict[str, Any]
    if scheme == "mysql+asyncmy":
        if "charset" not in parsed.query:
            parsed = parsed.update_query_dict({"charset": "utf8mb4"})
        connect_args = {"connect_timeout": timeout, "read_timeout": timeout}
    else:
        connect_args = {"connect_timeout": max(2, round(timeout))}  # libpq: whole seconds, >= 2
    try:
        return create_async_engine(
            parsed,
            pool_pre_ping=True,  # a connection the server dropped is replaced, not failed on
            pool_size=pool_size,
            pool_timeout=timeout,
            pool_recycle=1800,
            hide_parameters=True,  # SQLAlchemy's messages never quote keys
            connect_args=connect_args,
        )
    except ImportError as exc:
        raise missing_extra(exc.name or _DRIVERS[scheme], "sql") from None
    except sa_exc.ArgumentError as exc:
        raise ConfigurationError(f"SQLStore cannot use {parsed.drivername}://: {exc}") from None


@register_scheme(*_SCHEMES)
def _from_url(url: str) -> SQLStore:
    """postgresql://user@host/db?table=sessions&timeout=5, mysql://..., mariadb://..."""
    options = query_options(url)
    kwargs: dict[str, Any] = {}
    try:
        if "table" in options:
            kwargs["table"] = options["table"]
        if "timeout" in options:
            kwargs["timeout"] = float(options["timeout"])
        if "purge_batch" in options:
            kwargs["purge_batch"] = int(options["purge_batch"])
    except ValueError:
        raise ConfigurationError(
            f"bad SQLStore URL option in {_redact(url)!r}: timeout is seconds (e.g. 5), purge_batch a whole number"
        ) from None
    try:
        parsed = sa.make_url(url)
    except (sa_exc.ArgumentError, ValueError) as exc:
        raise ConfigurationError(
            f"malformed database URL for SQLStore: {exc} (expected e.g. 'postgresql://user@host:5432/db')"
        ) from None
    driver_query = {k: v for k, v in parsed.query.items() if k not in _STORE_OPTIONS}
    return SQLStore(parsed.set(query=driver_query).render_as_string(hide_password=False), **kwargs)


def _redact(url: str) -> str:
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except (sa_exc.ArgumentError, ValueError):
        return "<database URL>"
