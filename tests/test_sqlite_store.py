import pytest

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
