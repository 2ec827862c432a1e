"""The `coatcheck` command: the demo app, session operations on a store, new secrets.

Every failure the user can fix (a bad URL, an unreachable store, a store that cannot list
sessions, an ambiguous hint) is one line on stderr and a non-zero exit: 1 when the work
failed, 2 when the command was used wrongly. Set COATCHECK_DEBUG=1 to see tracebacks.
Full session ids never appear: sessions are named by a hint, the start of their storage
key (SHA-256 of the id), which is what `SessionInfo.id_hint` holds too.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import os
import secrets
import sys
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn, TypeVar

try:
    import click
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table
    from rich.text import Text
except ModuleNotFoundError as missing:  # pragma: no cover - a bare install without the extra
    print(
        f"coatcheck: the command line needs the {missing.name!r} package: pip install 'coatcheck[cli]'",
        file=sys.stderr,
    )
    raise SystemExit(1) from None

from . import __version__
from .errors import CoatcheckError, ConfigurationError, SessionStoreError
from .record import Meta, SessionInfo
from .session import CSRF_KEY
from .stores.base import Inventory, Store, UserIndex
from .stores.sqlite import SQLiteStore
from .stores.url import from_url

T = TypeVar("T")
HINT_CHARS = 12
MIN_HINT = 4
STORE_TIMEOUT = 10.0
AGE_BUCKETS = (
    ("under 1 hour", 3600.0),
    ("1 hour to 1 day", 86400.0),
    ("1 to 7 days", 7 * 86400.0),
    ("7 to 30 days", 30 * 86400.0),
    ("30 days or more", float("inf")),
)

stdout = Console(highlight=False)
stderr = Console(stderr=True, highlight=False)


class Failure(click.ClickException):
    """One line on stderr, no traceback. Exit 1: the work failed; 2: wrong usage."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code

    def show(self, file: Any = None) -> None:
        click.echo(f"Error: {self.format_message()}", err=True)


# ---- talking to a store ---------------------------------------------------------------------
def redact(url: str) -> str:
    from .stores._toolkit import redact_url

    return redact_url(url)


def open_store(url: str) -> Store:
    """A store for `url`, refusing the ones the command line cannot usefully open."""
    if url.split("://", 1)[0].lower() == "memory":
        raise Failure(
            "memory:// sessions live inside one server process; the command line cannot see them. "
            "Use a shared store (sqlite:///..., redis://..., postgresql://...)",
            2,
        )
    try:
        store = from_url(url)
    except ConfigurationError as exc:
        raise Failure(str(exc), 2) from None
    if isinstance(store, SQLiteStore) and isinstance(store.path, Path) and not store.path.exists():
        # SQLiteStore would create an empty database: a typo would look like "no sessions".
        raise Failure(f"no SQLite database at {str(store.path)!r}: check the path in {url!r}", 1)
    return store


def need(store: Store, capability: type, what: str) -> None:
    """Fail clearly when the store lacks an optional capability."""
    if isinstance(store, capability):
        return
    kind = type(store).__name__
    if kind == "CookieStore":
        raise Failure(f"cookie:// sessions live in the browsers' cookies: the server has none to {what}", 2)
    raise Failure(f"{kind} cannot {what}: it does not keep an index of its sessions", 2)


def run(url: str, work: Callable[[Store], Coroutine[Any, Any, T]]) -> T:
    """Open the store, run `work` on it in an event loop, close it; every error is a Failure."""

    async def main() -> T:
        store = open_store(url)
        try:
            return await work(store)
        finally:
            with contextlib.suppress(Exception):  # the work's own outcome is what matters
                await store.close()

    debug = os.environ.get("COATCHECK_DEBUG", "") not in ("", "0")
    try:
        return asyncio.run(main())
    except (Failure, KeyboardInterrupt):
        raise
    except ConfigurationError as exc:
        raise Failure(str(exc), 2) from None
    except SessionStoreError as exc:
        if debug:
            raise
        raise Failure(str(exc)) from None  # store errors name the store (password redacted)
    except TimeoutError:
        raise Failure(f"the store at {redact(url)} did not answer within {STORE_TIMEOUT:g}s") from None
    except Exception as exc:
        if debug:
            raise
        raise Failure(f"the store at {redact(url)} failed: {type(exc).__name__}: {exc}") from None


async def ask(call: Awaitable[T]) -> T:
    """One store call, bounded so an unreachable server cannot hang the command."""
    return await asyncio.wait_for(call, STORE_TIMEOUT)


