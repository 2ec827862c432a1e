"""``python -m benchmarks scale``: the session stores at many sessions, in bounded time.

For each store (SQLite file, the Redis and PostgreSQL servers on this machine): reads of
random sessions across the whole keyspace at 1,000 and at N sessions (store calls from 32
concurrent tasks in this process: reads/s, p50, p99, CPU µs per read), bytes per session,
the `coatcheck sessions` commands at N (wall and CPU time, peak memory), and purging N
expired sessions with `coatcheck sessions purge` while reads go on (its time, read p99
during it). Writes a Markdown report. Everything it creates is private (a file, a table, a
key prefix) and removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import secrets
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import envinfo
from benchmarks.clitime import run_cli
from benchmarks.populate import fill_postgres, fill_sqlite, fill_store
from coatcheck.stores import SQLiteStore, from_url

HERE = Path(__file__).resolve().parent
CONCURRENCY = 32


@dataclass
class Reads:
    rate: float
    p50_ms: float
    p99_ms: float
    cpu_us: float

    def cells(self) -> str:
        return f"{self.rate:,.0f} | {self.p50_ms:.2f} | {self.p99_ms:.2f} | {self.cpu_us:.0f}"


async def read_load(
    store: Any, keys: list[str], seconds: float, until: Callable[[], bool] | None = None
) -> Reads:
    """Random reads from CONCURRENCY tasks for `seconds` (or until `until()` is true)."""
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    def running() -> bool:
        return not until() if until is not None else time.perf_counter() < deadline

    async def worker(seed: int) -> None:
        pick = random.Random(seed).choice
        while running():
            start = time.perf_counter()
            # A read that skips the worker thread never yields: take turns, as requests would,
            # and count the wait for the turn in its latency.
            await asyncio.sleep(0)
            record = await store.get(pick(keys))
            latencies.append(time.perf_counter() - start)
            assert record is not None, "a populated session did not load"

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(CONCURRENCY)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    latencies.sort()
    n = max(1, len(latencies))
    return Reads(
        rate=len(latencies) / wall,
        p50_ms=1000 * statistics.median(latencies or [0.0]),
        p99_ms=1000 * latencies[min(n - 1, int(n * 0.99))] if latencies else 0.0,
        cpu_us=1e6 * cpu / n,
    )


class Target:
    """One store under test: how to make it, fill it, size it and clean it up."""

    name = ""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.url = ""

    async def fill(self, n: int, *, expired: bool = False) -> list[str]:
        store = from_url(self.url)
        try:
            return await fill_store(store, n, expired=expired)
        finally:
            await store.close()

    def open(self) -> Any:
        return from_url(self.url)

    async def bytes_used(self) -> float:
        return float("nan")

    async def cleanup(self) -> None:
        return None

    purges = True


class SQLiteTarget(Target):
    name = "SQLite"

    def __init__(self, work: Path) -> None:
        super().__init__(work)
        self.path = work / f"scale-{secrets.token_hex(4)}.db"
        self.url = f"sqlite:///{self.path}"

    async def fill(self, n: int, *, expired: bool = False) -> list[str]:
        store = SQLiteStore(self.path)
        await store.count()  # creates the table
        await store.close()
        return fill_sqlite(str(self.path), n, expired=expired)

    async def bytes_used(self) -> float:
        return float(sum(p.stat().st_size for p in self.work.glob(f"{self.path.name}*")))

    async def cleanup(self) -> None:
        for path in self.work.glob(f"{self.path.name}*"):
            path.unlink()


class RedisTarget(Target):
    name = "Redis"
    purges = False  # Redis expires sessions itself: there is nothing to purge

    def __init__(self, work: Path, server: str) -> None:
        super().__init__(work)
        self.prefix = f"scale-{secrets.token_hex(4)}:"
        self.server = server
        self.url = f"{server}?prefix={self.prefix}"

    async def bytes_used(self) -> float:
        import redis.asyncio

        client = redis.asyncio.Redis.from_url(self.server)
        try:
            sizes = [
                await client.memory_usage(key) or 0
                async for key in client.scan_iter(match=f"{self.prefix}s:*", count=1000)
                if random.random() < 0.01
            ]
            return statistics.mean(sizes) if sizes else float("nan")
        finally:
            await client.aclose()

    async def index_bytes(self) -> tuple[float, int]:
        """(bytes of the hint index per entry, entries): MEMORY USAGE of the whole sorted set."""
        import redis.asyncio

        client = redis.asyncio.Redis.from_url(self.server)
        try:
            entries = int(await client.zcard(f"{self.prefix}hints"))
            used = await client.memory_usage(f"{self.prefix}hints", samples=0) or 0
            return (used / entries if entries else float("nan")), entries
        finally:
            await client.aclose()

    async def cleanup(self) -> None:
        import redis.asyncio

        client = redis.asyncio.Redis.from_url(self.server)
        try:
            batch: list[bytes] = []
            async for key in client.scan_iter(match=f"{self.prefix}*", count=10_000):
                batch.append(key)
                if len(batch) >= 10_000:
                    await client.unlink(*batch)
                    batch = []
            if batch:
                await client.unlink(*batch)
        finally:
            await client.aclose()


class PostgresTarget(Target):
    name = "PostgreSQL"

    def __init__(self, work: Path, server: str) -> None:
        super().__init__(work)
        self.server = server
        self.table = f"scale_{secrets.token_hex(4)}"
        self.url = f"{server}?table={self.table}"

    async def fill(self, n: int, *, expired: bool = False) -> list[str]:
        store: Any = from_url(self.url)
        await store.count()  # creates the table
        await store.close()
        return fill_postgres(self.server, self.table, n, expired=expired)

    def _query(self, sql: str) -> Any:
        import psycopg

        with psycopg.connect(self.server, autocommit=True) as conn:
            cursor = conn.execute(sql)
            row = cursor.fetchone() if cursor.description else None
            return None if row is None else row[0]

    async def bytes_used(self) -> float:
        return float(self._query(f"SELECT pg_total_relation_size('\"{self.table}\"')"))

    async def cleanup(self) -> None:
        self._query(f'DROP TABLE IF EXISTS "{self.table}"')

    def open_sqlalchemy(self) -> Any:
        """The same table through an application's own AsyncEngine: SQLAlchemy on every call."""
        from sqlalchemy.ext.asyncio import create_async_engine

        from coatcheck.stores import SQLStore

        engine = create_async_engine(self.server.replace("postgresql://", "postgresql+psycopg://", 1))
        return SQLStore(engine, table=self.table), engine


