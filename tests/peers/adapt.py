"""The adaptation of each peer suite: exactly the switch the README tells a user to make.

Every rewrite checks that it found what it replaces, so a new upstream release that moves
things fails loudly here instead of silently testing the peer's own code.
"""

from __future__ import annotations

import re
from pathlib import Path

STARLETTE_STORES = ("memory", "cookie", "sqlite")

_STARLETTE_IMPORT = re.compile(r"^from starlette\.middleware\.sessions import (?P<names>[^\n]+)$", re.M)


class AdaptationError(RuntimeError):
    """The peer's released file no longer looks the way this adaptation expects."""


def unpacked(work: Path, project: str) -> Path:
    """The one source tree `.ci/peers` unpacked for `project` (e.g. work/starlette-1.10.0)."""
    trees = sorted(p for p in work.glob(f"{project}-*") if p.is_dir())
    if len(trees) != 1:
        raise AdaptationError(f"expected one unpacked {project} source tree in {work}, found {trees}")
    return trees[0]


def replace(text: str, old: str, new: str, what: str) -> str:
    if old not in text:
        raise AdaptationError(f"{what}: {old!r} not found")
    return text.replace(old, new)


def starlette_store_option(store: str, work: Path) -> tuple[str, str]:
    """(import line, extra constructor arguments) for one store, as a user would write them."""
    if store == "cookie":
        return "", ""  # the default: a sealed cookie, like Starlette's own sessions
    if store == "memory":
        return "from coatcheck.stores import MemoryStore\n", ", store=MemoryStore()"
    if store == "sqlite":
        path = work / "starlette-sessions.db"
        return "from coatcheck.stores import SQLiteStore\n", f", store=SQLiteStore({str(path)!r})"
    raise ValueError(f"unknown store {store!r}")


def starlette_session_tests(tree: Path, store: str, work: Path) -> str:
    """tests/middleware/test_session.py with `SessionMiddleware` imported from coatcheck and
    `insecure_dev_secret=True` added where the suite uses its weak secret "example"."""
    text = (tree / "tests" / "middleware" / "test_session.py").read_text()
    match = _STARLETTE_IMPORT.search(text)
    if match is None or "SessionMiddleware" not in match["names"]:
        raise AdaptationError("Starlette's test_session.py: the SessionMiddleware import was not found")
    kept = [n.strip() for n in match["names"].split(",") if n.strip() != "SessionMiddleware"]
    store_import, store_argument = starlette_store_option(store, work)
    swapped = (f"from starlette.middleware.sessions import {', '.join(kept)}\n" if kept else "") + (
        f"from coatcheck.starlette import SessionMiddleware\n{store_import}"
    )
    text = text[: match.start()] + swapped.rstrip("\n") + text[match.end() :]
    return replace(
        text,
        'secret_key="example"',
        f'secret_key="example", insecure_dev_secret=True{store_argument}',
        "Starlette's test_session.py",
    )
