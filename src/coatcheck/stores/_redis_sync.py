"""RedisStore's blocking twin: the per-request calls of a standalone Redis store, made
directly from WSGI threads (Flask under gunicorn), without the event-loop bridge.

One blocking socket per thread (`threading.local`), RESP2 parsed by hiredis, the same keys,
Lua scripts and record encoding as the async store (it calls the store's own helpers), so
what one writes the other reads. Every call is bounded by one timeout (the smaller of the
store's socket timeout and the middleware's `store_timeout`); a connection that timed out
or broke is dropped, and a command is sent once more on a fresh connection when the old
one turned out to be broken (every command here is idempotent: a read, a whole-record
replace, a patch that sets and deletes the same fields again, a delete). After fork() a
child never uses its parent's sockets: a fork hook forgets them, and a pid check backs it up.
"""

from __future__ import annotations

import os
import socket
import threading
import weakref
from collections.abc import Callable, Collection, Sequence
from typing import TYPE_CHECKING, Any

import hiredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .. import _sync
from ..errors import SessionStoreError
from ..record import Meta, Record
from ._redis_lua import DESTROY, PATCH, SET, Script
from ._redis_pipe import Endpoint, _reply_error
from ._toolkit import describe_error

if TYPE_CHECKING:
    from ._redis_pipe import Arg

RedisStore = Any  # the store whose encoding helpers the twin calls (not imported: no cycle)

_RECV = 65536


class BlockingConnection:
    """One blocking RESP2 connection to one standalone server; not shared between threads."""

    __slots__ = ("__weakref__", "_reader", "_sock", "endpoint", "timeout")

    def __init__(self, endpoint: Endpoint, timeout: float | None, connect_timeout: float | None) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self._reader = hiredis.Reader()
        where = endpoint.where
        try:
            sock = socket.create_connection((endpoint.host, endpoint.port), timeout=connect_timeout)
        except TimeoutError:
            raise RedisTimeoutError(
                f"could not connect to Redis at {where} within {connect_timeout:g}s"
            ) from None
        except OSError as exc:
            raise RedisConnectionError(f"could not connect to Redis at {where}: {exc}") from exc
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            if endpoint.ssl_context is not None:
                sock = endpoint.ssl_context.wrap_socket(sock, server_hostname=endpoint.host)
            sock.settimeout(timeout)
            self._sock = sock
            # closed when this connection is dropped unclosed (its thread ended, or the store
            # was let go), as a socket must be: never left to warn from garbage collection
            weakref.finalize(self, sock.close)
            if endpoint.password is not None:
                if endpoint.username is not None:
                    self.execute("AUTH", endpoint.username, endpoint.password)
                else:
                    self.execute("AUTH", endpoint.password)
            if endpoint.db:
                self.execute("SELECT", endpoint.db)
            if endpoint.client_name:
                self.execute("CLIENT", "SETNAME", endpoint.client_name)
        except BaseException:
            sock.close()
            raise

    def execute(self, *args: Arg) -> Any:
        """Send one command and wait for its reply. A reply error is raised as redis-py's
        type; a broken or slow connection raises ConnectionError / TimeoutError and must be
        dropped by the caller."""
        sock, reader = self._sock, self._reader
        try:
            sock.sendall(hiredis.pack_command(args))  # type: ignore[arg-type]
            reply = reader.gets()
            while reply is False:
                data = sock.recv(_RECV)
                if not data:
                    raise RedisConnectionError(f"connection to Redis at {self.endpoint.where} was closed")
                reader.feed(data)
                reply = reader.gets()
        except TimeoutError:
            raise RedisTimeoutError(
                f"Redis at {self.endpoint.where} did not answer within {self.timeout:g}s"
            ) from None
        except OSError as exc:
            raise RedisConnectionError(
                f"connection to Redis at {self.endpoint.where} was lost: {exc}"
            ) from exc
        except hiredis.ProtocolError:
            raise RedisConnectionError(f"Redis at {self.endpoint.where} sent an unexpected reply") from None
        if isinstance(reply, hiredis.ReplyError):
            raise _reply_error(reply)
        return reply

    def close(self) -> None:
        self._sock.close()


