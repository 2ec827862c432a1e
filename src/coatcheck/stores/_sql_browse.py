"""SQLStore's operations view without full reads: prefix lookups on the primary key, keyset
paging, and counts by age and by user as aggregate queries."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from ._browse import age_bucket_sql, prefix_end
from .base import SessionTally


def find(table: sa.Table, prefix: str, live: sa.ColumnElement[bool], limit: int) -> sa.Select[Any]:
    """Live rows whose key starts with `prefix`: `prefix <= key < end`, a range on the
    primary key (LIKE would need the right collation to use the index)."""
    key = table.c.key
    bounds = [key >= prefix]
    end = prefix_end(prefix)
    if end is not None:
        bounds.append(key < end)
    return sa.select(key, table.c.meta).where(*bounds, live).order_by(key).limit(limit)


def page(table: sa.Table, after: str, live: sa.ColumnElement[bool], limit: int) -> sa.Select[Any]:
    """The next `limit` live rows after key `after`, in key order."""
    key = table.c.key
    return sa.select(key, table.c.meta).where(key > after, live).order_by(key).limit(limit)


def tally(
    table: sa.Table,
    pg: bool,
    live: sa.ColumnElement[bool],
    now: float,
    age_bounds: Sequence[float],
    top: int,
) -> tuple[sa.Select[Any], sa.Select[Any], sa.Select[Any]]:
    """(by age bucket with anonymous counts, distinct users, top users) as three queries."""
    created = (
        "CAST(CAST(meta AS jsonb) ->> 'created' AS double precision)"
        if pg
        else "CAST(JSON_UNQUOTE(JSON_EXTRACT(meta, '$.created')) AS DOUBLE)"
    )
    bucket: sa.Label[Any] = sa.literal_column(age_bucket_sql(created, now, age_bounds)).label("bucket")
    user = table.c.user_id
    anonymous = sa.func.sum(sa.case((user.is_(None), 1), else_=0))
    by_age = (
        sa.select(bucket, sa.func.count(), anonymous).select_from(table).where(live).group_by(sa.text("1"))
    )
    users = sa.select(sa.func.count(sa.distinct(user))).select_from(table).where(live, user.is_not(None))
    n = sa.func.count().label("n")
    ranked = (
        sa.select(user, n).where(live, user.is_not(None)).group_by(user).order_by(n.desc(), user).limit(top)
    )
    return by_age, users, ranked


async def run_tally(
    conn: AsyncConnection,
    queries: tuple[sa.Select[Any], sa.Select[Any], sa.Select[Any]],
    age_bounds: Sequence[float],
) -> SessionTally:
    by_age, users, ranked = queries
    ages = [0] * len(age_bounds)
    total = anonymous = 0
    for index, count, anon in (await conn.execute(by_age)).all():
        ages[int(index)] += int(count)
        total += int(count)
        anonymous += int(anon or 0)
    distinct = int((await conn.execute(users)).scalar_one())
    top = tuple((str(u), int(c)) for u, c in (await conn.execute(ranked)).all())
    return SessionTally(total, anonymous, distinct, tuple(ages), top)
