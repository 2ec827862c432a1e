"""MemcachedStore against a real memcached started by the tests on a free loopback port."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from coatcheck.codec import JSONSerializer
from coatcheck.errors import ConfigurationError, SessionStoreError
from coatcheck.stores import Inventory, MemcachedStore, PatchingStore, UserIndex
from coatcheck.stores.memcached import THIRTY_DAYS, memcached_exptime
from coatcheck.testing import StoreConformance, make_record, new_key
from tests.services import free_port, unavailable, wait_for_port

pytestmark = pytest.mark.memcached

DAY = 86400


class Memcached:
    """A private memcached process (`-U 0`: TCP only) that a test can stop and restart."""

    def __init__(self) -> None:
        binary = shutil.which("memcached") or "/usr/bin/memcached"
        if not os.access(binary, os.X_OK):
            unavailable("memcached", "the binary is not installed (apt-get install memcached)")
        self.binary = binary
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        args = [self.binary, "-l", "127.0.0.1", "-p", str(self.port), "-U", "0"]
        if os.geteuid() == 0:
            args += ["-u", "root"]  # memcached refuses to run as root without naming a user
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for_port("127.0.0.1", self.port)
        except TimeoutError as exc:
            self.stop()
            unavailable("memcached", str(exc))

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None

    def command(self, line: bytes) -> bytes:
        """One raw text-protocol command, answered by the server itself (for checking what it holds)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
            sock.sendall(line)
            reply = b""
            while not reply.endswith(b"\r\n"):
                reply += sock.recv(65536)
            if reply.startswith(b"VA "):  # a value follows its header: read all of it
                size = int(reply.split(b"\r\n", 1)[0].split()[1])
                while len(reply.split(b"\r\n", 1)[1]) < size + 2:
                    reply += sock.recv(65536)
            return reply


@pytest.fixture(scope="module")
def memcached() -> Iterator[Memcached]:
    server = Memcached()
    server.start()
    yield server
    server.stop()


class TestMemcachedStoreConformance(StoreConformance):
    @pytest.fixture(autouse=True)
    def _server(self, memcached: Memcached) -> None:
        self.port = memcached.port

    async def make_store(self) -> MemcachedStore:
        return MemcachedStore("127.0.0.1", self.port)


# ---- expiry: memcached's 30-day rule ----------------------------------------------------------
def test_exptime_is_relative_up_to_thirty_days_and_absolute_beyond() -> None:
    now = 1_800_000_000.25
    assert memcached_exptime(None, now) == 0
    assert memcached_exptime(now - 1, now) is None
    assert memcached_exptime(now, now) is None
    assert memcached_exptime(now + 0.5, now) == 1  # rounded up: never dropped early
    assert memcached_exptime(now + 3600, now) == 3600
    assert memcached_exptime(now + THIRTY_DAYS, now) == THIRTY_DAYS
    beyond = memcached_exptime(now + THIRTY_DAYS + 1, now)
    assert beyond == 1_800_000_000 + THIRTY_DAYS + 2  # ceil(absolute deadline)
    assert memcached_exptime(now + 40 * DAY, now) == int(now) + 1 + 40 * DAY


def _remaining_ttl(memcached: Memcached, item: bytes) -> int:
    reply = memcached.command(b"mg " + item + b" t\r\n")  # meta get: remaining seconds
    assert reply.startswith(b"HD "), reply
    return int(reply.split()[1][1:])


async def test_a_forty_day_session_is_stored_with_an_absolute_expiry(memcached: Memcached) -> None:
    store = MemcachedStore("127.0.0.1", memcached.port)
    try:
        key = new_key()
        record = make_record({"remember": "me"}, ttl=40 * DAY)
        record.meta.absolute_deadline = None
        await store.set(key, record)
        # sent as a relative 3,456,000 s, memcached would read it as a 1970 timestamp and drop it
        got = await store.get(key)
        assert got is not None and got.data == {"remember": "me"}
        ttl = _remaining_ttl(memcached, f"coatcheck:{key}".encode())
        assert 40 * DAY - 5 <= ttl <= 40 * DAY + 3  # ceil, plus memcached's clock ticking in whole seconds
        # patches and touches keep computing it the same way
        later = make_record(ttl=45 * DAY).meta
        later.absolute_deadline = None
        assert await store.patch(key, {"n": 1}, (), later)
        assert 45 * DAY - 5 <= _remaining_ttl(memcached, f"coatcheck:{key}".encode()) <= 45 * DAY + 3
    finally:
        await store.close()


