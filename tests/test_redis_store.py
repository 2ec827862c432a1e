"""RedisStore against real Redis servers: the shared one (conformance) and private ones
started by the tests (command counts, TLS, outages of a single command)."""

from __future__ import annotations

import asyncio
import datetime
import gc
import ipaddress
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
import types
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import hiredis
import httpx
import pytest
import redis
import redis.asyncio as aredis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from coatcheck import SessionMiddleware
from coatcheck.crypto import storage_key
from coatcheck.errors import ConfigurationError, SessionStoreError
from coatcheck.record import Meta
from coatcheck.stores import RedisStore, from_url
from coatcheck.stores.redis import parse_url
from coatcheck.testing import StoreConformance, make_record, new_key
from tests.services import REDIS_URL, redis_server, require_listening

pytestmark = pytest.mark.redis


# ---- helpers ----------------------------------------------------------------------------------
def shared_redis_url() -> str:
    return require_listening("Redis", REDIS_URL, 6379)


def delete_prefix(url: str, prefix: str) -> None:
    """Remove every key a test class wrote (the shared server outlives the tests)."""
    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=prefix.replace("{", "\\{").replace("}", "\\}") + "*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture(scope="class")
def redis_prefix(request: pytest.FixtureRequest) -> Iterator[str]:
    """A random key prefix for one test class on the shared Redis, cleaned up afterwards."""
    url = shared_redis_url()
    prefix = f"cctest-{secrets.token_hex(4)}:"
    request.cls.url = url
    request.cls.prefix = prefix
    yield prefix
    delete_prefix(url, prefix)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


# ---- conformance: the same suite, three ways of connecting ------------------------------------
@pytest.mark.usefixtures("redis_prefix")
class TestRedisStoreConformance(StoreConformance):
    """The default: coatcheck's pipelined connection (redis:// URL)."""

    url: str
    prefix: str

    async def make_store(self) -> RedisStore:
        return RedisStore(self.url, prefix=self.prefix)


@pytest.mark.usefixtures("redis_prefix")
class TestRedisStorePoolConformance(StoreConformance):
    """connection="pool": redis-py's asyncio connection pool."""

    url: str
    prefix: str

    async def make_store(self) -> RedisStore:
        return RedisStore(self.url, prefix=self.prefix, connection="pool")


@pytest.mark.usefixtures("redis_prefix")
class TestRedisStoreGivenClientConformance(StoreConformance):
    """RedisStore(client=...) with an application-owned redis.asyncio.Redis."""

    url: str
    prefix: str

    async def make_store(self) -> RedisStore:
        self.client = aredis.Redis.from_url(self.url)
        return RedisStore(client=self.client, prefix=self.prefix)

    async def close_store(self, store: Any) -> None:
        await store.close()
        assert await self.client.ping()  # the store left the application's client open
        await self.client.aclose()


class TestRedisStoreUvloopConformance(TestRedisStoreConformance):
    """The pipelined connection on uvloop (what uvicorn uses in production)."""

    def run(self, body: Any) -> None:
        self.runner = pytest.importorskip("uvloop").run
        super().run(body)


# ---- private servers --------------------------------------------------------------------------
@pytest.fixture
def private_redis() -> Iterator[int]:
    """A redis-server of this test's own (its command statistics are ours alone)."""
    with redis_server() as (port, _):
        yield port


class CommandStats:
    """INFO commandstats of a private server, through one connection opened up front (so its
    own handshake is never counted)."""

    def __init__(self, port: int) -> None:
        self.client = redis.Redis(port=port)
        self.client.ping()

    def reset(self) -> None:
        self.client.config_resetstat()

    def calls(self) -> dict[str, int]:
        """Commands the server ran since the last reset, without our INFO/CONFIG."""
        stats = self.client.info("commandstats")
        calls = {name.removeprefix("cmdstat_"): int(row["calls"]) for name, row in stats.items()}
        return {name: n for name, n in calls.items() if name != "info" and not name.startswith("config")}

    def close(self) -> None:
        self.client.close()


