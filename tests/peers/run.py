"""Run the peers' suites that `.ci/peers` unpacked into a work directory, and judge them.

    python -m tests.peers.run WORKDIR [SUITE ...]      # SUITE: starlette, flask, flask-login, flask-wtf

Each suite's released test files are adapted (`tests.peers.adapt`), run by pytest in a
subprocess from the unpacked source tree, and counted per row (suite / store / async
library). Prints one line per row, then `peers: N passed, N failed` counting rows at or
above their floor (`tests.peers.floors`); exits 1 if any row is below.
"""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from . import adapt
from .floors import FLOORS, KNOWN_DIFFERENCES, NOT_APPLICABLE, TARGETS

SRC = Path(__file__).resolve().parents[2] / "src"
PEERS = Path(__file__).resolve().parent
# Plugins of our own dev environment that the peers' suites do not use (their CI lacks them).
NO_PLUGINS = ("-p", "no:asyncio", "-p", "no:coatcheck", "-p", "no:benchmark", "-p", "no:cacheprovider")


@dataclass
class Row:
    passed: int = 0
    failed: list[str] = field(default_factory=list)


def pytest_run(cwd: Path, args: list[str], report: Path, env: dict[str, str] | None = None) -> None:
    """Run pytest from `cwd` (the peer's source tree) with our src first on the path."""
    environment = {**os.environ, **(env or {})}
    environment["PYTHONPATH"] = os.pathsep.join([str(SRC), str(cwd)])
    command = [sys.executable, "-m", "pytest", *NO_PLUGINS, "-q", "--junitxml", str(report), *args]
    with report.with_suffix(".log").open("w") as log:  # the details, for whoever reads a failure
        subprocess.run(command, cwd=cwd, env=environment, check=False, stdout=log, stderr=log)


def cases(report: Path) -> Iterator[tuple[str, bool]]:
    """(test name, passed) for every test case in a JUnit XML report."""
    if not report.exists():
        return
    for case in ET.parse(report).getroot().iter("testcase"):
        outcome = {child.tag for child in case}
        if "skipped" in outcome:
            continue
        yield case.get("name", "?"), not outcome & {"failure", "error"}


def backend_of(name: str) -> str:
    return "trio" if "trio" in name.split("[", 1)[-1] else "asyncio"


def run_starlette(work: Path) -> dict[str, Row]:
    """Starlette's middleware tests with each store, under asyncio and trio (anyio runs both)."""
    tree = adapt.unpacked(work, "starlette")
    rows: dict[str, Row] = {}
    for store in adapt.STARLETTE_STORES:
        target = tree / "tests" / "middleware" / f"test_session_coatcheck_{store}.py"
        target.write_text(adapt.starlette_session_tests(tree, store, work))
        report = work / f"starlette-{store}.xml"
        deselect = [arg for name in NOT_APPLICABLE for arg in ("--deselect", f"{target}::{name}")]
        pytest_run(tree, [str(target), *deselect], report)
        for name, ok in cases(report):
            base = name.split("[", 1)[0]
            if base in NOT_APPLICABLE:
                continue
            row = rows.setdefault(f"starlette / {store} / {backend_of(name)}", Row())
            if ok:
                row.passed += 1
            else:
                row.failed.append(name)
    return rows


def count(rows: dict[str, Row], label: str, report: Path) -> None:
    row = rows.setdefault(label, Row())
    for name, ok in cases(report):
        if ok:
            row.passed += 1
        else:
            row.failed.append(name)


def pristine(path: Path) -> Path:
    """Keep the released file next to the one we adapt, so each store starts from it."""
    original = path.with_name(path.name + ".released")
    if not original.exists():
        original.write_bytes(path.read_bytes())
    return original


def redis_prefix(suite: str) -> str:
    return f"coatcheck-peers-{suite}-{os.getpid()}:"


