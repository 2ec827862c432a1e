"""In-process CPU cost per request: ``python -m benchmarks.inproc``.

wrk's req/s on a shared 2-core machine moves by 20-30% between runs. This measures what
the session layer itself costs, with no HTTP server and no load generator: each case's app
(the same modules `python -m benchmarks` serves) is called directly, ASGI with a fake
transport on uvloop, WSGI with an environ and `start_response`, many times in a row, and
the process's CPU time (every thread: the WSGI bridge's loop thread counts) is divided by
the request count. Redis runs as a private server, so its own CPU is not counted, but the
client's is.

``--compare SRC`` runs every case against another source tree (for example a checkout of
the previous commit's ``src/``) interleaved with this one, several times, and prints
medians and the ratio: before/after on the same machine in the same minutes.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

# (case name, app module, environment, routes)
CASES: tuple[tuple[str, str, dict[str, str], tuple[str, ...]], ...] = (
    ("starlette-bare", "starlette_bare", {}, ("/plain",)),
    ("coatcheck-redis", "coatcheck_asgi", {"BENCH_COATCHECK_STORE": "redis"},
     ("/plain", "/read", "/incr", "/first")),
    ("coatcheck-redis-pool", "coatcheck_asgi", {"BENCH_COATCHECK_STORE": "redis-pool"},
     ("/read", "/incr", "/first")),
    ("coatcheck-sqlite", "coatcheck_asgi", {"BENCH_COATCHECK_STORE": "sqlite"},
     ("/read", "/incr", "/first")),
    ("coatcheck-cookie", "coatcheck_asgi", {"BENCH_COATCHECK_STORE": "cookie"},
     ("/plain", "/read", "/incr", "/first")),
    ("coatcheck-cookie-signed", "coatcheck_asgi", {"BENCH_COATCHECK_STORE": "cookie-signed"},
     ("/read", "/incr", "/first")),
    ("starlette-cookie", "starlette_cookie", {}, ("/plain", "/read", "/incr", "/first")),
    ("starsessions-redis", "starsessions_redis", {}, ("/read", "/incr", "/first")),
    ("flask-bare", "flask_bare", {}, ("/plain",)),
    ("coatcheck-flask", "coatcheck_flask", {}, ("/plain", "/read", "/incr", "/first")),
    ("coatcheck-flask-sqlite", "coatcheck_flask", {"BENCH_FLASK_STORE": "sqlite"},
     ("/read", "/incr", "/first")),
    ("flask-session-redis", "flask_session_redis", {}, ("/read", "/incr", "/first")),
    ("flask-cookie", "flask_cookie", {}, ("/read", "/incr", "/first")),
)  # fmt: skip


# ---- the child: one implementation, every route ------------------------------------------------
def _scope(path: str, cookie: bytes | None) -> dict[str, Any]:
    headers = [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"wrk")]
    if cookie:
        headers.append((b"cookie", cookie))
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }


def _cookie_from(headers: list[tuple[bytes, bytes]]) -> bytes | None:
    pairs = [v.split(b";", 1)[0] for k, v in headers if k.lower() == b"set-cookie"]
    return b"; ".join(pairs) if pairs else None


def _asgi_runner(app: Any) -> Callable[[str, bytes | None], tuple[list[tuple[bytes, bytes]], bytes]]:
    import asyncio

    try:
        import uvloop

        loop = uvloop.new_event_loop()
    except ImportError:
        loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def call(path: str, cookie: bytes | None) -> tuple[list[tuple[bytes, bytes]], bytes]:
        out: dict[str, Any] = {}
        body: list[bytes] = []

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                out["headers"] = list(message.get("headers", ()))
                out["status"] = message["status"]
            else:
                body.append(message.get("body", b""))

        await app(_scope(path, cookie), receive, send)
        if out.get("status") != 200:
            raise RuntimeError(f"{path} answered {out.get('status')}: {b''.join(body)!r}")
        return out["headers"], b"".join(body)

    def run(path: str, cookie: bytes | None) -> tuple[list[tuple[bytes, bytes]], bytes]:
        return loop.run_until_complete(call(path, cookie))

    def many(path: str, cookie: bytes | None, n: int) -> None:
        async def loop_body() -> None:
            for _ in range(n):
                await call(path, cookie)

        loop.run_until_complete(loop_body())

    run.many = many  # type: ignore[attr-defined]
    return run


def _wsgi_runner(app: Any) -> Callable[[str, bytes | None], tuple[list[tuple[bytes, bytes]], bytes]]:
    import io

    def run(path: str, cookie: bytes | None) -> tuple[list[tuple[bytes, bytes]], bytes]:
        environ = {
            "REQUEST_METHOD": "GET",
            "SCRIPT_NAME": "",
            "PATH_INFO": path,
            "QUERY_STRING": "",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "8000",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "127.0.0.1",
            "HTTP_HOST": "127.0.0.1:8000",
            "HTTP_USER_AGENT": "wrk",
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(b""),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
        }
        if cookie:
            environ["HTTP_COOKIE"] = cookie.decode("latin-1")
        got: dict[str, Any] = {}

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            got["status"], got["headers"] = status, headers
            return lambda data: None

        result = app(environ, start_response)
        try:
            body = b"".join(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        if not got["status"].startswith("200"):
            raise RuntimeError(f"{path} answered {got['status']}: {body!r}")
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in got["headers"]]
        return headers, body

    def many(path: str, cookie: bytes | None, n: int) -> None:
        for _ in range(n):
            run(path, cookie)

    run.many = many  # type: ignore[attr-defined]
    return run


def child(
    module: str, routes: list[str], iterations: int, profile: str | None, warm: int | None = None
) -> None:
    """Measure every route of one app; print one JSON object {route: us_per_request}."""
    import importlib

    app = importlib.import_module(f"benchmarks.apps.{module}").app
    wsgi = module.startswith("flask") or module == "coatcheck_flask"
    run = _wsgi_runner(app) if wsgi else _asgi_runner(app)
    results: dict[str, float] = {}
    for route in routes:
        cookie = None
        if route in ("/read", "/incr"):
            headers, _ = run("/incr", None)
            cookie = _cookie_from(headers)
            _, body = run("/read", cookie)
            if body != b"1":
                raise RuntimeError(f"{module}: /read after /incr answered {body!r}")
        warmup = max(50, iterations // 10) if warm is None else warm
        run.many(route, cookie, warmup)  # type: ignore[attr-defined]
        if profile:
            import pyinstrument

            profiler = pyinstrument.Profiler(interval=0.0002)
            profiler.start()
            run.many(route, cookie, iterations)  # type: ignore[attr-defined]
            profiler.stop()
            name = f"{module}{os.environ.get('BENCH_COATCHECK_STORE', '')}{route.replace('/', '-')}"
            Path(profile).mkdir(parents=True, exist_ok=True)
            text = profiler.output_text(unicode=False, color=False, show_all=False)
            (Path(profile) / f"{name}.txt").write_text(text)
            continue
        cpu0 = time.process_time_ns()
        run.many(route, cookie, iterations)  # type: ignore[attr-defined]
        results[route] = (time.process_time_ns() - cpu0) / iterations / 1000
    print(json.dumps(results))


# ---- the parent ------------------------------------------------------------------------------
def _instructions(argv: list[str], env: dict[str, str], out: Path) -> int:
    """Instructions executed by `argv` under callgrind (its total Ir)."""
    cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *argv]
    subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=1800, check=True)
    for line in out.read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise RuntimeError(f"no totals in {out}")


def _measure_instructions(
    module: str, route: str, iterations: int, env: dict[str, str], workdir: Path
) -> float:
    """Instructions per request: (a run of 2N requests - a run of N) / N, same warm-up."""
    counts = []
    for n in (iterations, 2 * iterations):
        argv = [sys.executable, "-m", "benchmarks.inproc", "--child", module, "--routes", route]
        argv += ["--iterations", str(n), "--warm", "20"]
        counts.append(_instructions(argv, env, workdir / f"callgrind-{module}-{n}.out"))
    return (counts[1] - counts[0]) / iterations


def _measure(
    src: Path,
    case: tuple[str, str, dict[str, str], tuple[str, ...]],
    routes: list[str],
    args: Any,
    env: dict[str, str],
) -> dict[str, float]:
    name, module, extra, _ = case
    child_env = {**os.environ, **env, **extra, "PYTHONPATH": f"{src}{os.pathsep}{ROOT}"}
    if args.instructions:
        child_env["PYTHONHASHSEED"] = "0"
        workdir = Path(env["BENCH_SQLITE_PATH"]).parent
        return {r: _measure_instructions(module, r, args.iterations, child_env, workdir) for r in routes}
    argv = [
        sys.executable,
        "-m",
        "benchmarks.inproc",
        "--child",
        module,
        "--iterations",
        str(args.iterations),
    ]
    argv += ["--routes", ",".join(routes)]
    if args.profile:
        argv += ["--profile", str(args.profile)]
    out = subprocess.run(
        argv, env=child_env, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False
    )
    if out.returncode != 0:
        print(f"  {name}: failed: {out.stderr.strip().splitlines()[-1:]} ", file=sys.stderr)
        return {}
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.inproc", description=__doc__.split("\n\n")[0])
    p.add_argument("--iterations", type=int, default=3000)
    p.add_argument("--repeat", type=int, default=3, help="runs per case (medians are shown)")
    p.add_argument("--only", action="append", default=[], metavar="GLOB")
    p.add_argument("--src", type=Path, metavar="SRC", help="measure this src/ tree (default: ours)")
    p.add_argument("--compare", type=Path, metavar="SRC", help="another src/ tree to measure interleaved")
    p.add_argument("--profile", type=Path, metavar="DIR", help="write a pyinstrument profile per route")
    p.add_argument(
        "--instructions",
        action="store_true",
        help="count instructions per request with valgrind's callgrind instead of CPU time "
        "(deterministic, ~50x slower: use small --iterations, e.g. 200)",
    )
    p.add_argument("--warm", type=int, help=argparse.SUPPRESS)
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--routes", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        profile = str(args.profile) if args.profile else None
        child(args.child, args.routes.split(","), args.iterations, profile, args.warm)
        return 0

    from benchmarks.procs import Children
    from benchmarks.redisctl import PrivateRedis

    patterns = [q for item in args.only for q in item.split(",") if q]
    children = Children()
    workdir = Path(tempfile.mkdtemp(prefix="coatcheck-inproc-"))
    try:
        redis = PrivateRedis(children, workdir / "redis", None)
        env = {"BENCH_REDIS_URL": redis.url}
        sources = [("this", (args.src or ROOT / "src").resolve())] + (
            [("compare", args.compare.resolve())] if args.compare else []
        )
        table: dict[tuple[str, str], dict[str, list[float]]] = {}
        for case in CASES:
            name, _, _, routes = case
            chosen = [
                r for r in routes
                if not patterns or any(fnmatch.fnmatchcase(name, q) or fnmatch.fnmatchcase(name + r, q) for q in patterns)
            ]  # fmt: skip
            if not chosen:
                continue
            for _ in range(1 if args.profile or args.instructions else args.repeat):
                for label, src in sources:
                    env["BENCH_SQLITE_PATH"] = str(workdir / f"{label}-{name}.db")
                    for route, us in _measure(src, case, chosen, args, env).items():
                        table.setdefault((name, route), {}).setdefault(label, []).append(us)
                    redis.flush()
            for route in chosen:
                runs = table.get((name, route), {})
                line = f"{name + route:34}"
                for label, _ in sources:
                    values = runs.get(label, [])
                    med = statistics.median(values) if values else float("nan")
                    unit = "k instr" if args.instructions else "us"
                    line += f" {label} {med / 1000 if args.instructions else med:7.1f} {unit}"
                if args.compare and runs.get("this") and runs.get("compare"):
                    ratio = statistics.median(runs["compare"]) / statistics.median(runs["this"])
                    line += f"  ({ratio:.2f}x faster)"
                if runs:
                    print(line, flush=True)
    finally:
        children.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
