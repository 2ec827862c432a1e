"""The `coatcheck` command through its real entry points (the installed script and
`python -m coatcheck`), against real stores: a SQLite file and the shared Redis."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import pty
import re
import secrets
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from coatcheck.crypto import Keyring, new_session_id, storage_key
from coatcheck.stores import SQLiteStore, from_url
from coatcheck.testing import make_record
from tests.services import free_port, unavailable, wait_for_port

SCRIPT = shutil.which("coatcheck", path=str(Path(sys.executable).parent)) or shutil.which("coatcheck")
ENTRIES = ["script", "module"]


def cli(
    *args: str, entry: str = "script", cwd: Path | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run the command as a user would, in a wide non-colour terminal."""
    if entry == "script":
        assert SCRIPT is not None, "the coatcheck script is not installed: pip install -e ."
        command = [SCRIPT, *args]
    else:
        command = [sys.executable, "-m", "coatcheck", *args]
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"}
    env.pop("COATCHECK_STORE", None)
    env.pop("COATCHECK_DEBUG", None)
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd)


def tty_cli(*args: str, columns: int, timeout: float = 120) -> str:
    """Run the command with stdout on a terminal `columns` wide (a pseudo-terminal); returns
    what the terminal showed."""
    assert SCRIPT is not None, "the coatcheck script is not installed: pip install -e ."
    primary, secondary = pty.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    # rich treats TERM=dumb as 80 columns whatever the size: a real terminal type, no colour
    env = {**os.environ, "COLUMNS": str(columns), "NO_COLOR": "1", "TERM": "xterm"}
    env.pop("COATCHECK_STORE", None)
    proc = subprocess.Popen([SCRIPT, *args], stdout=secondary, stderr=subprocess.PIPE, env=env)
    os.close(secondary)
    chunks = []
    while True:
        try:
            chunk = os.read(primary, 65536)
        except OSError:  # EIO: the command exited and closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(primary)
    stderr = proc.communicate(timeout=timeout)[1]
    assert proc.returncode == 0, stderr
    shown = b"".join(chunks).decode().replace("\r\n", "\n")
    return re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", shown)  # styles (bold) are not text


def assert_one_line_error(result: subprocess.CompletedProcess[str], *, code: int, says: str) -> None:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    assert says in lines[0], lines[0]
    assert "Traceback" not in result.stderr + result.stdout


# ---- stores ---------------------------------------------------------------------------------
@pytest.fixture(params=["sqlite", "redis", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        path = tmp_path / "sessions.db"
        asyncio.run(_create_sqlite(path))
        yield f"sqlite:///{path}"
    elif request.param == "redis":
        url: str = request.getfixturevalue("redis_url")
        # A private key prefix per test: the shared Redis holds other tests' sessions too.
        yield f"{url}?prefix=cli-test-{os.getpid()}-{time.monotonic_ns()}:"
    else:
        server: str = request.getfixturevalue("postgres_url")
        table = f"cli_test_{secrets.token_hex(6)}"  # a private table, dropped afterwards
        yield f"{server}?table={table}"
        import psycopg

        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f"DROP TABLE IF EXISTS {table}")


async def _create_sqlite(path: Path) -> None:
    store = SQLiteStore(path)
    await store.count()
    await store.close()


def seed(url: str, *sessions: dict[str, Any]) -> list[str]:
    """Write sessions through the store's own API; returns their storage keys."""

    async def write() -> list[str]:
        store = from_url(url)
        keys = []
        try:
            for spec in sessions:
                key = spec.get("key") or storage_key(new_session_id())
                record = make_record(spec.get("data"), ttl=spec.get("ttl", 3600.0), user_id=spec.get("user"))
                await store.set(key, record)
                keys.append(key)
        finally:
            await store.close()
        return keys

    return asyncio.run(write())


def live_keys(url: str) -> set[str]:
    async def read() -> set[str]:
        store = from_url(url)
        try:
            assert hasattr(store, "list_sessions")
            return {info.storage_key for info in await store.list_sessions()}
        finally:
            await store.close()

    return asyncio.run(read())


def cleanup(url: str, keys: list[str]) -> None:
    async def drop() -> None:
        store = from_url(url)
        try:
            for key in keys:
                await store.destroy(key)
        finally:
            await store.close()

    asyncio.run(drop())


@pytest.fixture
def seeded(store_url: str) -> Iterator[tuple[str, list[str]]]:
    """Two sessions of ann, one of bob, one anonymous (with a CSRF token in its data)."""
    keys = seed(
        store_url,
        {"user": "ann", "data": {"cart": ["coat"]}},
        {"user": "ann"},
        {"user": "bob"},
        {"data": {"_csrf": "t0ken-that-must-not-show", "n": 1}},
    )
    yield store_url, keys
    cleanup(store_url, keys)


# ---- help, version, secret ------------------------------------------------------------------
COMMANDS = [
    [],
    ["demo"],
    ["secret"],
    ["sessions"],
    ["sessions", "list"],
    ["sessions", "show"],
    ["sessions", "revoke"],
    ["sessions", "revoke-user"],
    ["sessions", "purge"],
    ["sessions", "stats"],
]


@pytest.mark.parametrize("entry", ENTRIES)
@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "coatcheck")
def test_every_command_has_help(command: list[str], entry: str) -> None:
    result = cli(*command, "--help", entry=entry)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Usage: coatcheck")
    assert " ".join(["coatcheck", *command]) in result.stdout.splitlines()[0]