# ---- rows -----------------------------------------------------------------------------------
@dataclass(slots=True)
class Row:
    """A session as the command line shows it: never its id, only a hint of its storage key."""

    hint: str
    user: str | None
    created: float
    last_seen: float
    expires: float | None
    client: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_meta(cls, key: str, meta: Meta) -> Row:
        return cls(
            key[:HINT_CHARS], meta.user_id, meta.created, meta.last_seen, meta.expires, dict(meta.hints)
        )

    @classmethod
    def from_info(cls, info: SessionInfo) -> Row:
        return cls(
            info.id_hint[:HINT_CHARS],
            info.user_id,
            info.created.timestamp(),
            info.last_seen.timestamp(),
            None if info.expires is None else info.expires.timestamp(),
            dict(info.hints),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "hint": self.hint,
            "user": self.user,
            "created": iso(self.created),
            "last_seen": iso(self.last_seen),
            "expires": None if self.expires is None else iso(self.expires),
            "client": self.client,
        }


def iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")


def when(timestamp: float | None, now: float) -> str:
    """'2025-01-31 12:00 UTC (3 min ago)' or '(in 2 h)'."""
    if timestamp is None:
        return "never"
    stamp = datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M")
    delta = timestamp - now
    return f"{stamp} ({'in ' + span(delta) if delta >= 0 else span(-delta) + ' ago'})"


def span(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 2 * 86400:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} days"


def table(rows: list[Row], title: str) -> Table:
    now = datetime.now(UTC).timestamp()
    grid = Table(title=title, title_justify="left", caption="times in UTC", caption_justify="left")
    grid.add_column("id hint", no_wrap=True, style="bold")
    grid.add_column("user", overflow="fold")
    grid.add_column("created", no_wrap=True)
    grid.add_column("last seen", no_wrap=True)
    grid.add_column("expires", no_wrap=True)
    show_client = any(row.client for row in rows)
    if show_client:
        grid.add_column("client", overflow="fold")
    for row in rows:
        # Text(): user ids and client hints are data, never rich markup.
        cells = [
            row.hint,
            row.user or "-",
            when(row.created, now),
            when(row.last_seen, now),
            when(row.expires, now),
        ]
        if show_client:
            cells.append(" ".join(f"{k}={v}" for k, v in sorted(row.client.items())))
        grid.add_row(*(Text(cell) for cell in cells))
    return grid


def emit_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))


async def resolve(store: Store, hint: str) -> SessionInfo:
    """The one live session whose storage key starts with `hint`."""
    assert isinstance(store, Inventory)
    listed = await ask(store.list_sessions())
    matches = [info for info in listed if info.storage_key.startswith(hint)]
    if not matches:
        raise Failure(f"no live session has an id hint starting with {hint!r}")
    if len(matches) > 1:
        raise Failure(f"{hint!r} matches {len(matches)} sessions: type more characters of the id hint")
    return matches[0]


def check_hint(hint: str) -> str:
    hint = hint.strip()
    if len(hint) < MIN_HINT:
        raise Failure(f"an id hint needs at least {MIN_HINT} characters (from `coatcheck sessions list`)", 2)
    return hint


# ---- commands -------------------------------------------------------------------------------
store_option = click.option(
    "--store",
    "store_url",
    envvar="COATCHECK_STORE",
    required=True,
    metavar="URL",
    help="The session store, e.g. sqlite:///sessions.db or redis://localhost/0 (or set COATCHECK_STORE).",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="coatcheck")
def cli() -> None:
    """coatcheck: HTTP sessions for Python web apps.

    Run the demo app, inspect and revoke sessions in a store, or make a secret.
    """


@cli.command()
@click.option(
    "--store",
    "store_url",
    default="sqlite:///coatcheck-demo.db",
    show_default=True,
    metavar="URL",
    help="Where sessions are kept: memory://, sqlite:///FILE, redis://HOST/DB, cookie://, ...",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", default=8000, show_default=True, type=click.IntRange(1, 65535), help="Port to listen on."
)
@click.option(
    "--secret-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where the development secret is kept (created, mode 0600, if missing). "
    "Default: .coatcheck-demo-secret next to the SQLite file, else in the working directory.",
)
@click.option(
    "--origin",
    "origins",
    multiple=True,
    metavar="URL",
    help="Another origin the browser may use, e.g. http://192.168.1.5:8000 with --host 0.0.0.0 "
    "(forms from unknown origins are refused by the CSRF check).",
)
def demo(store_url: str, host: str, port: int, secret_file: Path | None, origins: tuple[str, ...]) -> None:
    """Run the demo app: log in, fill a cart, and watch the cookie and the store."""
    try:
        from .demo.server import run as serve
    except ModuleNotFoundError as exc:
        raise Failure(f"the demo needs the {exc.name!r} package: pip install 'coatcheck[demo]'") from None
    try:
        serve(store_url=store_url, host=host, port=port, secret_file=secret_file, origins=origins, say=_say)
    except ConfigurationError as exc:
        raise Failure(str(exc), 2) from None
    except CoatcheckError as exc:
        raise Failure(str(exc)) from None


