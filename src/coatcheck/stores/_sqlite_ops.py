"""SQLiteStore's bulk work, as functions of a connection: purge, prefix lookup, paging, counts.

They run on the store's worker thread. Keeping them apart from the per-request path keeps
each module about one thing; the schema they rely on (indexes on key, expires, last_seen,
user_id) is in `coatcheck.stores.sqlite`.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence
from typing import Any

from ._browse import age_bucket_sql, prefix_end
from .base import SessionTally

TABLE = "coatcheck_sessions"
LIVE = "(expires IS NULL OR expires > ?)"
# The same test with the expires index disabled (+): where most rows are live, reading the
# table in its own order beats visiting rows in deadline order through the index.
LIVE_SCAN = "(+expires IS NULL OR +expires > ?)"
Row = tuple[str, bytes]


def purge(
    conn: sqlite3.Connection,
    now: float,
    window: int,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Delete every row expired at `now`, walking the table in rowid order `window` rowids per
    transaction. Table order means the rows one transaction deletes sit on the same pages, so
    each page is written once per transaction rather than once per row; the window keeps each
    write lock short enough for other processes' requests."""
    low, high = conn.execute(f"SELECT MIN(rowid), MAX(rowid) FROM {TABLE}").fetchone()
    if low is None:
        return 0
    expected = 0
    if progress is not None:
        expected = conn.execute(f"SELECT COUNT(*) FROM {TABLE} WHERE expires <= ?", (now,)).fetchone()[0]
    total = 0
    for start in range(low, high + 1, window):
        conn.execute("BEGIN IMMEDIATE")
        try:
            total += conn.execute(
                f"DELETE FROM {TABLE} WHERE rowid >= ? AND rowid < ? AND +expires <= ?",  # +: walk rowids, not the index
                (start, start + window, now),
            ).rowcount
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        if progress is not None:
            progress(total, max(expected, total))
    return total


def purge_step(conn: sqlite3.Connection, now: float, batch: int) -> int:
    """Delete at most `batch` expired rows, oldest deadline first (one short transaction)."""
    return conn.execute(
        f"DELETE FROM {TABLE} WHERE rowid IN "
        f"(SELECT rowid FROM {TABLE} WHERE expires <= ? ORDER BY expires LIMIT ?)",
        (now, batch),
    ).rowcount


def find(conn: sqlite3.Connection, prefix: str, now: float, limit: int) -> list[Row]:
    """(key, meta) of live rows whose key starts with `prefix`: a range on the key index."""
    end = prefix_end(prefix)
    upper, args = ("AND key < ?", (end,)) if end is not None else ("", ())
    return conn.execute(
        f"SELECT key, meta FROM {TABLE} WHERE key >= ? {upper} AND {LIVE} ORDER BY key LIMIT ?",
        (prefix, *args, now, limit),
    ).fetchall()


def page(conn: sqlite3.Connection, after: str, now: float, limit: int) -> list[Row]:
    """The next `limit` live rows after key `after`, in key order (keyset paging)."""
    return conn.execute(
        f"SELECT key, meta FROM {TABLE} WHERE key > ? AND {LIVE} ORDER BY key LIMIT ?",
        (after, now, limit),
    ).fetchall()


def tally(conn: sqlite3.Connection, now: float, age_bounds: Sequence[float], top: int) -> SessionTally:
    """Counts by age and by user in three aggregate queries. Raises sqlite3.OperationalError if
    the metadata is not JSON (a custom serializer); the caller then counts page by page."""
    bucket = age_bucket_sql("json_extract(CAST(meta AS TEXT), '$.created')", now, age_bounds)
    ages = [0] * len(age_bounds)
    total = anonymous = 0
    for index, count, anon in conn.execute(
        f"SELECT {bucket}, COUNT(*), SUM(user_id IS NULL) FROM {TABLE} WHERE {LIVE_SCAN} GROUP BY 1", (now,)
    ):
        ages[int(index)] += count
        total += count
        anonymous += anon
    users = conn.execute(
        f"SELECT COUNT(DISTINCT user_id) FROM {TABLE} WHERE user_id IS NOT NULL AND {LIVE_SCAN}", (now,)
    ).fetchone()[0]
    ranked = conn.execute(
        f"SELECT user_id, COUNT(*) AS n FROM {TABLE} WHERE user_id IS NOT NULL AND {LIVE_SCAN} "
        "GROUP BY user_id ORDER BY n DESC, user_id LIMIT ?",
        (now, top),
    ).fetchall()
    return SessionTally(total, anonymous, users, tuple(ages), tuple((u, n) for u, n in ranked))


class AutoPurge:
    """When to delete a small batch of expired rows during normal traffic, so the embedded
    default needs no cron job. A full batch means more are waiting: the next step comes
    sooner (`busy`) until a batch comes back short."""

    def __init__(self, interval: float, batch: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self.batch = batch
        self._clock = clock
        self._due = clock() + interval
        self._busy = min(1.0, interval)

    def due(self) -> bool:
        if self._clock() < self._due:
            return False
        self._due = float("inf")  # one step at a time; done() schedules the next
        return True

    def done(self, deleted: Any) -> None:
        full = isinstance(deleted, int) and deleted >= self.batch
        self._due = self._clock() + (self._busy if full else self.interval)
