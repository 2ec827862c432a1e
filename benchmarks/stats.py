"""Aggregate rounds into medians, per (implementation, route)."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from benchmarks.cases import IMPLS, Impl, baseline_for
from benchmarks.runner import Measurement


@dataclass(frozen=True)
class Row:
    impl: Impl
    route: str
    rps: float
    rps_rounds: tuple[float, ...]
    p50_ms: float
    p99_ms: float
    commands: dict[str, float]  # median Redis calls per request, per command (commandstats)
    client_commands: dict[str, float] | None  # sent by the app per request ("lua:" = in scripts)
    cpu_us: float  # median server CPU microseconds per request
    cpu_share: float  # median share of a core the server used during the run
    others_share: float  # max over rounds: share of the server core used by other processes
    errors: int
    sets_cookie: bool

    @property
    def commands_per_request(self) -> float:
        """Commands Redis executed per request, script-internal calls included."""
        return sum(self.commands.values())

    @property
    def sent_per_request(self) -> float | None:
        """Commands the app sent per request (MONITOR pass), script-internal calls excluded."""
        if self.client_commands is None:
            return None
        return sum(v for k, v in self.client_commands.items() if not k.startswith("lua:"))


def aggregate(measurements: list[Measurement]) -> list[Row]:
    """One row per measured case, in the order of ``IMPLS`` and each impl's routes."""
    rows: list[Row] = []
    for impl in IMPLS:
        for route in impl.routes:
            ms = [m for m in measurements if m.impl == impl.name and m.route == route]
            if not ms:
                continue
            names = sorted({c for m in ms for c in m.commands})
            per_req = {
                name: statistics.median(m.commands.get(name, 0) / max(m.requests, 1) for m in ms)
                for name in names
            }
            rows.append(
                Row(
                    impl=impl,
                    route=route,
                    rps=statistics.median(m.rps for m in ms),
                    rps_rounds=tuple(m.rps for m in sorted(ms, key=lambda m: m.round)),
                    p50_ms=statistics.median(m.p50_ms for m in ms),
                    p99_ms=statistics.median(m.p99_ms for m in ms),
                    commands={k: v for k, v in per_req.items() if v > 0},
                    client_commands=next(
                        (m.client_commands for m in ms if m.client_commands is not None), None
                    ),
                    cpu_us=statistics.median(m.cpu_us_per_request for m in ms),
                    cpu_share=statistics.median(m.cpu_share for m in ms),
                    others_share=max(m.others_share for m in ms),
                    errors=sum(m.errors for m in ms),
                    sets_cookie=any(m.sets_cookie for m in ms),
                )
            )
    return rows


def find(rows: list[Row], impl: str, route: str) -> Row | None:
    return next((r for r in rows if r.impl.name == impl and r.route == route), None)


def framework_plain(rows: list[Row], impl: Impl) -> Row | None:
    """The bare framework's /plain row that ``impl`` is compared with."""
    base = baseline_for(impl.framework)
    return find(rows, base.name, "/plain") if base else None
