"""Each runnable example of the README and docs/ works exactly as written: the file as shown, installed with the
install command that follows it (its extras are declared, its packages installed), its
secret exported with the README's own line, and served by every command its run comment
names (uvicorn, gunicorn, flask run), as real server processes.

The servers are started with the README's command lines unchanged; only the port comes from
the servers' own environment variables (UVICORN_PORT, GUNICORN_CMD_ARGS, FLASK_RUN_PORT), so
the tests never take a port another program on this machine uses.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import shlex
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import httpx
import pytest

from coatcheck.stores import RedisStore
from tests.services import free_port, wait_for_port

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
BIN = Path(sys.executable).parent
FIRST_LINE = re.compile(r"^(?:# example: [\w-]+\n)?# (\w+\.py); run with: (.+)$", flags=re.M)


@dataclass(frozen=True)
class Example:
    """A runnable README example: its file, the commands its run comment names, and the
    install / export / run lines of the shell block that follows it."""

    filename: str
    source: str
    run_commands: list[str]
    install: list[str]
    exports: list[str]
    run: list[str]


DOCS = ROOT / "docs"
PAGES = [README, *sorted(DOCS.glob("*.md"))]


def fenced_blocks(page: Path) -> list[tuple[str, str]]:
    """(language, body) of every fenced block of a Markdown page, in order."""
    return re.findall(r"```(\w*)\n(.*?)```", page.read_text(encoding="utf-8"), flags=re.S)


def examples() -> dict[str, Example]:
    """Every python block whose header says `# <file>.py; run with: ...`, by its first line."""
    found: dict[str, Example] = {}
    for page in PAGES:
        found.update(runnable_examples(fenced_blocks(page)))
    return found


def runnable_examples(blocks: list[tuple[str, str]]) -> dict[str, Example]:
    found: dict[str, Example] = {}
    for index, (language, body) in enumerate(blocks):
        header = FIRST_LINE.match(body)
        if language != "python" or header is None or not body.startswith(header.group(0)):
            continue
        shell = blocks[index + 1] if index + 1 < len(blocks) else ("", "")
        assert shell[0] == "sh", f"{header.group(0)!r}: the next block must be its sh install/run block"
        lines = [line.split("  #", 1)[0].strip() for line in shell[1].splitlines()]
        said = header.group(2).split(" (", 1)[0]
        found[body.splitlines()[0]] = Example(
            filename=header.group(1),
            source=body,
            run_commands=[command.strip() for command in said.split(", or: ")],
            install=[line for line in lines if line.startswith("pip install")],
            exports=[line for line in lines if line.startswith("export ")],
            run=[line for line in lines if line and not line.startswith(("pip install", "export "))],
        )
    return found


STARLETTE = "# app.py; run with: uvicorn app:app (after exporting SESSION_SECRET once, below)"
STARLETTE_LOGIN = "# example: starlette-login"
FASTAPI_LOGIN = "# example: fastapi-login"
FLASK = (
    "# app.py; run with: gunicorn -w 4 -k gthread --threads 4 app:app, or: flask run (SECRET_KEY exported)"
)
FLASK_REFERENCE = "# app.py; run with: flask run (SECRET_KEY exported)"  # docs/flask.md


def example(first_line: str) -> Example:
    found = examples()
    assert first_line in found, f"README.md and docs/ have no runnable example starting {first_line!r}"
    return found[first_line]


def test_every_runnable_example_is_one_of_these_tests() -> None:
    assert set(examples()) == {STARLETTE, STARLETTE_LOGIN, FASTAPI_LOGIN, FLASK, FLASK_REFERENCE}
    in_readme = runnable_examples(fenced_blocks(README))
    assert {STARLETTE, FLASK} <= set(in_readme)  # the front door shows one example per framework


# ---- the documentation site -----------------------------------------------------------------------
def slug(heading: str) -> str:
    """The anchor mkdocs (Python-Markdown's toc) gives a heading."""
    text = re.sub(r"[^\w\s-]", "", heading.replace("`", "")).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def test_every_readme_link_into_docs_names_a_page_and_heading_that_exist() -> None:
    links = re.findall(r"\]\((docs/[^)#]*)(?:#([^)]+))?\)", README.read_text(encoding="utf-8"))
    assert links
    for target, anchor in links:
        path = ROOT / target
        assert path.exists(), f"README links to {target}, which does not exist"
        if anchor:
            headings = re.findall(r"^#+ (.+)$", path.read_text(encoding="utf-8"), flags=re.M)
            assert anchor in {slug(h) for h in headings}, f"{target} has no heading #{anchor}"


def test_the_documentation_site_builds_with_warnings_as_errors(tmp_path: Path) -> None:
    """Broken links, unknown anchors, pages missing from the nav and API names that no longer
    resolve are errors (mkdocs.yml sets each to warn; --strict turns warnings into errors)."""
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    api = (tmp_path / "site" / "api" / "index.html").read_text(encoding="utf-8")
    for name in ("coatcheck.SessionMiddleware", "coatcheck.Session.login", "coatcheck.stores.RedisStore"):
        assert f'id="{name}"' in api, f"the API reference lost {name}"


# ---- install commands -----------------------------------------------------------------------------
def declared_extras() -> dict[str, list[str]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    extras: dict[str, list[str]] = project["optional-dependencies"]
    return extras


def requirement_name(requirement: str) -> str:
    return re.split(r"[\[<>=!~;\s]", requirement, maxsplit=1)[0]


def assert_installed(name: str, why: str) -> None:
    try:
        metadata.distribution(name)
    except metadata.PackageNotFoundError:
        pytest.fail(f"{name} ({why}) is not installed: pip install -e '.[dev]'")


@pytest.mark.parametrize("first_line", [STARLETTE, STARLETTE_LOGIN, FASTAPI_LOGIN, FLASK, FLASK_REFERENCE])
def test_the_install_command_names_declared_extras_and_installable_packages(first_line: str) -> None:
    found = example(first_line)
    assert len(found.install) == 1, found.install
    words = shlex.split(found.install[0])
    assert words[:4] == ["pip", "install", "-e", words[3]] and words[3].startswith(".["), words
    extras = words[3][2:-1].split(",")
    declared = declared_extras()
    for extra in extras:
        assert extra in declared, (
            f"the README installs coatcheck[{extra}], which pyproject.toml does not declare"
        )
        for requirement in declared[extra]:
            if not requirement.startswith("coatcheck["):
                assert_installed(requirement_name(requirement), f"from the {extra} extra")
    for package in words[4:]:
        assert_installed(package, "named by the README's install command")
    uses_cli = any("coatcheck " in line for line in found.exports)
    assert not uses_cli or "cli" in extras, "the export line runs `coatcheck secret`: install [cli]"


# ---- running the examples -------------------------------------------------------------------------
def exported(found: Example) -> dict[str, str]:
    """Run the example's `export NAME=...` lines in bash exactly as written; returns what they set."""
    assert found.exports, "the example exports its secret once"
    names = [line.removeprefix("export ").split("=", 1)[0] for line in found.exports]
    script = "\n".join([*found.exports, *(f'printf "%s\\0" "${name}"' for name in names)])
    env = {**_environment(), "PATH": f"{BIN}:{_environment().get('PATH', '')}"}
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0 and not result.stderr, result.stderr
    values = result.stdout.split("\0")[:-1]
    assert all(len(value) >= 32 for value in values), "an export line made an empty or short secret"
    return dict(zip(names, values, strict=True))


def _environment() -> dict[str, str]:
    import os

    env = dict(os.environ)
    for name in ("SESSION_SECRET", "SECRET_KEY", "FLASK_APP"):
        env.pop(name, None)
    return env


@contextmanager
def serve(command: str, directory: Path, variables: dict[str, str]) -> Iterator[str]:
    """Run a README command line unchanged in `directory`; yields the base URL it serves on."""
    port = free_port()
    env = {
        **_environment(),
        **variables,
        "PATH": f"{BIN}:{_environment().get('PATH', '')}",
        "UVICORN_PORT": str(port),
        "GUNICORN_CMD_ARGS": f"--bind 127.0.0.1:{port}",
        "FLASK_RUN_PORT": str(port),
    }
    proc = subprocess.Popen(
        shlex.split(command), cwd=directory, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        try:
            wait_for_port("127.0.0.1", port, timeout=30)
        except TimeoutError:
            proc.kill()
            pytest.fail(
                f"{command!r} did not serve:\n{proc.communicate(timeout=10)[0].decode(errors='replace')}"
            )
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def written(found: Example, directory: Path) -> Path:
    (directory / found.filename).write_text(found.source, encoding="utf-8")
    return directory


def test_the_starlette_quick_start_counts_on_after_a_restart(tmp_path: Path) -> None:
    found = example(STARLETTE)
    assert len(found.source.strip().splitlines()) <= 25
    assert found.run == found.run_commands == ["uvicorn app:app"]
    variables = exported(found)
    written(found, tmp_path)
    with serve(found.run[0], tmp_path, variables) as base, httpx.Client(base_url=base) as browser:
        assert browser.get("/").json() == {"visits": 1, "new": True}
        assert browser.get("/").json() == {"visits": 2, "new": False}
        cookies = browser.cookies
    with (
        serve(found.run[0], tmp_path, variables) as base,
        httpx.Client(base_url=base, cookies=cookies) as same,
    ):
        assert same.get("/").json() == {"visits": 3, "new": False}  # same secret, same SQLite file
    assert (tmp_path / "sessions.db").exists()


def test_the_starlette_login_example_logs_in_when_served_as_written(tmp_path: Path) -> None:
    found = example(STARLETTE_LOGIN)
    assert found.run == found.run_commands == ["uvicorn app:app"]
    with (
        serve(found.run[0], written(found, tmp_path), exported(found)) as base,
        httpx.Client(base_url=base, headers={"origin": "http://127.0.0.1:8000"}) as browser,
    ):
        page = browser.get("/").text
        token = re.search(r'action="/login"><input type="hidden" name="csrf_token" value="([^"]+)"', page)
        assert token is not None, page
        form = {"username": "alice", "password": "wonderland", "csrf_token": token.group(1)}
        welcome = browser.post("/login", data=form, follow_redirects=True)
    assert "Welcome back, alice!" in welcome.text and "Signed in as alice." in welcome.text


def test_the_fastapi_login_example_logs_in_when_served_as_written(tmp_path: Path) -> None:
    found = example(FASTAPI_LOGIN)
    assert found.run == found.run_commands == ["uvicorn api:app"]
    with (
        serve(found.run[0], written(found, tmp_path), exported(found)) as base,
        httpx.Client(base_url=base, headers={"origin": "http://localhost:8000"}) as client,
    ):
        token = client.get("/csrf").json()["token"]
        credentials = {"username": "alice", "password": "wonderland"}
        logged_in = client.post("/login", json=credentials, headers={"x-csrf-token": token})
        assert logged_in.status_code == 200, logged_in.text
        assert client.get("/me").json() == {"user": "alice", "messages": ["Welcome back, alice!"]}


@pytest.mark.redis
@pytest.mark.parametrize("runner", ["gunicorn", "flask run"])
def test_the_flask_example_logs_in_under_each_command_its_comment_names(
    tmp_path: Path, redis_url: str, runner: str
) -> None:
    found = example(FLASK)
    assert found.run_commands == ["gunicorn -w 4 -k gthread --threads 4 app:app", "flask run"]
    assert found.run == found.run_commands[:1]
    command = next(c for c in found.run_commands if c.startswith(runner))
    origin = (
        "http://127.0.0.1:8000" if runner == "gunicorn" else "http://127.0.0.1:5000"
    )  # as a browser sends
    user = f"readme-{secrets.token_hex(4)}"  # the example's Redis db 0 is shared: our user, deleted after
    try:
        with (
            serve(command, written(found, tmp_path), exported(found)) as base,
            httpx.Client(base_url=base, headers={"origin": origin}, timeout=30) as browser,
        ):
            form = browser.get("/login").text
            token = re.search(r'name="csrf_token" value="([^"]+)"', form)
            assert token is not None, form
            login = browser.post("/login", data={"name": user, "csrf_token": token.group(1)})
            assert login.status_code == 302, login.text
            assert browser.get("/").json() == {"visits": 1, "messages": ["Welcome!"]}
    finally:
        asyncio.run(_forget(user))


async def _forget(user: str) -> None:
    store = RedisStore("redis://localhost:6379/0")  # the store the example writes to
    try:
        await store.destroy_user(user)
    finally:
        await store.close()


@pytest.mark.redis
def test_the_flask_reference_example_counts_visits_under_flask_run(tmp_path: Path, redis_url: str) -> None:
    found = example(FLASK_REFERENCE)
    assert found.run == found.run_commands == ["flask run"]
    variables = exported(found)
    with (
        serve(found.run[0], written(found, tmp_path), variables) as base,
        httpx.Client(base_url=base, timeout=30) as browser,
    ):
        assert browser.get("/").json() == {"visits": 1, "flashes": []}
        assert browser.get("/").json() == {"visits": 2, "flashes": []}
        cookie = next(iter(browser.cookies.jar)).value
    asyncio.run(_forget_session(cookie, variables["SECRET_KEY"]))


async def _forget_session(cookie: str, secret: str) -> None:
    """Delete the record the example wrote to the shared Redis db 0 (by the cookie's id)."""
    from urllib.parse import unquote

    from coatcheck.crypto import Keyring, storage_key

    session_id = Keyring(secret).unsign_id(unquote(cookie).encode())
    assert session_id is not None
    store = RedisStore("redis://localhost:6379/0")
    try:
        await store.destroy(storage_key(session_id))
    finally:
        await store.close()
