"""SQLiteStore's purge: rebuild the table when nearly every row is expired, else delete in windows.

Deleting a million expired rows one window at a time rewrites every page of the table and
its three indexes, page by page (about 50 s at 1M rows). When nearly all rows are expired
and the live ones are few, it is far cheaper to set the live rows aside, empty the table
(SQLite frees whole b-trees for an unqualified DELETE) and put them back: one short
transaction whose work grows with the live rows, not the dead ones.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from ._sqlite_ops import LIVE, TABLE
from ._sqlite_ops import purge as purge_in_windows

# When the rebuild pays: nearly everything expired, few live rows to copy twice, and a table
# small enough that counting it first is cheap next to the purge itself.
REBUILD_EXPIRED_SHARE = 0.9
REBUILD_MAX_LIVE = 50_000
REBUILD_MAX_ROWS = 1_500_000
_COLUMNS = "key, data, meta, user_id, expires, last_seen"
_SPARE = "temp.coatcheck_purge_live"


def purge(
    conn: sqlite3.Connection,
    now: float,
    window: int,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Delete every row expired at `now`; return how many. Rows written by other processes
    while it runs are kept: the rebuild holds the write lock from its first read to its
    commit, and the windowed delete only ever deletes rows expired at `now`."""
    previous = int(conn.execute("PRAGMA secure_delete").fetchone()[0])
    conn.execute("PRAGMA secure_delete = FAST")  # zero freed content without extra page writes
    try:
        total = conn.execute(f"SELECT COUNT(*) FROM {TABLE}").fetchone()[0]
        expired = conn.execute(f"SELECT COUNT(*) FROM {TABLE} WHERE expires <= ?", (now,)).fetchone()[0]
        if _rebuild_pays(total, expired):
            deleted = _rebuild(conn, now)
            if progress is not None:
                progress(deleted, deleted)
            return deleted
        return purge_in_windows(conn, now, window, progress)
    finally:
        conn.execute(f"PRAGMA secure_delete = {previous}")


def _rebuild_pays(total: int, expired: int) -> bool:
    live = total - expired
    return (
        0 < total <= REBUILD_MAX_ROWS
        and expired >= REBUILD_EXPIRED_SHARE * total
        and live <= REBUILD_MAX_LIVE
    )


def _rebuild(conn: sqlite3.Connection, now: float) -> int:
    """Keep the live rows, empty the table, put them back: one write transaction. The counts
    are taken again inside it, since another process may have written since the estimate."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        before = conn.execute(f"SELECT COUNT(*) FROM {TABLE}").fetchone()[0]
        conn.execute(f"DROP TABLE IF EXISTS {_SPARE}")
        conn.execute(f"CREATE TABLE {_SPARE} AS SELECT {_COLUMNS} FROM {TABLE} WHERE {LIVE}", (now,))
        conn.execute(f"DELETE FROM {TABLE}")  # no WHERE: SQLite drops the pages wholesale
        kept = conn.execute(f"INSERT INTO {TABLE} ({_COLUMNS}) SELECT {_COLUMNS} FROM {_SPARE}").rowcount
        conn.execute(f"DROP TABLE {_SPARE}")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return int(before - kept)
