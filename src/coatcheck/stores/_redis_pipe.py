"""coatcheck's own Redis connection: one automatically pipelined connection per event loop.

It exists because the per-request cost of the client library dominates a session load:
measured on the development machine, a GET through redis-py's asyncio pool costs about
60-90 µs of client CPU, the same GET through this connection about 15 µs (and end to end,
`python -m benchmarks` measures both: `coatcheck-redis` against `coatcheck-redis-pool`).
It speaks plain RESP2 over TCP or TLS to one standalone server, with hiredis parsing the
replies, and raises redis-py's exception types.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from redis.exceptions import AuthenticationError, NoScriptError, RedisError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

try:  # the pipelined connection needs hiredis; without it RedisStore uses redis-py's pool
    import hiredis
except ImportError:  # pragma: no cover - hiredis is part of the coatcheck[redis] extra
    hiredis = None  # type: ignore[assignment]

Arg = bytes | str | int | float
# A command waiting for its reply: (future, deadline, the packed command to send again on a
# fresh connection if this one is lost; None once it was, or for the handshake).
_Entry = tuple["asyncio.Future[Any]", float, bytes | None]

HIREDIS_AVAILABLE = hiredis is not None


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
    longer than `timeout` (one timer per connection, not one per command). When the
    connection is lost, the commands still waiting go to `on_lost` to be sent again, once,
    on a fresh connection, with the futures their callers already await: the retry needs no
    coroutine per command around the future."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        timeout: float,
        where: str,
        on_lost: Callable[[list[_Entry], Exception], None] | None = None,
    ) -> None:
        assert hiredis is not None
        self._loop = loop
        self._timeout = timeout
        self._where = where
        self._on_lost = on_lost
        self._reader = hiredis.Reader()
        self._pending: deque[_Entry] = deque()
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
        packed = hiredis.pack_command(tuple(args))  # type: ignore[arg-type]
        self._pending.append((future, self._loop.time() + self._timeout, packed))
        self._queue(packed)
        return future

    def send_many(
        self, commands: Sequence[Sequence[Arg]], *, retry: bool = True
    ) -> list[asyncio.Future[Any]]:
        if self.closed or self._transport is None:
            raise RedisConnectionError(f"connection to Redis at {self._where} is closed")
        deadline = self._loop.time() + self._timeout
        futures = []
        for command in commands:
            future = self._loop.create_future()
            packed = hiredis.pack_command(tuple(command))  # type: ignore[arg-type]
            self._pending.append((future, deadline, packed if retry else None))
            self._queue(packed)
            futures.append(future)
        return futures

    def send_again(self, lost: list[_Entry]) -> None:
        """Send the commands a lost connection left unanswered; their futures get the replies.
        They are not sent a third time."""
        if self.closed or self._transport is None:
            raise RedisConnectionError(f"connection to Redis at {self._where} is closed")
        deadline = self._loop.time() + self._timeout
        for future, _, packed in lost:
            if not future.done() and packed is not None:  # done: its caller gave up meanwhile
                self._pending.append((future, deadline, None))
                self._queue(packed)

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
            self._fail(RedisConnectionError(f"Redis at {self._where} sent an unexpected reply"), retry=True)

    def connection_lost(self, exc: Exception | None) -> None:
        reason = f" ({exc})" if exc else ""
        self._fail(RedisConnectionError(f"connection to Redis at {self._where} was lost{reason}"), retry=True)

    def _check_deadline(self) -> None:
        self._timer = None
        if not self._pending:
            return
        deadline = self._pending[0][1]
        if deadline <= self._loop.time():
            self._fail(RedisTimeoutError(f"Redis at {self._where} did not answer within {self._timeout:g}s"))
        else:
            self._timer = self._loop.call_at(deadline, self._check_deadline)

    def _fail(self, error: Exception, *, retry: bool = False) -> None:
        """Fail every waiting command and drop the connection; the next call reconnects.
        With `retry` (a connection error), commands not yet sent again go to `on_lost`."""
        if self.closed:  # already failed (e.g. connection_lost after an unexpected reply)
            return
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        pending, self._pending = self._pending, deque()
        self._outgoing = []
        self.resume_writing()  # waiters see the connection closed and reconnect
        lost = []
        for entry in pending:
            future = entry[0]
            if future.done():
                continue
            if retry and entry[2] is not None and self._on_lost is not None:
                lost.append(entry)
            else:
                future.set_exception(error)
        if self._transport is not None:
            self._transport.abort()
        if lost:
            self._on_lost(lost, error)  # type: ignore[misc]  # checked above

    def close(self) -> None:
        self._fail(RedisConnectionError(f"connection to Redis at {self._where} was closed"), retry=True)


class PipelinedConnection:
    """One connection to one Redis server for one event loop; concurrent commands share it
    (their replies come back in order), so there is no pool to lock or to leak.

    Connects lazily and again after any failure, so the app recovers by itself when the
    server returns. A command sent on a connection that turns out to be stale (the server
    restarted since) is retried once on a fresh one, alone or in a pipeline: every command
    RedisStore sends is idempotent. Timeouts are not retried. Callers wait while the socket's
    send buffer is over its high-water mark (back-pressure), so a server that reads slowly
    cannot make the process buffer without bound.

    `execute` on an open connection returns the reply's future itself, not a coroutine:
    every request waiting on Redis holds one object fewer (each is tracked by the garbage
    collector, and what is alive when it runs gets promoted; see benchmarks/SCALE.md).
    """

    def __init__(self, endpoint: Endpoint, *, socket_timeout: float, connect_timeout: float) -> None:
        if hiredis is None:
            raise RuntimeError("PipelinedConnection needs the hiredis package")
        self.endpoint = endpoint
        self._socket_timeout = socket_timeout
        self._connect_timeout = connect_timeout
        self._protocol: _Protocol | None = None
        self._lock: asyncio.Lock | None = None
        self._resending: set[asyncio.Task[None]] = set()  # strong references to running retries

    def execute(self, *args: Arg) -> Awaitable[Any]:
        protocol = self._protocol
        # `protocol.paused` without a property call; a paused or closed connection: wait first
        if protocol is None or protocol.closed or protocol._writable is not None:
            return self._execute_when_ready(args)
        return protocol.send(args)

    async def _execute_when_ready(self, args: Sequence[Arg]) -> Any:
        return await (await self._ready()).send(args)

    async def pipeline(self, commands: Sequence[Sequence[Arg]]) -> list[Any]:
        if not commands:
            return []
        return await _replies((await self._ready()).send_many(commands))

    async def _ready(self) -> _Protocol:
        """The connection, once it takes writes: (re)connected if closed, after back-pressure."""
        protocol = self._protocol
        if protocol is not None and not protocol.closed and protocol.paused:
            await protocol.writable()
        if protocol is None or protocol.closed:  # also: failed while we waited
            protocol = await self._connect()
        return protocol

    def _lost(self, lost: list[_Entry], error: Exception) -> None:
        """`_Protocol.on_lost`: send the commands a lost connection left unanswered again."""
        task = lost[0][0].get_loop().create_task(self._send_again(lost, error))
        self._resending.add(task)
        task.add_done_callback(self._resending.discard)

    async def _send_again(self, lost: list[_Entry], error: Exception) -> None:
        try:
            (await self._connect()).send_again(lost)
        except BaseException as exc:  # could not reconnect (or cancelled): the callers hear why
            for future, _, _ in lost:
                if not future.done():
                    future.set_exception(exc if isinstance(exc, Exception) else error)
            if not isinstance(exc, Exception):
                raise

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
                    lambda: _Protocol(loop, self._socket_timeout, endpoint.where, self._lost),
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
                    await asyncio.gather(*protocol.send_many(handshake, retry=False))
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
