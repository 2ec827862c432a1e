import logging
import os
import stat
from pathlib import Path

import pytest

from coatcheck.record import Meta, Record
from coatcheck.stores import SQLiteStore
from coatcheck.testing import StoreConformance


class TestSQLiteStoreConformance(StoreConformance):
    @pytest.fixture(autouse=True)
    def _db_path(self, tmp_path):
        self.path = tmp_path / "sessions.db"

    async def make_store(self) -> SQLiteStore:
        return SQLiteStore(self.path)


RESTART_CHILD = """
import asyncio, sys, httpx
from tests.helpers import make_app, client, use_cookie
from coatcheck.stores import SQLiteStore

async def main():
    secret, path, cookie = sys.argv[1:4]
    async with client(make_app(secret=secret, store=SQLiteStore(path))) as c:
        use_cookie(c, cookie)
        print((await c.get("/incr")).json()["n"])

asyncio.run(main())
"""


async def test_a_second_process_reads_the_session_from_the_same_file(secret: str, tmp_path) -> None:
    """Restart persistence: what one app instance saved, another process loads and changes."""
    import subprocess
    import sys
    from pathlib import Path

    from tests.helpers import client, make_app

    path = tmp_path / "sessions.db"
    store = SQLiteStore(path)
    async with client(make_app(secret=secret, store=store)) as c:
        await c.get("/incr")
        await c.get("/incr")
        cookie = c.cookies["session"]
    await store.close()
    root = Path(__file__).resolve().parent.parent
    for expected in ("3", "4"):
        out = subprocess.run(
            [sys.executable, "-c", RESTART_CHILD, secret, str(path), cookie],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        assert out.stdout.strip() == expected


async def test_concurrent_processes_patch_different_keys(secret: str, tmp_path) -> None:
    """WAL + BEGIN IMMEDIATE: writers in several processes never lose each other's keys."""
    import subprocess
    import sys

    from coatcheck.testing import make_record, new_key

    path, key = tmp_path / "sessions.db", new_key()
    store = SQLiteStore(path)
    record = make_record({"base": 0})
    await store.set(key, record)
    await store.close()
    child = (
        "import asyncio, sys\n"
        "from coatcheck.stores import SQLiteStore\n"
        "from coatcheck.testing import make_record\n"
        "async def main():\n"
        "    s = SQLiteStore(sys.argv[1]); meta = make_record().meta\n"
        "    for i in range(25):\n"
        "        assert await s.patch(sys.argv[2], {f'p{sys.argv[3]}-{i}': i}, (), meta)\n"
        "    await s.close()\n"
        "asyncio.run(main())\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", child, str(path), key, str(n)]) for n in range(4)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0, 0]
    store = SQLiteStore(path)
    got = await store.get(key)
    await store.close()
    assert got is not None and len(got.data) == 1 + 4 * 25


@pytest.fixture
def umask_022():
    previous = os.umask(0o022)  # the usual default: new files readable by everyone
    yield
    os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_database_wal_and_shm_files_are_created_readable_by_the_owner_only(tmp_path, umask_022) -> None:
    path = tmp_path / "sessions.db"
    store = SQLiteStore(path)
    try:
        await store.set("k" * 64, Record(data={"v": 1}, meta=Meta(created=1.0, last_seen=1.0)))
        files = [path, Path(f"{path}-wal"), Path(f"{path}-shm")]
        assert {f.name: _mode(f) for f in files} == {f.name: 0o600 for f in files}
    finally:
        await store.close()


