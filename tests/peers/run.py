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
from .floors import FLOORS, KNOWN_DIFFERENCES, NOT_APPLICABLE

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
    subprocess.run(command, cwd=cwd, env=environment, check=False, stdout=subprocess.DEVNULL)


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


SUITES: dict[str, Callable[[Path], dict[str, Row]]] = {
    "starlette": run_starlette,
}


def judge(rows: dict[str, Row]) -> int:
    """Print each row against its floor; return how many rows are below their floor."""
    below = 0
    for label, row in rows.items():
        total = row.passed + len(row.failed)
        floor = FLOORS.get(label)
        verdict = "no floor" if floor is None else ("ok" if row.passed >= floor else "BELOW FLOOR")
        below += verdict == "BELOW FLOOR"
        print(f"{label}: {row.passed}/{total} pass (floor {floor}) {verdict}")
        for name in row.failed:
            reason = KNOWN_DIFFERENCES.get(name.split("[", 1)[0], "unexpected")
            print(f"    failed {name}: {reason}")
    for label in FLOORS:
        if label not in rows and label.split(" / ", 1)[0] in SELECTED:
            print(f"{label}: did not run (floor {FLOORS[label]}) BELOW FLOOR")
            below += 1
    return below


SELECTED: set[str] = set()


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