# ---- the run --------------------------------------------------------------------------------
class Budget:
    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()


async def measure(target: Target, n: int, seconds: float, budget: Budget, lines: list[str]) -> None:
    say = print
    row: dict[str, str] = {}
    keys = await target.fill(1000)
    store = target.open()
    try:
        small = await read_load(store, keys, seconds)
    finally:
        await store.close()
    say(f"{target.name} 1k: {small.cells()}")
    started = time.perf_counter()
    keys = await target.fill(n - 1000)
    fill_rate = (n - 1000) / (time.perf_counter() - started)
    store = target.open()
    try:
        big = await read_load(store, keys, seconds)
        say(f"{target.name} {n:,}: {big.cells()}")
        extra: list[str] = []
        if isinstance(target, SQLiteTarget):
            plain_store = SQLiteStore(target.path, mmap_size=0)
            try:
                plain = await read_load(plain_store, keys, seconds)
            finally:
                await plain_store.close()
            extra.append(f"{target.name} {n:,} without mmap: {plain.cells()}")
        if isinstance(target, PostgresTarget):
            through, engine = target.open_sqlalchemy()
            try:
                sa_reads = await read_load(through, keys, seconds)
            finally:
                await through.close()
                await engine.dispose()
            extra.append(f"{target.name} {n:,} through SQLAlchemy (an app's AsyncEngine): {sa_reads.cells()}")
        if isinstance(target, RedisTarget):
            per_entry, entries = await target.index_bytes()
            extra.append(
                f"{target.name} {n:,} hint index: {per_entry:,.0f} bytes per entry, {entries:,} entries "
                "(beside the bytes/session)"
            )
        for line in extra:
            say(line)
        per_session = await target.bytes_used() / (1 if isinstance(target, RedisTarget) else n)
        row["reads"] = (
            f"| {target.name} | {small.cells()} | {big.cells()} | {big.p99_ms / max(small.p99_ms, 1e-9):.2f}x "
            f"| {per_session:,.0f} | {fill_rate:,.0f}/s |"
        )
        lines.append(row["reads"])
        lines.extend(
            f"| ↳ {line.split(': ', 1)[0]} | | | | | {line.split(': ', 1)[1]} | | | |" for line in extra
        )
        await commands(target, keys)
        keys = [key for key in keys if key != keys[len(keys) // 2]]  # `revoke HINT` removed that one
        if target.purges and budget.left() > 60:
            await purge(target, store, keys, n, seconds, big)
    finally:
        await store.close()


async def measure_purge(target: Target, n: int, live: int, seconds: float, lines: list[str]) -> None:
    """Only the purge: `live` sessions, reads at that size for a baseline, then `n` expired ones
    purged while reads go on. With two CPUs or more, this process (the reads, the baseline
    included) runs on the first and the CLI on the second, as an app and a maintenance job on
    a machine with a spare core: the ratio then shows what the purge costs the reads through
    the store, not a second process's start-up taking turns with them on one core."""
    if len(os.sched_getaffinity(0)) >= 2:
        cpus = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpus[0]})
        PURGE_CLI_CPU[0] = cpus[1]
    keys = await target.fill(live)
    store = target.open()
    try:
        before = await read_load(store, keys, seconds)
        print(f"{target.name} {live:,} live: {before.cells()}")
        await purge(target, store, keys, n, seconds, before)
    finally:
        await store.close()


