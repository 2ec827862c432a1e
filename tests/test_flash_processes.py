"""Flash exactly once across processes: two app processes (uvicorn, or gunicorn for Flask)
share one store (Redis, SQLite, PostgreSQL) and many overlapping requests, split between them, all hold
the same queued messages; the store's atomic claim (`FlashClaiming`) lets exactly one
request show each message."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from tests.services import free_port, wait_for_port
from tests.test_sql_store import _drop

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
PARTIES = 8  # overlapping requests per round, half on each process
ROUNDS = 6


@pytest.fixture(params=["redis", "sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, redis_url: str, tmp_path: Path) -> Iterator[str]:
    tag = f"ccflash{secrets.token_hex(4)}"
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'sessions.db'}"
        return
    if request.param == "postgresql":
        url = request.getfixturevalue("postgres_url")
        yield f"{url}{'&' if '?' in url else '?'}table={tag}"
        _drop(url, tag)
        return
    yield f"{redis_url}{'&' if '?' in redis_url else '?'}prefix={tag}:"
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{tag}:*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


SERVERS = {
    "asgi": ["-m", "uvicorn", "tests.apps.flash_app:app", "--no-access-log", "--log-level", "warning"],
    "flask": ["-m", "gunicorn", "-k", "gthread", "--threads", str(PARTIES), "tests.apps.flash_flask:app"],
}


def command(kind: str, port: int) -> list[str]:
    if kind == "asgi":
        return [sys.executable, *SERVERS[kind], "--host", "127.0.0.1", "--port", str(port)]
    return [sys.executable, *SERVERS[kind], "-b", f"127.0.0.1:{port}"]


@pytest.fixture
def two_processes(
    store_url: str, redis_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[list[str]]:
    kind = request.param
    secret = secrets.token_urlsafe(32)
    processes: list[tuple[subprocess.Popen[bytes], Path]] = []
    urls = []
    try:
        for name in ("alpha", "beta"):
            port = free_port()
            log = tmp_path / f"{name}.log"
            env = {
                **os.environ,
                "COATCHECK_TEST_STORE_URL": store_url,
                "COATCHECK_TEST_SECRET": secret,
                "COATCHECK_TEST_BARRIER_URL": redis_url,
            }
            argv = command(kind, port)
            with log.open("wb") as out:
                processes.append(
                    (subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT), log)
                )
            try:
                wait_for_port("127.0.0.1", port, timeout=30)
            except TimeoutError:
                pytest.fail(f"{name} did not start:\n{log.read_text(errors='replace')[-2000:]}")
            urls.append(f"http://127.0.0.1:{port}")
        yield urls
    finally:
        for process, _ in processes:
            process.terminate()
        for process, _ in processes:
            process.wait(timeout=10)


async def overlapping_rounds(urls: list[str], route: str) -> tuple[Counter[str], list[str]]:
    """Queue messages, then show them from PARTIES overlapping requests per round."""
    shown: Counter[str] = Counter()
    queued: list[str] = []
    async with httpx.AsyncClient(timeout=30) as browser:
        for round_no in range(ROUNDS):
            texts = [f"r{round_no}m{i}" for i in range(1 + round_no % 3)]
            queued += texts
            response = await browser.get(f"{urls[round_no % 2]}/add", params=[("m", t) for t in texts])
            assert response.status_code == 200
            gate = f"ccflash-gate:{secrets.token_hex(8)}"
            params = {"gate": gate, "parties": str(PARTIES)}
            responses = await asyncio.gather(
                *(browser.get(f"{urls[i % 2]}{route}", params=params) for i in range(PARTIES))
            )
            assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
            for r in responses:
                shown.update(r.json())
        left = (await browser.get(f"{urls[0]}/pending")).json()
    return shown, left


@pytest.mark.parametrize(
    ("two_processes", "route"),
    [("asgi", "/show"), ("asgi", "/show-async"), ("flask", "/show"), ("flask", "/show-flask")],
    indirect=["two_processes"],
)
def test_each_message_is_shown_exactly_once_across_two_processes(
    two_processes: list[str], route: str
) -> None:
    shown, left = asyncio.run(overlapping_rounds(two_processes, route))
    assert dict(shown) == dict.fromkeys(shown, 1), "a message was shown twice"
    assert sorted(shown) == sorted(f"r{r}m{i}" for r in range(ROUNDS) for i in range(1 + r % 3))
    assert left == [], "every shown message is gone from the store"
