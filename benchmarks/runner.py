"""The measurement loop: every case, round-robin, for several rounds."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from benchmarks.cases import SPREAD
from benchmarks.cpu import core_busy_seconds, session_cpu_seconds
from benchmarks.probe import create_session, get
from benchmarks.procs import Children
from benchmarks.redisctl import PrivateRedis, command_delta
from benchmarks.servers import Running
from benchmarks.wrk import run_wrk


@dataclass(frozen=True)
class LoadOptions:
    duration: float
    rounds: int
    warmup: float
    connections: int
    cpu: str | None  # where wrk runs
    server_cpu: str | None  # where the servers run (to see who else used that core)
    retry_noisy: int = 0  # re-measure up to this many times when others used the core
    max_noise: float = 0.10  # ... more than this share of it


@dataclass
class Measurement:
    impl: str
    route: str
    round: int
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int
    commands: dict[str, int]  # Redis commands during the timed run (commandstats, incl. scripts)
    client_commands: dict[str, float] | None  # per request, sent by the app (MONITOR pass)
    cpu_us_per_request: float  # server process tree CPU time per request
    cpu_share: float  # server CPU seconds / wall seconds of the run (1.0 = one full core)
    others_share: float  # share of the server's core busy with anything but the server
    sets_cookie: bool  # did a probe of this route (with the session cookie) get Set-Cookie?


@dataclass
class Outcome:
    """Everything measured, plus why some cases have no numbers."""

    measurements: list[Measurement] = field(default_factory=list)
    unavailable: dict[str, str] = field(default_factory=dict)  # impl name -> reason
    failed: dict[str, str] = field(default_factory=dict)  # "impl/route" -> last error


def needs_session(route: str) -> bool:
    return route in ("/read", "/incr", SPREAD)


def path_of(route: str) -> str:
    """The URL path a route label requests (`/incr-spread` is /incr with many sessions)."""
    return "/incr" if route == SPREAD else route


MONITOR_REQUESTS = 20


def count_client_commands(redis: PrivateRedis, port: int, route: str, cookie: str | None) -> dict[str, float]:
    """Redis commands the app sends per request (script-internal calls excluded).

    ``MONITOR_REQUESTS`` sequential requests, untimed, while MONITOR records. Keys are
    command names; a ``lua:`` prefix marks commands a script ran (informative only).
    """

    def requests() -> None:
        for _ in range(MONITOR_REQUESTS):
            reply = get(port, route, cookie)
            if reply.status != 200:
                raise RuntimeError(f"GET {route} returned {reply.status} during MONITOR pass")

    clients, scripts = redis.monitor(requests)
    counts = {name: n / MONITOR_REQUESTS for name, n in clients.items()}
    counts.update({f"lua:{name}": n / MONITOR_REQUESTS for name, n in scripts.items()})
    return counts


def measure_once(
    children: Children,
    redis: PrivateRedis,
    server: Running,
    route: str,
    round_no: int,
    opts: LoadOptions,
    first_attempt: bool = True,
) -> Measurement:
    redis.wait_quiet()  # the previous case's in-flight requests are done
    redis.flush()
    cookie = create_session(server.port) if needs_session(route) else None
    spread = None
    if route == SPREAD and cookie is not None:  # one session per connection
        spread = [cookie] + [create_session(server.port) for _ in range(opts.connections - 1)]
    path = path_of(route)
    probe = get(server.port, path, cookie)
    if probe.status != 200:
        raise RuntimeError(f"GET {route} returned {probe.status}: {probe.body[:200]}")
    url = f"http://127.0.0.1:{server.port}{path}"
    one = None if spread else cookie  # wrk's single Cookie header, or `spread` in turn
    client_commands = None
    if round_no == 0 and first_attempt:
        if opts.warmup > 0:
            run_wrk(children, url, duration=opts.warmup, connections=opts.connections,
                    cpu=opts.cpu, cookie=one, cookies=spread)  # fmt: skip
            redis.wait_quiet()
        client_commands = count_client_commands(redis, server.port, path, cookie)
    before = redis.commandstats()
    cpu_before = session_cpu_seconds(server.proc.pid)
    core = int(opts.server_cpu) if opts.server_cpu is not None else None
    core_before = core_busy_seconds(core) if core is not None else 0.0
    result = run_wrk(
        children, url, duration=opts.duration, connections=opts.connections,
        cpu=opts.cpu, cookie=one, cookies=spread,
    )  # fmt: skip
    cpu_used = session_cpu_seconds(server.proc.pid) - cpu_before
    core_used = core_busy_seconds(core) - core_before if core is not None else 0.0
    after = redis.commandstats()
    wall = result.duration_s if result.duration_s > 0 else float("inf")
    return Measurement(
        impl=server.impl.name,
        route=route,
        round=round_no,
        rps=result.rps,
        p50_ms=result.p50_ms,
        p99_ms=result.p99_ms,
        requests=result.requests,
        errors=result.errors,
        commands=command_delta(before, after),
        client_commands=client_commands,
        cpu_us_per_request=cpu_used * 1e6 / max(result.requests, 1),
        cpu_share=cpu_used / wall,
        others_share=max(0.0, core_used - cpu_used) / wall,
        sets_cookie=bool(probe.set_cookies),
    )


def run_rounds(
    children: Children,
    redis: PrivateRedis,
    servers: list[tuple[Running, tuple[str, ...]]],
    opts: LoadOptions,
    outcome: Outcome,
    log: Callable[[str], None],
) -> None:
    """Round-robin over all (implementation, route) cases, ``opts.rounds`` times."""
    cases = [(srv, route) for srv, routes in servers for route in routes]
    for round_no in range(opts.rounds):
        for index, (srv, route) in enumerate(cases, start=1):
            case_id = f"{srv.impl.name}{route}"
            if srv.proc.poll() is not None:
                outcome.failed[case_id] = f"server exited (code {srv.proc.returncode})"
                continue
            prefix = f"[{round_no + 1}/{opts.rounds} {index}/{len(cases)}] {case_id}"
            for attempt in range(opts.retry_noisy + 1):
                started = time.monotonic()
                try:
                    m = measure_once(children, redis, srv, route, round_no, opts, attempt == 0)
                except (RuntimeError, OSError) as exc:
                    outcome.failed[case_id] = str(exc)[:300]
                    log(f"{prefix}: FAILED {exc}")
                    break
                log(f"{prefix}: {summary(m)} ({time.monotonic() - started:.1f}s)")
                if m.others_share <= opts.max_noise or attempt == opts.retry_noisy:
                    outcome.measurements.append(m)
                    break
                log(f"{prefix}: other processes used {m.others_share:.0%} of the core; again")


def summary(m: Measurement) -> str:
    per_req = sum(m.commands.values()) / m.requests if m.requests else 0.0
    return (
        f"{m.rps:,.0f} req/s p50 {m.p50_ms:.2f} ms p99 {m.p99_ms:.2f} ms "
        f"redis {per_req:.2f}/req cpu {m.cpu_us_per_request:.0f} us/req "
        f"({m.cpu_share:.0%} of a core, others {m.others_share:.0%}) errors {m.errors}"
    )
