"""The direct path of WSGI threads: RedisStore's blocking twin (`stores/_redis_sync.py`)
against a real Redis. What it writes the async store reads and vice versa; a dead or silent
server is a SessionStoreError (503 through Flask); a connection the server dropped is
replaced once; a forked child opens its own connection and leaves the parent's alone."""

from __future__ import annotations

import asyncio
import gc
import os
import secrets
import subprocess
import sys
import threading
import warnings
from collections.abc import Iterator

import pytest
import redis

from coatcheck.errors import SessionStoreError
from coatcheck.flask import Session as FlaskSessionExtension
from coatcheck.record import Meta, Record
from coatcheck.stores import RedisStore
from coatcheck.stores.base import SyncTwin
from tests.services import REDIS_URL, free_port, silent_server

pytestmark = pytest.mark.redis

NOW = 1_900_000_000.0


def clock() -> float:
    return NOW


@pytest.fixture
def store() -> Iterator[RedisStore]:
    prefix = f"coatcheck-test-wsgisync-{secrets.token_hex(4)}:"
    store = RedisStore(REDIS_URL, prefix=prefix, clock=clock)
    yield store
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=prefix + "*"))
    if keys:
        client.delete(*keys)
    client.close()
    asyncio.run(store.close())


def twin_of(store: RedisStore, timeout: float | None = 5.0) -> SyncTwin:
    twin = store.sync_twin(timeout)
    assert twin is not None
    return twin


def meta(user: str | None = None) -> Meta:
    return Meta(
        created=NOW, last_seen=NOW, idle_deadline=NOW + 600, absolute_deadline=NOW + 3600, user_id=user
    )


def client_id(twin: SyncTwin) -> int:
    """The server's id for this thread's connection (opened by a first command if needed)."""
    twin.get("nothing")
    return int(twin._execute("CLIENT", "ID"))  # type: ignore[attr-defined]


def test_written_by_the_twin_read_by_the_async_store_and_back(store: RedisStore) -> None:
    twin = twin_of(store)
    twin.set("k1", Record(data={"n": 1, "cart": ["a"]}, meta=meta("ann")))
    assert asyncio.run(store.get("k1")) == Record(data={"n": 1, "cart": ["a"]}, meta=meta("ann"))
    assert [info.storage_key for info in asyncio.run(store.sessions_for("ann"))] == ["k1"]  # the index too

    asyncio.run(store.set("k2", Record(data={"x": "y"}, meta=meta())))
    assert twin.get("k2") == Record(data={"x": "y"}, meta=meta())

    assert twin.patch("k2", {"x": "z", "n": 2}, ["gone"], meta()) is True
    assert asyncio.run(store.get("k2")) == Record(data={"x": "z", "n": 2}, meta=meta())
    assert twin.patch("never-written", {"x": 1}, [], meta()) is False
    assert asyncio.run(store.get("never-written")) is None  # a patch never resurrects

    later = Meta(created=NOW, last_seen=NOW + 5, idle_deadline=NOW + 605, absolute_deadline=NOW + 3600)
    twin.touch("k2", later)
    assert asyncio.run(store.get("k2")) == Record(data={"x": "z", "n": 2}, meta=later)

    twin.destroy("k1")
    assert asyncio.run(store.get("k1")) is None
    assert asyncio.run(store.sessions_for("ann")) == []


def test_an_unreachable_server_is_a_store_error() -> None:
    store = RedisStore(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    with pytest.raises(SessionStoreError, match="could not load a session"):
        twin_of(store).get("k")


def test_a_silent_server_is_a_store_error_within_the_store_timeout() -> None:
    with silent_server() as port:
        store = RedisStore(f"redis://127.0.0.1:{port}/0", socket_timeout=60)
        with pytest.raises(SessionStoreError, match=r"did not answer within 0\.2s"):
            twin_of(store, timeout=0.2).get("k")  # the smaller of the two timeouts applies


def test_a_connection_the_server_dropped_is_replaced_once(store: RedisStore) -> None:
    twin = twin_of(store)
    twin.set("k", Record(data={"n": 1}, meta=meta()))
    first = client_id(twin)
    killer = redis.Redis.from_url(REDIS_URL)
    try:
        assert killer.client_kill_filter(_id=first) == 1
    finally:
        killer.close()
    assert twin.get("k") == Record(data={"n": 1}, meta=meta())  # retried on a new connection
    assert client_id(twin) != first


def test_a_forked_child_opens_its_own_connection(store: RedisStore) -> None:
    twin = twin_of(store)
    twin.set("k", Record(data={"n": 1}, meta=meta()))
    parent = client_id(twin)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its connection's id and whether it read the record
        try:
            ok = twin.get("k") == Record(data={"n": 1}, meta=meta())
            os.write(write, f"{int(ok)} {client_id(twin)}".encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        ok, child = pipe.read().split()
    os.waitpid(pid, 0)
    assert ok == "1"
    assert int(child) != parent
    assert twin.get("k") == Record(data={"n": 1}, meta=meta())  # the parent's still works
    assert client_id(twin) == parent


FLASK_DIRECT = """
import secrets, sys
import flask
from coatcheck.flask import Session
from coatcheck.stores import RedisStore

app = flask.Flask(__name__)
app.secret_key = secrets.token_urlsafe(32)
live = RedisStore(sys.argv[1], prefix=sys.argv[2])
Session(app, store=live)

@app.get("/incr")
def incr() -> str:
    flask.session["n"] = flask.session.get("n", 0) + 1
    return str(flask.session["n"])

client = app.test_client()
print([client.get("/incr").text for _ in range(3)], len(live._connections._by_loop))
"""


def test_flask_uses_the_direct_path(store: RedisStore) -> None:
    """In a fresh process: an OpenTelemetry SDK that another test set up globally in this
    one would (rightly) send the store calls through the bridge."""
    pytest.importorskip("flask")
    run = subprocess.run(
        [sys.executable, "-c", FLASK_DIRECT, REDIS_URL, store.prefix],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    # three increments, and no event loop took part (no connection opened for one)
    assert run.stdout.split("\n")[-2] == "['1', '2', '3'] 0"


def test_flask_answers_503_when_the_server_is_unreachable() -> None:
    flask = pytest.importorskip("flask")
    app = flask.Flask(__name__)
    app.secret_key = secrets.token_urlsafe(32)
    app.config["SESSION_STORE"] = f"redis://127.0.0.1:{free_port()}/0"
    FlaskSessionExtension(app)

    @app.get("/incr")
    def incr() -> str:
        flask.session["n"] = 1
        return "ok"

    client = app.test_client()
    assert client.get("/incr").status_code == 503


def test_connections_left_behind_close_their_sockets(store: RedisStore) -> None:
    """A thread that ends, or a store that is let go, leaves its connection to garbage
    collection: the socket is closed then, never reported unclosed (a ResourceWarning, an
    error under `-W error`, as Flask-Login's own suite runs)."""
    twin = store.sync_twin(None)
    assert twin is not None
    gc.collect()  # what earlier tests left behind is theirs: collected (and reported) first
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        worker = threading.Thread(target=twin.get, args=("k",))
        worker.start()
        worker.join()
        assert twin.get("k") is None  # and one on this thread, dropped with the twin
        del twin, worker
        gc.collect()
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []
