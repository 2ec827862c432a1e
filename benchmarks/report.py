"""RESULTS.md: setup, the per-case table, the headline ratios, and what could not run."""

from __future__ import annotations

from dataclasses import dataclass

from benchmarks.cases import IMPLS
from benchmarks.stats import Row, framework_plain
from benchmarks.targets import Verdict, format_sent


@dataclass(frozen=True)
class Setup:
    date: str
    command: str
    machine: dict[str, str]
    redis_version: str
    wrk_version: str
    load: str
    pinning: str
    uvicorn: str
    gunicorn: str
    py_versions: dict[str, str]
    node_versions: dict[str, str]
    revision: str = ""  # git commit of the measured tree


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return out


def results_table(rows: list[Row], failed: dict[str, str]) -> list[str]:
    body: list[list[str]] = []
    for row in rows:
        base = framework_plain(rows, row.impl)
        ratio = f"{row.rps / base.rps:.2f}" if base and base.rps > 0 else "-"
        executed = f"{row.commands_per_request:.2f}"
        sent = row.sent_per_request
        if sent is None or row.client_commands is None:
            cmds = "-"
        elif sent < 0.005 and not row.client_commands:
            cmds = "0"
        else:
            cmds = f"{sent:.2f} ({format_sent(row.client_commands)})"
        notes = []
        if row.errors:
            notes.append(f"{row.errors} errors/non-2xx")
        case_id = f"{row.impl.name}{row.route}"
        if case_id in failed:
            notes.append(f"a round failed: {failed[case_id]}")
        body.append([
            row.impl.name, row.impl.framework, row.impl.store, row.route,
            f"{row.rps:,.0f}", " / ".join(f"{v:,.0f}" for v in row.rps_rounds),
            f"{row.p50_ms:.2f}", f"{row.p99_ms:.2f}", f"{row.cpu_us:.0f}",
            f"{row.cpu_share:.0%}", f"{row.others_share:.0%}", cmds, executed, ratio,
            "yes" if row.sets_cookie else "no", "; ".join(notes),
        ])  # fmt: skip
    header = [
        "implementation", "framework", "store", "route", "req/s (median)", "req/s per round",
        "p50 ms", "p99 ms", "server CPU us/req", "server core busy", "others on core (max)",
        "Redis cmds/req sent", "Redis cmds/req executed", "x framework /plain", "Set-Cookie", "notes",
    ]  # fmt: skip
    return _table(header, body)


def _noise_warning(rows: list[Row]) -> list[str]:
    """A loud note when other processes used the server core during the runs."""
    if not rows:
        return []
    worst = max(r.others_share for r in rows)
    median = sorted(r.others_share for r in rows)[len(rows) // 2]
    if worst <= 0.10:
        return []
    return [
        f"**Warning: this run was disturbed.** Other processes used the server core during the "
        f"runs (median case {median:.0%}, worst {worst:.0%} of it; see `others on core`). "
        "Absolute req/s and their ratios are unreliable; the CPU-time ratios in the headline "
        "table are steadier. Re-run on a quiet machine for numbers to quote.",
        "",
    ]


def render(
    setup: Setup,
    rows: list[Row],
    verdicts: list[Verdict],
    unavailable: dict[str, str],
    failed: dict[str, str],
) -> str:
    m = setup.machine
    lines = [
        "# coatcheck benchmark results",
        "",
        f"Generated {setup.date} by `{setup.command}`.",
        "",
        "## Setup",
        "",
        f"- coatcheck tree: {setup.revision or 'not recorded'}",
        f"- Machine: {m['nproc']} CPUs ({m['cpu']}), Linux {m['kernel']}",
        f"- Python {m['python']}, Node {m['node']}, {setup.redis_version}, {setup.wrk_version}",
        f"- Load: {setup.load}",
        f"- Pinning: {setup.pinning}",
        f"- uvicorn: {setup.uvicorn}",
        f"- gunicorn: {setup.gunicorn}",
        "- Python packages: " + ", ".join(f"{k} {v}" for k, v in setup.py_versions.items()),
        "- Node packages: " + ", ".join(f"{k} {v}" for k, v in setup.node_versions.items()),
        "",
        *_noise_warning(rows),
        "## Results",
        "",
        "Medians over the rounds. `x framework /plain` is req/s divided by the bare framework's",
        "`/plain` (Starlette, Litestar, Flask or Express without session middleware).",
        "`Redis cmds/req sent` counts the commands the app sent, per request, over 20 sequential",
        "untimed requests watched with MONITOR after the warm-up (commands a Lua script ran are",
        "listed after `in scripts:`). `Redis cmds/req executed` is `INFO commandstats` after",
        "minus before the timed run over wrk's request count: it counts script-internal calls",
        "too, so it is higher than `sent` for libraries that use EVALSHA. `Set-Cookie` tells whether a single probe of the route (with the session cookie",
        "for /read and /incr) received a Set-Cookie header. `server CPU us/req` is the CPU time",
        "of the server's whole process tree per request (from /proc) and `server core busy` that",
        "CPU time over the run's wall time: well under 100% means the server was waiting (on",
        "Redis, or for a core another process held), so compare CPU us/req when req/s is noisy.",
        "`others on core (max)` is the worst round's share of the server core used by anything",
        "else (from /proc/stat): above a few percent, that round's req/s was disturbed.",
        "",
        *results_table(rows, failed),
        "",
        "## Headline ratios (targets from issues 13 and 18)",
        "",
        "Status is judged on median req/s. The last column is the ratio the server CPU time per",
        "request implies (inverse CPU us/req): if the two disagree, other load on the machine",
        "disturbed the run (see `others on core`), and the CPU ratio is the better estimate.",
        "",
        *_table(
            ["comparison", "measured (req/s)", "target", "status", "same ratio by CPU us/req"],
            [[v.label, v.measured, v.target, v.status, v.by_cpu] for v in verdicts],
        ),
        "",
    ]
    if unavailable:
        lines += ["## Not available", ""]
        for name, why in unavailable.items():
            label = next((i.label for i in IMPLS if i.name == name), name)
            lines.append(f"- `{name}` ({label}): not available: {why}")
        lines.append("")
    measured = {f"{r.impl.name}{r.route}" for r in rows}
    lost = {k: v for k, v in failed.items() if k not in measured}
    if lost:
        lines += ["## Failed cases", ""]
        lines += [f"- `{case}`: {why}" for case, why in lost.items()]
        lines.append("")
    return "\n".join(lines)
