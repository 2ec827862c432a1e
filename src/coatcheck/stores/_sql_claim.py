"""SQLStore's flash claim (`FlashClaiming`): take data keys out of a row so that, of several
requests in several processes holding the same message, exactly one shows it.

PostgreSQL: one statement. A CTE locks the row (`FOR UPDATE`, which in READ COMMITTED waits
for a concurrent claim to commit and then reads the row as it left it), the UPDATE removes
the keys and RETURNING says which of them were still there. MySQL/MariaDB: a compare-and-set
UPDATE (`WHERE data = <what was read>`), retried while another writer changed the row in
between; each attempt is its own short transaction, so no lock is held across round trips
and two claims cannot deadlock (a `SELECT ... FOR UPDATE` version could, with patches).
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from ..codec import Serializer
from ..errors import SessionStoreError
from ._sql_dialect import escape_key

if TYPE_CHECKING:
    from ._sql_direct import Direct

# Each failed compare-and-set means another write to this session committed in between;
# a session written this often during one claim is not a live request pattern.
MAX_ATTEMPTS = 50


def claim_pg_sql(table: str, key: str, names: str, now: str) -> str:
    """The claim statement with the given placeholders (psycopg's `%s` or SQLAlchemy's `:x`);
    its one row holds the escaped names it removed (no row: nothing to take)."""
    return (
        f'WITH old AS (SELECT key, data FROM "{table}" '  # table: SQLStore's validated identifier
        f"WHERE key = {key} AND (expires_at IS NULL OR expires_at > {now}) FOR UPDATE) "
        f'UPDATE "{table}" AS t SET data = t.data - CAST({names} AS text[]) FROM old '
        f"WHERE t.key = old.key AND jsonb_exists_any(old.data, CAST({names} AS text[])) "
        f"RETURNING ARRAY(SELECT n FROM unnest(CAST({names} AS text[])) AS n WHERE jsonb_exists(old.data, n))"
    )


async def claim_pg(
    engine: AsyncEngine,
    direct: Direct | None,
    table: str,
    key: str,
    names: Collection[str],
    now: datetime | None,
) -> frozenset[str]:
    """Remove `names` from the live row `key` in one statement; return those it removed.
    On the store's own psycopg connections when it has them (no SQLAlchemy greenlet, so a
    sync app's claim may hop threads), else through the app's engine."""
    by_column = {escape_key(name): name for name in names}
    columns = sorted(by_column)
    if direct is not None:
        from ._sql_pg import PgDirect  # a PostgreSQL store's direct path

        assert isinstance(direct, PgDirect)
        sql = claim_pg_sql(table, "%s", "%s", "%s")
        row = await direct.fetch_one(sql, (key, now, columns, columns, columns))
    else:
        statement = sa.text(claim_pg_sql(table, ":key", ":names", ":now"))
        async with engine.begin() as conn:
            row = (await conn.execute(statement, {"key": key, "now": now, "names": columns})).first()
    return frozenset(by_column[column] for column in row[0]) if row is not None else frozenset()


async def claim_mysql(
    engine: AsyncEngine,
    table: sa.Table,
    live: sa.ColumnElement[bool],
    key: str,
    names: Collection[str],
    serializer: Serializer,
) -> frozenset[str]:
    """Remove `names` from the live row `key` by compare-and-set; return those it removed."""
    read = sa.select(table.c.data).where(table.c.key == key, live)
    for _ in range(MAX_ATTEMPTS):
        async with engine.begin() as conn:
            old = (await conn.execute(read)).scalar()
            if old is None:
                return frozenset()
            data = _loads(serializer, old)
            taken = frozenset(name for name in names if name in data)
            if not taken:
                return frozenset()
            for name in taken:
                del data[name]
            # The table's binary collation compares the text byte for byte.
            swap = (
                sa.update(table)
                .where(table.c.key == key, table.c.data == old)
                .values(data=serializer.dumps(data).decode())
            )
            if (await conn.execute(swap)).rowcount == 1:
                return taken
    raise SessionStoreError(f"flash claim gave up after {MAX_ATTEMPTS} concurrent writes to one session")


def _loads(serializer: Serializer, blob: Any) -> dict[str, Any]:
    try:
        data = serializer.loads(blob.encode() if isinstance(blob, str) else blob)
    except ValueError as exc:
        raise SessionStoreError(f"corrupt session record: {exc}") from None
    if not isinstance(data, dict):
        raise SessionStoreError("corrupt session record: data is not a JSON object")
    return data
