"""Two app processes, one shared store: a session started on one instance is read and changed
on the other, over real HTTP (uvicorn subprocesses running tests/apps/counter_app.py).

Parametrized over stores: to add one, put an entry in STORES naming the conftest fixture that
yields its server URL, how to turn that into a store URL private to this test, and how to
delete what the test wrote.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis

from tests.services import free_port, wait_for_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent


def _with_option(url: str, option: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}{option}"


def _redis_cleanup(server_url: str, store_url: str, tag: str) -> None:
    client = redis.Redis.from_url(server_url)
    try:
        keys = list(client.scan_iter(match=f"{tag}:*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def _sql_cleanup(server_url: str, store_url: str, tag: str) -> None:
    from coatcheck.stores import SQLStore

    async def drop() -> None:
        store = SQLStore(server_url, table=tag, create_table=False)
        try:
            await store.drop_table()
        finally:
            await store.close()

    asyncio.run(drop())


@dataclass(frozen=True)
class SharedStore:
    """How to point both instances at one store of a kind, privately for one test."""

    server_fixture: str  # a fixture in tests/conftest.py that yields the server's URL
    store_url: Callable[[str, str], str]  # (server URL, unique tag) -> store URL
    cleanup: Callable[[str, str, str], None]  # (server URL, store URL, tag) -> None


STORES = {
    "redis": SharedStore(
        server_fixture="redis_url",
        store_url=lambda server, tag: _with_option(server, f"prefix={tag}:"),
        cleanup=_redis_cleanup,
    ),
    # both instances create the (private) table on first use, concurrently: race-safe
    "postgresql": SharedStore(
        server_fixture="postgres_url",
        store_url=lambda server, tag: _with_option(server, f"table={tag}"),
        cleanup=_sql_cleanup,
    ),
}


@pytest.fixture(params=sorted(STORES))
def shared_store_url(request: pytest.FixtureRequest) -> Iterator[str]:
    kind = STORES[request.param]
    server = request.getfixturevalue(kind.server_fixture)
    tag = f"ccmulti{secrets.token_hex(4)}"
    url = kind.store_url(server, tag)
    yield url
    kind.cleanup(server, url, tag)


@dataclass
class Instance:
    name: str
    base_url: str
    process: subprocess.Popen[bytes]
    log: Path

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-2000:]


@pytest.fixture
def two_instances(shared_store_url: str, tmp_path: Path) -> Iterator[tuple[Instance, Instance]]:
    secret = secrets.token_urlsafe(32)
    instances = []
    try:
        for name in ("alpha", "beta"):
            port = free_port()
            log = tmp_path / f"{name}.log"
            env = {
                **os.environ,
                "COATCHECK_TEST_STORE_URL": shared_store_url,
                "COATCHECK_TEST_SECRET": secret,
                "COATCHECK_TEST_INSTANCE": name,
            }
            argv = [sys.executable, "-m", "uvicorn", "tests.apps.counter_app:app", "--host", "127.0.0.1"]
            argv += ["--port", str(port), "--no-access-log", "--log-level", "warning"]
            with log.open("wb") as out:
                process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
            instance = Instance(name, f"http://127.0.0.1:{port}", process, log)
            instances.append(instance)
            try:
                wait_for_port("127.0.0.1", port, timeout=30)
            except TimeoutError:
                pytest.fail(f"instance {name} did not start:\n{instance.log_tail()}")
        yield instances[0], instances[1]
    finally:
        for instance in instances:
            instance.process.terminate()
        for instance in instances:
            instance.process.wait(timeout=10)


def test_a_session_started_on_one_instance_is_read_and_changed_on_the_other(
    two_instances: tuple[Instance, Instance],
) -> None:
    alpha, beta = two_instances
    with httpx.Client(timeout=10) as browser:  # one cookie jar: cookies are not bound to ports
        started = browser.get(f"{alpha.base_url}/incr").json()
        assert started == {"instance": "alpha", "new": True, "n": 1, "seen_by": ["alpha"], "marks": {}}
        assert "session" in browser.cookies

        read = browser.get(f"{beta.base_url}/read").json()
        assert read["instance"] == "beta" and read["new"] is False
        assert read["n"] == 1 and read["seen_by"] == ["alpha"], "beta reads what alpha saved"

        changed = browser.get(f"{beta.base_url}/incr").json()
        assert changed["n"] == 2 and changed["seen_by"] == ["alpha", "beta"]

        back = browser.get(f"{alpha.base_url}/read").json()
        assert back["instance"] == "alpha" and back["n"] == 2 and back["seen_by"] == ["alpha", "beta"]


def test_concurrent_changes_to_different_keys_on_both_instances_all_survive(
    two_instances: tuple[Instance, Instance],
) -> None:
    alpha, beta = two_instances

    async def main() -> None:
        async with httpx.AsyncClient(timeout=10) as browser:
            assert (await browser.get(f"{alpha.base_url}/incr")).status_code == 200
            names = [f"m{i}" for i in range(24)]
            responses = await asyncio.gather(
                *(browser.get(f"{(alpha, beta)[i % 2].base_url}/mark/{name}") for i, name in enumerate(names))
            )
            assert all(r.status_code == 200 for r in responses)
            final = (await browser.get(f"{beta.base_url}/read")).json()
            assert final["marks"] == {name: ("alpha", "beta")[i % 2] for i, name in enumerate(names)}
            assert final["n"] == 1

    asyncio.run(main())