def _say(text: str) -> None:
    stderr.print(text, markup=False, soft_wrap=True)


@cli.command()
def secret() -> None:
    """Print a strong new secret (32 random bytes, URL-safe base64) for SessionMiddleware(secret=...)."""
    click.echo(secrets.token_urlsafe(32))


@cli.group()
def sessions() -> None:
    """List, inspect and revoke the sessions in a store."""


@sessions.command("list")
@store_option
@click.option(
    "--user", "user_id", default=None, metavar="ID", help="Only this user's sessions (the user index)."
)
@click.option(
    "--limit",
    default=100,
    show_default=True,
    type=click.IntRange(min=0),
    help="Show at most N sessions (0: all).",
)
@json_option
def list_(store_url: str, user_id: str | None, limit: int, as_json: bool) -> None:
    """List live sessions, most recently seen first. Ids are never shown, only id hints."""

    async def work(store: Store) -> tuple[list[Row], int]:
        if user_id is not None:
            need(store, UserIndex, "list a user's sessions")
            assert isinstance(store, UserIndex)
            infos = await ask(store.sessions_for(user_id))
            infos = sorted(infos, key=lambda info: info.last_seen, reverse=True)
            rows = [Row.from_info(info) for info in infos]
            return (rows[:limit] if limit else rows), len(rows)
        need(store, Inventory, "list sessions")
        assert isinstance(store, Inventory)
        listed = await ask(store.list_sessions(limit=limit or None))
        total = await ask(store.count())
        return [Row.from_info(info) for info in listed], total

    rows, total = run(store_url, work)
    if as_json:
        emit_json({"total": total, "sessions": [row.to_json() for row in rows]})
        return
    whose = f" of user {user_id!r}" if user_id is not None else ""
    if not rows:
        stdout.print(f"No live sessions{whose} in {redact(store_url)}.")
        return
    stdout.print(table(rows, f"{total} live session{'s' if total != 1 else ''}{whose}"))
    if len(rows) < total:
        stdout.print(f"Showing the {len(rows)} most recently seen; --limit 0 shows all.")


@sessions.command()
@click.argument("hint")
@store_option
@json_option
def show(hint: str, store_url: str, as_json: bool) -> None:
    """Show one session's metadata and data. HINT is the start of its id hint."""
    hint = check_hint(hint)

    async def work(store: Store) -> tuple[str, Meta, dict[str, Any] | None]:
        need(store, Inventory, "look sessions up by hint")
        info = await resolve(store, hint)
        record = await ask(store.get(info.storage_key))
        if record is None:
            raise Failure(f"the session {info.id_hint} expired or was deleted just now")
        return info.storage_key, record.meta, dict(record.data)

    key, meta, data = run(store_url, work)
    if data is not None and isinstance(data.get(CSRF_KEY), str):
        data[CSRF_KEY] = "(hidden)"
    row = Row.from_meta(key, meta)
    if as_json:
        emit_json(
            {
                **row.to_json(),
                "idle_deadline": None if meta.idle_deadline is None else iso(meta.idle_deadline),
                "absolute_deadline": None if meta.absolute_deadline is None else iso(meta.absolute_deadline),
                "cookie": meta.cookie,
                "data": data,
            }
        )
        return
    now = datetime.now(UTC).timestamp()
    grid = Table(show_header=False, box=None, pad_edge=False)
    grid.add_column(style="bold")
    grid.add_column(overflow="fold")
    for label, value in (
        ("id hint", row.hint),
        ("user", row.user or "-"),
        ("created", when(meta.created, now)),
        ("last seen", when(meta.last_seen, now)),
        ("idle deadline", when(meta.idle_deadline, now)),
        ("absolute deadline", when(meta.absolute_deadline, now)),
        ("cookie", json.dumps(meta.cookie) if meta.cookie else "-"),
        ("client", " ".join(f"{k}={v}" for k, v in sorted(meta.hints.items())) or "-"),
    ):
        grid.add_row(label, Text(value))
    stdout.print(grid)
    if data is None:
        stdout.print("The record expired or was deleted just now.")
    else:
        stdout.print("[bold]data[/bold] (times in UTC above)")
        stdout.print(json.dumps(data, indent=2, ensure_ascii=False, sort_keys=True), markup=False)