class RedisTwin:
    """The blocking twin of a standalone `RedisStore`'s per-request calls (`SyncTwin`)."""

    def __init__(self, store: RedisStore, connect: Callable[[], BlockingConnection]) -> None:
        self._store = store
        self._connect = connect
        self._prefix = store._session_prefix
        self._errors: tuple[type[BaseException], ...] = store.errors
        self._local = threading.local()
        _sync.after_fork_in_child(self._forget)

    def _forget(self) -> None:
        """After fork(): the parent's sockets stay the parent's (never used or closed here)."""
        _sync.keep_forever(self._local)
        self._local = threading.local()

    def _execute(self, *args: Arg) -> Any:
        local = self._local
        conn: BlockingConnection | None = getattr(local, "conn", None)
        pid = os.getpid()
        fresh = conn is None or local.pid != pid
        if fresh or conn is None:
            conn = self._open(local, pid)
        try:
            return conn.execute(*args)
        except (RedisConnectionError, RedisTimeoutError) as exc:
            local.conn = None  # a late reply must never be read as another command's
            conn.close()
            if fresh or isinstance(exc, RedisTimeoutError):
                raise  # a slow server fails fast; a new connection that broke is not retried
        # broken (the server restarted, closed an idle connection, or killed this client):
        # once more on a fresh connection
        conn = self._open(local, pid)
        try:
            return conn.execute(*args)
        except (RedisConnectionError, RedisTimeoutError):
            local.conn = None
            conn.close()
            raise

    def _open(self, local: threading.local, pid: int) -> BlockingConnection:
        local.conn = None
        conn = self._connect()
        local.conn, local.pid = conn, pid
        return conn

    def _eval(self, script: Script, keys: Sequence[str], args: Sequence[Arg]) -> Any:
        try:
            return self._execute("EVALSHA", script.sha, len(keys), *keys, *args)
        except self._store._no_script:  # first use on this server (or after SCRIPT FLUSH)
            return self._execute("EVAL", script.text, len(keys), *keys, *args)

    def _script(self, script: Script, argv: list[Arg]) -> Any:
        """Run `argv` (an EVALSHA command from `RedisStore._script_argv`)."""
        try:
            return self._execute(*argv)
        except self._store._no_script:  # first use on this server (or after SCRIPT FLUSH)
            return self._execute("EVAL", script.text, *argv[2:])

    def _failure(self, exc: BaseException, action: str, key: str) -> SessionStoreError:
        """The error `RedisStore._failing` raises (a try/except here: no context manager per call)."""
        return SessionStoreError(
            f"Redis ({self._store.where}) could not {action}: {describe_error(exc, key)}"
        )

    # ---- the per-request calls, as RedisStore makes them --------------------------------
    def get(self, key: str) -> Record | None:
        try:
            reply = self._execute("HGETALL", self._prefix + key)
        except self._errors as exc:
            raise self._failure(exc, "load a session", key) from None
        return self._store._decode(reply) if reply else None

    def set(self, key: str, record: Record) -> None:
        store = self._store
        argv, _ = store._script_argv(SET, key, record.meta)
        dumps = store._dumps
        for name, value in record.data.items():
            argv.append("." + name)
            argv.append(dumps(value))
        try:
            self._script(SET, argv)
        except self._errors as exc:
            raise self._failure(exc, "save a session", key) from None

    def patch(self, key: str, changed: dict[str, Any], removed: Collection[str], meta: Meta) -> bool:
        store = self._store
        argv, _ = store._script_argv(PATCH, key, meta)
        argv.append(len(changed))
        dumps = store._dumps
        for name, value in changed.items():
            argv.append("." + name)
            argv.append(dumps(value))
        if removed:
            argv.extend("." + name for name in removed)
        try:
            return self._script(PATCH, argv) is not None
        except self._errors as exc:
            raise self._failure(exc, "save a session", key) from None

    def touch(self, key: str, meta: Meta) -> None:
        argv, _ = self._store._script_argv(PATCH, key, meta)
        argv.append(0)
        try:
            self._script(PATCH, argv)
        except self._errors as exc:
            raise self._failure(exc, "touch a session", key) from None

    def destroy(self, key: str) -> None:
        store = self._store
        try:
            self._eval(DESTROY, store._destroy_keys(key), [store._index_flag, store._user_prefix, key])
        except self._errors as exc:
            raise self._failure(exc, "destroy a session", key) from None


def connector(
    endpoint: Endpoint, socket_timeout: float | None, connect_timeout: float | None
) -> Callable[[RedisStore, float | None], RedisTwin]:
    """`(store, store_timeout) -> RedisTwin` for a standalone server. Each call is bounded by
    the smaller of the socket timeout and the store timeout, and so is each connection attempt."""

    def twin(store: RedisStore, store_timeout: float | None) -> RedisTwin:
        timeout = _smaller(socket_timeout, store_timeout)
        connect = _smaller(connect_timeout, store_timeout)
        return RedisTwin(store, lambda: BlockingConnection(endpoint, timeout, connect))

    return twin


def _smaller(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else min(a, b)
