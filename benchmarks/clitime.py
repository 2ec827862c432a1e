"""Time one `coatcheck` command and read its peak memory, as the scale test and benchmark do."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

# Runs the command and, at exit, writes its peak resident size (VmHWM: this process's own
# high-water mark since exec; getrusage would report the forking process's size).
LAUNCH = """
import atexit, re, resource, runpy, sys
def report(path=sys.argv[1]):
    status = open("/proc/self/status").read()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    peak = re.search(r"VmHWM:\\s+(\\d+) kB", status).group(1)
    open(path, "w").write(f"{peak} {usage.ru_utime + usage.ru_stime}")
atexit.register(report)
sys.argv = ["coatcheck", *sys.argv[2:]]
runpy.run_module("coatcheck", run_name="__main__")
"""


def run_cli(
    *args: str, cpu: int | None = None
) -> tuple[subprocess.CompletedProcess[str], float, float, float]:
    """(result, wall seconds, peak resident MiB, CPU seconds) of one `coatcheck` run, piped;
    on CPU `cpu` alone if given."""
    env = {**os.environ, "NO_COLOR": "1", "TERM": "dumb"}
    env.pop("COATCHECK_STORE", None)
    with tempfile.NamedTemporaryFile("r") as report:
        start = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-c", LAUNCH, report.name, *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
            preexec_fn=None if cpu is None else lambda: os.sched_setaffinity(0, {cpu}),
        )
        elapsed = time.perf_counter() - start
        fields = report.read().split()
    if len(fields) != 2:
        return result, elapsed, float("nan"), float("nan")
    return result, elapsed, int(fields[0]) / 1024, float(fields[1])
