"""How RedisStore talks to Redis: one tiny command interface, two implementations.

`PipelinedConnection` is coatcheck's own single, automatically pipelined connection per
event loop (hiredis parses the replies). It exists because the per-request cost of the
client library dominates a session load: measured on the development machine, a GET
through redis-py's asyncio pool costs about 60-90 µs of client CPU, the same GET through
this connection about 15 µs (see the README's store section). It speaks plain RESP2 over
TCP or TLS to one standalone server and nothing more.

`ClientCommands` wraps a redis-py asyncio client (a pool, a `RedisCluster`, or a
Sentinel-managed client) for everything the pipelined connection does not do.

Both raise redis-py's exception types, so RedisStore maps one family of errors.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from redis.exceptions import AuthenticationError, NoScriptError, RedisError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

try:  # the pipelined connection needs hiredis; without it RedisStore uses redis-py's pool
    import hiredis
except ImportError:  # pragma: no cover - hiredis is part of the coatcheck[redis] extra
    hiredis = None  # type: ignore[assignment]

Arg = bytes | str | int | float

HIREDIS_AVAILABLE = hiredis is not None


class Commands(Protocol):
    """What RedisStore needs from a connection. Errors are redis-py exception types."""

    async def execute(self, *args: Arg) -> Any:
        """Run one command; returns the reply (HGETALL may come back as a list or a dict)."""

    async def pipeline(self, commands: Sequence[Sequence[Arg]]) -> list[Any]:
        """Run several independent commands in one round trip per node; replies in order."""

    def scan(self, pattern: bytes, count: int) -> AsyncIterator[bytes]:
        """Every key matching `pattern` (on every primary of a cluster)."""

    async def close(self) -> None:
        """Close what this object opened."""


# ---- coatcheck's pipelined connection ------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where and how the pipelined connection connects."""

    host: str
    port: int
    db: int = 0
    username: str | None = None
    password: str | None = None
    ssl_context: ssl.SSLContext | None = None
    client_name: str | None = None

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"


def _reply_error(error: Exception) -> RedisError:
    message = str(error)
    code = message.split(" ", 1)[0]
    if code == "NOSCRIPT":
        return NoScriptError(message)
    if code in ("NOAUTH", "WRONGPASS", "NOPERM"):
        return AuthenticationError(message)
    return ResponseError(message)


class _Protocol(asyncio.Protocol):
    """Replies arrive in the order commands were written: one FIFO of futures is all the
    bookkeeping pipelining needs. A watchdog fails everything if the oldest command waits
    longer than `timeout` (one timer per connection, not one per command)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float, where: str) -> None:
        assert hiredis is not None
        self._loop = loop
        self._timeout = timeout
        self._where = where
        self._reader = hiredis.Reader()
        self._pending: deque[tuple[asyncio.Future[Any], float]] = deque()
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._outgoing: list[bytes] = []
        self._writable: asyncio.Future[None] | None = None  # set while the transport is paused
        self.closed = False

    # ---- back-pressure: the transport pauses us when its buffer passes its high-water mark
    def pause_writing(self) -> None:
        if self._writable is None:
            self._writable = self._loop.create_future()

    def resume_writing(self) -> None:
        writable, self._writable = self._writable, None
        if writable is not None and not writable.done():
            writable.set_result(None)

    @property
    def paused(self) -> bool:
        return self._writable is not None

    async def writable(self) -> None:
        """Wait until the transport takes writes again (or the connection fails)."""
        writable = self._writable
        if writable is not None:
            await asyncio.shield(writable)  # a cancelled waiter must not cancel the others

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # uvloop's are not asyncio.Transport subclasses
        sock = transport.get_extra_info("socket")
        if sock is not None:  # notice a silently vanished server even when idle
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)

    def send(self, args: Sequence[Arg]) -> asyncio.Future[Any]:
        if self.closed or self._transport is None:
            raise RedisConnectionError(f"connection to Redis at {self._where} is closed")
        future = self._loop.create_future()
        self._pending.append((future, self._loop.time() + self._timeout))
        self._queue(hiredis.pack_command(tuple(args)))  # type: ignore[arg-type]
        return future

    def send_many(self, commands: Sequence[Sequence[Arg]]) -> list[asyncio.Future[Any]]:
        if self.closed or self._transport is None:
            raise RedisConnectionError(f"connection to Redis at {self._where} is closed")
        deadline = self._loop.time() + self._timeout
        futures = [self._loop.create_future() for _ in commands]
        self._pending.extend((future, deadline) for future in futures)
        for command in commands:
            self._queue(hiredis.pack_command(tuple(command)))  # type: ignore[arg-type]
        return futures

    def _queue(self, packed: bytes) -> None:
        """Commands issued during one turn of the event loop leave in one write: under
        load, many requests' commands share a system call (and a TCP segment)."""
        if not self._outgoing:
            self._loop.call_soon(self._flush)
            if self._timer is None:
                self._timer = self._loop.call_at(self._pending[0][1], self._check_deadline)
        self._outgoing.append(packed)

    def _flush(self) -> None:
        outgoing, self._outgoing = self._outgoing, []
        if self._transport is not None and not self.closed:
            self._transport.write(outgoing[0] if len(outgoing) == 1 else b"".join(outgoing))

    def data_received(self, data: bytes) -> None:
        reader, pending = self._reader, self._pending
        reader.feed(data)
        try:
            while (reply := reader.gets()) is not False:
                future = pending.popleft()[0]
                if future.done():  # its caller gave up (cancelled); the reply is dropped
                    continue
                if isinstance(reply, hiredis.ReplyError):
                    future.set_exception(_reply_error(reply))
                else:
                    future.set_result(reply)
        except (hiredis.ProtocolError, IndexError):
            self._fail(RedisConnectionError(f"Redis at {self._where} sent an unexpected reply"))

    def connection_lost(self, exc: Exception | None) -> None:
        reason = f" ({exc})" if exc else ""
        self._fail(RedisConnectionError(f"connection to Redis at {self._where} was lost{reason}"))

    def _check_deadline(self) -> None:
        self._timer = None
        if not self._pending:
            return
        deadline = self._pending[0][1]
        if deadline <= self._loop.time():
            self._fail(RedisTimeoutError(f"Redis at {self._where} did not answer within {self._timeout:g}s"))
        else:
            self._timer = self._loop.call_at(deadline, self._check_deadline)

    def _fail(self, error: Exception) -> None:
        """Fail every waiting command and drop the connection; the next call reconnects."""
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        pending, self._pending = self._pending, deque()
        self._outgoing = []
        self.resume_writing()  # waiters see the connection closed and reconnect
        for future, _ in pending:
            if not future.done():
                future.set_exception(error)
        if self._transport is not None:
            self._transport.abort()

    def close(self) -> None:
        self._fail(RedisConnectionError(f"connection to Redis at {self._where} was closed"))


