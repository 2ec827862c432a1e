"""A store outage, for real: the Redis server under an ASGI app is killed and restarted.

Requests fail fast with 503 and a clear log line (no session id), and the app recovers by
itself when the server returns, with every session saved before the outage intact.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import time
from typing import Any
from urllib.parse import unquote

import httpx
import pytest
import redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from coatcheck import SessionMiddleware
from coatcheck.crypto import storage_key
from coatcheck.stores import RedisStore
from tests.services import port_open, redis_server, wait_for_port

pytestmark = [pytest.mark.redis, pytest.mark.slow]

FAIL_FAST = 3.0  # seconds: a dead store must not hold a request longer than this


def app_with_store(store: Any, secret: str) -> SessionMiddleware:
    async def read(request: Request) -> PlainTextResponse:
        return PlainTextResponse(str(request.session.get("n", 0)))

    async def incr(request: Request) -> PlainTextResponse:
        request.session["n"] = request.session.get("n", 0) + 1
        return PlainTextResponse(str(request.session["n"]))

    app = Starlette(routes=[Route("/read", read), Route("/incr", incr)])
    return SessionMiddleware(app, secret=secret, store=store)


def kill_redis(port: int) -> None:
    """SIGKILL: no shutdown save, no goodbye to clients. Only the append-only file survives."""
    client = redis.Redis(port=port)
    pid = int(client.info("server")["process_id"])
    client.close()
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while port_open("127.0.0.1", port):
        assert time.monotonic() < deadline, "redis-server did not die"
        time.sleep(0.02)


def restart_redis(port: int, data_dir: str) -> subprocess.Popen[bytes]:
    """The same server again: same port, same data directory, same persistence settings."""
    binary = shutil.which("redis-server")
    assert binary is not None
    argv = [binary, "--bind", "127.0.0.1", "--port", str(port), "--dir", data_dir, "--save", ""]
    argv += ["--appendonly", "yes", "--appendfsync", "always"]
    process = subprocess.Popen(
        argv,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for_port("127.0.0.1", port)
    # it listens before it has replayed its append-only file (it answers LOADING meanwhile,
    # which the store rightly reports as unavailable): back means answering commands
    client = redis.Redis(port=port)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.BusyLoadingError:
            assert time.monotonic() < deadline, "redis-server never finished loading"
            time.sleep(0.02)
    client.close()
    return process


def session_id_of(browser: httpx.AsyncClient) -> str:
    return unquote(browser.cookies["session"]).removeprefix("s:").rsplit(".", 1)[0]


@pytest.mark.parametrize("connection", ["pipelined", "pool"])
async def test_outage_gives_fast_503s_and_the_app_recovers_by_itself(
    caplog: pytest.LogCaptureFixture, secret: str, connection: str
) -> None:
    with redis_server(persistent=True) as (port, data_dir):
        store = RedisStore(f"redis://127.0.0.1:{port}/0", connection=connection, socket_timeout=1)
        app = app_with_store(store, secret)
        transport = httpx.ASGITransport(app=app)
        restarted = None
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as browser:
            try:
                assert (await browser.get("/incr")).text == "1"
                assert (await browser.get("/incr")).text == "2"
                session_id = session_id_of(browser)

                kill_redis(port)
                caplog.clear()
                with caplog.at_level(logging.ERROR, logger="coatcheck"):
                    started = time.monotonic()
                    loading = await browser.get("/read")
                    load_time = time.monotonic() - started
                    async with httpx.AsyncClient(
                        transport=transport, base_url="http://testserver"
                    ) as newcomer:
                        started = time.monotonic()
                        committing = await newcomer.get("/incr")  # no cookie: nothing to load, one write
                        commit_time = time.monotonic() - started

                assert loading.status_code == 503 and load_time < FAIL_FAST
                assert loading.headers["retry-after"] and "set-cookie" not in loading.headers
                assert committing.status_code == 503 and commit_time < FAIL_FAST
                assert "set-cookie" not in committing.headers, "no cookie for a session that was not saved"
                messages = [r.getMessage() for r in caplog.records if r.name == "coatcheck"]
                assert any(
                    "unavailable while loading a session" in m and "ConnectionError" in m for m in messages
                )
                assert any("unavailable while saving a session" in m for m in messages)
                for message in messages:
                    assert session_id not in message and storage_key(session_id) not in message

                restarted = restart_redis(port, data_dir)
                recovered = await browser.get("/read")
                assert recovered.status_code == 200
                assert recovered.text == "2", "the session saved before the outage survived it"
                assert (await browser.get("/incr")).text == "3"
            finally:
                await store.close()
                if restarted is not None:
                    restarted.terminate()
                    restarted.wait(timeout=10)
