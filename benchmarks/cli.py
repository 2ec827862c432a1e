"""``python -m benchmarks``: run every case and write RESULTS.md and results.png."""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import fcntl
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from benchmarks import envinfo, servers
from benchmarks.cases import Impl, select
from benchmarks.plot import plot
from benchmarks.procs import Children, raise_on_termination
from benchmarks.redisctl import PrivateRedis, redis_server_version
from benchmarks.report import Setup, render
from benchmarks.runner import LoadOptions, Measurement, Outcome, run_rounds
from benchmarks.stats import aggregate
from benchmarks.targets import verdicts
from benchmarks.wrk import wrk_version

HERE = Path(__file__).resolve().parent
WORK = HERE / ".work"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    p.add_argument("--duration", type=int, default=5, help="seconds per wrk run (default 5)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    p.add_argument(
        "--warmup",
        type=int,
        default=1,
        help="seconds of unmeasured load per case in round 1 (default 1, 0: none)",
    )
    p.add_argument("--connections", type=int, default=32, help="wrk -c (default 32)")
    p.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="GLOB",
        help="run only matching cases: implementation name or case id, e.g. "
        "'starsessions-*', '*/read', 'coatcheck-redis/incr'; "
        "repeatable, comma-separated",
    )
    p.add_argument("--list", action="store_true", help="list the cases and exit")
    p.add_argument(
        "--allow-concurrent",
        action="store_true",
        help="run even if another benchmark run holds benchmarks/.work/harness.lock",
    )
    p.add_argument(
        "--from-json",
        type=Path,
        metavar="PATH",
        help="do not measure: re-render RESULTS.md and results.png from a saved results.json",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=HERE,
        help="where RESULTS.md and results.png go (default benchmarks/)",
    )
    p.add_argument(
        "--retry-noisy",
        type=int,
        default=0,
        metavar="N",
        help="measure a case again (up to N times) when other processes used more than "
        "--max-noise of the server core during it (default 0: never)",
    )
    p.add_argument(
        "--max-noise",
        type=float,
        default=0.10,
        help="share of the server core other processes may use in a run (default 0.10)",
    )
    p.add_argument("--server-cpu", default="0", help="CPU for the app servers (default 0)")
    p.add_argument("--load-cpu", default="1", help="CPU for wrk (default 1)")
    p.add_argument("--redis-cpu", default="1", help="CPU for redis-server (default 1)")
    p.add_argument(
        "--gunicorn-worker",
        choices=("sync", "gthread"),
        default="gthread",
        help="gunicorn worker class for every Flask case (default gthread)",
    )
    p.add_argument(
        "--gunicorn-threads",
        type=int,
        default=4,
        help="threads per gthread worker (default 4)",
    )
    return p.parse_args(argv)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def cpu_or_none(cpu: str) -> str | None:
    """Disable pinning (with a warning) when the CPU is not available to this process."""
    try:
        allowed = os.sched_getaffinity(0)
    except AttributeError:
        return None
    if shutil.which("taskset") is None or not cpu.isdigit() or int(cpu) not in allowed:
        log(f"warning: cannot pin to CPU {cpu!r} (allowed: {sorted(allowed)}); not pinning")
        return None
    return cpu


