"""Real gunicorn, several worker processes, one real Redis: every worker serves the same
sessions and no increment is lost or duplicated (sync and gthread workers, Flask and plain
WSGI, and a --preload'ed master that used the store before forking).

Each session's requests go to chosen workers in turn (every worker also listens on a port of
its own), so sharing between workers is proven by construction, whatever the kernel does."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from coatcheck.stores import RedisStore
from tests.services import free_port, wait_for_port

pytestmark = [pytest.mark.redis, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent


NAMED_WORKERS = str(ROOT / "tests" / "apps" / "gunicorn_named_workers.py")


@dataclass(frozen=True)
class Server:
    """A running gunicorn: `shared` is the port every worker accepts on; `workers[k]` is the
    base URL only worker k+1 accepts on (tests/apps/gunicorn_named_workers.py)."""

    shared: str
    workers: list[str]


@contextmanager
def gunicorn(
    app: str, store_url: str, workers: int, *args: str, env: dict[str, str] | None = None
) -> Iterator[Server]:
    """Serve `app` with `workers` gunicorn workers, each also on a loopback port of its own."""
    ports = [free_port() for _ in range(workers + 1)]
    environment = {
        **os.environ,
        "COATCHECK_TEST_SECRET": secrets.token_urlsafe(32),
        "COATCHECK_TEST_STORE": store_url,
        **(env or {}),
    }
    binds = [arg for port in ports for arg in ("--bind", f"127.0.0.1:{port}")]
    command = [sys.executable, "-m", "gunicorn", "-c", NAMED_WORKERS, *binds, "-w", str(workers)]
    proc = subprocess.Popen(
        [*command, "--log-level", "warning", *args, app],
        cwd=ROOT,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        try:
            for port in ports:
                wait_for_port("127.0.0.1", port, timeout=30)
        except TimeoutError:
            proc.kill()
            output = proc.communicate(timeout=10)[0].decode(errors="replace")
            pytest.fail(f"gunicorn did not start:\n{output}")
        urls = [f"http://127.0.0.1:{port}" for port in ports]
        yield Server(shared=urls[0], workers=urls[1:])
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture
def store_url(redis_url: str) -> Iterator[str]:
    """The shared Redis with a prefix of this test's own; its keys are deleted afterwards."""
    prefix = f"cc-gunicorn-{secrets.token_hex(4)}:"
    separator = "&" if "?" in redis_url else "?"
    yield f"{redis_url}{separator}prefix={prefix}"

    async def cleanup() -> None:
        import redis.asyncio as redis

        client = redis.Redis.from_url(redis_url)
        try:
            keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
            if keys:
                await client.delete(*keys)
        finally:
            await client.aclose()

    asyncio.run(cleanup())


Trace = list[tuple[int, int, int]]  # per request: (worker index, counter seen, pid that answered)


def drive(server: Server, clients: int, requests_each: int) -> list[Trace]:
    """`clients` browsers in parallel, each with its own session, each making `requests_each`
    increments one after another; request i of every client goes to worker i mod W, so each
    session is handed from worker to worker on every request by construction."""
    traces: list[Trace] = [[] for _ in range(clients)]
    errors: list[BaseException] = []

    def browser(index: int) -> None:
        jar = httpx.Cookies()
        try:
            for i in range(requests_each):
                worker = (index + i) % len(server.workers)
                with httpx.Client(base_url=server.workers[worker], cookies=jar, timeout=30) as client:
                    response = client.get("/incr")
                    response.raise_for_status()
                    jar = client.cookies
                body = response.json()
                traces[index].append((worker, body["n"], body["pid"]))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=browser, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    return traces


def assert_shared_without_loss(traces: list[Trace], requests_each: int, workers: int) -> None:
    """Every session counted 1..N in order although consecutive requests were answered by
    different worker processes: each worker saw what the previous one wrote."""
    for trace in traces:
        assert [n for _, n, _ in trace] == list(range(1, requests_each + 1))  # nothing lost or doubled
    pid_of_worker: dict[int, set[int]] = {}
    for trace in traces:
        for worker, _, pid in trace:
            pid_of_worker.setdefault(worker, set()).add(pid)
    # each worker port was answered by one process, and the W ports by W different processes
    assert all(len(pids) == 1 for pids in pid_of_worker.values()), pid_of_worker
    assert len(set().union(*pid_of_worker.values())) == workers == len(pid_of_worker)


@pytest.mark.parametrize(
    ("app", "worker_args", "clients"),
    [
        ("tests.apps.flask_gunicorn:app", ["-k", "sync"], 6),
        ("tests.apps.flask_gunicorn:app", ["-k", "gthread", "--threads", "4"], 12),
        ("tests.apps.wsgi_gunicorn:app", ["-k", "sync"], 6),
        ("tests.apps.wsgi_gunicorn:app", ["-k", "gthread", "--threads", "4"], 12),
    ],
    ids=["flask-sync", "flask-gthread", "wsgi-sync", "wsgi-gthread"],
)
def test_workers_share_sessions_without_losing_an_increment(
    store_url: str, app: str, worker_args: list[str], clients: int
) -> None:
    with gunicorn(app, store_url, 3, *worker_args) as server:
        traces = drive(server, clients=clients, requests_each=30)
    assert_shared_without_loss(traces, 30, workers=3)


@pytest.mark.parametrize("worker", ["sync", "gthread"])
def test_preloaded_master_that_used_the_store_forks_safe_workers(store_url: str, worker: str) -> None:
    """The master serves a request at import (event loop + Redis connection) before forking."""
    args = ["-k", worker, "--preload"] + (["--threads", "4"] if worker == "gthread" else [])
    with gunicorn(
        "tests.apps.flask_gunicorn:app", store_url, 3, *args, env={"COATCHECK_TEST_WARMUP": "1"}
    ) as server:
        traces = drive(server, clients=6, requests_each=20)
    assert_shared_without_loss(traces, 20, workers=3)


def test_sessions_written_by_gunicorn_are_readable_by_another_process(store_url: str) -> None:
    """Several processes share one store: what the workers wrote, a RedisStore elsewhere reads."""
    with gunicorn("tests.apps.flask_gunicorn:app", store_url, 2, "-k", "sync") as server:
        drive(server, clients=3, requests_each=5)

    async def count() -> int:
        store = RedisStore(store_url)
        try:
            return await store.count()  # no waiting: every commit finished before its response
        finally:
            await store.close()

    assert asyncio.run(count()) == 3