def forget_redis_keys(prefix: str) -> None:
    """Delete what a suite left in the shared Redis under its own prefix."""
    import redis

    client = redis.Redis.from_url("redis://127.0.0.1:6379/0")
    try:
        keys = list(client.scan_iter(match=prefix + "*", count=500))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def run_flask(work: Path) -> dict[str, Row]:
    """Flask's session tests (tests/test_basic.py, the tests that use the session or flash) and
    its test_json_tag values through the session, with `Session(app)` in the app fixture."""
    tree = adapt.unpacked(work, "flask")
    conftest = tree / "tests" / "conftest.py"
    released = pristine(conftest)
    selected = [f"tests/test_basic.py::{name}" for name in adapt.flask_session_tests(tree)]
    rows: dict[str, Row] = {}
    for store in adapt.FLASK_STORES:
        conftest.write_text(adapt.flask_conftest(released, store, redis_prefix("flask")))
        report = work / f"flask-basic-{store}.xml"
        pytest_run(tree, selected, report)
        count(rows, f"flask test_basic sessions / {store}", report)
        report = work / f"flask-json-tag-{store}.xml"
        harness = PEERS / "flask_json_tag_session.py"
        env = {"FLASK_TESTS": str(tree / "tests"), "COATCHECK_PEER_STORE": store}
        pytest_run(tree, [str(harness), "-p", "no:warnings"], report, env)
        count(rows, f"flask test_json_tag values via session / {store}", report)
    conftest.write_bytes(released.read_bytes())
    return rows


def run_flask_login(work: Path) -> dict[str, Row]:
    tree = adapt.unpacked(work, "flask-login")
    tests = tree / "tests" / "test_login.py"
    released = pristine(tests)
    rows: dict[str, Row] = {}
    for store in adapt.FLASK_LOGIN_STORES:
        tests.write_text(adapt.flask_login_tests(released, store, redis_prefix("flask-login")))
        report = work / f"flask-login-{store}.xml"
        pytest_run(tree, ["tests"], report)
        count(rows, f"flask-login / {store}", report)
    tests.write_bytes(released.read_bytes())
    forget_redis_keys(redis_prefix("flask-login"))
    return rows


def run_flask_wtf(work: Path) -> dict[str, Row]:
    tree = adapt.unpacked(work, "flask-wtf")
    conftest = tree / "tests" / "conftest.py"
    released = pristine(conftest)
    rows: dict[str, Row] = {}
    for store in adapt.FLASK_STORES:
        conftest.write_text(adapt.flask_wtf_conftest(released, store, redis_prefix("flask-wtf")))
        report = work / f"flask-wtf-{store}.xml"
        pytest_run(tree, ["tests"], report)
        count(rows, f"flask-wtf / {store}", report)
    conftest.write_bytes(released.read_bytes())
    return rows


SUITES: dict[str, Callable[[Path], dict[str, Row]]] = {
    "starlette": run_starlette,
    "flask": run_flask,
    "flask-login": run_flask_login,
    "flask-wtf": run_flask_wtf,
}


def judge(rows: dict[str, Row]) -> int:
    """Print each row against its floor; return how many rows are below their floor."""
    below = 0
    for label, row in rows.items():
        total = row.passed + len(row.failed)
        floor = FLOORS.get(label)
        verdict = "no floor" if floor is None else ("ok" if row.passed >= floor else "BELOW FLOOR")
        below += verdict == "BELOW FLOOR"
        target = f", target {TARGETS[label]}" if label in TARGETS else ""
        print(f"{label}: {row.passed}/{total} pass (floor {floor}{target}) {verdict}")
        for name in row.failed[:SHOWN_FAILURES]:
            reason = KNOWN_DIFFERENCES.get(name.split("[", 1)[0], "unexpected")
            print(f"    failed {name}: {reason}")
        if len(row.failed) > SHOWN_FAILURES:
            print(f"    ... and {len(row.failed) - SHOWN_FAILURES} more (the .log files beside the reports)")
    for label in FLOORS:
        if label not in rows and label.split(" / ", 1)[0] in SELECTED:
            print(f"{label}: did not run (floor {FLOORS[label]}) BELOW FLOOR")
            below += 1
    return below


SELECTED: set[str] = set()
SHOWN_FAILURES = 8


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    work = Path(argv[0]).resolve()
    names = argv[1:] or list(SUITES)
    SELECTED.update(names)
    rows: dict[str, Row] = {}
    for name in names:
        rows.update(SUITES[name](work))
    below = judge(rows)
    checked = sum(1 for label in rows if label in FLOORS) + sum(
        1 for label in FLOORS if label not in rows and label.split(" / ", 1)[0] in SELECTED
    )
    print(f"peers: {checked - below} passed, {below} failed")
    return 1 if below else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
