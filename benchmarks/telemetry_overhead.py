"""What `coatcheck[otel]` costs per request when the API is installed but no SDK is set up.

Runs the ASGI middleware in-process (no HTTP, no server) over a MemoryStore, so the store
call is as cheap as it gets and the span wrapper's share is as large as it gets; compares
`telemetry.ENABLED` on and off in the same process, interleaved, best of several runs.
Usage: ``python -m benchmarks.telemetry_overhead [requests]``.
"""

from __future__ import annotations

import asyncio
import sys
import time
import timeit
from typing import Any

from coatcheck import SessionMiddleware, telemetry
from coatcheck.stores import MemoryStore

SECRET = "bench-secret-" + "4f1c9a7e2d8b6c3a5e0f7d9b1a2c4e6f"


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    session = scope["session"]
    session["n"] = session.get("n", 0) + 1
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def run(requests: int) -> float:
    middleware = SessionMiddleware(app, secret=SECRET, store=MemoryStore())
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    scope: dict[str, Any] = {"type": "http", "path": "/", "scheme": "http", "headers": []}
    await middleware(dict(scope), receive, send)  # first request: learn the cookie
    cookie = next(v for n, v in sent[0]["headers"] if n == b"set-cookie").split(b";")[0]
    headers = [(b"cookie", cookie)]
    start = time.perf_counter()
    for _ in range(requests):  # each request: one get and one patch on the store
        await middleware({**scope, "headers": headers}, receive, send)
        sent.clear()
    return (time.perf_counter() - start) / requests


def main() -> None:
    requests = int(sys.argv[1]) if len(sys.argv) > 1 else 2_000
    installed = telemetry.ENABLED
    best = {True: float("inf"), False: float("inf")}
    for _ in range(25):  # many short interleaved runs: the minimum filters a busy machine
        for enabled in (False, True):
            telemetry.ENABLED = enabled and installed
            best[enabled] = min(best[enabled], asyncio.run(run(requests)))
    off, on = best[False] * 1e6, best[True] * 1e6
    print(f"opentelemetry-api installed: {installed}")
    print(f"per request, telemetry off: {off:.1f} us; on (no SDK): {on:.1f} us; overhead {on - off:.1f} us")
    if installed:
        telemetry.ENABLED = True
        check = timeit.timeit(lambda: telemetry.wrap("loading a session", None, None), number=200_000)  # type: ignore[arg-type]
        print(f"the check per store call (no SDK): {check / 200_000 * 1e9:.0f} ns")
        from opentelemetry import metrics, trace
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider

        trace.set_tracer_provider(TracerProvider())  # spans recorded, exported nowhere
        metrics.set_meter_provider(MeterProvider(metric_readers=[InMemoryMetricReader()]))
        telemetry.refresh()
        sdk = min(asyncio.run(run(requests)) for _ in range(25)) * 1e6
        print(f"per request with the SDK (spans + metrics, no exporter): {sdk:.1f} us (+{sdk - off:.1f} us)")


if __name__ == "__main__":
    main()
