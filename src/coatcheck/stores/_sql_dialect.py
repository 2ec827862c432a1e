"""What differs between PostgreSQL and MySQL/MariaDB for SQLStore: URLs and engines, how the
data column holds a session, and the statements that are written differently per dialect.

The table itself (columns, indexes, collation) is defined in `coatcheck.stores.sql`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import mysql
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from ..codec import Serializer
from ..errors import ConfigurationError
from ._toolkit import describe_error, redact_url
from .url import missing_extra

# URL scheme -> SQLAlchemy URL scheme (the async driver each dialect is tested with)
SCHEMES = {
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
ERRORS = (sa_exc.SQLAlchemyError, OSError, UnicodeError)
_URL_EXAMPLE = "(expected e.g. 'postgresql://user@host:5432/db')"


def escape_key(name: str) -> str:
    """Top-level data keys as JSONB object keys: NUL is not allowed there, '%' is the escape."""
    if "%" not in name and "\x00" not in name:
        return name
    return name.replace("%", "%25").replace("\x00", "%00")


def unescape_key(name: str) -> str:
    if "%" not in name:
        return name
    return re.sub(r"%(25|00)", lambda m: chr(int(m.group(1), 16)), name)


def describe_sql_error(exc: BaseException, key: str | None) -> str:
    """The driver's own message (not SQLAlchemy's, which quotes the SQL and its parameters),
    first line only, with the storage key redacted should the driver quote it."""
    origin = exc.orig if isinstance(exc, sa_exc.DBAPIError) and exc.orig is not None else exc
    return describe_error(origin, key)


class Dialect:
    """The per-dialect half of SQLStore: PostgreSQL (`pg=True`) or MySQL/MariaDB."""

    def __init__(self, pg: bool, serializer: Serializer) -> None:
        self.pg = pg
        self._serializer = serializer

    def when(self, timestamp: float | None) -> datetime | None:
        """A Unix time as the column type wants it: aware UTC (PostgreSQL), naive UTC (MySQL)."""
        if timestamp is None:
            return None
        when = datetime.fromtimestamp(timestamp, UTC)
        return when if self.pg else when.replace(tzinfo=None)

    def encode_data(self, data: dict[str, Any]) -> Any:
        """PostgreSQL: a JSONB object of JSON texts (JSONB cannot hold NUL); MySQL: one JSON text."""
        dumps = self._serializer.dumps
        if self.pg:
            return {escape_key(k): dumps(v).decode() for k, v in data.items()}
        return dumps(data).decode()

    def data_text(self, data: dict[str, Any]) -> str:
        """`encode_data` as the JSON text a driver sends for the data column."""
        encoded = self.encode_data(data)
        return encoded if isinstance(encoded, str) else self._serializer.dumps(encoded).decode()

    def decode_data(self, data: Any) -> dict[str, Any]:
        """Inverse of `encode_data`; raises ValueError/TypeError/... on a corrupt value."""
        loads = self._serializer.loads
        if self.pg:
            if isinstance(data, str | bytes):  # an engine configured without JSON decoding
                data = loads(data.encode() if isinstance(data, str) else data)
            return {unescape_key(k): loads(v.encode()) for k, v in data.items()}
        values = loads(data.encode() if isinstance(data, str) else data)
        if not isinstance(values, dict):
            raise ValueError("data is not a JSON object")
        return values

    def upsert(self, table: sa.Table, values: dict[str, Any], replace: Collection[str]) -> Any:
        """INSERT `values`, or replace the `replace` columns of the row with the same key."""
        if self.pg:
            pg_insert = pg.insert(table).values(values)
            return pg_insert.on_conflict_do_update(
                index_elements=[table.c.key], set_={c: pg_insert.excluded[c] for c in replace}
            )
        my_insert = mysql.insert(table).values(values)
        return my_insert.on_duplicate_key_update({c: my_insert.inserted[c] for c in replace})

    def patch_data(self, table: sa.Table, changed: dict[str, Any], removed: Collection[str]) -> Any:
        """PostgreSQL only: `data - removed || changed`, the new data column in one expression."""
        removed_keys = sorted(escape_key(k) for k in removed)
        without = sa.type_coerce(table.c.data.op("-")(sa.literal(removed_keys, pg.ARRAY(sa.Text))), pg.JSONB)
        return without.op("||")(sa.literal(self.encode_data(changed), pg.JSONB))

    def purge_batch(self, table: sa.Table, dead: sa.ColumnElement[bool], batch: int) -> Any:
        """DELETE at most `batch` rows matching `dead`."""
        if self.pg:  # PostgreSQL has no DELETE ... LIMIT
            keys = sa.select(table.c.key).where(dead).limit(batch).scalar_subquery()
            return sa.delete(table).where(table.c.key.in_(keys))
        return sa.delete(table).where(dead).with_dialect_options(mysql_limit=batch)


def parse_url(url: str) -> sa.URL:
    """`url` parsed by SQLAlchemy, after quoting any raw "@" in the password (SQLAlchemy would
    take what follows it for the host name, and quote that host in its errors)."""
    try:
        return sa.make_url(_quote_at_in_password(url))
    except (sa_exc.ArgumentError, ValueError):
        # SQLAlchemy's message quotes the whole URL, password included
        raise ConfigurationError(
            f"malformed database URL for SQLStore: {redact_url(url)!r} {_URL_EXAMPLE}"
        ) from None


def _quote_at_in_password(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    head, question, query = rest.partition("?")
    userinfo, at, location = head.rpartition("@")
    user, colon, password = userinfo.partition(":")
    if not (sep and at and colon and "@" in password):
        return url
    return f"{scheme}://{user}:{password.replace('@', '%40')}@{location}{question}{query}"


def make_engine(url: str, timeout: float, pool_size: int) -> AsyncEngine:
    """An async engine for `url` with the driver each dialect is tested with, timeouts set."""
    parsed = parse_url(url)
    scheme = SCHEMES.get(parsed.drivername)
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


def url_arguments(url: str) -> tuple[str, dict[str, Any]]:
    """postgresql://user@host/db?table=sessions&timeout=5 as (the URL for the driver, SQLStore's
    keyword arguments from the store's own query options)."""
    parsed = parse_url(url)  # not urlsplit: a raw "#" in the password is no fragment here
    options = {k: v if isinstance(v, str) else v[-1] for k, v in parsed.query.items()}
    kwargs: dict[str, Any] = {}
    convert: dict[str, Callable[[str], Any]] = {"table": str, "timeout": float, "purge_batch": int}
    try:
        for name, to_value in convert.items():
            if name in options:
                kwargs[name] = to_value(options[name])
    except ValueError:
        raise ConfigurationError(
            f"bad SQLStore URL option in {redact_url(url)!r}: timeout is seconds (e.g. 5), "
            "purge_batch a whole number"
        ) from None
    driver_query = {k: v for k, v in parsed.query.items() if k not in _STORE_OPTIONS}
    return parsed.set(query=driver_query).render_as_string(hide_password=False), kwargs
