"""How RedisStore talks to Redis: one tiny command interface, two implementations.

`PipelinedConnection` (`_redis_pipe.py`) is coatcheck's own single, automatically pipelined
connection per event loop; `ClientCommands` wraps a redis-py asyncio client (a pool, a
`RedisCluster`, or a Sentinel-managed client) for everything the pipelined connection does
not do. Both raise redis-py's exception types, so RedisStore maps one family of errors.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, Protocol

from redis.exceptions import ConnectionError as RedisConnectionError

from ._redis_pipe import HIREDIS_AVAILABLE, Arg, Endpoint, PipelinedConnection

__all__ = [
    "HIREDIS_AVAILABLE",
    "Arg",
    "ClientCommands",
    "Commands",
    "Endpoint",
    "PipelinedConnection",
    "check_client",
    "opener",
]


class Commands(Protocol):
    """What RedisStore needs from a connection. Errors are redis-py exception types."""

    def execute(self, *args: Arg) -> Awaitable[Any]:
        """Run one command; the awaitable gives the reply (HGETALL may come back as a list or a
        dict). A coroutine or, on the pipelined connection, the reply's future itself."""

    async def pipeline(self, commands: Sequence[Sequence[Arg]]) -> list[Any]:
        """Run several independent commands in one round trip per node; replies in order."""

    def scan(self, pattern: bytes, count: int) -> AsyncIterator[bytes]:
        """Every key matching `pattern` (on every primary of a cluster)."""

    async def close(self) -> None:
        """Close what this object opened."""


# ---- redis-py clients ----------------------------------------------------------------------
class ClientCommands:
    """A redis-py asyncio client (standalone pool, Sentinel master, or RedisCluster).

    `owned`: close the client (and `closers`, e.g. Sentinel connections) on close(); a
    client the application passed in is left open for the application to close.
    `retry_broken`: retry a command once, on a fresh connection from the pool, when its
    connection breaks (used for Sentinel clients, see `opener`).
    """

    def __init__(
        self,
        client: Any,
        *,
        owned: bool,
        closers: Sequence[Callable[[], Awaitable[Any]]] = (),
        retry_broken: bool = False,
    ) -> None:
        from redis.asyncio.cluster import RedisCluster

        self.client = client
        self._owned = owned
        self._closers = list(closers)
        self._retry_broken = retry_broken
        # redis-py 8.1's RedisCluster can fail concurrent first commands (AttributeError
        # inside its connection setup) while they race to discover the cluster; one
        # initialize() before any command, under a lock, avoids that.
        self._ready = not isinstance(client, RedisCluster)
        self._lock: asyncio.Lock | None = None

    async def _initialize(self) -> None:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if not self._ready:
                await self.client.initialize()
                self._ready = True

    async def execute(self, *args: Arg) -> Any:
        if not self._ready:
            await self._initialize()
        if not self._retry_broken:
            return await self.client.execute_command(*args)
        try:
            return await self.client.execute_command(*args)
        except RedisConnectionError:
            return await self.client.execute_command(*args)

    async def pipeline(self, commands: Sequence[Sequence[Arg]]) -> list[Any]:
        if not commands:
            return []
        if not self._ready:
            await self._initialize()
        pipe = self.client.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        return list(await pipe.execute())

    async def scan(self, pattern: bytes, count: int) -> AsyncIterator[bytes]:
        if not self._ready:
            await self._initialize()
        async for key in self.client.scan_iter(match=pattern, count=count):
            yield key

    async def close(self) -> None:
        if not self._owned:
            return
        await self.client.aclose()
        for close in self._closers:
            await close()


# ---- building connections from a parsed URL -----------------------------------------------
def _retry(retries: int) -> Any:
    """Retry a command once on a broken connection (a server restart leaves stale pooled
    connections), immediately; never retry timeouts: a slow server must fail fast."""
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    return Retry(NoBackoff(), retries, supported_errors=(RedisConnectionError,))


