"""SQLiteStore.purge_expired on its two paths: the rebuild (nearly everything expired, few live)
and the windowed delete; and a second process writing while it runs."""

import asyncio
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from coatcheck.stores import SQLiteStore
from coatcheck.testing import make_record, new_key

ROOT = Path(__file__).resolve().parent.parent


def _keys(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {key for (key,) in conn.execute("SELECT key FROM coatcheck_sessions")}


async def _fill(store: SQLiteStore, rows: int, every_live: int) -> tuple[list[str], list[str]]:
    """`rows` sessions, one in `every_live` live, interleaved so every window holds both kinds."""
    live, dead = [], []
    for start in range(0, rows, 200):
        batch = [(new_key(), i % every_live == 0) for i in range(start, min(rows, start + 200))]
        await asyncio.gather(*(store.set(key, make_record(ttl=3600.0 if ok else -1.0)) for key, ok in batch))
        for key, ok in batch:
            (live if ok else dead).append(key)
    return live, dead


@pytest.mark.parametrize(
    ("every_live", "transactions"),
    [(20, 1), (2, 2000 // 300 + 1)],  # 95% expired: one rebuild; 50%: windows of 300 rowids
    ids=["rebuild", "windows"],
)
async def test_purge_keeps_every_live_row_and_removes_every_expired_one(
    tmp_path, every_live: int, transactions: int
) -> None:
    path = tmp_path / "p.db"
    store = SQLiteStore(path, purge_window=300, auto_purge=False)
    live, dead = await _fill(store, 2000, every_live)
    calls: list[tuple[int, int]] = []
    assert await store.purge_expired(progress=lambda done, total: calls.append((done, total))) == len(dead)
    assert len(calls) == transactions and calls[-1] == (len(dead), len(dead))
    assert _keys(path) == set(live)
    assert all([await store.get(key) is not None for key in live])
    assert await store.purge_expired() == 0  # nothing left; a second purge on an emptied table is a no-op
    await store.close()


WRITER = """
import asyncio, sys, threading
from coatcheck.stores import SQLiteStore
from coatcheck.testing import make_record, new_key

async def main():
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.readline(), stop.set()), daemon=True).start()
    store = SQLiteStore(sys.argv[1], auto_purge=False, busy_timeout=30.0)
    written = []
    while not stop.is_set() or len(written) < 2:
        key = new_key()
        await store.set(key, make_record(ttl=3600.0))
        written.append(key)
        if len(written) == 1:
            print("ready", flush=True)
    await store.close()
    print("\\n".join(written), flush=True)

asyncio.run(main())
"""


@pytest.mark.parametrize("every_live", [20, 2], ids=["rebuild", "windows"])
async def test_a_second_process_writing_during_the_purge_loses_nothing(tmp_path, every_live: int) -> None:
    path = tmp_path / "w.db"
    store = SQLiteStore(path, purge_window=100, auto_purge=False)
    live, dead = await _fill(store, 4000, every_live)
    child = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None and child.stdin is not None
    try:
        assert child.stdout.readline().strip() == "ready"  # it has written once and keeps writing
        assert await store.purge_expired() == len(dead)
        child.stdin.write("stop\n")
        child.stdin.flush()
        out, _ = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == 0
    written = out.split()
    assert len(written) >= 2
    assert _keys(path) == set(live) | set(written)
    await store.close()
