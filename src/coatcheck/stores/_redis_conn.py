"""Where a RedisStore's sessions live and how it reaches them: settings from a URL or a given
client, validated at construction, and one connection per event loop and per process."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from ..errors import ConfigurationError
from ._redis_url import parse_url, seconds, ssl_context, tls_settings, whole_number
from ._toolkit import redact_url
from .url import missing_extra

if TYPE_CHECKING:
    from ._redis_io import Commands

Connection = Literal["pipelined", "pool"]

DEFAULT_URL = "redis://localhost:6379/0"
DEFAULT_PREFIX = "coatcheck:"
DEFAULT_SOCKET_TIMEOUT = 2.0

# How many fork()s this process descends from, bumped in each child: checking it per command
# is a global read, where os.getpid() is a system call.
_forks = 0


def _forked() -> None:
    global _forks
    _forks += 1


os.register_at_fork(after_in_child=_forked)


@dataclass(frozen=True, slots=True)
class Target:
    """What RedisStore's constructor resolved: how to open a connection, where it goes (for
    messages, never with the password), and the options that depend on the URL."""

    open: Callable[[], Commands]
    where: str
    url_text: str | None  # redacted; None for a given client
    cluster: bool
    prefix: Any  # validated by the store
    blocking: Any = None  # standalone URL: `_redis_sync.connector`'s factory, for WSGI threads


def load_io() -> Any:
    """The redis-py-dependent half, or a ConfigurationError naming the extra to install."""
    try:
        from . import _redis_io
    except ModuleNotFoundError as exc:
        if exc.name is not None and exc.name.split(".")[0] == "redis":
            raise missing_extra("redis", "redis") from None
        raise
    return _redis_io


# Long on purpose: every URL / client / option combination is decided in one place, in order.
def resolve(
    url: str | None,
    *,
    client: Any,
    prefix: str | None,
    socket_timeout: float | None,
    socket_connect_timeout: float | None,
    connection: Connection | None,
    max_connections: int | None,
) -> Target:
    """RedisStore's constructor arguments as a `Target`; ConfigurationError says what to change."""
    io = load_io()
    if client is not None:
        if url is not None:
            raise ConfigurationError("RedisStore takes a URL or client=..., not both")
        if connection is not None or socket_timeout is not None or socket_connect_timeout is not None:
            raise ConfigurationError(
                "RedisStore(client=...) uses the client's own connection settings: "
                "configure timeouts on the client instead"
            )
        cluster = io.check_client(client)
        given = io.ClientCommands(client, owned=False)
        return Target(
            open=lambda: given,
            where=f"given {type(client).__name__} client",
            url_text=None,
            cluster=cluster,
            prefix=DEFAULT_PREFIX if prefix is None else prefix,
        )
    url_text = DEFAULT_URL if url is None else url
    if not isinstance(url_text, str):
        raise ConfigurationError(f"RedisStore needs a URL string or client=..., got {type(url).__name__}")
    parsed = parse_url(url_text)
    options = parsed.options
    timeout = seconds(
        socket_timeout
        if socket_timeout is not None
        else options.get("socket_timeout", DEFAULT_SOCKET_TIMEOUT),
        "socket_timeout",
    )
    connect_timeout = seconds(
        socket_connect_timeout
        if socket_connect_timeout is not None
        else options.get("socket_connect_timeout", timeout),
        "socket_connect_timeout",
    )
    mode = connection if connection is not None else options.get("connection", "pipelined")
    if mode not in ("pipelined", "pool"):
        raise ConfigurationError(f"connection must be 'pipelined' or 'pool', got {mode!r}")
    if max_connections is None and "max_connections" in options:
        max_connections = whole_number(options["max_connections"], "max_connections", redact_url(url_text))
    if max_connections is not None and max_connections < 1:
        raise ConfigurationError(f"max_connections must be at least 1, got {max_connections}")
    opener = io.opener(
        parsed,
        socket_timeout=timeout,
        connect_timeout=connect_timeout,
        pipelined=mode == "pipelined",
        max_connections=max_connections,
        client_name=_client_name(options.get("client_name")),
        tls=tls_settings(options) if parsed.tls else None,
        ssl_context=ssl_context,
    )
    return Target(
        open=opener,
        where=parsed.describe(),
        url_text=redact_url(url_text),
        cluster=parsed.kind == "cluster",
        prefix=prefix if prefix is not None else options.get("prefix", DEFAULT_PREFIX),
        blocking=_blocking(io, parsed, timeout, connect_timeout, options),
    )


def _blocking(io: Any, parsed: Any, timeout: float, connect_timeout: float, options: dict[str, Any]) -> Any:
    """The blocking twin's connection factory: standalone servers only (Cluster and Sentinel
    keep the event-loop bridge), and only with hiredis."""
    if parsed.kind != "standalone" or not io.HIREDIS_AVAILABLE:
        return None
    from ._redis_sync import connector

    host, port = parsed.nodes[0]
    endpoint = io.Endpoint(
        host=host,
        port=port,
        db=parsed.db,
        username=parsed.username,
        password=parsed.password,
        ssl_context=ssl_context(tls_settings(options)) if parsed.tls else None,
        client_name=_client_name(options.get("client_name")),
    )
    return connector(endpoint, timeout, connect_timeout)


def _client_name(name: str | None) -> str | None:
    if name and any(c.isspace() for c in name):
        raise ConfigurationError(f"client_name {name!r} must not contain spaces (Redis refuses them)")
    return name or None


class Connections:
    """One connection per event loop and per process, opened lazily by `open`: a store built
    before a fork or before the loop starts works, and two threads running two loops never
    pick up each other's connection."""

    def __init__(self, open: Callable[[], Commands]) -> None:
        self._open = open
        # (event loop, fork count when it was chosen, its connection): read in one go
        self._last: tuple[asyncio.AbstractEventLoop | None, int, Commands | None] = (None, -1, None)
        self._pid = 0
        self._by_loop: dict[asyncio.AbstractEventLoop, Commands] = {}
        self._switch_lock = threading.Lock()

    def current(self) -> Commands:
        """The connection for this event loop in this process (opened on first use)."""
        loop = asyncio.get_running_loop()
        last_loop, forks, commands = self._last
        if last_loop is loop and forks == _forks:
            return commands  # type: ignore[return-value]
        return self._switch(loop)

    def _switch(self, loop: asyncio.AbstractEventLoop) -> Commands:
        pid, forks = os.getpid(), _forks
        with self._switch_lock:
            if pid != self._pid:  # forked: the parent's sockets are not ours to use (or close)
                self._by_loop, self._pid = {}, pid
            else:  # connections of finished loops died with them
                self._by_loop = {k: v for k, v in self._by_loop.items() if not k.is_closed()}
            commands = self._by_loop.get(loop)
            if commands is None:
                commands = self._by_loop[loop] = self._open()
            self._last = (loop, forks, commands)
        return commands

    async def close(self, errors: tuple[type[BaseException], ...]) -> None:
        """Close this event loop's connection; those of other, still running loops are left
        to those loops."""
        loop = asyncio.get_running_loop()
        with self._switch_lock:
            commands = self._by_loop.pop(loop, None) if self._pid == os.getpid() else None
            self._last = (None, -1, None)
        if commands is not None:
            with contextlib.suppress(*errors):  # a dead server leaves nothing to release
                await commands.close()