def opener(
    parsed: Any,
    *,
    socket_timeout: float,
    connect_timeout: float,
    pipelined: bool,
    max_connections: int | None,
    client_name: str | None,
    tls: dict[str, Any] | None,
    ssl_context: Callable[[dict[str, Any]], ssl.SSLContext],
) -> Callable[[], Commands]:
    """A factory of fresh connections for `parsed` (a `RedisURL`); called once per event
    loop and process, so it must not share sockets between calls."""
    timeouts: dict[str, Any] = {"socket_timeout": socket_timeout, "socket_connect_timeout": connect_timeout}
    auth: dict[str, Any] = {"username": parsed.username, "password": parsed.password}
    pool_size: dict[str, Any] = {} if max_connections is None else {"max_connections": max_connections}
    if parsed.kind == "standalone":
        host, port = parsed.nodes[0]
        if pipelined and HIREDIS_AVAILABLE:
            endpoint = Endpoint(
                host=host,
                port=port,
                db=parsed.db,
                username=parsed.username,
                password=parsed.password,
                ssl_context=None if tls is None else ssl_context(tls),
                client_name=client_name,
            )
            return lambda: PipelinedConnection(
                endpoint, socket_timeout=socket_timeout, connect_timeout=connect_timeout
            )

        def open_pool() -> Commands:
            from redis.asyncio import Redis

            tls_kwargs: dict[str, Any] = {} if tls is None else {"ssl": True, **tls}
            client = Redis(
                host=host,
                port=port,
                db=parsed.db,
                client_name=client_name,
                retry=_retry(1),
                **auth,
                **timeouts,
                **pool_size,
                **tls_kwargs,
            )
            return ClientCommands(client, owned=True)

        return open_pool

    if parsed.kind == "cluster":

        def open_cluster() -> Commands:
            from redis.asyncio.cluster import ClusterNode, RedisCluster

            client = RedisCluster(
                startup_nodes=[ClusterNode(host, port) for host, port in parsed.nodes],
                client_name=client_name,
                retry=_cluster_retry(),
                **auth,
                **timeouts,
                **pool_size,
            )
            return ClientCommands(client, owned=True)

        return open_cluster

    def open_sentinel() -> Commands:
        from redis.asyncio.sentinel import Sentinel

        sentinel = Sentinel(list(parsed.nodes), sentinel_kwargs=dict(timeouts))  # type: ignore[no-untyped-call]
        # After a failover the first write meets the demoted master (READONLY); redis-py 8.1's
        # own retry then reconnects to that same old address, while a connection taken
        # afresh from the pool asks Sentinel where the master is now. So the retry is ours.
        client = sentinel.master_for(
            parsed.service,
            db=parsed.db,
            client_name=client_name,
            retry=_retry(0),
            **auth,
            **timeouts,
            **pool_size,
        )
        closers = [s.aclose for s in sentinel.sentinels]
        return ClientCommands(client, owned=True, closers=closers, retry_broken=True)

    return open_sentinel


def _cluster_retry() -> Any:
    """A few quick retries: enough for redis-py to follow a slot move or a failover."""
    from redis.asyncio.retry import Retry
    from redis.backoff import ExponentialBackoff

    return Retry(ExponentialBackoff(cap=0.5, base=0.05), 3)


def check_client(client: Any) -> bool:
    """Validate a client passed to RedisStore(client=...); True if it is a RedisCluster."""
    from redis.asyncio import Redis
    from redis.asyncio.cluster import RedisCluster

    from ..errors import ConfigurationError

    if not isinstance(client, Redis | RedisCluster):
        raise ConfigurationError(
            "RedisStore(client=...) needs a redis.asyncio client (redis.asyncio.Redis, a Sentinel "
            f"master_for() client or redis.asyncio.cluster.RedisCluster), got {type(client).__name__}"
        )
    kwargs = client.get_connection_kwargs()
    if kwargs.get("decode_responses"):
        raise ConfigurationError(
            "RedisStore(client=...) needs a client with decode_responses=False: session data is bytes"
        )
    return isinstance(client, RedisCluster)
