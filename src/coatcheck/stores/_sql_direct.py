"""SQLStore's hot path on the database driver itself: which statements run there, and for
which engines. The per-request statements (load, save, delta commit, touch, destroy) skip
SQLAlchemy's async engine (a pre-ping per checkout, BEGIN/COMMIT or a rollback on return,
statement compilation, greenlet switches) when the store made its own engine: PostgreSQL on
psycopg's libpq layer (`_sql_pg`), MySQL/MariaDB on asyncmy's prepared statements (`_sql_my`).
A store given an app's `AsyncEngine` keeps to that engine, its pool and its events."""

from __future__ import annotations

from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncEngine

from ._sql_dialect import Dialect


class Direct(Protocol):
    """The statements SQLStore runs on its own driver connections. `columns` is SQLStore's
    meta, user_id, expires_at and last_seen; `now` a Unix time (expired rows are invisible)."""

    async def get(self, key: str, now: float) -> tuple[Any, ...] | None: ...

    async def set(self, key: str, data: str, columns: dict[str, Any]) -> None: ...

    async def patch(
        self,
        key: str,
        changed: dict[str, Any],
        removed: list[str],
        columns: dict[str, Any],
        now: float,
        dialect: Dialect,
    ) -> bool: ...

    async def touch(self, key: str, columns: dict[str, Any], now: float) -> None: ...

    async def destroy(self, key: str) -> None: ...

    async def close(self) -> None: ...


def direct_path(
    engine: AsyncEngine, timeout: float, table: str, size: int, dialect: Dialect, label: str
) -> tuple[Direct, tuple[type[BaseException], ...]]:
    """The driver-level statements for `engine`'s database, and the errors its driver raises."""
    _, params = engine.dialect.create_connect_args(engine.url)
    if dialect.pg:
        from ._sql_pg import ERRORS as PG_ERRORS
        from ._sql_pg import PgDirect

        return PgDirect(dict(params), timeout, table, size, dialect), PG_ERRORS
    from ._sql_my import ERRORS as MY_ERRORS
    from ._sql_my import MyDirect

    return MyDirect(dict(params), timeout, table, size, dialect, label), MY_ERRORS
