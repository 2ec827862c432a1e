"""The headline comparisons of issue 13 and whether each target is met."""

from __future__ import annotations

from dataclasses import dataclass

from benchmarks.cases import SPREAD
from benchmarks.stats import Row, find

Case = tuple[str, str]  # (implementation name, route)


@dataclass(frozen=True)
class RatioTarget:
    label: str
    num: Case
    den: Case
    minimum: float | None  # None: informative (the issue quotes an expected value only)
    expected: str = ""


@dataclass(frozen=True)
class CommandTarget:
    label: str
    case: Case
    commands: float  # exact Redis commands per request
    no_set_cookie: bool = False


RATIOS: tuple[RatioTarget, ...] = (
    RatioTarget("coatcheck Redis /read vs starsessions /read",
                ("coatcheck-redis", "/read"), ("starsessions-redis", "/read"), 2.8),
    RatioTarget("coatcheck Redis /read vs bare Starlette /plain",
                ("coatcheck-redis", "/read"), ("starlette-bare", "/plain"), 0.45),
    RatioTarget("coatcheck Redis /incr vs starsessions /incr",
                ("coatcheck-redis", "/incr"), ("starsessions-redis", "/incr"), 2.0),
    RatioTarget("coatcheck Redis /first vs starsessions /first",
                ("coatcheck-redis", "/first"), ("starsessions-redis", "/first"), 1.5),
    RatioTarget("coatcheck cookie:// (sealed) /read vs Starlette SessionMiddleware /read",
                ("coatcheck-cookie", "/read"), ("starlette-cookie", "/read"), 1.0),
    RatioTarget("coatcheck cookie://?mode=signed /read vs Starlette SessionMiddleware /read",
                ("coatcheck-cookie-signed", "/read"), ("starlette-cookie", "/read"), 1.3),
    RatioTarget("coatcheck cookie:// (sealed) /first vs Starlette SessionMiddleware /first",
                ("coatcheck-cookie", "/first"), ("starlette-cookie", "/first"), 1.0),
    RatioTarget("coatcheck SQLite /read vs coatcheck Redis /read",
                ("coatcheck-sqlite", "/read"), ("coatcheck-redis", "/read"), 0.9),
    RatioTarget("coatcheck Flask /read vs Flask-Session /read (Redis, gunicorn)",
                ("coatcheck-flask", "/read"), ("flask-session-redis", "/read"), 1.2),
    RatioTarget("coatcheck Flask /incr vs Flask-Session /incr (Redis, gunicorn)",
                ("coatcheck-flask", "/incr"), ("flask-session-redis", "/incr"), 1.2),
    RatioTarget("coatcheck /plain (anonymous, behind middleware) vs bare Starlette /plain",
                ("coatcheck-redis", "/plain"), ("starlette-bare", "/plain"), 0.97),
    RatioTarget("coatcheck Flask /plain (anonymous) vs bare Flask /plain",
                ("coatcheck-flask", "/plain"), ("flask-bare", "/plain"), 0.97),
    RatioTarget("coatcheck PostgreSQL /read vs coatcheck Redis /read (issue 18)",
                ("coatcheck-postgresql", "/read"), ("coatcheck-redis", "/read"), 0.5),
    RatioTarget("coatcheck PostgreSQL /incr vs coatcheck Redis /incr, one session per connection (issue 18)",
                ("coatcheck-postgresql", SPREAD), ("coatcheck-redis", SPREAD), 0.5),
    RatioTarget("coatcheck PostgreSQL /incr vs coatcheck Redis /incr, one session for all 32 connections",
                ("coatcheck-postgresql", "/incr"), ("coatcheck-redis", "/incr"), None, "row contention"),
    RatioTarget("coatcheck MariaDB /read vs coatcheck Redis /read",
                ("coatcheck-mariadb", "/read"), ("coatcheck-redis", "/read"), None, "no target"),
    RatioTarget("coatcheck MariaDB /incr vs coatcheck Redis /incr, one session per connection",
                ("coatcheck-mariadb", SPREAD), ("coatcheck-redis", SPREAD), None, "no target"),
    RatioTarget("coatcheck MariaDB /incr vs coatcheck Redis /incr, one session for all 32 connections",
                ("coatcheck-mariadb", "/incr"), ("coatcheck-redis", "/incr"), None, "row contention"),
    RatioTarget("coatcheck SQLite /incr vs coatcheck Redis /incr, one session per connection",
                ("coatcheck-sqlite", SPREAD), ("coatcheck-redis", SPREAD), None, "no target"),
    RatioTarget("coatcheck Redis /read vs express-session /read",
                ("coatcheck-redis", "/read"), ("express-session-redis", "/read"), None, "no target"),
    RatioTarget("pipelined Redis connection vs ?connection=pool, /read",
                ("coatcheck-redis", "/read"), ("coatcheck-redis-pool", "/read"), None,
                "the default must win"),
    RatioTarget("pipelined Redis connection vs ?connection=pool, /incr",
                ("coatcheck-redis", "/incr"), ("coatcheck-redis-pool", "/incr"), None,
                "the default must win"),
    RatioTarget("pipelined Redis connection vs ?connection=pool, /first",
                ("coatcheck-redis", "/first"), ("coatcheck-redis-pool", "/first"), None,
                "the default must win"),
)  # fmt: skip

