"""The adaptation of each peer suite: exactly the switch the README tells a user to make.

Every rewrite checks that it found what it replaces, so a new upstream release that moves
things fails loudly here instead of silently testing the peer's own code.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

STARLETTE_STORES = ("memory", "cookie", "sqlite")

_STARLETTE_IMPORT = re.compile(r"^from starlette\.middleware\.sessions import (?P<names>[^\n]+)$", re.M)


class AdaptationError(RuntimeError):
    """The peer's released file no longer looks the way this adaptation expects."""


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def unpacked(work: Path, project: str) -> Path:
    """The one source tree `.ci/peers` unpacked for `project` (e.g. work/Flask-Login-0.6.3)."""
    prefix = normalized(project) + "-"
    trees = sorted(
        p
        for p in work.iterdir()
        if p.is_dir() and normalized(p.name).startswith(prefix) and p.name[len(prefix)].isdigit()
    )
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


def flask_session_tests(tree: Path) -> list[str]:
    """The tests in Flask's tests/test_basic.py whose code uses the session or flash."""
    source = (tree / "tests" / "test_basic.py").read_text()
    names = [
        node.name
        for node in ast.parse(source).body
        if isinstance(node, ast.FunctionDef)
        and node.name.startswith("test")
        and re.search(r"session|flash", ast.get_source_segment(source, node) or "")
    ]
    if not names:
        raise AdaptationError("Flask's test_basic.py: no session tests found")
    return names


# ---- Flask and its extensions: `coatcheck.flask.Session(app)` where the app is configured ----
FLASK_STORES = ("memory", "cookie")
FLASK_LOGIN_STORES = ("memory", "cookie", "redis")


IMPORTS = "import coatcheck.flask\nimport coatcheck.stores\n"


def flask_store_expression(store: str, redis_prefix: str) -> str:
    if store == "memory":
        return "coatcheck.stores.MemoryStore()"
    if store == "cookie":
        return "coatcheck.stores.CookieStore()"
    if store == "redis":
        return repr(f"redis://127.0.0.1:6379/0?prefix={redis_prefix}")
    raise ValueError(f"unknown store {store!r}")


def install_line(indent: str, app: str, store: str, redis_prefix: str) -> str:
    """The one line the README asks for, with the suite's weak test secret allowed."""
    expression = flask_store_expression(store, redis_prefix)
    return f"{indent}coatcheck.flask.Session({app}, insecure_dev_secret=True, store={expression})\n"


def with_imports(text: str) -> str:
    """`text` with coatcheck imported after its `from __future__` line (or first)."""
    future = re.search(r"(?m)^from __future__ import [^\n]+\n", text)
    at = future.end() if future else 0
    return text[:at] + IMPORTS + text[at:]


def flask_conftest(released: Path, store: str, redis_prefix: str) -> str:
    """Flask's tests/conftest.py with the session installed in its `app` fixture."""
    text = released.read_text()
    return flask_conftest_fixture(text, store, redis_prefix, "Flask's conftest.py")


_SECRET_SET = re.compile(
    r"(?m)^(?P<indent>[ ]+)(?P<app>(?:self\.)?app)\.(?:secret_key|config\[\"SECRET_KEY\"\]) = [^\n]+\n"
)


def flask_login_tests(released: Path, store: str, redis_prefix: str) -> str:
    """Flask-Login's tests/test_login.py with the session installed wherever an app gets its
    secret key (the README: `Session(app)` once the app is configured)."""
    text = released.read_text()
    found = list(_SECRET_SET.finditer(text))
    if not found:
        raise AdaptationError("Flask-Login's test_login.py: no app secret assignment found")
    for match in reversed(found):
        line = install_line(match["indent"], match["app"], store, redis_prefix)
        text = text[: match.end()] + line + text[match.end() :]
    return with_imports(text)


def flask_wtf_conftest(released: Path, store: str, redis_prefix: str) -> str:
    """Flask-WTF's tests/conftest.py with the session installed in its `app` fixture."""
    text = released.read_text()
    return flask_conftest_fixture(text, store, redis_prefix, "Flask-WTF's conftest.py")


def flask_conftest_fixture(text: str, store: str, redis_prefix: str, what: str) -> str:
    fixture = re.search(r"(?m)^(?P<indent>[ ]+)return app\n", text)
    if fixture is None:
        raise AdaptationError(f"{what}: the app fixture's `return app` was not found")
    line = install_line(fixture["indent"], "app", store, redis_prefix)
    return with_imports(text[: fixture.start()] + line + text[fixture.start() :])