def test_version() -> None:
    result = cli("--version")
    assert result.returncode == 0 and "coatcheck, version" in result.stdout


@pytest.mark.parametrize("entry", ENTRIES)
def test_secret_prints_a_new_strong_secret(entry: str) -> None:
    first, second = cli("secret", entry=entry), cli("secret", entry=entry)
    assert first.returncode == second.returncode == 0
    a, b = first.stdout.strip(), second.stdout.strip()
    assert a != b and len(a) == 43
    Keyring(a)  # strong enough for SessionMiddleware without insecure_dev_secret


# ---- sessions list / show ---------------------------------------------------------------------
def test_list_shows_hints_users_and_times_never_full_ids(seeded: tuple[str, list[str]]) -> None:
    url, keys = seeded
    shown = tty_cli("sessions", "list", "--store", url, columns=200)
    for key in keys:
        assert key[:12] in shown
        assert key[12:24] not in shown
    assert "ann" in shown and "bob" in shown
    assert "4 live sessions" in shown
    assert "times in UTC" in shown


LONG_USER = "ann.longname@example.org"


def test_list_in_an_80_column_terminal_keeps_hints_and_users_whole(store_url: str) -> None:
    keys = seed(store_url, {"user": LONG_USER}, {"user": "bob"}, {})
    try:
        shown = tty_cli("sessions", "list", "--store", store_url, columns=80)
    finally:
        cleanup(store_url, keys)
    lines = shown.splitlines()
    assert all(len(line) <= 80 for line in lines), shown
    for key, user in zip(keys, [LONG_USER, "bob", "-"], strict=True):
        row = next(line for line in lines if key[:12] in line)
        assert re.search(rf"(?<!\S){re.escape(user)}\s", row), row  # the whole user id on the hint's row
    assert "in 59 min" in shown or "in 1 h" in shown  # times relative to now fit in 80 columns


def test_list_piped_prints_one_tab_separated_row_per_session(seeded: tuple[str, list[str]]) -> None:
    url, keys = seeded
    result = cli("sessions", "list", "--store", url)
    assert result.returncode == 0, result.stderr
    rows = [line.split("\t") for line in result.stdout.splitlines()]
    assert sorted(row[0] for row in rows) == sorted(key[:12] for key in keys)
    assert all(len(row) == 6 for row in rows), rows
    by_hint = {row[0]: row for row in rows}
    assert by_hint[keys[0][:12]][1] == "ann" and by_hint[keys[3][:12]][1] == ""
    for row in rows:
        created, last_seen, expires = (datetime.fromisoformat(field) for field in row[2:5])
        assert created <= last_seen < expires
    assert [line for line in result.stdout.splitlines() if "\tbob\t" in line]  # grep finds a user


@pytest.mark.parametrize("entry", ENTRIES)
def test_list_as_json_is_the_same_sessions(seeded: tuple[str, list[str]], entry: str) -> None:
    url, keys = seeded
    result = cli("sessions", "list", "--store", url, "--json", entry=entry)
    assert result.returncode == 0, result.stderr
    listed = json.loads(result.stdout)
    assert listed["total"] == 4
    assert sorted(row["hint"] for row in listed["sessions"]) == sorted(key[:12] for key in keys)
    assert sorted(row["user"] or "" for row in listed["sessions"]) == ["", "ann", "ann", "bob"]