class PipelinedConnection:
    """One connection to one Redis server for one event loop; concurrent commands share it
    (their replies come back in order), so there is no pool to lock or to leak.

    Connects lazily and again after any failure, so the app recovers by itself when the
    server returns. A command sent on a connection that turns out to be stale (the server
    restarted since) is retried once on a fresh one, alone or in a pipeline: every command
    RedisStore sends is idempotent. Timeouts are not retried. Callers wait while the socket's
    send buffer is over its high-water mark (back-pressure), so a server that reads slowly
    cannot make the process buffer without bound.
    """

    def __init__(self, endpoint: Endpoint, *, socket_timeout: float, connect_timeout: float) -> None:
        if hiredis is None:
            raise RuntimeError("PipelinedConnection needs the hiredis package")
        self.endpoint = endpoint
        self._socket_timeout = socket_timeout
        self._connect_timeout = connect_timeout
        self._protocol: _Protocol | None = None
        self._lock: asyncio.Lock | None = None

    async def execute(self, *args: Arg) -> Any:
        protocol = self._protocol
        if protocol is None or protocol.closed:
            return await (await self._connect()).send(args)
        try:
            if protocol.paused:
                await protocol.writable()
            return await protocol.send(args)
        except RedisConnectionError:
            return await (await self._connect()).send(args)

    async def pipeline(self, commands: Sequence[Sequence[Arg]]) -> list[Any]:
        if not commands:
            return []
        protocol = self._protocol
        if protocol is None or protocol.closed:
            return await _replies((await self._connect()).send_many(commands))
        try:
            if protocol.paused:
                await protocol.writable()
            return await _replies(protocol.send_many(commands))
        except RedisConnectionError:
            return await _replies((await self._connect()).send_many(commands))

    async def scan(self, pattern: bytes, count: int) -> AsyncIterator[bytes]:
        cursor: bytes = b"0"
        while True:
            cursor, keys = await self.execute("SCAN", cursor, "MATCH", pattern, "COUNT", count)
            for key in keys:
                yield key
            if cursor == b"0":
                return

    async def _connect(self) -> _Protocol:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:  # concurrent callers share one connection attempt
            protocol = self._protocol
            if protocol is not None and not protocol.closed:
                return protocol
            self._protocol = await self._open()
            return self._protocol

    async def _open(self) -> _Protocol:
        endpoint = self.endpoint
        loop = asyncio.get_running_loop()
        protocol: _Protocol | None = None
        try:
            async with asyncio.timeout(self._connect_timeout):
                _, protocol = await loop.create_connection(
                    lambda: _Protocol(loop, self._socket_timeout, endpoint.where),
                    endpoint.host,
                    endpoint.port,
                    ssl=endpoint.ssl_context,
                    server_hostname=endpoint.host if endpoint.ssl_context is not None else None,
                )
                handshake: list[tuple[Arg, ...]] = []
                if endpoint.password is not None:
                    if endpoint.username is not None:
                        handshake.append(("AUTH", endpoint.username, endpoint.password))
                    else:
                        handshake.append(("AUTH", endpoint.password))
                if endpoint.db:
                    handshake.append(("SELECT", endpoint.db))
                if endpoint.client_name:
                    handshake.append(("CLIENT", "SETNAME", endpoint.client_name))
                if handshake:
                    await asyncio.gather(*protocol.send_many(handshake))
        except BaseException as exc:
            if protocol is not None:
                protocol.close()
            if isinstance(exc, TimeoutError):  # asyncio.timeout() above
                raise RedisTimeoutError(
                    f"could not connect to Redis at {endpoint.where} within {self._connect_timeout:g}s"
                ) from None
            if isinstance(exc, OSError):  # refused, unreachable, TLS handshake failed
                raise RedisConnectionError(f"could not connect to Redis at {endpoint.where}: {exc}") from exc
            raise  # the server refused AUTH/SELECT, or we were cancelled
        return protocol

    async def close(self) -> None:
        protocol, self._protocol = self._protocol, None
        if protocol is not None:
            protocol.close()


async def _replies(futures: list[asyncio.Future[Any]]) -> list[Any]:
    """Every reply in order, or the first error once all have arrived."""
    replies = await asyncio.gather(*futures, return_exceptions=True)
    for reply in replies:
        if isinstance(reply, BaseException):
            raise reply
    return replies


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