def ensure_node_modules(selected: list[tuple[Impl, tuple[str, ...]]]) -> str | None:
    """``npm ci`` in benchmarks/node when a Node case is selected; returns an error or None."""
    if not any(impl.server == "node" for impl, _ in selected):
        return None
    if (servers.NODE_DIR / "node_modules").is_dir():
        return None
    npm = shutil.which("npm")
    if npm is None:
        return "npm not found"
    log("installing Node packages: npm ci (benchmarks/node)")
    done = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=servers.NODE_DIR,
                          capture_output=True, text=True, timeout=600, check=False)  # fmt: skip
    return None if done.returncode == 0 else f"npm ci failed: {done.stderr.strip()[-300:]}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.from_json is not None:
        return report_from_json(args.from_json, args.out)
    patterns = [p.strip() for item in args.only for p in item.split(",") if p.strip()]
    selected = select(patterns)
    if args.list or not selected:
        for impl, routes in selected:
            print(f"{impl.name:24} {impl.label:48} {' '.join(routes)}")
        if not selected:
            log(f"no case matches {patterns}")
        return 0 if selected else 2

    raise_on_termination()
    WORK.mkdir(parents=True, exist_ok=True)
    lock = (WORK / "harness.lock").open("w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        if not args.allow_concurrent:
            log("another `python -m benchmarks` is running on this machine; two runs disturb "
                "each other's numbers. Wait for it, or pass --allow-concurrent.")  # fmt: skip
            return 3
        log("warning: another benchmark run is in progress; numbers will be disturbed")
    # Per-run scratch (logs, Redis dir, SQLite file), so concurrent runs cannot collide.
    run_dir = WORK / f"run-{os.getpid()}"
    shutil.rmtree(run_dir, ignore_errors=True)
    sqlite_path = run_dir / "coatcheck-bench.db"
    server_cpu = cpu_or_none(args.server_cpu)
    load = LoadOptions(args.duration, args.rounds, args.warmup, args.connections,
                       cpu_or_none(args.load_cpu), server_cpu, args.retry_noisy,
                       args.max_noise)  # fmt: skip
    outcome = Outcome()
    node_error = ensure_node_modules(selected)
    children = Children()
    started = time.monotonic()
    try:
        redis = PrivateRedis(children, run_dir / "redis", cpu_or_none(args.redis_cpu))
        log(f"redis-server {redis.version()} on 127.0.0.1:{redis.port}")
        opts = servers.ServerOptions(
            cpu=server_cpu, redis_url=redis.url, sqlite_path=sqlite_path,
            gunicorn_worker=args.gunicorn_worker, gunicorn_threads=args.gunicorn_threads,
            logs=run_dir / "logs",
        )  # fmt: skip
        running = []
        for impl, routes in selected:
            if impl.server == "node" and node_error:
                outcome.unavailable[impl.name] = node_error
                continue
            try:
                srv = servers.start(children, impl, opts)
            except servers.NotAvailable as exc:
                outcome.unavailable[impl.name] = str(exc)
                log(f"{impl.name}: not available: {exc}")
                continue
            log(f"{impl.name}: listening on 127.0.0.1:{srv.port}")
            running.append((srv, routes))
        run_rounds(children, redis, running, load, outcome, log)
        redis_version = redis.version()
    except KeyboardInterrupt:
        log("interrupted; stopping every child process")
        return 130
    finally:
        children.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{sqlite_path}{suffix}").unlink(missing_ok=True)
        log(f"server logs: {run_dir / 'logs'}")

    write_outputs(args, argv, outcome, redis_version, server_cpu, load, run_dir)
    log(f"done in {time.monotonic() - started:.0f}s")
    return 0


def write_outputs(
    args: argparse.Namespace,
    argv: list[str] | None,
    outcome: Outcome,
    redis_version: str,
    server_cpu: str | None,
    load: LoadOptions,
    run_dir: Path,
) -> None:
    gunicorn = f"1 worker, {args.gunicorn_worker}"
    if args.gunicorn_worker == "gthread":
        gunicorn += f" with {args.gunicorn_threads} threads"
    setup = Setup(
        date=datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        command=shlex.join(["python", "-m", "benchmarks", *(sys.argv[1:] if argv is None
                                                             else argv)]),
        machine=envinfo.machine(),
        redis_version=f"redis-server {redis_version} ({redis_server_version()})",
        wrk_version=wrk_version(),
        load=f"wrk -t1 -c{load.connections} -d{load.duration}s --latency; {load.rounds} rounds, "
        f"round-robin over all cases; {load.warmup}s unmeasured warm-up per case in round 1",
        pinning=f"app server on CPU {server_cpu}, wrk on CPU {load.cpu}, redis-server on CPU "
        f"{args.redis_cpu} (taskset)",
        uvicorn=f"1 worker, --no-access-log, {envinfo.uvicorn_loop_http()}",
        gunicorn=gunicorn,
        py_versions={d: envinfo.py_version(d) for d in envinfo.PY_PACKAGES},
        node_versions={p: envinfo.node_version(p) for p in envinfo.NODE_PACKAGES},
        revision=envinfo.git_revision(),
    )  # fmt: skip
    title = f"req/s by route (wrk -c{load.connections}, medians of {load.rounds} rounds)"
    raw = {
        "setup": dataclasses.asdict(setup),
        "title": title,
        "measurements": [dataclasses.asdict(m) for m in outcome.measurements],
        "unavailable": outcome.unavailable,
        "failed": outcome.failed,
    }
    text = json.dumps(raw, indent=2)
    (run_dir / "results.json").write_text(text)
    (WORK / "results.json").write_text(text)  # the latest run, for --from-json
    emit(setup, outcome, args.out, title)
    log(f"raw data: {run_dir / 'results.json'}")


def emit(setup: Setup, outcome: Outcome, out: Path, title: str) -> None:
    """Write RESULTS.md and results.png into ``out``."""
    rows = aggregate(outcome.measurements)
    out.mkdir(parents=True, exist_ok=True)
    md = out / "RESULTS.md"
    md.write_text(render(setup, rows, verdicts(rows), outcome.unavailable, outcome.failed))
    png = out / "results.png"
    if rows:
        plot(rows, png, title)
    log(f"wrote {md} and {png}")


def report_from_json(path: Path, out: Path) -> int:
    """Re-render RESULTS.md and results.png from a saved results.json (no measuring)."""
    raw = json.loads(path.read_text())
    outcome = Outcome(
        measurements=[Measurement(**m) for m in raw["measurements"]],
        unavailable=raw["unavailable"],
        failed=raw["failed"],
    )
    emit(Setup(**raw["setup"]), outcome, out, raw.get("title", "req/s by route"))
    return 0