@sessions.command()
@click.argument("hint")
@store_option
def revoke(hint: str, store_url: str) -> None:
    """Delete one session (its browser is logged out at its next request)."""
    hint = check_hint(hint)

    async def work(store: Store) -> SessionInfo:
        need(store, Inventory, "look sessions up by hint")
        info = await resolve(store, hint)
        await ask(store.destroy(info.storage_key))
        return info

    info = run(store_url, work)
    who = f" of user {info.user_id!r}" if info.user_id else ""
    stdout.print(f"Revoked session {hint}{who}.", markup=False)


@sessions.command("revoke-user")
@click.argument("user_id", metavar="ID")
@store_option
def revoke_user(user_id: str, store_url: str) -> None:
    """Delete every session of user ID ("log out everywhere")."""

    async def work(store: Store) -> int:
        need(store, UserIndex, "find a user's sessions")
        assert isinstance(store, UserIndex)
        return await ask(store.destroy_user(user_id))

    count = run(store_url, work)
    stdout.print(f"Revoked {count} session{'s' if count != 1 else ''} of user {user_id!r}.", markup=False)


@sessions.command()
@store_option
def purge(store_url: str) -> None:
    """Delete expired sessions now (stores with native expiry, like Redis, have few or none)."""

    async def work(store: Store) -> int:
        need(store, Inventory, "purge expired sessions")
        assert isinstance(store, Inventory)
        purge_expired: Callable[..., Awaitable[int]] = store.purge_expired
        if "progress" not in inspect.signature(purge_expired).parameters:
            with stderr.status("Deleting expired sessions..."):
                return await purge_expired()
        columns = (
            TextColumn("Deleting expired sessions"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=stderr, transient=True) as bar:
            task = bar.add_task("purge", total=None)

            def advance(done: int, total: int) -> None:  # called from the store's worker thread
                bar.update(task, completed=done, total=total)

            return await purge_expired(progress=advance)

    count = run(store_url, work)
    stdout.print(f"Purged {count} expired session{'s' if count != 1 else ''}.")


@sessions.command()
@store_option
@click.option(
    "--top", default=10, show_default=True, type=click.IntRange(min=1), help="How many users to list."
)
@json_option
def stats(store_url: str, top: int, as_json: bool) -> None:
    """Count live sessions, by age and by user."""

    async def work(store: Store) -> list[SessionInfo]:
        need(store, Inventory, "count sessions")
        assert isinstance(store, Inventory)
        return await ask(store.list_sessions())

    listed = run(store_url, work)
    now = datetime.now(UTC).timestamp()
    ages: Counter[str] = Counter()
    for info in listed:
        age = now - info.created.timestamp()
        ages[next(label for label, limit in AGE_BUCKETS if age < limit)] += 1
    users = Counter(info.user_id for info in listed if info.user_id is not None)
    anonymous = sum(1 for info in listed if info.user_id is None)
    result = {
        "total": len(listed),
        "by_age": {label: ages[label] for label, _ in AGE_BUCKETS},
        "users": len(users),
        "anonymous": anonymous,
        "top_users": [{"user": user, "sessions": n} for user, n in users.most_common(top)],
    }
    if as_json:
        emit_json(result)
        return
    stdout.print(f"{len(listed)} live sessions: {len(users)} users, {anonymous} anonymous sessions")
    by_age = Table(title="By age (since created)", title_justify="left")
    by_age.add_column("age")
    by_age.add_column("sessions", justify="right")
    for label, _ in AGE_BUCKETS:
        by_age.add_row(label, str(ages[label]))
    stdout.print(by_age)
    if users:
        by_user = Table(title=f"Top {min(top, len(users))} users", title_justify="left")
        by_user.add_column("user", overflow="fold")
        by_user.add_column("sessions", justify="right")
        for user, n in users.most_common(top):
            by_user.add_row(Text(user), str(n))
        stdout.print(by_user)


def main(argv: list[str] | None = None) -> NoReturn:
    """Entry point of the `coatcheck` script and of `python -m coatcheck`."""
    cli.main(args=argv, prog_name="coatcheck")
    raise SystemExit(0)  # pragma: no cover - click always exits
