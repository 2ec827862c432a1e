"""Start one implementation as a server on a free loopback port, pinned to the server core."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from benchmarks.apps.common import SECRET
from benchmarks.cases import Impl
from benchmarks.probe import plain_status
from benchmarks.procs import Children, free_port, pinned, wait_until

REPO = Path(__file__).resolve().parent.parent
NODE_DIR = Path(__file__).resolve().parent / "node"

_ERROR_LINE = re.compile(r"^\s*(\w+\.)*\w*(Error|Exception)\b.*$|^Error: .*$", re.MULTILINE)


@dataclass(frozen=True)
class ServerOptions:
    cpu: str | None
    redis_url: str
    sqlite_path: Path
    gunicorn_worker: str  # "sync" or "gthread"
    gunicorn_threads: int
    logs: Path


@dataclass
class Running:
    impl: Impl
    port: int
    proc: subprocess.Popen[bytes]


class NotAvailable(Exception):
    """The implementation could not be started; the message says why."""


def argv_for(impl: Impl, port: int, opts: ServerOptions) -> list[str]:
    if impl.server == "uvicorn":
        return [
            sys.executable, "-m", "uvicorn", impl.target,
            "--host", "127.0.0.1", "--port", str(port),
            "--no-access-log", "--log-level", "warning",
            "--loop", "auto", "--http", "auto",
        ]  # fmt: skip
    if impl.server == "gunicorn":
        argv = [
            sys.executable, "-m", "gunicorn",
            "--bind", f"127.0.0.1:{port}", "--workers", "1",
            "--worker-class", opts.gunicorn_worker, "--log-level", "warning",
        ]  # fmt: skip
        if opts.gunicorn_worker == "gthread":
            argv += ["--threads", str(opts.gunicorn_threads)]
        return [*argv, impl.target]
    node = shutil.which("node")
    if node is None:
        raise NotAvailable("node not found")
    if not (NODE_DIR / "node_modules").is_dir():
        raise NotAvailable("benchmarks/node/node_modules missing (npm ci in benchmarks/node)")
    return [node, str(NODE_DIR / "server.js"), impl.target]


def start(children: Children, impl: Impl, opts: ServerOptions, timeout: float = 30) -> Running:
    """Start ``impl`` and wait until GET /plain answers 200; raise ``NotAvailable`` if not."""
    port = free_port()
    env = dict(os.environ)
    env.update(
        PORT=str(port),
        BENCH_REDIS_URL=opts.redis_url,
        BENCH_SQLITE_PATH=str(opts.sqlite_path),
        BENCH_SECRET=SECRET,
        NODE_ENV="production",
        PYTHONUNBUFFERED="1",
    )
    env.update(impl.env)
    log = opts.logs / f"{impl.name}.log"
    proc = children.start(pinned(opts.cpu, argv_for(impl, port, opts)), log=log, env=env, cwd=REPO)

    status: int | None = None

    def answered() -> bool:
        nonlocal status
        if proc.poll() is not None:
            return True
        status = plain_status(port)
        return status is not None

    wait_until(answered, timeout=timeout, interval=0.1)
    if proc.poll() is not None or status != 200:
        children.stop(proc)
        if status is None:
            fallback = f"server did not answer GET /plain within {timeout:.0f}s"
        else:
            fallback = f"GET /plain answered {status}"
        raise NotAvailable(_why(log) or fallback)
    return Running(impl, port, proc)


def _why(log: Path) -> str:
    """The last exception line in a server's log, e.g. "ModuleNotFoundError: No module ..."."""
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return ""
    matches = [m.group(0).strip() for m in _ERROR_LINE.finditer(text)]
    if matches:
        return matches[-1][:300]
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""
