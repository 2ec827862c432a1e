"""`coatcheck sessions ...`: list, show, revoke, purge and count the sessions in a store."""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from .cli_browse import find, newest, pages, tally
from .cli_output import (
    client_text,
    emit_json,
    emit_rows,
    info_json,
    iso,
    plural,
    session_table,
    stderr,
    stdout,
    to_terminal,
    when,
)
from .cli_store import ask, check_hint, listed, need, redact, run
from .record import Meta, SessionInfo
from .session import CSRF_KEY
from .stores.base import Browsing, Inventory, SessionTally, Store, UserIndex

AGE_BUCKETS = (
    ("under 1 hour", 3600.0),
    ("1 hour to 1 day", 86400.0),
    ("1 to 7 days", 7 * 86400.0),
    ("7 to 30 days", 30 * 86400.0),
    ("30 days or more", float("inf")),
)

store_option = click.option(
    "--store",
    "store_url",
    envvar="COATCHECK_STORE",
    required=True,
    metavar="URL",
    help="The session store, e.g. sqlite:///sessions.db or redis://localhost/0 (or set COATCHECK_STORE).",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")


@click.group()
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
    """List live sessions, most recently seen first. Ids are never shown, only id hints.

    In a terminal: a table. Piped or redirected: one tab-separated line per session (hint,
    user, created, last seen, expires, client), for grep and cut.
    """

    async def work(store: Store) -> tuple[list[SessionInfo], int]:
        if user_id is not None:
            need(store, UserIndex, "list a user's sessions")
            assert isinstance(store, UserIndex)
            infos = sorted(await ask(store.sessions_for(user_id)), key=lambda i: i.last_seen, reverse=True)
            return (infos[:limit] if limit else infos), len(infos)
        need(store, Inventory, "list sessions")
        return await newest(store, limit)

    if limit == 0 and user_id is None:
        run(store_url, lambda store: list_all(store, as_json))
        return
    infos, total = run(store_url, work)
    if as_json:
        emit_json({"total": total, "sessions": [info_json(info) for info in infos]})
        return
    whose = f" of user {user_id!r}" if user_id is not None else ""
    # Notes go to stderr when stdout is piped, so stdout holds session rows only.
    notes = stdout if to_terminal() else stderr
    if not infos:
        notes.print(f"No live sessions{whose} in {redact(store_url)}.", markup=False)
        return
    if to_terminal():
        stdout.print(session_table(infos, f"{plural(total, 'live session')}{whose}", stdout.width))
    else:
        emit_rows(infos)
    if len(infos) < total:
        notes.print(f"Showing the {len(infos)} most recently seen of {total}; --limit 0 shows all.")


async def list_all(store: Store, as_json: bool) -> None:
    """`list --limit 0`: every live session, printed page by page as it is read (storage-key
    order on stores that can page; sorting a million sessions would hold them all in memory)."""
    need(store, Inventory, "list sessions")
    if not isinstance(store, Browsing):
        infos = await listed(store)
        if as_json:
            emit_json({"total": len(infos), "sessions": [info_json(info) for info in infos]})
        else:
            emit_rows(infos)
        return
    total = 0
    if as_json:
        click.echo('{"sessions": [')
    async for page in pages(store, "Listing sessions"):
        if as_json:
            rows = (json.dumps(info_json(info), ensure_ascii=False) for info in page)
            click.echo(("," if total else "") + ",\n".join(rows))
        else:
            emit_rows(page)
        total += len(page)
    if as_json:
        click.echo(f'], "total": {total}}}')
    else:
        stderr.print(f"Listed {plural(total, 'live session')} in storage-key order.")


@sessions.command()
@click.argument("hint")
@store_option
@json_option
def show(hint: str, store_url: str, as_json: bool) -> None:
    """Show one session's metadata and data. HINT is the start of its id hint."""
    hint = check_hint(hint)

    async def work(store: Store) -> tuple[str, Meta, dict[str, Any] | None]:
        need(store, Inventory, "look sessions up by hint")
        key, meta = await find(store, hint)
        record = await ask(store.get(key))
        return key, meta if record is None else record.meta, None if record is None else dict(record.data)

    key, meta, data = run(store_url, work)
    if data is not None and isinstance(data.get(CSRF_KEY), str):
        data[CSRF_KEY] = "(hidden)"
    info = SessionInfo.from_meta(key, meta)
    if as_json:
        emit_json(
            {
                **info_json(info),
                "idle_deadline": iso(meta.idle_deadline),
                "absolute_deadline": iso(meta.absolute_deadline),
                "cookie": meta.cookie,
                "data": data,
            }
        )
        return
    now = datetime.now(UTC).timestamp()
    grid = Table(show_header=False, box=None, pad_edge=False)
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    for label, value in (
        ("id hint", info.id_hint),
        ("user", info.user_id or "-"),
        ("created", when(meta.created, now)),
        ("last seen", when(meta.last_seen, now)),
        ("idle deadline", when(meta.idle_deadline, now)),
        ("absolute deadline", when(meta.absolute_deadline, now)),
        ("cookie", json.dumps(meta.cookie) if meta.cookie else "-"),
        ("client", client_text(meta.hints) or "-"),
    ):
        grid.add_row(label, Text(value))
    stdout.print(grid)
    if data is None:
        stdout.print("The record expired or was deleted just now.")
        return
    stdout.print("data (times above in UTC):", markup=False)
    # click.echo, not the console: long lines stay whole, so the JSON can be copied as is.
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, sort_keys=True))