async def test_a_short_session_gets_a_relative_expiry(memcached: Memcached) -> None:
    store = MemcachedStore("127.0.0.1", memcached.port, prefix="short:")
    try:
        key = new_key()
        await store.set(key, make_record(ttl=3600))
        assert 3595 <= _remaining_ttl(memcached, f"short:{key}".encode()) <= 3603
    finally:
        await store.close()


async def test_memcached_itself_drops_the_item_at_the_deadline(memcached: Memcached) -> None:
    store = MemcachedStore("127.0.0.1", memcached.port)
    try:
        key = new_key()
        await store.set(key, make_record(ttl=1.2))
        item = f"coatcheck:{key}".encode()
        assert memcached.command(b"mg " + item + b"\r\n").startswith(b"HD")
        deadline = time.monotonic() + 10
        while memcached.command(b"mg " + item + b"\r\n").startswith(b"HD"):
            assert time.monotonic() < deadline, "memcached never expired the item"
            await asyncio.sleep(0.1)
        assert await store.get(key) is None
    finally:
        await store.close()


# ---- CAS ----------------------------------------------------------------------------------
class InterferingSerializer(JSONSerializer):
    """Encodes like the default serializer; when armed, another client rewrites the item
    (a plain `set`, which changes its CAS token) between the store's `gets` and its `cas`."""

    def __init__(self, memcached: Memcached, item: bytes) -> None:
        self.memcached, self.item, self.times = memcached, item, 0

    def dumps(self, value: Any) -> bytes:
        blob = super().dumps(value)
        if self.times and isinstance(value, dict) and "meta" in value:
            self.times -= 1
            reply = self.memcached.command(b"mg " + self.item + b" v\r\n")
            current = reply.split(b"\r\n", 1)[1][:-2]
            stored = self.memcached.command(b"set %s 0 600 %d\r\n%s\r\n" % (self.item, len(current), current))
            assert stored == b"STORED\r\n"
        return blob


async def test_patch_retries_when_another_writer_wins_the_cas(memcached: Memcached) -> None:
    key = new_key()
    serializer = InterferingSerializer(memcached, f"coatcheck:{key}".encode())
    store = MemcachedStore("127.0.0.1", memcached.port, serializer=serializer, cas_retries=3)
    try:
        record = make_record({"a": 1})
        await store.set(key, record)
        serializer.times = 2  # the first two CAS writes lose, the third wins
        assert await store.patch(key, {"b": 2}, (), record.meta) is True
        assert serializer.times == 0
        got = await store.get(key)
        assert got is not None and got.data == {"a": 1, "b": 2}
    finally:
        await store.close()


async def test_patch_gives_up_after_the_configured_cas_retries(memcached: Memcached) -> None:
    key = new_key()
    serializer = InterferingSerializer(memcached, f"coatcheck:{key}".encode())
    store = MemcachedStore("127.0.0.1", memcached.port, serializer=serializer, cas_retries=3)
    try:
        record = make_record({"a": 1})
        await store.set(key, record)
        serializer.times = 100
        with pytest.raises(SessionStoreError, match="gave up after 3 CAS retries"):
            await store.patch(key, {"b": 2}, (), record.meta)
        assert serializer.times == 97  # exactly three attempts
        got = await store.get(key)
        assert got is not None and got.data == {"a": 1}  # the lost patch wrote nothing
    finally:
        await store.close()


async def test_concurrent_patches_from_two_clients_all_survive(memcached: Memcached) -> None:
    a = MemcachedStore("127.0.0.1", memcached.port)
    b = MemcachedStore("127.0.0.1", memcached.port)
    try:
        key, record = new_key(), make_record({"base": 0})
        await a.set(key, record)
        results = await asyncio.gather(
            *((a if i % 2 else b).patch(key, {f"k{i}": i}, (), record.meta) for i in range(30))
        )
        assert all(results)
        got = await a.get(key)
        assert got is not None and got.data == {"base": 0, **{f"k{i}": i for i in range(30)}}
    finally:
        await a.close()
        await b.close()


# ---- capabilities and configuration ----------------------------------------------------------
def test_no_user_index_and_no_inventory() -> None:
    store = MemcachedStore("127.0.0.1", 11211)
    assert isinstance(store, PatchingStore)
    assert not isinstance(store, UserIndex)
    assert not isinstance(store, Inventory)


