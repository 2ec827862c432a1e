"""A private redis-server on a loopback port, and its per-command statistics."""

from __future__ import annotations

import shutil
import subprocess
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


def command_delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """Commands issued between two snapshots, without the harness's own INFO calls."""
    delta = {cmd: n - before.get(cmd, 0) for cmd, n in after.items()}
    delta.pop("info", None)
    return {cmd: n for cmd, n in delta.items() if n > 0}


def redis_server_version() -> str:
    out = subprocess.run(["redis-server", "--version"], capture_output=True, text=True, check=False)
    return out.stdout.strip()
