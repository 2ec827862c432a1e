"""A private redis-server on a loopback port, and its per-command statistics."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import redis

from benchmarks.procs import Children, free_port, pinned, wait_until


class PrivateRedis:
    """redis-server bound to 127.0.0.1 only, no persistence, started in ``workdir``."""

    def __init__(self, children: Children, workdir: Path, cpu: str | None) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server not found (Debian package: redis-server)")
        workdir.mkdir(parents=True, exist_ok=True)
        argv = [
            binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--protected-mode", "yes",
            "--dir", str(workdir),
            "--logfile", "",
        ]  # fmt: skip
        self.proc = children.start(pinned(cpu, argv), log=workdir / "redis.log")
        self.client = redis.Redis(port=self.port, host="127.0.0.1", decode_responses=True)
        if not wait_until(self._ping, timeout=10):
            raise RuntimeError(f"redis-server did not start; see {workdir / 'redis.log'}")

    def _ping(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError("redis-server exited at start-up")
        try:
            return bool(self.client.ping())
        except redis.ConnectionError:
            return False

    def version(self) -> str:
        return str(self.client.info("server").get("redis_version", "?"))

    def wait_quiet(self, settle: float = 0.2, timeout: float = 5.0) -> bool:
        """Wait until no client has sent a command for ``settle`` seconds.

        After wrk stops, a server can still be working through requests it had accepted;
        their Redis commands must not leak into the next measurement.
        """
        deadline = time.monotonic() + timeout
        last = self._processed()
        while time.monotonic() < deadline:
            time.sleep(settle)
            now = self._processed()
            if now - last <= 1:  # only our own INFO
                return True
            last = now
        return False

    def _processed(self) -> int:
        return int(self.client.info("stats")["total_commands_processed"])

    def flush(self) -> None:
        self.client.flushall()

    def commandstats(self) -> dict[str, int]:
        """Calls per command so far (``INFO commandstats``), e.g. ``{"get": 12, "set": 3}``."""
        info = self.client.info("commandstats")
        calls: dict[str, int] = {}
        for key, value in info.items():
            if key.startswith("cmdstat_") and isinstance(value, dict):
                calls[key.removeprefix("cmdstat_")] = int(value.get("calls", 0))
        return calls

    def monitor(self, action: Callable[[], None]) -> tuple[Counter[str], Counter[str]]:
        """Commands sent by clients, and commands run inside Lua scripts, while ``action`` runs.

        ``INFO commandstats`` counts the commands a script calls as well as the EVALSHA that
        ran it, so it cannot tell one round trip from five. MONITOR marks script calls as
        ``[0 lua]``; this is used on a short, untimed pass only (MONITOR slows Redis down).
        """
        sentinel = f"bench-monitor-stop-{uuid.uuid4().hex}"
        clients: Counter[str] = Counter()
        scripts: Counter[str] = Counter()
        started = threading.Event()
        failure: list[BaseException] = []
        watcher = redis.Redis(port=self.port, host="127.0.0.1")

        def watch() -> None:
            try:
                with watcher.monitor() as mon:  # type: ignore[no-untyped-call]
                    started.set()
                    for event in mon.listen():
                        command = str(event["command"])
                        if sentinel in command:
                            return
                        name = command.split(" ", 1)[0].lower()
                        (scripts if event["client_type"] == "lua" else clients)[name] += 1
            except Exception as exc:  # reported to the caller below
                failure.append(exc)
                started.set()

        thread = threading.Thread(target=watch, daemon=True)
        thread.start()
        try:
            if not started.wait(5):
                raise RuntimeError("MONITOR did not start")
            action()
        finally:
            self.client.echo(sentinel)
            thread.join(10)
            watcher.close()
        if failure:
            raise RuntimeError(f"MONITOR failed: {failure[0]}")
        return clients, scripts


def command_delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """Commands issued between two snapshots, without the harness's own INFO calls."""
    delta = {cmd: n - before.get(cmd, 0) for cmd, n in after.items()}
    delta.pop("info", None)
    return {cmd: n for cmd, n in delta.items() if n > 0}


def redis_server_version() -> str:
    out = subprocess.run(["redis-server", "--version"], capture_output=True, text=True, check=False)
    return out.stdout.strip()
