"""Garbage-collector pressure of requests waiting on Redis: ``python -m benchmarks.gcprobe``.

The coatcheck-redis app under uvicorn (the harness's app and server options, pinned like the
harness) against a private redis-server, measured two ways (see SCALE.md, "The latency tail"):

- objects: ``--waiting N`` requests are sent while Redis is paused (``CLIENT PAUSE``), so all
  of them wait on the pipelined connection at once; the app lists the GC-tracked objects
  made since (per request, by kind and owner) and ``gc.get_count()[0]``, the count that
  starts a young collection when it passes 700 (``gc.get_threshold()[0]``).
- lockstep: ``--concurrency C`` keep-alive connections each send one request, every answer
  is awaited, repeat, ``--requests`` in all; the app counts collections per generation
  (``gc.callbacks``) and the time they took. Deterministic enough to compare trees, where
  wrk's latencies on a shared machine are not.

Example: ``python -m benchmarks.gcprobe --route /read --concurrency 40``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import selectors
import signal
import socket
import sys
import tempfile
import time
import types
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks.procs import Children, free_port, pinned, wait_until
from benchmarks.redisctl import PrivateRedis

ROOT = Path(__file__).resolve().parent.parent
OWNERS = ("coatcheck", "starlette", "uvicorn", "asyncio", "benchmarks")


# ---- inside the app's process ---------------------------------------------------------------
def _label(obj: object) -> str:
    """What `obj` is, and whose code made it when that shows (coroutines, functions, cells' owners)."""
    kind = type(obj)
    code = getattr(obj, "cr_code", None) if isinstance(obj, types.CoroutineType) else None
    if isinstance(obj, types.FunctionType | types.MethodType):
        code = getattr(obj, "__code__", None) or getattr(getattr(obj, "__func__", None), "__code__", None)
    if code is not None:
        owner = next((o for o in OWNERS if o in Path(code.co_filename).parts), Path(code.co_filename).name)
        return f"{kind.__name__} {owner}:{code.co_qualname}"
    module = kind.__dict__.get("__module__")
    return (
        f"{module}.{kind.__qualname__}" if isinstance(module, str) and module != "builtins" else kind.__name__
    )


def _serve(port: int, out: Path) -> None:
    """Run the app with the probe: SIGUSR2 starts a measurement, SIGUSR1 writes it to `out`."""
    import uvicorn

    state: dict[str, Any] = {}
    started: list[float] = [0.0]

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
            return
        generation = info["generation"]
        state["collections"][generation] += 1
        state["seconds"][generation] += time.perf_counter() - started[0]

    def begin(signum: int, frame: object) -> None:
        gc.collect()
        state.clear()
        state.update(collections=[0, 0, 0], seconds=[0.0, 0.0, 0.0])
        state["before"] = {id(obj) for obj in gc.get_objects()}
        state["keep"] = gc.get_objects()  # alive, so no id in `before` is reused meanwhile

    def report(signum: int, frame: object) -> None:
        count = gc.get_count()[0]
        before, keep, found = state["before"], state["keep"], gc.get_objects()
        made = Counter(
            _label(obj) for obj in found if id(obj) not in before and obj is not keep and obj is not found
        )
        result = {"count": count, "collections": state["collections"], "seconds": state["seconds"]}
        out.write_text(json.dumps({**result, "made": made.most_common(), "tracked": len(gc.get_objects())}))

    gc.callbacks.append(on_gc)
    signal.signal(signal.SIGUSR2, begin)
    signal.signal(signal.SIGUSR1, report)
    uvicorn.run(
        "benchmarks.apps.coatcheck_asgi:app",
        host="127.0.0.1",
        port=port,
        loop="auto",
        http="auto",
        access_log=False,
        log_level="warning",
    )


# ---- the load ------------------------------------------------------------------------------
def _request(route: str, cookie: str) -> bytes:
    return f"GET {route} HTTP/1.1\r\nHost: bench\r\nCookie: {cookie}\r\n\r\n".encode()


def _answer(sock: socket.socket) -> bytes:
    """One whole response (Content-Length framed, as the benchmark routes answer)."""
    data = b""
    while True:
        end = data.find(b"\r\n\r\n")
        if end >= 0:
            head = data[:end].lower()
            at = head.find(b"content-length:")
            length = int(head[at + 15 :].split(b"\r\n")[0]) if at >= 0 else 0
            if len(data) >= end + 4 + length:
                return data[:end]
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        data += chunk


def _lockstep(socks: list[socket.socket], request: bytes, total: int) -> None:
    selector = selectors.DefaultSelector()
    for sock in socks:
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
    done = 0
    while done < total:
        buffers = {sock: b"" for sock in socks}
        for sock in socks:
            sock.sendall(request)
        waiting = set(socks)
        while waiting:
            for key, _ in selector.select():
                sock = key.fileobj  # type: ignore[assignment]
                if sock not in waiting:
                    continue
                buffers[sock] += sock.recv(65536)
                data = buffers[sock]
                end = data.find(b"\r\n\r\n")
                if end < 0:
                    continue
                head = data[:end].lower()
                at = head.find(b"content-length:")
                length = int(head[at + 15 :].split(b"\r\n")[0]) if at >= 0 else 0
                if len(data) >= end + 4 + length:
                    waiting.discard(sock)
        done += len(socks)
    for sock in socks:
        selector.unregister(sock)
        sock.setblocking(True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gcprobe", description=__doc__.splitlines()[0])
    parser.add_argument("--route", default="/read")
    parser.add_argument("--waiting", type=int, default=32, help="requests held on a paused Redis")
    parser.add_argument(
        "--pause-mode", default="ALL", help="CLIENT PAUSE mode (WRITE: /incr waits at its commit)"
    )
    parser.add_argument("--concurrency", type=int, default=32, help="lockstep connections")
    parser.add_argument("--requests", type=int, default=20000, help="lockstep requests")
    parser.add_argument("--server-cpu", default="0")
    parser.add_argument("--load-cpu", default="1")
    parser.add_argument("--serve", nargs=2, metavar=("PORT", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        _serve(int(args.serve[0]), Path(args.serve[1]))
        return 0
    os.sched_setaffinity(0, {int(cpu) for cpu in args.load_cpu.split(",")})

    children = Children()
    with tempfile.TemporaryDirectory(prefix="coatcheck-gcprobe-") as tmp:
        try:
            redis = PrivateRedis(children, Path(tmp) / "redis", args.load_cpu)
            port, out = free_port(), Path(tmp) / "probe.json"
            env = {**os.environ, "BENCH_COATCHECK_STORE": "redis", "BENCH_REDIS_URL": redis.url}
            server = children.start(
                pinned(
                    args.server_cpu,
                    [sys.executable, "-m", "benchmarks.gcprobe", "--serve", str(port), str(out)],
                ),
                log=Path(tmp) / "server.log",
                env=env,
                cwd=ROOT,
            )

            def measured(action: Any) -> dict[str, Any]:
                out.unlink(missing_ok=True)
                server.send_signal(signal.SIGUSR2)
                time.sleep(1.0)  # the server collects and notes every object it has
                action()
                server.send_signal(signal.SIGUSR1)
                wait_until(out.exists, timeout=30)
                time.sleep(0.2)
                return dict(json.loads(out.read_text()))

            if not wait_until(lambda: _connects(port), timeout=30):
                raise RuntimeError(f"the app did not start; see {Path(tmp) / 'server.log'}")
            first = socket.create_connection(("127.0.0.1", port))
            first.sendall(b"GET /incr HTTP/1.1\r\nHost: bench\r\n\r\n")
            head = _answer(first).decode("latin-1").split("\r\n")
            cookie = next(
                line.split(":", 1)[1].split(";")[0].strip()
                for line in head
                if line.lower().startswith("set-cookie:")
            )
            request = _request(args.route, cookie)

            socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(args.waiting)]
            _lockstep(socks, request, 200 * len(socks))  # warm: every connection, every code path

            def hold() -> None:
                redis.client.execute_command("CLIENT", "PAUSE", 2000, args.pause_mode)  # type: ignore[no-untyped-call]
                for sock in socks:
                    sock.sendall(request)
                time.sleep(0.3)  # the server reads them and every one reaches its wait on Redis

            held = measured(hold)
            for sock in socks:
                _answer(sock)
                sock.close()
            n = args.waiting
            total = sum(count for _, count in held["made"])
            print(f"{n} requests waiting on Redis ({args.route}, CLIENT PAUSE {args.pause_mode}):")
            print(
                f"  {total / n:.1f} GC-tracked objects made per request; young-collection count {held['count']}"
            )
            for label, count in held["made"]:
                if count / n >= 0.05:
                    print(f"  {count / n:6.2f}  {label}")

            socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(args.concurrency)]
            _lockstep(socks, request, 20 * len(socks))
            started = time.perf_counter()
            load = measured(lambda: _lockstep(socks, request, args.requests))
            elapsed = time.perf_counter() - started - 1.2
            collections, seconds = load["collections"], load["seconds"]
            print(
                f"lockstep {args.route}, {args.concurrency} connections, {args.requests} requests ({elapsed:.1f} s):"
            )
            print("  collections gen0 / gen1 / gen2: " + " / ".join(str(c) for c in collections))
            print(
                "  ms each: "
                + " / ".join(
                    f"{s * 1000 / c:.1f}" if c else "-" for c, s in zip(collections, seconds, strict=True)
                )
            )
            print(f"  tracked objects in the app: {load['tracked']}")
        finally:
            children.close()
    return 0


def _connects(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


if __name__ == "__main__":
    raise SystemExit(main())
