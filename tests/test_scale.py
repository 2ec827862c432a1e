"""The operators' commands at 100,000 sessions: each stays within its time and memory bound,
because none of them reads every session to answer (an index, a key range or SCAN MATCH).

Bounds are wall time beyond the command's start-up with the same store (measured here with a
`revoke-user` of a user who has no sessions), so a slow, shared machine moves both alike;
memory is the command's peak resident size.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from benchmarks import clitime
from benchmarks.populate import fill_postgres, fill_sqlite, fill_store

from coatcheck.crypto import new_session_id, storage_key
from coatcheck.stores import SQLiteStore, from_url
from coatcheck.testing import make_record

SESSIONS = 100_000
MAX_RSS_MIB = 100
BOUNDS = {"show": 1.0, "revoke": 1.0, "list": 3.0, "stats": 5.0}  # seconds beyond start-up
# Redis keeps no order by last seen and no counts: list and stats read every session, a page
# per call (about 10 µs of CPU each, several times that in wall time on a busy machine).
SCANNING_BOUNDS = {**BOUNDS, "list": 12.0, "stats": 12.0}


def run_cli(*args: str) -> tuple[subprocess.CompletedProcess[str], float, float]:
    """(result, wall seconds, peak resident MiB) of one `coatcheck` run."""
    result, wall, peak, _ = clitime.run_cli(*args)
    return result, wall, peak


@pytest.fixture(params=["sqlite", "redis", "postgresql"])
def big_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A store URL holding SESSIONS synthetic sessions, private to this test."""
    if request.param == "sqlite":
        path = tmp_path / "big.db"
        asyncio.run(_touch(SQLiteStore(path)))
        fill_sqlite(str(path), SESSIONS)
        yield f"sqlite:///{path}"
    elif request.param == "redis":
        base: str = request.getfixturevalue("redis_url")
        url = f"{base}?prefix=scale-test-{secrets.token_hex(6)}:"
        asyncio.run(_fill(url))
        yield url
        asyncio.run(_drop_redis(url))
    else:
        server: str = request.getfixturevalue("postgres_url")
        table = f"scale_test_{secrets.token_hex(6)}"
        url = f"{server}?table={table}"
        asyncio.run(_touch(from_url(url)))
        fill_postgres(server, table, SESSIONS)
        yield url
        import psycopg

        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f'DROP TABLE IF EXISTS "{table}"')


async def _touch(store: Any) -> None:
    await store.count()  # creates the table
    await store.close()


async def _fill(url: str) -> None:
    store = from_url(url)
    try:
        await fill_store(store, SESSIONS)
    finally:
        await store.close()


async def _drop_redis(url: str) -> None:
    import redis.asyncio

    prefix = url.split("prefix=", 1)[1]
    client = redis.asyncio.Redis.from_url(url.split("?", 1)[0])
    try:
        keys: list[bytes] = []
        async for key in client.scan_iter(match=f"{prefix}*", count=10_000):
            keys.append(key)
            if len(keys) >= 10_000:
                await client.unlink(*keys)
                keys = []
        if keys:
            await client.unlink(*keys)
    finally:
        await client.aclose()


def _seed_one(url: str, user: str) -> str:
    async def write() -> str:
        store = from_url(url)
        try:
            key = storage_key(new_session_id())
            await store.set(key, make_record({"n": 1}, user_id=user))
            return key
        finally:
            await store.close()

    return asyncio.run(write())


def test_commands_stay_within_their_bounds_at_100k_sessions(big_store: str) -> None:
    url = big_store
    # start-up with this store open: imports, connecting, ensuring the table; one cheap call
    result, startup, _ = run_cli("sessions", "revoke-user", f"nobody-{secrets.token_hex(4)}", "--store", url)
    assert result.returncode == 0, result.stderr
    user = f"scale-{secrets.token_hex(4)}"
    key = _seed_one(url, user)
    took: dict[str, float] = {}

    result, took["show"], rss = run_cli("sessions", "show", key[:12], "--store", url, "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["user"] == user

    result, took["list"], rss_list = run_cli("sessions", "list", "--store", url, "--limit", "100", "--json")
    assert result.returncode == 0, result.stderr
    listed = json.loads(result.stdout)
    assert listed["total"] == SESSIONS + 1 and len(listed["sessions"]) == 100
    seen = [row["last_seen"] for row in listed["sessions"]]
    assert seen == sorted(seen, reverse=True)

    result, took["stats"], rss_stats = run_cli("sessions", "stats", "--store", url, "--json")
    assert result.returncode == 0, result.stderr
    stats = json.loads(result.stdout)
    assert stats["total"] == SESSIONS + 1 and sum(stats["by_age"].values()) == SESSIONS + 1
    assert stats["anonymous"] == SESSIONS - SESSIONS // 4

    result, took["revoke"], _ = run_cli("sessions", "revoke", key[:12], "--store", url)
    assert result.returncode == 0, result.stderr
    assert "Revoked session" in result.stdout

    print(f"\nstartup {startup:.2f}s, took {took}, rss {rss:.0f}/{rss_list:.0f}/{rss_stats:.0f} MiB")
    bounds = SCANNING_BOUNDS if url.startswith("redis") else BOUNDS
    over = {name: round(t - startup, 2) for name, t in took.items() if t - startup > bounds[name]}
    assert not over, f"beyond start-up ({startup:.2f}s): {over}, bounds {bounds}"
    assert max(rss, rss_list, rss_stats) < MAX_RSS_MIB, (rss, rss_list, rss_stats)


def test_purge_report_has_its_control_and_keeps_the_live_sessions(tmp_path: Path) -> None:
    """`python -m benchmarks scale --purge-only`: a control row (the CLI starting with nothing
    to purge) beside the purge row, every live session kept, every expired one gone."""
    out = tmp_path / "purge.md"
    argv = ["--purge-only", "--sessions", "3000", "--live", "200", "--stores", "sqlite"]
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks", "scale", *argv, "--seconds", "0.3", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert result.returncode == 0, result.stderr
    rows = [line for line in out.read_text().splitlines() if line.startswith("| SQLite |")]
    assert len(rows) == 2, rows
    assert rows[0].startswith("| SQLite | control: CLI start-up, no purge |")
    cells = [cell.strip() for cell in rows[1].strip("|").split("|")]
    assert cells[1] == "3,000" and cells[-1] == "200", rows[1]
    if len(os.sched_getaffinity(0)) >= 2:
        assert "the `coatcheck` CLI on CPU" in out.read_text()