COMMANDS: tuple[CommandTarget, ...] = (
    CommandTarget("coatcheck Redis /read: one command, no write, no Set-Cookie",
                  ("coatcheck-redis", "/read"), 1, no_set_cookie=True),
    CommandTarget("coatcheck Redis /incr: two commands (load, delta commit)",
                  ("coatcheck-redis", "/incr"), 2),
    CommandTarget("coatcheck Redis /first: one command", ("coatcheck-redis", "/first"), 1),
)  # fmt: skip


@dataclass(frozen=True)
class TailTarget:
    label: str
    case: Case
    maximum: float  # p99 / p50


TAILS: tuple[TailTarget, ...] = tuple(
    TailTarget(f"{impl} /read latency tail, p99 / p50 (issue 18)", (impl, "/read"), 3.0)
    for impl in ("coatcheck-redis", "coatcheck-sqlite", "coatcheck-postgresql", "coatcheck-mariadb")
)


@dataclass(frozen=True)
class Verdict:
    label: str
    measured: str
    target: str
    status: str
    by_cpu: str = "-"  # the same ratio from server CPU us/req (steadier on a busy machine)


def _missing(*cases: Case) -> str:
    return "not measured: " + ", ".join(f"{i}{r}" for i, r in cases)


def judge_ratio(rows: list[Row], t: RatioTarget) -> Verdict:
    target = f">= {t.minimum:g}x" if t.minimum is not None else f"({t.expected}, no threshold)"
    num, den = find(rows, *t.num), find(rows, *t.den)
    if num is None or den is None or den.rps <= 0:
        absent = [c for c, r in ((t.num, num), (t.den, den)) if r is None]
        return Verdict(t.label, "-", target, _missing(*absent))
    ratio = num.rps / den.rps
    measured = f"{ratio:.2f}x ({num.rps:,.0f} / {den.rps:,.0f} req/s)"
    status = "info" if t.minimum is None else ("met" if ratio >= t.minimum else "NOT met")
    by_cpu = "-"
    if num.cpu_us > 0 and den.cpu_us > 0:
        by_cpu = f"{den.cpu_us / num.cpu_us:.2f}x ({den.cpu_us:.0f} / {num.cpu_us:.0f} us)"
    return Verdict(t.label, measured, target, status, by_cpu)


def judge_commands(rows: list[Row], t: CommandTarget) -> Verdict:
    target = f"{t.commands:g} per request" + (", no Set-Cookie" if t.no_set_cookie else "")
    row = find(rows, *t.case)
    if row is None:
        return Verdict(t.label, "-", target, _missing(t.case))
    sent = row.sent_per_request
    if sent is None or row.client_commands is None:
        count = row.commands_per_request
        measured = f"{count:.2f}/req executed ({format_commands(row.commands)}; no MONITOR pass)"
    else:
        count = sent
        measured = f"{count:.2f}/req sent ({format_sent(row.client_commands)})"
    ok = abs(count - t.commands) < 0.05
    if t.no_set_cookie:
        measured += ", Set-Cookie" if row.sets_cookie else ", no Set-Cookie"
        ok = ok and not row.sets_cookie
    return Verdict(t.label, measured, target, "met" if ok else "NOT met")


def judge_tail(rows: list[Row], t: TailTarget) -> Verdict:
    target = f"<= {t.maximum:g}x"
    row = find(rows, *t.case)
    if row is None or row.p50_ms <= 0:
        return Verdict(t.label, "-", target, _missing(t.case))
    ratio = row.p99_ms / row.p50_ms
    measured = f"{ratio:.2f}x (p99 {row.p99_ms:.2f} / p50 {row.p50_ms:.2f} ms)"
    return Verdict(t.label, measured, target, "met" if ratio <= t.maximum else "NOT met")


def verdicts(rows: list[Row]) -> list[Verdict]:
    return (
        [judge_ratio(rows, t) for t in RATIOS]
        + [judge_tail(rows, t) for t in TAILS]
        + [judge_commands(rows, t) for t in COMMANDS]
    )


def format_sent(commands: dict[str, float]) -> str:
    """``EVALSHA 1.00 + HGETALL 1.00; in scripts: HSET 2.00``."""
    sent = {k: v for k, v in commands.items() if not k.startswith("lua:")}
    inner = {k.removeprefix("lua:"): v for k, v in commands.items() if k.startswith("lua:")}
    text = format_commands(sent)
    if inner:
        text += f"; in scripts: {format_commands(inner)}"
    return text


def format_commands(commands: dict[str, float]) -> str:
    """``GET 1.00 + SET 1.00``; commands under 0.005/request (pool set-up) are left out."""
    shown = [f"{name.upper()} {v:.2f}" for name, v in sorted(commands.items()) if v >= 0.005]
    return " + ".join(shown) if shown else "none"
