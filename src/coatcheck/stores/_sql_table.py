"""SQLStore's table: columns, indexes and the exact user-id column type, per dialect, and
creating or upgrading it safely from several processes at once."""

from __future__ import annotations

import hashlib
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ..errors import SessionStoreError

_MYSQL = ("mysql", "mariadb")
MAX_COLUMN = 255
USER_ID_BYTES = 4 * MAX_COLUMN  # 255 characters of up to 4 UTF-8 bytes each


class _ExactUserId(sa.types.TypeDecorator[str]):
    """A user id column compared exactly: VARCHAR(255), or on MySQL/MariaDB VARBINARY
    holding the UTF-8 bytes (their utf8mb4_bin collation ignores trailing spaces)."""

    impl = sa.String(MAX_COLUMN)
    cache_ok = True

    def load_dialect_impl(self, dialect: sa.Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name in _MYSQL:
            return dialect.type_descriptor(mysql.VARBINARY(USER_ID_BYTES))
        return dialect.type_descriptor(sa.String(MAX_COLUMN))

    def process_bind_param(self, value: str | None, dialect: sa.Dialect) -> Any:
        return value.encode() if value is not None and dialect.name in _MYSQL else value

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> str | None:
        return value.decode() if isinstance(value, bytes) else value


def define_table(metadata: sa.MetaData, name: str) -> sa.Table:
    """The sessions table. Indexes added after a table may already exist (last_seen) are
    created by `SQLStore` with `checkfirst` when it ensures the table."""
    key_type = sa.String(MAX_COLUMN)
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
        sa.Index(f"{name}_last_seen", "last_seen"),  # list_sessions: newest first, LIMIT n
        # binary collation: keys and user ids compare exactly (case-sensitive), utf8mb4 for data
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
    )


async def ensure_table(engine: AsyncEngine, table: sa.Table, pg: bool, lock_wait: float, where: str) -> None:
    """Create `table` and its indexes if missing, and upgrade an older one, under a database
    lock (advisory on PostgreSQL, GET_LOCK on MySQL) so check-then-create is atomic."""
    lock_id = int.from_bytes(
        hashlib.sha256(f"coatcheck:{table.name}".encode()).digest()[:8], "big", signed=True
    )
    if pg:
        async with engine.begin() as conn:
            await conn.execute(sa.text("SELECT pg_advisory_xact_lock(:id)"), {"id": lock_id})
            await conn.run_sync(table.create, checkfirst=True)
            await conn.run_sync(_add_missing_indexes, table)
        return
    name = f"coatcheck-{lock_id & 0xFFFFFFFFFFFF:x}"
    async with engine.connect() as conn:
        got = await conn.scalar(sa.text("SELECT GET_LOCK(:name, :wait)"), {"name": name, "wait": lock_wait})
        if got != 1:
            raise SessionStoreError(f"SQL store ({where}): timed out waiting to create the table")
        try:
            await conn.run_sync(table.create, checkfirst=True)
            await conn.run_sync(_add_missing_indexes, table)
            await _migrate_exact_user_ids(conn, table.name)
            await conn.commit()
        finally:
            await conn.execute(sa.text("SELECT RELEASE_LOCK(:name)"), {"name": name})
            await conn.commit()


def _add_missing_indexes(conn: sa.Connection, table: sa.Table) -> None:
    """Indexes a table made by an older version lacks (last_seen). Building one over a
    million rows takes a few seconds, once."""
    for index in table.indexes:
        index.create(conn, checkfirst=True)


async def _migrate_exact_user_ids(conn: AsyncConnection, name: str) -> None:
    """Make a MySQL table's VARCHAR (PAD SPACE) user_id column VARBINARY, keeping its bytes
    and its index. Called with the table-creation lock held, so only one process alters."""
    kind = await conn.scalar(
        sa.text(
            "SELECT DATA_TYPE FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() "
            "AND TABLE_NAME = :table AND COLUMN_NAME = 'user_id'"
        ),
        {"table": name},
    )
    if kind is not None and str(kind).lower() != "varbinary":
        # the table name matched SQLStore's pattern, so it is safe to quote into DDL
        await conn.execute(sa.text(f"ALTER TABLE `{name}` MODIFY user_id VARBINARY({USER_ID_BYTES}) NULL"))
