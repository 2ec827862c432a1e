"""How the `coatcheck` command prints sessions: a table sized to the terminal, plain
tab-separated rows when stdout is a pipe or a file, or JSON.

User ids and client hints are data: they are never read as rich markup, and in
tab-separated rows a tab, newline or backslash inside them is escaped (`\\t`, `\\n`, `\\\\`).
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import Any

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from .record import SessionInfo

HINT_CHARS = 12
EXACT_TIME_CHARS = 30  # "2025-01-31 12:00 (in 29 days)"
WIDE_EXTRA = 3 * EXACT_TIME_CHARS + 20  # three exact times and the table's borders

stdout = Console(highlight=False)
stderr = Console(stderr=True, highlight=False)


def to_terminal() -> bool:
    """True when stdout is a terminal (a person reads it); a pipe or file gets plain rows."""
    return sys.stdout.isatty()


def iso(moment: datetime | float | None) -> str | None:
    """ISO 8601 in UTC to the second; None stays None."""
    if moment is None:
        return None
    if not isinstance(moment, datetime):
        moment = datetime.fromtimestamp(moment, UTC)
    return moment.astimezone(UTC).isoformat(timespec="seconds")


def span(seconds: float) -> str:
    """A duration as a person says it: '45 s', '3 min', '5 h', '29 days' (rounded down)."""
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 2 * 86400:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} days"


def relative(moment: datetime | float | None, now: float) -> str:
    """'3 min ago', 'in 29 days', or 'never' for no deadline."""
    if moment is None:
        return "never"
    stamp = moment.timestamp() if isinstance(moment, datetime) else moment
    delta = stamp - now
    return f"in {span(delta)}" if delta >= 0 else f"{span(-delta)} ago"


def when(moment: datetime | float | None, now: float) -> str:
    """'2025-01-31 12:00 (3 min ago)' in UTC, or 'never'."""
    if moment is None:
        return "never"
    stamp = moment if isinstance(moment, datetime) else datetime.fromtimestamp(moment, UTC)
    return f"{stamp.astimezone(UTC):%Y-%m-%d %H:%M} ({relative(moment, now)})"


def client_text(hints: dict[str, str]) -> str:
    return " ".join(f"{key}={value}" for key, value in sorted(hints.items()))


def info_json(info: SessionInfo) -> dict[str, Any]:
    """A session as `--json` prints it (never its id: the hint of its storage key)."""
    return {
        "hint": info.id_hint[:HINT_CHARS],
        "user": info.user_id,
        "created": iso(info.created),
        "last_seen": iso(info.last_seen),
        "expires": iso(info.expires),
        "client": dict(info.hints),
    }


def emit_json(value: Any) -> None:
    """JSON on stdout, never wrapped at the terminal's width, so it can be copied or piped."""
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def emit_rows(infos: list[SessionInfo]) -> None:
    """One line per session, tab-separated: hint, user, created, last seen, expires (ISO 8601
    UTC; empty when none), client hints. For grep, cut and awk."""
    for info in infos:
        fields = [
            info.id_hint[:HINT_CHARS],
            info.user_id or "",
            iso(info.created) or "",
            iso(info.last_seen) or "",
            iso(info.expires) or "",
            client_text(info.hints),
        ]
        click.echo("\t".join(_escape(field) for field in fields))


def session_table(infos: list[SessionInfo], title: str, width: int) -> Table:
    """The sessions as a table that fits `width` columns with the hint and user columns whole:
    exact UTC times and client hints when there is room, times relative to now otherwise."""
    now = datetime.now(UTC).timestamp()
    user_width = max([4, *(len(info.user_id or "-") for info in infos)])
    exact = width >= HINT_CHARS + user_width + WIDE_EXTRA
    show_client = exact and any(info.hints for info in infos)
    caption = "times in UTC" if exact else "times relative to now; --json or a pipe gives exact UTC times"
    grid = Table(title=title, title_justify="left", caption=caption, caption_justify="left")
    grid.add_column("id hint", no_wrap=True, min_width=HINT_CHARS, style="bold")
    grid.add_column("user", no_wrap=True, min_width=user_width)
    show = when if exact else relative
    for name in ("last seen", "expires", "created"):
        grid.add_column(name, no_wrap=exact, overflow="fold")
    if show_client:
        grid.add_column("client", overflow="fold")
    for info in infos:
        cells = [
            info.id_hint[:HINT_CHARS],
            info.user_id or "-",
            show(info.last_seen, now),
            show(info.expires, now),
            show(info.created, now),
        ]
        if show_client:
            cells.append(client_text(info.hints))
        grid.add_row(*(Text(cell) for cell in cells))  # Text(): data, never markup
    return grid


def plural(count: int, noun: str) -> str:
    """'1 session', '2 sessions', '0 sessions' (the noun's plural adds an s)."""
    return f"{count} {noun}{'' if count == 1 else 's'}"