def counter_app(store: Any, secret: str) -> Any:
    async def read(request: Request) -> PlainTextResponse:
        return PlainTextResponse(str(request.session.get("n", 0)))

    async def incr(request: Request) -> PlainTextResponse:
        request.session["n"] = request.session.get("n", 0) + 1
        return PlainTextResponse(str(request.session["n"]))

    async def touch(request: Request) -> PlainTextResponse:
        request.session.touch()
        return PlainTextResponse("touched")

    async def first(request: Request) -> PlainTextResponse:
        request.session["user"] = "visitor"
        return PlainTextResponse("ok")

    async def plain(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    app = Starlette(
        routes=[
            Route("/read", read),
            Route("/incr", incr),
            Route("/touch", touch),
            Route("/first", first),
            Route("/plain", plain),
        ]
    )
    return SessionMiddleware(app, secret=secret, store=store)


class CommandCounter:
    """A TCP proxy in front of a Redis server that counts the commands clients send it:
    exactly what crosses the wire, which INFO commandstats cannot tell apart from the
    commands a Lua script runs inside the server."""

    def __init__(self, redis_port: int) -> None:
        self.redis_port = redis_port
        self.sent: list[str] = []
        self.writers: list[asyncio.StreamWriter] = []
        self.tasks: set[asyncio.Task[Any]] = set()

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _client(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.tasks.add(asyncio.current_task())  # type: ignore[arg-type]
        server_r, server_w = await asyncio.open_connection("127.0.0.1", self.redis_port)
        self.writers += [client_w, server_w]
        reader = hiredis.Reader()

        async def upstream() -> None:
            while data := await client_r.read(65536):
                reader.feed(data)
                while (command := reader.gets()) is not False:
                    self.sent.append(command[0].decode().lower())
                server_w.write(data)
            server_w.close()

        async def downstream() -> None:
            while data := await server_r.read(65536):
                client_w.write(data)
            client_w.close()

        await asyncio.gather(upstream(), downstream(), return_exceptions=True)

    def take(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for name in self.sent:
            counts[name] = counts.get(name, 0) + 1
        self.sent = []
        return counts

    async def stop(self) -> None:
        self.server.close()
        for writer in self.writers:
            writer.close()
        await asyncio.gather(*self.tasks, return_exceptions=True)


@pytest.mark.parametrize("connection", ["pipelined", "pool"])
async def test_each_request_costs_one_command_per_store_operation(
    private_redis: int, secret: str, connection: str
) -> None:
    rounds = 20
    stats = CommandStats(private_redis)
    counter = CommandCounter(private_redis)
    proxy_port = await counter.start()
    app = counter_app(RedisStore(f"redis://127.0.0.1:{proxy_port}/0", connection=connection), secret)
    transport = httpx.ASGITransport(app=app)
    # what each route sends, and the top-level commands Redis runs (the scripts' inner calls aside)
    expected = {
        "/read": {"hgetall": rounds},  # load only: no write, no Set-Cookie
        "/incr": {"hgetall": rounds, "evalsha": rounds},  # load + one delta commit
        "/touch": {"hgetall": rounds, "evalsha": rounds},  # load + one touch
        # the middleware loads a session whose cookie arrives, even if the handler ignores it
        "/plain": {"hgetall": rounds},
    }
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as browser:
        # warm-up: connect, and load each Lua script on this fresh server (NOSCRIPT, then EVAL)
        assert (await browser.get("/first")).status_code == 200
        await browser.get("/incr")
        await browser.get("/touch")
        for path, commands in expected.items():
            counter.take()
            stats.reset()
            for _ in range(rounds):
                response = await browser.get(path)
                assert response.status_code == 200
                if path == "/read":
                    assert "set-cookie" not in response.headers
            assert counter.take() == commands, path
            server_side = stats.calls()
            assert {
                c: server_side.get(c, 0) for c in ("hgetall", "evalsha", "eval") if c in server_side
            } == commands
    counter.take()
    stats.reset()
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as anonymous:
        for _ in range(rounds):
            response = await anonymous.get("/plain")
            assert response.status_code == 200 and "set-cookie" not in response.headers
    assert counter.take() == {} and stats.calls() == {}, "no cookie, no session use: no command"
    for _ in range(rounds):
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as newcomer:
            response = await newcomer.get("/first")
            assert response.status_code == 200 and "set-cookie" in response.headers
    assert counter.take() == {"evalsha": rounds}, "a first visit = one write, no read"
    assert stats.calls().get("evalsha") == rounds
    await app.store.close()
    await counter.stop()
    stats.close()


async def test_ttl_is_native_and_touch_moves_it(private_redis: int) -> None:
    client = redis.Redis(port=private_redis)
    store = RedisStore(f"redis://127.0.0.1:{private_redis}/0")
    key = new_key()
    record = make_record({"n": 1}, ttl=100)
    await store.set(key, record)
    assert 99_000 < client.pttl(f"coatcheck:s:{key}") <= 100_000

    later = time.time()
    await store.touch(key, Meta(created=record.meta.created, last_seen=later, idle_deadline=later + 600))
    assert 599_000 < client.pttl(f"coatcheck:s:{key}") <= 600_000

    await store.patch(key, {"n": 2}, (), Meta(created=later, last_seen=later, idle_deadline=later + 50))
    assert 49_000 < client.pttl(f"coatcheck:s:{key}") <= 50_000

    forever = new_key()
    await store.set(forever, _no_deadline_record())
    assert client.pttl(f"coatcheck:s:{forever}") == -1
    got = await store.get(forever)
    assert got is not None and got.data == {"keep": True}
    await store.close()
    client.close()


def _no_deadline_record() -> Any:
    record = make_record({"keep": True})
    record.meta.idle_deadline = record.meta.absolute_deadline = None
    return record


async def test_user_sets_expire_no_earlier_than_their_longest_member(private_redis: int) -> None:
    client = redis.Redis(port=private_redis)
    store = RedisStore(f"redis://127.0.0.1:{private_redis}/0")
    short, long_ = new_key(), new_key()
    await store.set(short, make_record(user_id="ada", ttl=10))
    await store.set(long_, make_record(user_id="ada", ttl=1000))
    members_ttl = max(client.pttl(f"coatcheck:s:{short}"), client.pttl(f"coatcheck:s:{long_}"))
    assert client.pttl("coatcheck:u:ada") >= members_ttl
    assert client.smembers("coatcheck:u:ada") == {short.encode(), long_.encode()}

    # rebinding moves the key between sets; the emptied set disappears
    await store.set(short, make_record(user_id="bob", ttl=10))
    await store.destroy(long_)
    assert client.exists("coatcheck:u:ada") == 0
    assert client.smembers("coatcheck:u:bob") == {short.encode()}

    # a session without any deadline keeps its user's set forever
    endless = _no_deadline_record()
    endless.meta.user_id = "bob"
    await store.set(long_, endless)
    assert client.pttl("coatcheck:u:bob") == -1
    await store.close()
    client.close()


async def test_a_record_already_past_its_deadline_is_never_written(private_redis: int) -> None:
    client = redis.Redis(port=private_redis)
    store = RedisStore(f"redis://127.0.0.1:{private_redis}/0")
    key = new_key()
    await store.set(key, make_record({"n": 1}, ttl=-5, user_id="ghost"))
    assert client.exists(f"coatcheck:s:{key}") == 0
    assert client.exists("coatcheck:u:ghost") == 0
    await store.close()
    client.close()


async def test_get_checks_the_deadline_itself(private_redis: int) -> None:
    """Redis has not reaped the record yet (TTL still running) but its metadata says it is dead."""
    clock = [time.time()]
    store = RedisStore(f"redis://127.0.0.1:{private_redis}/0", clock=lambda: clock[0])
    key = new_key()
    await store.set(key, make_record({"n": 1}, ttl=30, now=clock[0]))
    assert await store.get(key) is not None
    clock[0] += 31  # the app's clock passes the deadline; Redis's TTL still runs
    assert await store.get(key) is None
    await store.close()


async def test_long_records_are_written_in_slices(private_redis: int) -> None:
    """Thousands of top-level keys: the Lua scripts slice their HSET/HDEL argument lists."""
    store = RedisStore(f"redis://127.0.0.1:{private_redis}/0")
    key = new_key()
    data = {f"k{i}": i for i in range(3000)}
    record = make_record(data)
    await store.set(key, record)
    changed = {f"k{i}": -i for i in range(2500)}
    removed = {f"k{i}" for i in range(2500, 3000)}
    assert await store.patch(key, changed, removed, record.meta)
    got = await store.get(key)
    assert got is not None and got.data == changed
    await store.close()


async def test_scripts_are_reloaded_after_the_server_forgets_them(private_redis: int) -> None:
    client = redis.Redis(port=private_redis)
    store = RedisStore(f"redis://127.0.0.1:{private_redis}/0")
    key = new_key()
    await store.set(key, make_record({"n": 1}))
    client.script_flush()
    assert await store.patch(key, {"n": 2}, (), make_record().meta)
    got = await store.get(key)
    assert got is not None and got.data == {"n": 2}
    await store.close()
    client.close()


async def test_pipelined_replies_stay_in_order_when_callers_give_up(private_redis: int) -> None:
    """Cancelled callers must not shift the replies of the others on the shared connection."""
    store = RedisStore(f"redis://127.0.0.1:{private_redis}/0")
    keys = [new_key() for _ in range(300)]
    await asyncio.gather(
        *(store.set(k, make_record({"i": i, "pad": "x" * (i * 50)})) for i, k in enumerate(keys))
    )

    async def read(i: int) -> Any:
        if i % 3 == 0:
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(store.get(keys[i]), 0)
            return None
        got = await store.get(keys[i])
        return got.data["i"] if got else "missing"

    results = await asyncio.gather(*(read(i) for i in range(len(keys))))
    assert [r for i, r in enumerate(results) if i % 3] == [i for i in range(len(keys)) if i % 3]
    assert (await store.get(keys[0])).data["i"] == 0  # type: ignore[union-attr]
    await store.close()


# ---- the existing-client, prefix and URL options ----------------------------------------------
async def test_prefix_option_and_url_prefix(private_redis: int) -> None:
    client = redis.Redis(port=private_redis)
    url = f"redis://127.0.0.1:{private_redis}/0"
    key = new_key()
    for store, prefix in [
        (RedisStore(url, prefix="app1:"), "app1:"),
        (from_url(url + "?prefix=app2:"), "app2:"),
        (RedisStore(url + "?prefix=ignored:", prefix="app3:"), "app3:"),
    ]:
        assert isinstance(store, RedisStore) and store.prefix == prefix
        await store.set(key, make_record({"p": prefix}))
        assert client.exists(f"{prefix}s:{key}") == 1
        await store.close()
    # each prefix: the session and its hint index, nothing else
    assert sorted(k.decode() for k in client.keys("*")) == [
        f"{p}:{rest}" for p in ("app1", "app2", "app3") for rest in ("hints", f"s:{key}")
    ]
    client.close()


async def test_accepts_an_existing_client_and_leaves_it_open(private_redis: int) -> None:
    client = aredis.Redis(port=private_redis)
    store = RedisStore(client=client, prefix="given:")
    key = new_key()
    await store.set(key, make_record({"n": 1}))
    assert await client.exists(f"given:s:{key}") == 1
    await store.close()
    assert await client.ping()
    await client.aclose()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: RedisStore(client=redis.Redis()), "redis.asyncio client"),
        (lambda: RedisStore(client=aredis.Redis(decode_responses=True)), "decode_responses=False"),
        (lambda: RedisStore("redis://localhost/0", client=aredis.Redis()), "not both"),
        (lambda: RedisStore(client=aredis.Redis(), socket_timeout=1), "client's own connection settings"),
        (lambda: RedisStore("redis://localhost/0", connection="magic"), "'pipelined' or 'pool'"),  # type: ignore[arg-type]
        (lambda: RedisStore("redis://localhost/0", socket_timeout=0), "positive number of seconds"),
        (lambda: RedisStore("redis://localhost/0?client_name=my app"), "must not contain spaces"),
    ],
)
def test_bad_arguments_are_configuration_errors(make: Any, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        make()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://", dict(kind="standalone", nodes=(("localhost", 6379),), db=0)),
        ("redis://cache.internal", dict(nodes=(("cache.internal", 6379),), db=0, password=None)),
        ("redis://:s3cret@10.0.0.1:6380/2", dict(nodes=(("10.0.0.1", 6380),), db=2, password="s3cret")),
        ("redis://app:p%40ss@h/0", dict(username="app", password="p@ss")),
        ("redis://h/?db=4", dict(db=4)),
        ("redis://[::1]:6390/1", dict(nodes=(("::1", 6390),), db=1)),
        ("rediss://h:6380/0?ssl_cert_reqs=none", dict(tls=True, nodes=(("h", 6380),))),
        ("REDIS://h/0?prefix=app:", dict(options={"prefix": "app:"})),
        (
            "redis+cluster://a:7000,b:7001,c",
            dict(kind="cluster", nodes=(("a", 7000), ("b", 7001), ("c", 6379))),
        ),
        (
            "redis+sentinel://s1:26380,s2/mymaster?db=3",
            dict(kind="sentinel", nodes=(("s1", 26380), ("s2", 26379)), service="mymaster", db=3),
        ),
    ],
)
def test_url_forms(url: str, expected: dict[str, Any]) -> None:
    parsed = parse_url(url)
    for name, value in expected.items():
        assert getattr(parsed, name) == value, name


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis://h:port/0", "port 'port'.*whole number"),
        ("redis://h:70000/0", "out of range"),
        ("redis://h/zero", "database number 'zero'"),
        ("redis://h/1?db=2", "database twice"),
        ("redis://a:1,b:2/0", "several servers.*redis\\+cluster"),
        ("redis+cluster://a:7000/2", "only database 0"),
        ("redis+cluster:///", "names no server"),
        ("redis+sentinel://s:26379", "Sentinel service name"),
        ("redis://h/0?colour=blue", "unknown option 'colour'.*known options"),
        ("redis://h/0?ssl_cert_reqs=none", "TLS options need rediss://"),
        ("rediss://h/0?ssl_cert_reqs=maybe", "none, optional or required"),
        ("rediss://h/0?ssl_ca_certs=/nonexistent/ca.pem", "no such file"),
        ("rediss://h/0?ssl_check_hostname=perhaps", "true or false"),
        ("redis://h/0?socket_timeout=soon", "number of seconds"),
        ("redis://h/0?socket_timeout=-1", "positive"),
        ("redis://h/0?connection=magic", "'pipelined' or 'pool'"),
        ("redis://h/0?max_connections=0", "at least 1"),
        ("redis+mongo://h/0", "unknown store URL scheme"),
    ],
)
def test_bad_urls_are_configuration_errors(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        from_url(url)


def test_passwords_never_appear_in_errors_or_repr() -> None:
    with pytest.raises(ConfigurationError) as info:
        from_url("redis://admin:topsecret@h:port/0")
    assert "topsecret" not in str(info.value) and "***" in str(info.value)
    store = from_url("redis://admin:topsecret@h:6379/0")
    assert "topsecret" not in repr(store) and "***" in repr(store)


def test_missing_redis_package_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['redis'] = None\n"
        "from coatcheck.errors import ConfigurationError\n"
        "from coatcheck.stores import RedisStore, from_url\n"
        "for make in (lambda: from_url('redis://localhost/0'), lambda: RedisStore('redis://localhost/0')):\n"
        "    try:\n"
        "        make()\n"
        "    except ConfigurationError as exc:\n"
        "        print(exc)\n"
        "print(type(from_url('memory://')).__name__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    lines = out.stdout.splitlines()
    assert lines[:2] == ["this store needs the 'redis' package: pip install 'coatcheck[redis]'"] * 2
    assert lines[2] == "MemoryStore", "other stores keep working without redis installed"


# ---- failures: mapped to SessionStoreError, fast, without keys, and recovered from -----------
@pytest.mark.parametrize("connection", ["pipelined", "pool"])
async def test_a_dead_server_fails_fast(connection: str) -> None:
    from tests.services import free_port

    store = RedisStore(f"redis://127.0.0.1:{free_port()}/0", connection=connection)
    key = new_key()
    started = time.monotonic()
    with pytest.raises(SessionStoreError, match="could not load a session: ConnectionError") as info:
        await store.get(key)
    assert time.monotonic() - started < 1.0
    assert key not in str(info.value)
    with pytest.raises(SessionStoreError, match="could not save a session"):
        await store.set(key, make_record())
    await store.close()


@pytest.mark.parametrize("connection", ["pipelined", "pool"])
async def test_a_hung_server_times_out_and_the_store_recovers(private_redis: int, connection: str) -> None:
    pid = _server_pid(private_redis)
    store = RedisStore(f"redis://127.0.0.1:{private_redis}/0", socket_timeout=0.5, connection=connection)
    key = new_key()
    await store.set(key, make_record({"n": 1}))
    os.kill(pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        with pytest.raises(SessionStoreError, match="could not load a session: TimeoutError") as info:
            await store.get(key)
        assert 0.4 < time.monotonic() - started < 2.0
        assert key not in str(info.value)
    finally:
        os.kill(pid, signal.SIGCONT)
    got = await store.get(key)
    assert got is not None and got.data == {"n": 1}
    await store.close()


def _server_pid(port: int) -> int:
    client = redis.Redis(port=port)
    try:
        return int(client.info("server")["process_id"])
    finally:
        client.close()


async def test_server_errors_become_store_errors_without_the_key(private_redis: int) -> None:
    client = redis.Redis(port=private_redis)
    store = RedisStore(f"redis://127.0.0.1:{private_redis}/0")
    key = new_key()
    client.set(f"coatcheck:s:{key}", "not a hash")
    with pytest.raises(SessionStoreError, match="ResponseError: WRONGTYPE") as info:
        await store.get(key)
    assert key not in str(info.value)
    with pytest.raises(SessionStoreError) as info:
        await store.patch(key, {"n": 1}, (), make_record().meta)
    assert key not in str(info.value)

    corrupt = new_key()
    client.hset(f"coatcheck:s:{corrupt}", mapping={".n": "1"})  # no metadata field
    with pytest.raises(SessionStoreError, match="corrupt session record") as info:
        await store.get(corrupt)
    assert corrupt not in str(info.value)
    await store.close()
    client.close()


# ---- processes and event loops ------------------------------------------------------------------
def test_one_store_serves_several_event_loops_in_turn(private_redis: int) -> None:
    store = RedisStore(f"redis://127.0.0.1:{private_redis}/0")
    key = new_key()
    run(store.set(key, make_record({"n": 1})))
    assert run(store.get(key)).data == {"n": 1}
    run(store.patch(key, {"n": 2}, (), make_record().meta))
    assert run(store.get(key)).data == {"n": 2}


def test_connections_of_finished_event_loops_are_let_go(private_redis: int) -> None:
    store = RedisStore(f"redis://127.0.0.1:{private_redis}/0?client_name=loops")
    key = new_key()
    run(store.set(key, make_record({"n": 0})))
    for n in range(1, 6):  # each asyncio.run() is a new loop, closed afterwards
        run(store.patch(key, {"n": n}, (), make_record().meta))
    gc.collect()
    admin = redis.Redis(port=private_redis)
    deadline = time.monotonic() + 5
    while (count := sum(1 for c in admin.client_list() if c["name"] == "loops")) > 1:
        assert time.monotonic() < deadline, f"{count} connections still open"
        time.sleep(0.05)
    admin.close()
    assert run(store.get(key)).data == {"n": 5}


def test_threads_with_their_own_loops_share_one_store(private_redis: int) -> None:
    """E.g. a WSGI server's background loop next to an ASGI one: never a crossed connection."""
    store = RedisStore(f"redis://127.0.0.1:{private_redis}/0")
    errors: list[BaseException] = []

    def worker(tag: int) -> None:
        async def main() -> None:
            for i in range(200):
                key = new_key()
                await store.set(key, make_record({"tag": tag, "i": i}))
                got = await store.get(key)
                assert got is not None and got.data == {"tag": tag, "i": i}
            await store.close()

        try:
            asyncio.run(main())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []


def test_a_store_built_before_fork_works_in_the_child(private_redis: int) -> None:
    store = RedisStore(f"redis://127.0.0.1:{private_redis}/0")
    key = new_key()
    run(store.set(key, make_record({"who": "parent"})))  # the parent has a connection now
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        try:

            async def in_child() -> bytes:
                got = await store.get(key)
                assert got is not None and got.data == {"who": "parent"}
                assert await store.patch(key, {"who": "child"}, (), got.meta)
                await store.close()
                return b"ok"

            os.write(write_end, run(in_child()))
        except BaseException as exc:
            os.write(write_end, repr(exc).encode()[:500])
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        result = pipe.read()
    os.waitpid(child, 0)
    assert result == b"ok"
    assert run(store.get(key)).data == {"who": "child"}  # the parent's own connection still works


# ---- TLS ---------------------------------------------------------------------------------------
def _tls_files(directory: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1 (cryptography is a core dependency)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "coatcheck test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_path, cert_path, key_path = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return ca_path, cert_path, key_path


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A private redis-server that also listens with TLS: yields (TLS port, CA file)."""
    from tests.services import free_port, wait_for_port

    ca, cert, key = _tls_files(tmp_path)
    tls_port = free_port()
    extra = ("--tls-port", str(tls_port), "--tls-cert-file", str(cert), "--tls-key-file", str(key))
    extra += ("--tls-ca-cert-file", str(ca), "--tls-auth-clients", "no")
    with redis_server(extra=extra):
        wait_for_port("127.0.0.1", tls_port)
        yield tls_port, ca


@pytest.mark.parametrize("connection", ["pipelined", "pool"])
async def test_rediss_talks_tls_and_verifies_the_server(tls_redis: tuple[int, Path], connection: str) -> None:
    port, ca = tls_redis
    store = RedisStore(f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={ca}&connection={connection}")
    key = new_key()
    await store.set(key, make_record({"secure": True}))
    got = await store.get(key)
    assert got is not None and got.data == {"secure": True}
    await store.close()

    untrusting = RedisStore(f"rediss://127.0.0.1:{port}/0?connection={connection}")  # system CAs only
    with pytest.raises(SessionStoreError, match="could not load a session"):
        await untrusting.get(key)
    await untrusting.close()


async def test_sessions_are_stored_under_the_hash_of_the_id(private_redis: int, secret: str) -> None:
    """End to end: the Redis key is the storage key, never the id from the cookie."""
    client = redis.Redis(port=private_redis)
    app = counter_app(f"redis://127.0.0.1:{private_redis}/0", secret)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as browser:
        await browser.get("/first")
        signed = browser.cookies["session"]
    session_id = unquote(signed).removeprefix("s:").rsplit(".", 1)[0]
    keys = [k.decode() for k in client.keys("coatcheck:s:*")]
    assert keys == [f"coatcheck:s:{storage_key(session_id)}"]
    assert all(session_id not in k for k in keys)
    await app.store.close()
    client.close()


@pytest.fixture
def secured_redis() -> Iterator[int]:
    """A private redis-server that wants a password, with an ACL user "app" as well."""
    extra = ("--requirepass", "default-pw", "--user", "app", "on", ">app-pw", "~*", "&*", "+@all")
    with redis_server(extra=extra) as (port, _):
        yield port


@pytest.mark.parametrize("connection", ["pipelined", "pool"])
@pytest.mark.parametrize("credentials", [":default-pw", "app:app-pw"])
async def test_auth_database_and_client_name_reach_the_server(
    secured_redis: int, connection: str, credentials: str
) -> None:
    port = secured_redis
    store = RedisStore(f"redis://{credentials}@127.0.0.1:{port}/3?client_name=shop&connection={connection}")
    key = new_key()
    await store.set(key, make_record({"n": 1}))
    got = await store.get(key)
    assert got is not None and got.data == {"n": 1}
    admin = redis.Redis(port=port, password="default-pw", db=3)
    assert admin.exists(f"coatcheck:s:{key}") == 1, "written to database 3"
    names = {c["name"] for c in admin.client_list()}
    assert "shop" in names
    admin.close()
    await store.close()


@pytest.mark.parametrize("connection", ["pipelined", "pool"])
async def test_a_wrong_password_is_a_store_error_not_a_hang(secured_redis: int, connection: str) -> None:
    store = RedisStore(f"redis://:wrong@127.0.0.1:{secured_redis}/0", connection=connection)
    started = time.monotonic()
    with pytest.raises(SessionStoreError, match="could not load a session") as info:
        await store.get(new_key())
    assert time.monotonic() - started < 1.0
    assert "wrong" not in str(info.value).replace("WRONGPASS", "")
    await store.close()


# ---- the pipelined connection: retries and back-pressure --------------------------------------
async def test_a_pipeline_on_a_connection_the_server_dropped_is_retried_once(private_redis: int) -> None:
    from coatcheck.stores._redis_io import Endpoint, PipelinedConnection

    conn = PipelinedConnection(Endpoint("127.0.0.1", private_redis), socket_timeout=2, connect_timeout=2)
    key = f"coatcheck-test:{secrets.token_hex(8)}"
    try:
        assert await conn.execute("PING") == b"PONG"
        killer = redis.Redis(port=private_redis)
        try:  # the loop does not run in between: the connection cannot know it is dead
            assert killer.client_kill_filter(_type="normal", skipme=True) >= 1
        finally:
            killer.close()
        assert await conn.pipeline([("SET", key, "1"), ("GET", key)]) == [b"OK", b"1"]
    finally:
        await conn.close()


async def test_commands_waiting_on_a_dropped_connection_get_their_own_replies(private_redis: int) -> None:
    """The retry happens under the futures the callers already await: each gets its own reply."""
    from coatcheck.stores._redis_io import Endpoint, PipelinedConnection

    conn = PipelinedConnection(Endpoint("127.0.0.1", private_redis), socket_timeout=2, connect_timeout=2)
    keys = [f"coatcheck-test:{secrets.token_hex(8)}" for _ in range(20)]
    try:
        await conn.pipeline([("SET", key, str(i)) for i, key in enumerate(keys)])
        killer = redis.Redis(port=private_redis)
        try:  # the loop does not run in between: the connection cannot know it is dead
            assert killer.client_kill_filter(_type="normal", skipme=True) >= 1
        finally:
            killer.close()
        replies = await asyncio.gather(*(conn.execute("GET", key) for key in keys))
        assert replies == [str(i).encode() for i in range(len(keys))]
        assert await conn.execute("DEL", *keys) == len(keys)
    finally:
        await conn.close()


def _ours(obj: object) -> str | None:
    """What `obj` is, if coatcheck made it: a coroutine of one of its functions or an instance
    of one of its classes."""
    kind = type(obj)  # not isinstance: a lazy object (Django's settings) would set itself up
    if kind is types.CoroutineType:
        code = obj.cr_code  # type: ignore[attr-defined]
        return code.co_qualname if "coatcheck" in Path(code.co_filename).parts else None
    module = kind.__dict__.get("__module__")  # not a str for a few built-in types
    return kind.__qualname__ if isinstance(module, str) and module.startswith("coatcheck.") else None


async def test_a_request_waiting_on_redis_holds_few_objects_of_ours(private_redis: int, secret: str) -> None:
    """What a request holds while it waits on Redis is alive at every young collection of the
    garbage collector and gets promoted; with many requests in flight that ends in full
    collections, the latency tail of benchmarks/SCALE.md. Ours, per waiting request: the
    middleware's coroutine, the runtime's two, the store's, and the request's facts."""

    async def inner(scope: dict[str, Any], receive: Any, send: Any) -> None:
        session = scope["session"]
        if scope["path"] == "/incr":
            session["n"] = session.get("n", 0) + 1
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": str(session.get("n", 0)).encode()})

    app = SessionMiddleware(inner, secret=secret, store=f"redis://127.0.0.1:{private_redis}/0")
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    def call(path: str, cookie: bytes | None = None) -> Any:
        headers = [(b"cookie", cookie)] if cookie else []
        return app(
            {"type": "http", "method": "GET", "scheme": "http", "path": path, "headers": headers},
            receive,
            send,
        )

    await call("/incr")
    cookie = dict(sent[0]["headers"])[b"set-cookie"].split(b";")[0]
    await call("/read", cookie)  # the connection is open: what follows only waits on replies
    sent.clear()
    before = {id(obj) for obj in gc.get_objects() if _ours(obj)}
    waiting = 16
    pid = _server_pid(private_redis)
    os.kill(pid, signal.SIGSTOP)
    try:
        calls = [asyncio.ensure_future(call("/read", cookie)) for _ in range(waiting)]
        for _ in range(5):  # a few turns of the loop: every request reaches its wait on Redis
            await asyncio.sleep(0)
        assert not any(c.done() for c in calls)
        held = Counter(name for obj in gc.get_objects() if id(obj) not in before and (name := _ours(obj)))
    finally:
        os.kill(pid, signal.SIGCONT)
    await asyncio.gather(*calls)
    assert [m["status"] for m in sent if m["type"] == "http.response.start"] == [200] * waiting
    assert sum(held.values()) <= 5 * waiting, held
    await app.manager.close()


async def test_commands_wait_while_the_transport_is_paused(private_redis: int) -> None:
    from coatcheck.stores._redis_io import Endpoint, PipelinedConnection

    conn = PipelinedConnection(Endpoint("127.0.0.1", private_redis), socket_timeout=2, connect_timeout=2)
    try:
        assert await conn.execute("PING") == b"PONG"
        protocol = conn._protocol
        assert protocol is not None
        protocol.pause_writing()  # what the transport calls above its high-water mark
        waiting = [
            asyncio.ensure_future(conn.execute("PING")),
            asyncio.ensure_future(conn.pipeline([("PING",)])),
        ]
        cancelled = asyncio.ensure_future(conn.execute("PING"))
        for _ in range(5):
            await asyncio.sleep(0)
        assert not protocol._pending and not protocol._outgoing  # nothing was queued while paused
        assert not any(f.done() for f in waiting)
        cancelled.cancel()  # one waiter giving up must not release or fail the others
        for _ in range(5):
            await asyncio.sleep(0)
        assert not any(f.done() for f in waiting)
        protocol.resume_writing()
        assert await asyncio.gather(*waiting) == [b"PONG", [b"PONG"]]
    finally:
        await conn.close()