CLI_ROWS: list[str] = []
PURGE_ROWS: list[str] = []
PURGE_CLI_CPU: list[int | None] = [None]  # the CLI's own CPU in `--purge-only`


async def commands(target: Target, keys: list[str]) -> None:
    url = target.url
    hint = keys[len(keys) // 2][:12]
    runs = {
        "show HINT": ("sessions", "show", hint, "--store", url, "--json"),
        "list --limit 100": ("sessions", "list", "--store", url, "--limit", "100", "--json"),
        "stats": ("sessions", "stats", "--store", url, "--json"),
        "revoke HINT": ("sessions", "revoke", hint, "--store", url),
    }
    base, base_wall, _, base_cpu = await asyncio.to_thread(
        run_cli, "sessions", "revoke-user", "nobody-at-all", "--store", url
    )
    assert base.returncode == 0, base.stderr
    for name, args in runs.items():
        result, wall, peak, cpu = await asyncio.to_thread(run_cli, *args)
        ok = "" if result.returncode == 0 else f" (failed: {result.stderr.strip()[:60]})"
        CLI_ROWS.append(
            f"| {target.name} | `{name}` | {wall:.2f} | {wall - base_wall:.2f} | {cpu:.2f} | {peak:.0f}{ok} |"
        )
        print(CLI_ROWS[-1])
    CLI_ROWS.append(
        f"| {target.name} | start-up (`revoke-user` of nobody) | {base_wall:.2f} | - | {base_cpu:.2f} | |"
    )


def _cli_cpu() -> int | None:
    return PURGE_CLI_CPU[0]


async def purge(target: Target, store: Any, keys: list[str], n: int, seconds: float, before: Reads) -> None:
    # The control: the same reads while a CLI that finds nothing to do (`revoke-user` of
    # nobody) starts and exits, the share of the p99 rise that is a second process starting
    job = asyncio.create_task(
        asyncio.to_thread(
            run_cli, "sessions", "revoke-user", "nobody-at-all", "--store", target.url, cpu=_cli_cpu()
        )
    )
    control = await read_load(store, keys, seconds, until=job.done)
    result, wall, _, cpu = await job
    assert result.returncode == 0, result.stderr
    PURGE_ROWS.append(
        f"| {target.name} | control: CLI start-up, no purge | {wall:.1f} | {cpu:.1f} | {before.p99_ms:.2f} "
        f"| {control.p99_ms:.2f} | {control.p99_ms / max(before.p99_ms, 1e-9):.2f}x | |"
    )
    print(PURGE_ROWS[-1])
    await target.fill(n, expired=True)
    job = asyncio.create_task(
        asyncio.to_thread(run_cli, "sessions", "purge", "--store", target.url, cpu=_cli_cpu())
    )
    during = await read_load(store, keys, seconds, until=job.done)
    result, wall, _, cpu = await job
    ok = "" if result.returncode == 0 else f" (failed: {result.stderr.strip()[:60]})"
    live = await store.count()
    PURGE_ROWS.append(
        f"| {target.name} | {n:,} | {wall:.1f} | {cpu:.1f} | {before.p99_ms:.2f} | {during.p99_ms:.2f} "
        f"| {during.p99_ms / max(before.p99_ms, 1e-9):.2f}x | {live:,}{ok} |"
    )
    print(PURGE_ROWS[-1])


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks scale", description=__doc__)
    p.add_argument("--sessions", type=int, default=100_000, help="N (default 100,000; 1,000,000 by hand)")
    p.add_argument("--stores", default="sqlite,redis,postgresql", help="comma-separated (default all three)")
    p.add_argument("--seconds", type=float, default=3.0, help="seconds per read measurement (default 3)")
    p.add_argument("--budget", type=float, default=900.0, help="stop starting new stores after this (s)")
    p.add_argument("--redis", default=os.environ.get("COATCHECK_REDIS_URL", "redis://127.0.0.1:6379/0"))
    p.add_argument(
        "--postgresql",
        default=os.environ.get("COATCHECK_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"),
    )
    p.add_argument(
        "--purge-only", action="store_true", help="measure only the purge of N expired among --live sessions"
    )
    p.add_argument("--live", type=int, default=None, help="live sessions beside the N expired (default N)")
    p.add_argument("--out", type=Path, default=None, help="write the Markdown report here")
    return p.parse_args(argv)


async def run(args: argparse.Namespace) -> str:
    work = HERE / ".work" / "scale"
    work.mkdir(parents=True, exist_ok=True)
    budget = Budget(args.budget)
    makers: dict[str, Callable[[], Target]] = {
        "sqlite": lambda: SQLiteTarget(work),
        "redis": lambda: RedisTarget(work, args.redis),
        "postgresql": lambda: PostgresTarget(work, args.postgresql),
    }
    lines: list[str] = []
    cpu_start, wall_start = time.process_time(), time.perf_counter()
    for name in args.stores.split(","):
        if budget.left() <= 0:
            lines.append(f"| {name} | skipped: time budget spent | | | | |")
            continue
        target = makers[name.strip()]()
        try:
            if args.purge_only:
                await measure_purge(target, args.sessions, live_of(args), args.seconds, lines)
            else:
                await measure(target, args.sessions, args.seconds, budget, lines)
        finally:
            await target.cleanup()
    took = time.perf_counter() - wall_start
    return report(args, lines, took, time.process_time() - cpu_start)


def live_of(args: argparse.Namespace) -> int:
    return int(args.sessions if args.live is None else args.live)


def report(args: argparse.Namespace, lines: list[str], wall: float, cpu: float) -> str:
    n = f"{args.sessions:,}"
    head = [
        f"# coatcheck at {n} sessions",
        "",
        f"`python -m benchmarks scale --sessions {args.sessions}` at {envinfo.git_revision()} on "
        f"{envinfo.cpu_model()} ({os.cpu_count()} cores), Python {envinfo.machine()['python']};",
        f"one run, {wall:.0f} s wall ({cpu:.0f} s CPU in the benchmark process). Reads are store calls",
        f"from {CONCURRENCY} concurrent tasks in one process, random sessions across the whole keyspace,",
        f"{args.seconds:g} s each; CPU µs per read is this process's CPU time over the reads.",
        "",
        f"| store | 1k reads/s | p50 ms | p99 ms | CPU µs/read | {n} reads/s | p50 ms | p99 ms | CPU µs/read "
        "| p99 N/1k | bytes/session | fill rate |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    cli = [
        "",
        f"## `coatcheck sessions` at {n} sessions",
        "",
        "| store | command | wall s | beyond start-up s | CPU s | peak MiB |",
        "|---|---|---|---|---|---|",
        *CLI_ROWS,
    ]
    purge_rows = [
        "",
        f"## Purge of {n} expired sessions among {live_of(args):,} live, with reads going on",
        "",
        "| store | expired | wall s | CPU s (purge process) | read p99 before ms | p99 during ms | ratio | live after |",
        "|---|---|---|---|---|---|---|---|",
        *PURGE_ROWS,
    ]
    if args.purge_only:
        pinned = PURGE_CLI_CPU[0]
        where = (
            [] if pinned is None else ["", f"The reads ran on one CPU, the `coatcheck` CLI on CPU {pinned}."]
        )
        return "\n".join([*head[:7], *where, *purge_rows, ""])
    return "\n".join([*head, *lines, *cli, *purge_rows, ""])


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    text = asyncio.run(run(args))
    print(text)
    if args.out is not None:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
