"""Fill a store with many synthetic sessions quickly, in the store's own record layout.

SQLite: `executemany` into the table SQLiteStore creates; PostgreSQL: `COPY` into the table
SQLStore creates; Redis: the store's own `set`, many at once (about 25k/s, pipelined). Each
session has a small cart, a CSRF token and, for one in four, a user id; `expired` sessions
have deadlines in the past (for the purge measurements).
"""

from __future__ import annotations

import asyncio
import secrets
import sqlite3
import time
from collections.abc import Iterator
from typing import Any

from coatcheck.codec import DEFAULT_SERIALIZER
from coatcheck.crypto import storage_key
from coatcheck.record import Meta, Record

CHUNK = 10_000
SAMPLE = 10_000  # keys kept for reads: spread evenly over the whole keyspace


def synthetic(n: int, *, expired: bool = False, now: float | None = None) -> Iterator[tuple[str, Record]]:
    """`n` (storage key, record) pairs: created over the last 30 days, seen over the last day."""
    now = time.time() if now is None else now
    for i in range(n):
        created = now - (i * 7919 % (30 * 86400))
        seen = max(created, now - (i * 104729 % 86400))
        idle = now - 60 if expired else seen + 86400 + 3600
        meta = Meta(
            created=created,
            last_seen=seen,
            idle_deadline=idle,
            absolute_deadline=created + 31 * 86400,
            user_id=f"user-{i % 40_000}" if i % 4 == 0 else None,
        )
        data = {"cart": [i % 97, i % 89], "_csrf": secrets.token_urlsafe(24), "n": i}
        yield storage_key(secrets.token_urlsafe(32)), Record(data=data, meta=meta)


def _sampled(n: int, expired: bool, keys: list[str]) -> Iterator[tuple[str, Record]]:
    """`synthetic(n)`, keeping every (n / SAMPLE)-th key in `keys`."""
    step = max(1, n // SAMPLE)
    for i, (key, record) in enumerate(synthetic(n, expired=expired)):
        if i % step == 0 and len(keys) < SAMPLE:
            keys.append(key)
        yield key, record


def fill_sqlite(path: str, n: int, *, expired: bool = False) -> list[str]:
    """Rows straight into the coatcheck_sessions table (create it first with SQLiteStore);
    returns a sample of the keys written."""
    dumps = DEFAULT_SERIALIZER.dumps
    conn = sqlite3.connect(path, isolation_level=None)
    keys: list[str] = []
    try:
        rows: list[tuple[Any, ...]] = []
        for key, record in _sampled(n, expired, keys):
            meta = record.meta
            rows.append(
                (key, dumps(record.data), dumps(meta.to_dict()), meta.user_id, meta.expires, meta.last_seen)
            )
            if len(rows) >= CHUNK:
                _sqlite_chunk(conn, rows)
                rows = []
        if rows:
            _sqlite_chunk(conn, rows)
    finally:
        conn.close()
    return keys


def _sqlite_chunk(conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO coatcheck_sessions (key, data, meta, user_id, expires, last_seen) VALUES (?, ?, ?, ?, ?, ?)",
        rows,
    )
    conn.execute("COMMIT")


def fill_postgres(dsn: str, table: str, n: int, *, expired: bool = False) -> list[str]:
    """COPY rows into an SQLStore table (create it first with `SQLStore.create_table()`)."""
    import datetime

    import psycopg

    dumps = DEFAULT_SERIALIZER.dumps
    utc = datetime.UTC

    def when(t: float | None) -> datetime.datetime | None:
        return None if t is None else datetime.datetime.fromtimestamp(t, utc)

    keys: list[str] = []
    with psycopg.connect(dsn, autocommit=True) as conn, conn.cursor() as cur:
        columns = "key, data, meta, user_id, expires_at, last_seen"
        with cur.copy(f'COPY "{table}" ({columns}) FROM STDIN') as copy:
            for key, record in _sampled(n, expired, keys):
                meta = record.meta
                data = dumps({k: dumps(v).decode() for k, v in record.data.items()}).decode()
                copy.write_row(
                    (
                        key,
                        data,
                        dumps(meta.to_dict()).decode(),
                        meta.user_id,
                        when(meta.expires),
                        when(meta.last_seen),
                    )
                )
    return keys


async def fill_store(store: Any, n: int, *, expired: bool = False, concurrency: int = 500) -> list[str]:
    """Through the store's own `set`, `concurrency` writes in flight (Redis pipelines them)."""
    batch: list[Any] = []
    keys: list[str] = []
    for key, record in _sampled(n, expired, keys):
        batch.append(store.set(key, record))
        if len(batch) >= concurrency:
            await asyncio.gather(*batch)
            batch = []
    if batch:
        await asyncio.gather(*batch)
    return keys
