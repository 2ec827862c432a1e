"""CPU time used by a server's whole process tree, from /proc (Linux).

Throughput on a shared machine moves with whatever else runs on the core; CPU time per
request moves much less, so the table reports both.
"""

from __future__ import annotations

import os
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def session_cpu_seconds(sid: int) -> float:
    """User + system CPU seconds of every live process in session ``sid``.

    The harness starts each server with ``start_new_session``, so its session id is its pid
    and gunicorn's workers or Node's helper threads are all counted.
    """
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue
        fields = raw.rpartition(")")[2].split()
        # after "pid (comm)": state ppid pgrp session tty tpgid flags minflt cminflt majflt
        # cmajflt utime stime ...
        if len(fields) > 12 and int(fields[3]) == sid:
            total += int(fields[11]) + int(fields[12])
    return total / _TICK


def core_busy_seconds(cpu: int) -> float:
    """Non-idle seconds of one CPU so far, from /proc/stat (user..steal, not idle/iowait)."""
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(f"cpu{cpu} "):
            values = [int(v) for v in line.split()[1:9]]
            user, nice, system, _idle, _iowait, irq, softirq, steal = values
            return (user + nice + system + irq + softirq + steal) / _TICK
    return 0.0
