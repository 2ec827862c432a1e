"""Finding or starting the real servers integration tests need.

Outside CI a missing server skips the test with the reason; with CI=true it fails it,
so a green CI run always means the test ran against the real thing.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn
from urllib.parse import urlsplit

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
REDIS_URL = os.environ.get("COATCHECK_REDIS_URL", "redis://127.0.0.1:6379/0")
POSTGRES_URL = os.environ.get("COATCHECK_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
MYSQL_URL = os.environ.get("COATCHECK_MYSQL_URL", "mysql://root@127.0.0.1:3306/test")
MONGODB_URL = os.environ.get("COATCHECK_MONGODB_URL")


def unavailable(service: str, reason: str) -> NoReturn:
    """Skip (locally) or fail (in CI) a test whose server cannot be reached."""
    message = f"{service} is not available: {reason}"
    if IN_CI:
        pytest.fail(f"{message} (CI=true: a missing service is a failure, not a skip)", pytrace=False)
    pytest.skip(message)


def require_listening(service: str, url: str, default_port: int) -> str:
    """`url` if its server accepts connections; otherwise the test is skipped (or fails in CI)."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or default_port
    if not port_open(host, port):
        unavailable(service, f"nothing listens at {host}:{port}")
    return url


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def free_port() -> int:
    """A loopback port free now, below the ephemeral range (see `free_port_run`)."""
    return free_port_run(1)


def free_port_run(count: int) -> int:
    """The first of `count` consecutive loopback ports that can all be bound now, chosen below
    the kernel's ephemeral range, where outgoing connections (to Redis, PostgreSQL...) would
    otherwise take the next port between our check and the server's bind."""
    low, _ = (int(n) for n in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    candidates = list(range(20000, max(20001, low - count), count))
    random.shuffle(candidates)
    for first in candidates:
        held: list[socket.socket] = []
        try:
            for port in range(first, first + count):
                sock = socket.socket()
                held.append(sock)
                sock.bind(("127.0.0.1", port))
            return first
        except OSError:
            continue
        finally:
            for sock in held:
                sock.close()
    raise RuntimeError(f"no {count} consecutive free loopback ports below {low}")


def wait_for_port(host: str, port: int, timeout: float = 10.0) -> None:
    """Poll until something listens on host:port (raises TimeoutError)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(host, port, timeout=0.2):
            return
        time.sleep(0.02)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s")


@contextmanager
def redis_server(*, persistent: bool = False, extra: tuple[str, ...] = ()) -> Iterator[tuple[int, str]]:
    """A private redis-server on a free loopback port: yields (port, data dir)."""
    binary = shutil.which("redis-server")
    if binary is None:
        unavailable("redis-server", "the binary is not installed (apt-get install redis-server)")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="coatcheck-redis-") as data_dir:
        args = [binary, "--bind", "127.0.0.1", "--port", str(port), "--dir", data_dir, "--save", ""]
        args += ["--appendonly", "yes", "--appendfsync", "always"] if persistent else ["--appendonly", "no"]
        proc = subprocess.Popen([*args, *extra], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for_port("127.0.0.1", port)
            yield port, data_dir
        finally:
            proc.terminate()
            proc.wait(timeout=10)


@contextlib.contextmanager
def silent_server() -> Iterator[int]:
    """A loopback server that accepts connections and never says a word: yields its port."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError, OSError):
                accepted.append(listener.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()
        listener.close()


def delete_prefixed(redis_url: str, prefix: str) -> None:
    """Delete the keys under `prefix` (a test's own) on the Redis at `redis_url`, only those."""
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=5000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()
