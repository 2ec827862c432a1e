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
