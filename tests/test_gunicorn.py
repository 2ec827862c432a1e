"""Real gunicorn, several worker processes, one real Redis: every worker serves the same
sessions and no increment is lost or duplicated (sync and gthread workers, Flask and plain
WSGI, and a --preload'ed master that used the store before forking)."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from coatcheck.stores import RedisStore
from tests.services import free_port, wait_for_port

pytestmark = [pytest.mark.redis, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent


@contextmanager
def gunicorn(app: str, store_url: str, *args: str, env: dict[str, str] | None = None) -> Iterator[str]:
    """Serve `app` with gunicorn on a free loopback port; yields the base URL."""
    port = free_port()
    environment = {
        **os.environ,
        "COATCHECK_TEST_SECRET": secrets.token_urlsafe(32),
        "COATCHECK_TEST_STORE": store_url,
        **(env or {}),
    }
    command = [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--log-level", "warning"]
    proc = subprocess.Popen(
        [*command, *args, app], cwd=ROOT, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        try:
            wait_for_port("127.0.0.1", port, timeout=30)
        except TimeoutError:
            proc.kill()
            output = proc.communicate(timeout=10)[0].decode(errors="replace")
            pytest.fail(f"gunicorn did not start:\n{output}")
        yield f"http://127.0.0.1:{port}"
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


def drive(base: str, clients: int, requests_each: int) -> list[tuple[list[int], set[int]]]:
    """`clients` browsers in parallel, each with its own session, each making `requests_each`
    increments one after another (a new connection every time, so any worker may answer).
    Returns, per client, the counters it saw and the worker pids that served it."""
    results: list[tuple[list[int], set[int]]] = [([], set()) for _ in range(clients)]
    errors: list[BaseException] = []

    def browser(index: int) -> None:
        seen, pids = results[index]
        try:
            with httpx.Client(base_url=base, headers={"Connection": "close"}, timeout=30) as client:
                for _ in range(requests_each):
                    response = client.get("/incr")
                    response.raise_for_status()
                    body = response.json()
                    seen.append(body["n"])
                    pids.add(body["pid"])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=browser, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    return results


def assert_consistent(results: list[tuple[list[int], set[int]]], requests_each: int, workers: int) -> None:
    for seen, _ in results:
        assert seen == list(range(1, requests_each + 1))  # nothing lost, nothing counted twice
    all_pids = set().union(*(pids for _, pids in results))
    # The kernel decides which worker accepts each connection, so not every one of `workers`
    # is guaranteed a request; several must have served, and sessions must have moved.
    assert 2 <= len(all_pids) <= workers
    assert any(len(pids) > 1 for _, pids in results)  # sessions moved between workers


@pytest.mark.parametrize(
    ("app", "worker_args", "clients"),
    [
        ("tests.apps.flask_gunicorn:app", ["-w", "3", "-k", "sync"], 6),
        ("tests.apps.flask_gunicorn:app", ["-w", "3", "-k", "gthread", "--threads", "4"], 12),
        ("tests.apps.wsgi_gunicorn:app", ["-w", "3", "-k", "sync"], 6),
        ("tests.apps.wsgi_gunicorn:app", ["-w", "3", "-k", "gthread", "--threads", "4"], 12),
    ],
    ids=["flask-sync", "flask-gthread", "wsgi-sync", "wsgi-gthread"],
)
def test_workers_share_sessions_without_losing_an_increment(
    store_url: str, app: str, worker_args: list[str], clients: int
) -> None:
    with gunicorn(app, store_url, *worker_args) as base:
        results = drive(base, clients=clients, requests_each=30)
    assert_consistent(results, 30, workers=3)


@pytest.mark.parametrize("worker", ["sync", "gthread"])
def test_preloaded_master_that_used_the_store_forks_safe_workers(store_url: str, worker: str) -> None:
    """The master serves a request at import (event loop + Redis connection) before forking."""
    args = ["-w", "3", "-k", worker, "--preload"] + (["--threads", "4"] if worker == "gthread" else [])
    with gunicorn(
        "tests.apps.flask_gunicorn:app", store_url, *args, env={"COATCHECK_TEST_WARMUP": "1"}
    ) as base:
        results = drive(base, clients=6, requests_each=20)
    assert_consistent(results, 20, workers=3)


def test_sessions_written_by_gunicorn_are_readable_by_another_process(store_url: str) -> None:
    """Several processes share one store: what the workers wrote, a RedisStore elsewhere reads."""
    with gunicorn("tests.apps.flask_gunicorn:app", store_url, "-w", "2", "-k", "sync") as base:
        drive(base, clients=3, requests_each=5)

    async def count() -> int:
        store = RedisStore(store_url)
        try:
            return await store.count()  # no waiting: every commit finished before its response
        finally:
            await store.close()

    assert asyncio.run(count()) == 3