@pytest.mark.parametrize("entry", ENTRIES)
def test_list_as_json_filtered_by_user(seeded: tuple[str, list[str]], entry: str) -> None:
    url, keys = seeded
    result = cli("sessions", "list", "--store", url, "--user", "ann", "--json", entry=entry)
    assert result.returncode == 0, result.stderr
    listed = json.loads(result.stdout)
    assert listed["total"] == 2
    assert {row["hint"] for row in listed["sessions"]} == {keys[0][:12], keys[1][:12]}
    assert {row["user"] for row in listed["sessions"]} == {"ann"}
    assert all(row["expires"] and row["created"] for row in listed["sessions"])


def test_list_limit_says_how_many_are_hidden(seeded: tuple[str, list[str]]) -> None:
    url, _ = seeded
    result = cli("sessions", "list", "--store", url, "--limit", "2")
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 2  # piped: rows on stdout, the note on stderr
    assert "Showing the 2 most recently seen of 4; --limit 0 shows all." in result.stderr
    shown = tty_cli("sessions", "list", "--store", url, "--limit", "2", columns=100)
    assert "Showing the 2 most recently seen of 4; --limit 0 shows all." in shown


def test_list_limit_0_streams_every_session_as_rows_or_json(seeded: tuple[str, list[str]]) -> None:
    url, keys = seeded
    result = cli("sessions", "list", "--store", url, "--limit", "0")
    assert result.returncode == 0, result.stderr
    assert sorted(line.split("\t")[0] for line in result.stdout.splitlines()) == sorted(k[:12] for k in keys)
    assert "Listed 4 live sessions in storage-key order." in result.stderr
    as_json = cli("sessions", "list", "--store", url, "--limit", "0", "--json")
    assert as_json.returncode == 0, as_json.stderr
    listed = json.loads(as_json.stdout)
    assert listed["total"] == 4
    assert sorted(row["hint"] for row in listed["sessions"]) == sorted(k[:12] for k in keys)


def test_show_prints_metadata_and_data_with_the_csrf_token_hidden(seeded: tuple[str, list[str]]) -> None:
    url, keys = seeded
    result = cli("sessions", "show", keys[3][:8], "--store", url, "--json")
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["hint"] == keys[3][:12]
    assert shown["data"] == {"_csrf": "(hidden)", "n": 1}
    assert shown["idle_deadline"] and shown["absolute_deadline"]
    table = cli("sessions", "show", keys[0][:12], "--store", url)
    assert table.returncode == 0, table.stderr
    assert "absolute deadline" in table.stdout and '"coat"' in table.stdout
    assert "t0ken" not in result.stdout + table.stdout


def test_show_prints_data_as_valid_json_however_long_its_lines(store_url: str) -> None:
    data = {"note": "x" * 300, "cart": [{"sku": f"coat-{i}", "sizes": ["s", "m", "l"]} for i in range(5)]}
    keys = seed(store_url, {"user": "ann", "data": data})
    try:
        piped = cli("sessions", "show", keys[0][:12], "--store", store_url)
        in_terminal = tty_cli("sessions", "show", keys[0][:12], "--store", store_url, columns=80)
    finally:
        cleanup(store_url, keys)
    assert piped.returncode == 0, piped.stderr
    for shown in (piped.stdout, in_terminal):
        after = shown.split("data (times above in UTC):\n", 1)[1]
        assert json.loads(after) == data


def test_an_ambiguous_hint_is_a_clear_error(store_url: str) -> None:
    by_prefix: dict[str, str] = {}
    while True:  # two storage keys sharing 4 hex digits: about 300 tries
        key = storage_key(new_session_id())
        if key[:4] in by_prefix:
            pair = [by_prefix[key[:4]], key]
            break
        by_prefix[key[:4]] = key
    seed(store_url, {"key": pair[0]}, {"key": pair[1]})
    try:
        result = cli("sessions", "revoke", pair[0][:4], "--store", store_url)
        assert_one_line_error(result, code=1, says="matches 2 sessions: type more characters")
        assert live_keys(store_url) >= set(pair)
    finally:
        cleanup(store_url, pair)


def test_an_unknown_or_short_hint_is_a_clear_error(seeded: tuple[str, list[str]]) -> None:
    url, _ = seeded
    assert_one_line_error(cli("sessions", "show", "zzzzzz", "--store", url), code=1, says="no live session")
    assert_one_line_error(cli("sessions", "show", "ab", "--store", url), code=2, says="at least 4 characters")