@sessions.command()
@click.argument("hint")
@store_option
def revoke(hint: str, store_url: str) -> None:
    """Delete one session (its browser is logged out at its next request)."""
    hint = check_hint(hint)

    async def work(store: Store) -> Meta:
        need(store, Inventory, "look sessions up by hint")
        key, meta = await find(store, hint)
        await ask(store.destroy(key))
        return meta

    meta = run(store_url, work)
    who = f" of user {meta.user_id!r}" if meta.user_id else ""
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
    stdout.print(f"Revoked {plural(count, 'session')} of user {user_id!r}.", markup=False)


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
    stdout.print(f"Purged {plural(count, 'expired session')}.")


def stats_json(counts: SessionTally) -> dict[str, Any]:
    """What `stats` reports: totals, sessions by age since created, the users with most."""
    return {
        "total": counts.total,
        "by_age": {label: n for (label, _), n in zip(AGE_BUCKETS, counts.by_age, strict=True)},
        "users": counts.users,
        "anonymous": counts.anonymous,
        "top_users": [{"user": user, "sessions": n} for user, n in counts.top_users],
    }


@sessions.command()
@store_option
@click.option(
    "--top", default=10, show_default=True, type=click.IntRange(min=1), help="How many users to list."
)
@json_option
def stats(store_url: str, top: int, as_json: bool) -> None:
    """Count live sessions, by age and by user."""

    async def work(store: Store) -> SessionTally:
        need(store, Inventory, "count sessions")
        return await tally(store, [limit for _, limit in AGE_BUCKETS], top)

    result = stats_json(run(store_url, work))
    if as_json:
        emit_json(result)
        return
    stdout.print(
        f"{plural(result['total'], 'live session')}: {plural(result['users'], 'user')}, "
        f"{plural(result['anonymous'], 'anonymous session')}",
        markup=False,
    )
    by_age = Table(title="By age (since created)", title_justify="left")
    by_age.add_column("age")
    by_age.add_column("sessions", justify="right")
    for label, n in result["by_age"].items():
        by_age.add_row(label, str(n))
    stdout.print(by_age)
    if result["top_users"]:
        by_user = Table(title=f"Top {plural(len(result['top_users']), 'user')}", title_justify="left")
        by_user.add_column("user", overflow="fold")
        by_user.add_column("sessions", justify="right")
        for row in result["top_users"]:
            by_user.add_row(Text(row["user"]), str(row["sessions"]))
        stdout.print(by_user)
