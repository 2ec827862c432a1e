"""RedisStore on a real Redis Cluster: three masters started from redis-server by this module."""

from __future__ import annotations

import asyncio
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.asyncio.cluster import ClusterNode, RedisCluster

from coatcheck.errors import SessionStoreError
from coatcheck.stores import RedisStore, from_url
from coatcheck.testing import StoreConformance, make_record, new_key
from tests.services import free_port, unavailable, wait_for_port

pytestmark = [pytest.mark.redis, pytest.mark.slow]

MASTERS = 3


def distinct_free_ports(count: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


def cluster_state(port: int) -> str:
    client = redis.Redis(port=port, socket_timeout=2)
    try:
        info = client.execute_command("CLUSTER INFO")
    except redis.RedisError:
        return "unreachable"
    finally:
        client.close()
    if isinstance(info, dict):  # redis-py parses the reply
        return str(info.get("cluster_state", "unknown"))
    text = info.decode() if isinstance(info, bytes) else str(info)
    for line in text.splitlines():
        if line.startswith("cluster_state:"):
            return line.split(":", 1)[1].strip()
    return "unknown"


@dataclass
class Cluster:
    """Cluster-enabled redis-servers joined by `redis-cli --cluster create`."""

    ports: list[int]
    argvs: list[list[str]]
    processes: list[subprocess.Popen[bytes]]

    def start_node(self, index: int) -> None:
        self.processes[index] = subprocess.Popen(
            self.argvs[index], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_for_port("127.0.0.1", self.ports[index])

    def wait_for_state(self, state: str, ports: list[int], timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while any(cluster_state(p) != state for p in ports):
            if time.monotonic() > deadline:
                pytest.fail(
                    f"cluster never reached cluster_state:{state}: {[cluster_state(p) for p in ports]}"
                )
            time.sleep(0.05)


@contextmanager
def running_cluster(node_timeout_ms: int = 5000) -> Iterator[Cluster]:
    server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if server is None or cli is None:
        unavailable("redis-server/redis-cli", "the binaries are not installed (apt-get install redis-server)")
    ports = distinct_free_ports(2 * MASTERS)
    client_ports, bus_ports = ports[:MASTERS], ports[MASTERS:]
    with tempfile.TemporaryDirectory(prefix="coatcheck-cluster-") as tmp:
        argvs = []
        for port, bus in zip(client_ports, bus_ports, strict=True):
            node_dir = Path(tmp) / str(port)
            node_dir.mkdir()
            argv = [
                server,
                "--bind", "127.0.0.1",
                "--port", str(port),
                "--cluster-enabled", "yes",
                "--cluster-port", str(bus),  # Redis >= 7: no port+10000 guesswork
                "--cluster-config-file", str(node_dir / "nodes.conf"),
                "--cluster-node-timeout", str(node_timeout_ms),
                "--dir", str(node_dir),
                "--save", "",
                "--appendonly", "no",
            ]  # fmt: skip
            argvs.append(argv)
        cluster = Cluster(client_ports, argvs, [])
        try:
            for argv in argvs:
                cluster.processes.append(
                    subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                )
            for port in client_ports:
                wait_for_port("127.0.0.1", port)
            subprocess.run(
                [cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in client_ports), "--cluster-yes"],
                check=True,
                capture_output=True,
                timeout=60,
            )
            cluster.wait_for_state("ok", client_ports)
            yield cluster
        finally:
            for process in cluster.processes:
                process.terminate()
            for process in cluster.processes:
                process.wait(timeout=10)


@pytest.fixture(scope="module")
def cluster_ports() -> Iterator[list[int]]:
    """Three masters, shared by the tests of this module (each uses its own key prefix)."""
    with running_cluster() as cluster:
        yield cluster.ports


def cluster_url(ports: list[int], prefix: str) -> str:
    return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in ports) + f"?prefix={prefix}"


class ClusterConformance(StoreConformance):
    ports: list[int]
    prefix: str

    @pytest.fixture(autouse=True)
    def _cluster(self, cluster_ports: list[int]) -> None:
        self.ports = cluster_ports


class TestRedisClusterConformance(ClusterConformance):
    """Plain prefix: sessions spread over every slot; the user sets are updated by their own calls."""

    prefix = f"cccl-{secrets.token_hex(4)}:"

    async def make_store(self) -> RedisStore:
        store = from_url(cluster_url(self.ports, self.prefix))
        assert isinstance(store, RedisStore)
        return store


class TestRedisClusterHashTaggedConformance(ClusterConformance):
    """A hash-tagged prefix puts every key in one slot, so the scripts keep the index too."""

    prefix = f"{{cc{secrets.token_hex(4)}}}:"

    async def make_store(self) -> RedisStore:
        return RedisStore(cluster_url(self.ports, "unused:"), prefix=self.prefix)


class TestRedisClusterGivenClientConformance(ClusterConformance):
    """RedisStore(client=RedisCluster(...)), owned by the application."""

    prefix = f"cccg-{secrets.token_hex(4)}:"

    async def make_store(self) -> RedisStore:
        self.client = RedisCluster(startup_nodes=[ClusterNode("127.0.0.1", p) for p in self.ports])
        return RedisStore(client=self.client, prefix=self.prefix)

    async def close_store(self, store: Any) -> None:
        await store.close()
        await self.client.aclose()


def keys_per_node(ports: list[int], pattern: str) -> list[int]:
    counts = []
    for port in ports:
        client = redis.Redis(port=port)
        try:
            counts.append(sum(1 for _ in client.scan_iter(match=pattern, count=1000)))
        finally:
            client.close()
    return counts


def test_sessions_spread_over_every_master_and_the_index_follows(cluster_ports: list[int]) -> None:
    prefix = f"ccspread-{secrets.token_hex(4)}:"

    async def main() -> None:
        store = RedisStore(cluster_url(cluster_ports, prefix))
        keys = [new_key() for _ in range(60)]
        await asyncio.gather(
            *(store.set(k, make_record({"i": i}, user_id="ada")) for i, k in enumerate(keys))
        )
        # 60 random keys on 3 masters: each master holds some (all on two: p ~ 1e-10)
        assert all(n > 0 for n in keys_per_node(cluster_ports, f"{prefix}s:*"))
        assert len(await store.sessions_for("ada")) == 60
        assert await store.count() == 60
        await store.set(keys[0], make_record({"i": 0}, user_id="bob"))  # rebind across slots
        assert [i.id_hint for i in await store.sessions_for("bob")] == [keys[0][:12]]
        assert len(await store.sessions_for("ada")) == 59
        assert await store.destroy_user("ada") == 59
        assert await store.count() == 1
        await store.destroy(keys[0])
        assert await store.sessions_for("bob") == []
        assert sum(keys_per_node(cluster_ports, f"{prefix}*")) == 0, "nothing left behind"
        await store.close()

    asyncio.run(main())


def test_concurrent_first_commands_on_a_fresh_store(cluster_ports: list[int]) -> None:
    """redis-py 8.1's RedisCluster can fail commands that race to discover a fresh cluster;
    the store initializes it once first. Ten fresh stores, fifty concurrent first writes each."""
    prefix = f"ccrace-{secrets.token_hex(4)}:"

    async def main() -> None:
        for _ in range(10):
            store = RedisStore(cluster_url(cluster_ports, prefix))
            keys = [new_key() for _ in range(50)]
            await asyncio.gather(*(store.set(k, make_record({"k": k})) for k in keys))
            assert [(await store.get(k)).data["k"] for k in keys] == keys  # type: ignore[union-attr]
            await asyncio.gather(*(store.destroy(k) for k in keys))
            await store.close()

    asyncio.run(main())


def test_a_failed_cluster_gives_fast_store_errors_and_the_store_recovers() -> None:
    """A master dies: its keys fail at once; once the cluster declares itself down every
    command gets CLUSTERDOWN (mapped to SessionStoreError, quickly); when the node returns
    the same store works again by itself."""
    prefix = f"ccdown-{secrets.token_hex(4)}:"
    with running_cluster(node_timeout_ms=1000) as cluster:

        async def main() -> None:
            store = RedisStore(cluster_url(cluster.ports, prefix), socket_timeout=1)
            keys = [new_key() for _ in range(30)]
            for key in keys:
                await store.set(key, make_record({"k": key}))

            cluster.processes[1].kill()
            cluster.processes[1].wait()
            survivors = [cluster.ports[0], cluster.ports[2]]
            cluster.wait_for_state("fail", survivors)
            for key in keys[:5]:
                started = time.monotonic()
                with pytest.raises(SessionStoreError, match="could not load a session") as info:
                    await store.get(key)
                assert time.monotonic() - started < 3.0
                assert key not in str(info.value)

            cluster.start_node(1)
            cluster.wait_for_state("ok", cluster.ports)
            deadline = time.monotonic() + 20
            while True:  # redis-py re-learns the slot map on its next attempts
                try:
                    got = [await store.get(key) for key in keys]
                    break
                except SessionStoreError:
                    assert time.monotonic() < deadline, "the store did not recover"
                    await asyncio.sleep(0.1)
            # the restarted master kept no data (no persistence here): its keys read as missing
            assert all(g is None or g.data == {"k": k} for g, k in zip(got, keys, strict=True))
            assert any(g is not None for g in got)
            await store.set(keys[0], make_record({"k": "again"}))
            assert (await store.get(keys[0])).data == {"k": "again"}  # type: ignore[union-attr]
            await store.close()

        asyncio.run(main())


def test_the_hint_index_lives_in_the_sessions_slot_or_not_at_all(cluster_ports: list[int]) -> None:
    """A hash-tagged prefix keeps the hint index in the sessions' slot (the scripts update it);
    a plain prefix keeps none (no CROSSSLOT error) and lookups by hint walk the keyspace."""
    tag = secrets.token_hex(4)

    async def main() -> None:
        for prefix, indexed in ((f"{{cchint{tag}}}:", True), (f"cchint-{tag}:", False)):
            store = RedisStore(cluster_url(cluster_ports, prefix))
            keys = [new_key() for _ in range(6)]
            for key in keys:
                await store.set(key, make_record(user_id="ada"))
            assert store.hint_index is indexed
            assert sum(keys_per_node(cluster_ports, f"{prefix}hints")) == int(indexed)
            found = await store.find_sessions(keys[3][:12], limit=10)
            assert [info.storage_key for info in found] == [keys[3]]
            assert [s async for s in store.hint_steps(keys[3][:12], limit=10)] == (
                [[found[0]]] if indexed else []
            )
            assert await store.purge_expired() == 0
            assert await store.destroy_user("ada") == 6
            assert sum(keys_per_node(cluster_ports, f"{prefix}*")) == 0, "nothing left behind"
            await store.close()

    asyncio.run(main())