async def test_keys_are_prefixed_and_limited_to_250_bytes(memcached: Memcached) -> None:
    store = MemcachedStore("127.0.0.1", memcached.port, prefix="app1:")
    try:
        key = new_key()
        await store.set(key, make_record({"n": 1}))
        assert memcached.command(f"mg app1:{key}\r\n".encode()).startswith(b"HD")
        assert memcached.command(f"mg coatcheck:{key}\r\n".encode()).startswith(b"EN")
        long_key = "k" * (250 - len("app1:"))
        await store.set(long_key, make_record({"n": 2}))
        got = await store.get(long_key)
        assert got is not None and got.data == {"n": 2}
        for bad in (long_key + "k", "has space", "ünïcode"):
            with pytest.raises(SessionStoreError, match="not a valid memcached key"):
                await store.get(bad)
    finally:
        await store.close()


@pytest.mark.parametrize("prefix", ["has space", "tab\t", "x" * 101, "ü:"])
def test_bad_prefixes_are_refused(prefix: str) -> None:
    with pytest.raises(ConfigurationError, match="prefix"):
        MemcachedStore(prefix=prefix)


def test_bad_numbers_are_refused() -> None:
    for kwargs in ({"timeout": 0}, {"cas_retries": 0}, {"pool_size": 0}, {"port": 70000}):
        with pytest.raises(ConfigurationError):
            MemcachedStore(**kwargs)  # type: ignore[arg-type]


async def test_an_existing_client_is_used_and_left_open(memcached: Memcached) -> None:
    import aiomcache

    client = aiomcache.Client("127.0.0.1", memcached.port)
    store = MemcachedStore(client=client)
    try:
        key = new_key()
        await store.set(key, make_record({"n": 1}))
        await store.close()
        assert await client.get(f"coatcheck:{key}".encode()) is not None
    finally:
        await client.close()


# ---- failure ----------------------------------------------------------------------------------
async def test_a_closed_port_fails_fast_with_a_store_error() -> None:
    store = MemcachedStore("127.0.0.1", free_port(), timeout=2.0)
    try:
        for op in (store.get(new_key()), store.set(new_key(), make_record()), store.destroy(new_key())):
            started = time.monotonic()
            with pytest.raises(SessionStoreError, match="memcached store"):
                await op
            assert time.monotonic() - started < 1.0
    finally:
        await store.close()


class DelayProxy:
    """A loopback TCP proxy in front of memcached whose replies can be held back."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.delay = 0.0
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection("127.0.0.1", self.target_port)

        async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delayed: bool) -> None:
            with contextlib.suppress(OSError):
                while data := await reader.read(65536):
                    if delayed and self.delay:
                        await asyncio.sleep(self.delay)
                    writer.write(data)
                    await writer.drain()
            writer.close()

        await asyncio.gather(pipe(client_r, server_w, False), pipe(server_r, client_w, True))


async def test_a_slow_server_times_out_and_its_late_reply_is_never_read_as_another_answer(
    memcached: Memcached,
) -> None:
    proxy = DelayProxy(memcached.port)
    await proxy.start()
    store = MemcachedStore("127.0.0.1", proxy.port, timeout=0.3, pool_size=1)
    try:
        first, second = new_key(), new_key()
        await store.set(first, make_record({"who": "first"}))
        await store.set(second, make_record({"who": "second"}))
        proxy.delay = 1.5
        started = time.monotonic()
        with pytest.raises(SessionStoreError, match=r"timed out after 0\.3s"):
            await store.get(first)
        assert time.monotonic() - started < 1.2
        proxy.delay = 0.0
        # the reply for `first` is still on its way: a reused connection would hand it to us
        got = await store.get(second)
        assert got is not None and got.data == {"who": "second"}
    finally:
        await store.close()
        await proxy.close()


async def test_store_fails_fast_while_memcached_is_down_and_recovers_by_itself() -> None:
    server = Memcached()
    server.start()
    store = MemcachedStore("127.0.0.1", server.port, timeout=2.0)
    try:
        key = new_key()
        await store.set(key, make_record({"n": 1}))
        server.stop()
        for _ in range(3):
            started = time.monotonic()
            with pytest.raises(SessionStoreError):
                await store.get(key)
            assert time.monotonic() - started < 1.0
        server.start()  # same port; memcached keeps nothing across restarts
        deadline = time.monotonic() + 10
        while True:
            try:
                await store.set(key, make_record({"n": 2}))
                break
            except SessionStoreError:
                assert time.monotonic() < deadline, "the store never reconnected"
        got = await store.get(key)
        assert got is not None and got.data == {"n": 2}
    finally:
        await store.close()
        server.stop()
