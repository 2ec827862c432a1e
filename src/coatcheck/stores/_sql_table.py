"""SQLStore's table: columns, indexes and the exact user-id column type, per dialect."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.dialects import postgresql as pg

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