# ---- revoking and purging --------------------------------------------------------------------
def test_revoke_deletes_exactly_one_session(seeded: tuple[str, list[str]]) -> None:
    url, keys = seeded
    result = cli("sessions", "revoke", keys[2][:12], "--store", url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"Revoked session {keys[2][:12]} of user 'bob'."
    remaining = live_keys(url)
    assert keys[2] not in remaining and {keys[0], keys[1], keys[3]} <= remaining


def test_revoke_user_logs_a_user_out_everywhere(seeded: tuple[str, list[str]]) -> None:
    url, keys = seeded
    result = cli("sessions", "revoke-user", "ann", "--store", url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "Revoked 2 sessions of user 'ann'."
    remaining = live_keys(url)
    assert not {keys[0], keys[1]} & remaining and {keys[2], keys[3]} <= remaining


def test_purge_deletes_only_expired_sessions_in_batches(tmp_path: Path) -> None:
    path = tmp_path / "big.db"
    url = f"sqlite:///{path}"
    expired = 2500  # more than two of SQLiteStore's purge batches
    seed(url, *({"ttl": -60.0} for _ in range(expired)))
    live = seed(url, {"user": "ann"}, {})
    result = cli("sessions", "purge", "--store", url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"Purged {expired} expired sessions."
    assert live_keys(url) == set(live)
    again = cli("sessions", "purge", "--store", url)
    assert again.stdout.strip() == "Purged 0 expired sessions."


async def test_sqlite_purge_reports_progress_per_batch(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "p.db", purge_window=1000)  # rowids 1..2100: three windows
    now = time.time()
    for i in range(2100):  # half live: too few expired for the one-transaction rebuild
        await store.set(storage_key(new_session_id()), make_record(ttl=-1.0 if i % 2 else 60.0, now=now - 10))
    calls: list[tuple[int, int]] = []
    assert await store.purge_expired(progress=lambda done, total: calls.append((done, total))) == 1050
    assert calls == [(500, 1050), (1000, 1050), (1050, 1050)]
    await store.close()


def test_purge_keeps_live_sessions_on_every_store(store_url: str) -> None:
    expired = seed(store_url, *({"ttl": -60.0} for _ in range(3)))
    live = seed(store_url, {"user": "ann"})
    try:
        result = cli("sessions", "purge", "--store", store_url)
        assert result.returncode == 0, result.stderr
        # Stores with native expiry (Redis) may have dropped the expired ones already.
        assert re.fullmatch(r"Purged [0-3] expired sessions?\.", result.stdout.strip())
        assert live_keys(store_url) == set(live)
    finally:
        cleanup(store_url, expired + live)


def test_stats_count_by_age_and_by_user(seeded: tuple[str, list[str]]) -> None:
    url, _ = seeded
    result = cli("sessions", "stats", "--store", url, "--json")
    assert result.returncode == 0, result.stderr
    stats = json.loads(result.stdout)
    assert stats["total"] == 4
    assert stats["by_age"]["under 1 hour"] == 4
    assert stats["users"] == 2 and stats["anonymous"] == 1
    assert stats["top_users"][0] == {"user": "ann", "sessions": 2}
    table = cli("sessions", "stats", "--store", url)
    assert table.returncode == 0, table.stderr
    assert "4 live sessions: 2 users, 1 anonymous session\n" in table.stdout
    assert "By age" in table.stdout and "Top 2 users" in table.stdout


def test_stats_says_one_session_in_the_singular(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'one.db'}"
    seed(url, {"user": "ann"})
    result = cli("sessions", "stats", "--store", url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("1 live session: 1 user, 0 anonymous sessions\n")
    assert re.search(r"^Top 1 user *$", result.stdout, flags=re.M)


def test_the_store_can_come_from_the_environment(seeded: tuple[str, list[str]]) -> None:
    url, keys = seeded
    env = {**os.environ, "COATCHECK_STORE": url, "COLUMNS": "200"}
    result = subprocess.run(
        [sys.executable, "-m", "coatcheck", "sessions", "list", "--json"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert {row["hint"] for row in json.loads(result.stdout)["sessions"]} >= {k[:12] for k in keys}


# ---- errors: one line, non-zero, no traceback -----------------------------------------------
@pytest.mark.parametrize(
    ("url", "code", "says"),
    [
        ("nonsense://x", 2, "unknown store URL scheme 'nonsense://'"),
        ("not a url", 2, "is not a URL"),
        ("memory://", 2, "memory:// sessions live inside one server process"),
        ("sqlite:///no/such/dir/sessions.db", 1, "no SQLite database at"),
    ],
)
def test_bad_store_urls_are_one_line_errors(url: str, code: int, says: str) -> None:
    assert_one_line_error(cli("sessions", "list", "--store", url), code=code, says=says)


def test_a_missing_store_option_is_a_usage_error() -> None:
    result = cli("sessions", "list")
    assert result.returncode == 2
    assert "Missing option '--store'" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_unreachable_redis_is_a_one_line_error() -> None:
    port = free_port()  # nothing listens here
    result = cli("sessions", "stats", "--store", f"redis://:hunter2@127.0.0.1:{port}/0")
    assert_one_line_error(result, code=1, says=f"could not connect to Redis at 127.0.0.1:{port}")
    assert "hunter2" not in result.stderr


def test_a_store_without_inventory_is_a_one_line_error() -> None:
    if shutil.which("memcached") is None:
        unavailable("memcached", "the binary is not installed (apt-get install memcached)")
    port = free_port()
    server = subprocess.Popen(["memcached", "-l", "127.0.0.1", "-p", str(port), "-U", "0", "-u", "root"])
    try:
        wait_for_port("127.0.0.1", port)
        result = cli("sessions", "list", "--store", f"memcached://127.0.0.1:{port}")
        assert_one_line_error(result, code=2, says="MemcachedStore cannot list sessions")
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_cookie_sessions_cannot_be_listed() -> None:
    result = cli("sessions", "list", "--store", "cookie://")
    assert_one_line_error(result, code=2, says="cookie:// sessions live in the browsers' cookies")


# ---- the demo command -------------------------------------------------------------------------
def form_post(client: httpx.Client, path: str, data: dict[str, str]) -> httpx.Response:
    """Post a demo form as a browser does: with its CSRF token and the page's Origin."""
    match = re.search(r'name="csrf_token" value="([\w-]+)"', client.get("/login").text)
    assert match, "the demo's login form has no CSRF token"
    origin = str(client.base_url).rstrip("/")
    return client.post(path, data={**data, "csrf_token": match.group(1)}, headers={"origin": origin})


def test_demo_with_a_bad_store_is_a_one_line_error(tmp_path: Path) -> None:
    assert_one_line_error(
        cli("demo", "--store", "nonsense://", cwd=tmp_path), code=2, says="unknown store URL scheme"
    )
    assert_one_line_error(
        cli("demo", "--store", f"redis://127.0.0.1:{free_port()}/0", cwd=tmp_path),
        code=1,
        says="could not connect to Redis",
    )
    assert not (tmp_path / ".coatcheck-demo-secret").exists()


def test_demo_on_a_busy_port_is_a_one_line_error(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = cli("demo", "--port", str(port), cwd=tmp_path)
    assert_one_line_error(result, code=1, says=f"cannot listen on 127.0.0.1:{port}")
    assert "choose another --port" in result.stderr


def test_the_readme_demo_command_serves_with_the_default_store(tmp_path: Path) -> None:
    port = free_port()
    assert SCRIPT is not None
    proc = subprocess.Popen(
        [SCRIPT, "demo", "--port", str(port)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for_port("127.0.0.1", port, timeout=30)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            page = client.get("/")
            assert page.status_code == 200 and "Sessions, seen from both sides" in page.text
            assert "sqlite:///coatcheck-demo.db" in page.text
            response = form_post(client, "/cart/add", {"item": "coat"})
            assert response.status_code == 303
            assert client.post("/cart/add", data={"item": "coat"}).status_code == 403  # no CSRF token
        secret_file = tmp_path / ".coatcheck-demo-secret"
        assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
        assert (tmp_path / "coatcheck-demo.db").exists()
    finally:
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, output
    assert f"coatcheck demo on http://127.0.0.1:{port}" in output
    assert secret_file.read_text().strip() not in output


def test_the_demo_store_is_readable_by_the_sessions_command(tmp_path: Path) -> None:
    port = free_port()
    assert SCRIPT is not None
    proc = subprocess.Popen(
        [SCRIPT, "demo", "--port", str(port)],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port("127.0.0.1", port, timeout=30)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            assert form_post(client, "/login", {"name": "ann"}).status_code == 303
        result = cli("sessions", "list", "--store", "sqlite:///coatcheck-demo.db", "--json", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert [row["user"] for row in json.loads(result.stdout)["sessions"]] == ["ann"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
