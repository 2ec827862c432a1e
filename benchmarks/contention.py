"""Delta commits of one session written by every connection at once, against one session each.

The `/incr` rows of `python -m benchmarks` send one cookie from all 32 wrk connections: every
request writes the same session. Redis runs a commit as one script, so that costs it
nothing; an SQL store serializes the writers on the row (PostgreSQL waits for the row lock
and each waiter's commit, MariaDB's compare-and-set loses and retries). This measures the
store alone, in-process, over the same store API the middleware calls: 32 tasks, each doing
`--patches` delta commits, first all on one session, then each on its own. Loopback
servers only; bounded by the number of patches.
Usage: ``python -m benchmarks.contention [--patches N] [--stores redis,postgresql,mariadb,sqlite]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from coatcheck.stores import RedisStore, SQLiteStore, SQLStore, Store
from coatcheck.testing import make_record, new_key

TASKS = 32


def _stores(names: list[str], workdir: Path) -> dict[str, Callable[[], Store]]:
    redis = os.environ.get("COATCHECK_REDIS_URL", "redis://127.0.0.1:6379/0")
    pg = os.environ.get("COATCHECK_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
    my = os.environ.get("COATCHECK_MYSQL_URL", "mysql://root@127.0.0.1:3306/test")
    table = f"bench_contention_{os.getpid()}"
    makers: dict[str, Callable[[], Store]] = {
        "redis": lambda: RedisStore(redis, prefix=f"bench-contention-{os.getpid()}:"),
        "postgresql": lambda: SQLStore(pg, table=table, pool_size=TASKS),
        "mariadb": lambda: SQLStore(my, table=table, pool_size=TASKS),
        "sqlite": lambda: SQLiteStore(str(workdir / "contention.db")),
    }
    return {name: makers[name] for name in names}


async def _measure(store: Store, patches: int) -> tuple[tuple[float, float], tuple[float, float]]:
    """((patches/s, client CPU us/patch) on one session, the same on one session per task)."""
    record = make_record({"n": 0})
    keys = [new_key() for _ in range(TASKS)]
    for key in keys:
        await store.set(key, record)
    results = []
    for pick in (lambda i: keys[0], lambda i: keys[i]):

        async def writer(i: int, pick: Callable[[int], str] = pick) -> None:
            for n in range(patches):
                assert await store.patch(pick(i), {f"t{i}": n}, (), record.meta)  # type: ignore[attr-defined]

        wall, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(writer(i) for i in range(TASKS)))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        results.append((TASKS * patches / wall, cpu / (TASKS * patches) * 1e6))
    for key in keys:
        await store.destroy(key)
    return results[0], results[1]


async def main_async(names: list[str], patches: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        print(f"{TASKS} tasks x {patches} delta commits each")
        print(f"{'store':12} {'one session':>26} {'one session per task':>28} {'ratio':>7}")
        for name, make in _stores(names, Path(tmp)).items():
            store = make()
            try:
                (one, one_cpu), (own, own_cpu) = await _measure(store, patches)
            finally:
                drop = getattr(store, "drop_table", None)
                if drop is not None:
                    await drop()
                await store.close()
            print(
                f"{name:12} {one:9,.0f}/s {one_cpu:6.0f} us CPU/patch "
                f"{own:11,.0f}/s {own_cpu:6.0f} us CPU/patch {own / one:6.2f}x"
            )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.contention", description=__doc__.split("\n\n")[0])
    p.add_argument("--patches", type=int, default=60, help="delta commits per task (default 60)")
    p.add_argument("--stores", default="redis,postgresql,mariadb,sqlite")
    args = p.parse_args(argv)
    asyncio.run(main_async([s for s in args.stores.split(",") if s], args.patches))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