async def test_an_existing_database_keeps_its_mode_and_a_readable_one_is_warned_about(
    tmp_path, umask_022, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "shared.db"
    path.touch()
    path.chmod(0o640)  # the operator's choice, e.g. a group of app users: not changed behind their back
    store = SQLiteStore(path)
    try:
        with caplog.at_level(logging.WARNING, logger="coatcheck"):
            await store.set("k" * 64, Record(data={"v": 1}, meta=Meta(created=1.0, last_seen=1.0)))
            await store.count()
        assert _mode(path) == 0o640
        warnings = [r.getMessage() for r in caplog.records if "readable by other users" in r.getMessage()]
        assert len(warnings) == 1 and str(path) in warnings[0] and "chmod 600" in warnings[0]
    finally:
        await store.close()


# ---- at scale: indexes, purge, automatic purge ---------------------------------------------------
def _rows(path: Path) -> int:
    import sqlite3

    with sqlite3.connect(path) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM coatcheck_sessions").fetchone()[0])


async def test_a_file_made_before_the_last_seen_index_gains_it(tmp_path) -> None:
    import sqlite3

    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:  # the schema of earlier versions: no last_seen index
        conn.executescript(
            "CREATE TABLE coatcheck_sessions (key TEXT PRIMARY KEY, data BLOB NOT NULL, meta BLOB NOT NULL,"
            " user_id TEXT, expires REAL, last_seen REAL NOT NULL);"
            "CREATE INDEX coatcheck_sessions_expires ON coatcheck_sessions (expires);"
            "CREATE INDEX coatcheck_sessions_user_id ON coatcheck_sessions (user_id);"
        )
    store = SQLiteStore(path)
    await store.count()
    await store.close()
    with sqlite3.connect(path) as conn:
        plan = conn.execute(
            "EXPLAIN QUERY PLAN SELECT key FROM coatcheck_sessions ORDER BY last_seen DESC LIMIT 100"
        ).fetchall()
    assert "coatcheck_sessions_last_seen" in str(plan)


async def test_purge_deletes_every_expired_row_in_windows_and_keeps_live_ones(tmp_path) -> None:
    from coatcheck.testing import make_record, new_key

    store = SQLiteStore(tmp_path / "p.db", purge_window=7)
    live, dead = [], []
    for i in range(40):  # interleaved, so every window holds both kinds
        key = new_key()
        await store.set(key, make_record(ttl=-1.0 if i % 3 else 3600.0))
        (dead if i % 3 else live).append(key)
    calls: list[tuple[int, int]] = []
    assert await store.purge_expired(progress=lambda done, total: calls.append((done, total))) == len(dead)
    assert len(calls) == 6 and calls[-1] == (len(dead), len(dead))  # one per window of 7 rowids
    assert _rows(tmp_path / "p.db") == len(live)
    assert all([await store.get(key) is not None for key in live])
    await store.close()


async def test_automatic_purge_deletes_expired_rows_during_normal_traffic(tmp_path) -> None:
    from coatcheck.testing import make_record, new_key

    path = tmp_path / "auto.db"
    writer = SQLiteStore(path, auto_purge=False)
    for _ in range(25):
        await writer.set(new_key(), make_record(ttl=-1.0))
    live = new_key()
    await writer.set(live, make_record())
    await writer.close()
    assert _rows(path) == 26
    # interval 0: every call is due; batches of 10 come back full, so steps follow at once
    store = SQLiteStore(path, auto_purge_interval=0.0, auto_purge_batch=10)
    for _ in range(5):
        assert await store.get(live) is not None  # a read may skip the worker: it queues a step
        await store.count()  # through the one worker thread, so after every step queued before it
    await store.close()
    assert _rows(path) == 1


async def test_automatic_purge_can_be_turned_off(tmp_path) -> None:
    from coatcheck.testing import make_record, new_key

    path = tmp_path / "manual.db"
    store = SQLiteStore(path, auto_purge=False, auto_purge_interval=0.0)
    for _ in range(5):
        await store.set(new_key(), make_record(ttl=-1.0))
    for _ in range(3):
        await store.count()
    await store.close()
    assert _rows(path) == 5


async def test_reads_on_the_event_loop_see_every_write_from_another_store_at_once(tmp_path) -> None:
    """The read path skips the worker thread; it must still see what another connection (as
    another process would) committed just before, and a destroyed record must be gone."""
    import time

    from coatcheck.record import Meta, Record

    path = tmp_path / "sessions.db"
    reader, writer = SQLiteStore(path), SQLiteStore(path)
    now = time.time()
    try:
        assert await reader.get("k") is None  # first read: through the worker, which creates the schema
        for n in range(20):
            await writer.set("k", Record(data={"n": n}, meta=Meta(created=now, last_seen=now)))
            got = await reader.get("k")
            assert got is not None and got.data == {"n": n}
        await writer.destroy("k")
        assert await reader.get("k") is None
    finally:
        await reader.close()
        await writer.close()


async def test_an_in_memory_database_is_read_through_its_one_connection() -> None:
    import time

    from coatcheck.record import Meta, Record

    store = SQLiteStore(":memory:")
    now = time.time()
    try:
        await store.set("k", Record(data={"a": 1}, meta=Meta(created=now, last_seen=now)))
        for _ in range(3):
            got = await store.get("k")
            assert got is not None and got.data == {"a": 1}
    finally:
        await store.close()
