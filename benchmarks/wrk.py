"""Run wrk (pinned to the load core) and parse its result."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from benchmarks.procs import Children, pinned

LUA = Path(__file__).with_name("wrk_report.lua")
MARKER = "BENCH-JSON "


@dataclass(frozen=True)
class WrkResult:
    requests: int
    duration_s: float
    p50_ms: float
    p99_ms: float
    errors: int  # connect/read/write/timeout errors plus non-2xx/3xx responses
    status_errors: int

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s > 0 else 0.0


def wrk_binary() -> str:
    found = shutil.which("wrk")
    if found is None:
        raise RuntimeError("wrk not found (Debian package: wrk)")
    return found


def wrk_version() -> str:
    out = subprocess.run([wrk_binary(), "-v"], capture_output=True, text=True, check=False)
    return (out.stdout or out.stderr).splitlines()[0].split("Copyright")[0].strip()


def run_wrk(
    children: Children,
    url: str,
    *,
    duration: float,
    connections: int,
    cpu: str | None,
    cookie: str | None = None,
    cookies: list[str] | None = None,
) -> WrkResult:
    """``wrk -t1 -cN -dD --latency`` against ``url``, optionally sending one Cookie header, or
    `cookies` in turn (one per request, round-robin)."""
    argv = [
        wrk_binary(),
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(duration))}s",
        "--latency",
        "--timeout",
        "5s",
        "-s",
        str(script := _rotating(cookies) if cookies else LUA),
    ]
    if cookie:
        argv += ["-H", f"Cookie: {cookie}"]
    argv.append(url)
    try:
        done = children.run(pinned(cpu, argv), timeout=duration + 30)
    finally:
        if script != LUA:
            script.unlink(missing_ok=True)
    stdout = done.stdout.decode(errors="replace")
    for line in stdout.splitlines():
        if line.startswith(MARKER):
            data = json.loads(line.removeprefix(MARKER))
            status = int(data["err_status"])
            socket_errors = ("err_connect", "err_read", "err_write", "err_timeout")
            other = sum(int(data[k]) for k in socket_errors)
            return WrkResult(
                requests=int(data["requests"]),
                duration_s=int(data["duration_us"]) / 1e6,
                p50_ms=int(data["p50_us"]) / 1000,
                p99_ms=int(data["p99_us"]) / 1000,
                errors=other + status,
                status_errors=status,
            )
    stderr = done.stderr.decode(errors="replace").strip()
    raise RuntimeError(f"wrk failed (exit {done.returncode}): {stderr or stdout[-500:]}")


def _rotating(cookies: list[str]) -> Path:
    """A wrk script that sends `cookies` in turn, plus wrk_report.lua's report."""
    listed = ", ".join(json.dumps(c) for c in cookies)  # ASCII cookie values: valid Lua strings
    script = (
        f"local cookies = {{{listed}}}\n"
        "local turn = 0\n"
        "request = function()\n"
        "  turn = turn % #cookies + 1\n"
        '  return wrk.format(nil, nil, {["Cookie"] = cookies[turn]})\n'
        "end\n" + LUA.read_text()
    )
    path = Path(tempfile.mkstemp(prefix="coatcheck-wrk-", suffix=".lua")[1])
    path.write_text(script)
    return path
