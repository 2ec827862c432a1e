"""RedisStore through Redis Sentinel: a master, a replica and a sentinel started by this module."""

from __future__ import annotations

import asyncio
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

from coatcheck.stores import RedisStore, from_url
from coatcheck.testing import StoreConformance, make_record, new_key
from tests.services import free_port, unavailable, wait_for_port

pytestmark = [pytest.mark.redis, pytest.mark.slow]

SERVICE = "coatcheck-master"


@dataclass
class SentinelSetup:
    sentinel_port: int
    master_port: int
    replica_port: int

    def url(self, prefix: str) -> str:
        return f"redis+sentinel://127.0.0.1:{self.sentinel_port}/{SERVICE}?db=0&prefix={prefix}"


def poll(condition: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            result = condition()
        except redis.RedisError:
            result = None
        if result:
            return result
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


def sentinel_client(setup: SentinelSetup) -> redis.Redis:
    return redis.Redis(port=setup.sentinel_port, decode_responses=True, socket_timeout=2)


def current_master_port(setup: SentinelSetup) -> int | None:
    client = sentinel_client(setup)
    try:
        reply = client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE)
    finally:
        client.close()
    return int(reply[1]) if reply else None


@pytest.fixture(scope="module")
def sentinel_setup() -> Iterator[SentinelSetup]:
    """Master and replica redis-servers plus one sentinel (quorum 1) on free ports."""
    server = shutil.which("redis-server")
    if server is None:
        unavailable("redis-server", "the binary is not installed (apt-get install redis-server)")
    ports: list[int] = []
    while len(ports) < 3:
        if (port := free_port()) not in ports:
            ports.append(port)
    master, replica, sentinel = ports
    processes: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="coatcheck-sentinel-") as tmp:

        def start(*argv: str) -> None:
            processes.append(
                subprocess.Popen([server, *argv], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            )

        try:
            for port in (master, replica):
                data = Path(tmp) / str(port)
                data.mkdir()
                extra = ("--replicaof", "127.0.0.1", str(master)) if port == replica else ()
                start("--bind", "127.0.0.1", "--port", str(port), "--dir", str(data), "--save", "", *extra)
            conf = Path(tmp) / "sentinel.conf"  # sentinel rewrites its file: it must be writable
            conf.write_text(
                f"bind 127.0.0.1\nport {sentinel}\ndir {tmp}\n"
                f"sentinel monitor {SERVICE} 127.0.0.1 {master} 1\n"
                f"sentinel down-after-milliseconds {SERVICE} 2000\n"
                f"sentinel failover-timeout {SERVICE} 10000\n"
            )
            start(str(conf), "--sentinel")
            for port in (master, replica, sentinel):
                wait_for_port("127.0.0.1", port)
            setup = SentinelSetup(sentinel_port=sentinel, master_port=master, replica_port=replica)
            poll(lambda: current_master_port(setup) == master, "the sentinel to report the master")
            yield setup
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                process.wait(timeout=10)


class TestRedisSentinelConformance(StoreConformance):
    prefix = f"ccsen-{secrets.token_hex(4)}:"

    @pytest.fixture(autouse=True)
    def _sentinel(self, sentinel_setup: SentinelSetup) -> None:
        self.setup = sentinel_setup

    async def make_store(self) -> RedisStore:
        store = from_url(self.setup.url(self.prefix))
        assert isinstance(store, RedisStore)
        return store


def test_the_store_follows_a_failover(sentinel_setup: SentinelSetup) -> None:
    """Sessions written before a failover are read and updated on the promoted replica,
    with no reconfiguration: Sentinel tells the store where the master went."""
    setup = sentinel_setup
    prefix = f"ccfail-{secrets.token_hex(4)}:"
    key = new_key()
    old_master = current_master_port(setup)
    assert old_master is not None
    new_master = setup.replica_port if old_master == setup.master_port else setup.master_port

    async def main() -> None:
        store = RedisStore(setup.url(prefix), socket_timeout=1)
        await store.set(key, make_record({"n": 1}))
        replica = redis.Redis(port=new_master)
        poll(lambda: replica.exists(f"{prefix}s:{key}"), "the session to reach the replica")
        sentinel = sentinel_client(setup)
        poll(lambda: sentinel.execute_command("SENTINEL", "FAILOVER", SERVICE), "sentinel to accept FAILOVER")
        poll(lambda: current_master_port(setup) == new_master, "the failover to finish")
        poll(lambda: replica.info("replication")["role"] == "master", "the replica to be promoted")
        # Until Sentinel demotes the old master it still accepts writes, which it drops when
        # it resyncs from the new one (Redis's own caveat: replication is asynchronous).
        demoted = redis.Redis(port=old_master)
        poll(lambda: demoted.info("replication")["role"] == "slave", "the old master to be demoted")

        # the store's pooled connection still points at the demoted master: its next write
        # meets READONLY, and the store must move to the new master by itself, at once
        assert await store.patch(key, {"n": 2}, (), make_record().meta)
        got = await store.get(key)
        assert got is not None and got.data == {"n": 2}
        assert replica.hget(f"{prefix}s:{key}", ".n") == b"2", "the write landed on the promoted replica"
        await store.destroy(key)
        await store.close()
        replica.close()
        demoted.close()
        sentinel.close()

    asyncio.run(main())
