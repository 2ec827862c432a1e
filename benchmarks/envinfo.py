"""What the results were measured on: machine, runtimes, library versions."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import platform
import subprocess
from pathlib import Path

from benchmarks.servers import NODE_DIR

PY_PACKAGES = (
    "coatcheck", "starlette", "starsessions", "litestar", "flask", "flask-session", "werkzeug",
    "uvicorn", "uvloop", "httptools", "gunicorn", "redis", "hiredis", "orjson", "msgspec",
    "itsdangerous", "cryptography",
)  # fmt: skip
NODE_PACKAGES = ("express", "express-session", "connect-redis", "redis", "cookie-session")


def py_version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def node_version(pkg: str) -> str:
    manifest = NODE_DIR / "node_modules" / pkg / "package.json"
    try:
        return str(json.loads(manifest.read_text())["version"])
    except (OSError, ValueError, KeyError):
        return "not installed"


def uvicorn_loop_http() -> str:
    """What uvicorn's ``--loop auto --http auto`` picks: uvloop/httptools when importable."""
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    return f"loop={loop}, http={http}"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def node_runtime() -> str:
    try:
        out = subprocess.run(["node", "--version"], capture_output=True, text=True, check=False)
    except OSError:
        return "not installed"
    return out.stdout.strip()


def git_revision() -> str:
    """The measured tree's commit (``+dirty`` when it has uncommitted changes)."""
    repo = NODE_DIR.parent.parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "src"],
            cwd=repo,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return sha + ("+dirty" if dirty else "")  # fmt: skip


def machine() -> dict[str, str]:
    return {
        "nproc": str(os.cpu_count()),
        "cpu": cpu_model(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "node": node_runtime(),
    }
