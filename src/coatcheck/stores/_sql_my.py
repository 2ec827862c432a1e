"""SQLStore's MySQL/MariaDB hot path: the per-request statements straight on asyncmy.

Through SQLAlchemy's async engine a session load cost 1,622k instructions (callgrind): a
pre-ping round trip on each pool checkout (~56%), the SELECT (~30%) and a rollback when the
connection went back (~19%); a delta commit added BEGIN, SELECT ... FOR UPDATE, UPDATE and
COMMIT. Here each statement is one round trip on an autocommit connection, as a server-side
prepared statement (binary protocol: no client-side escaping), prepared once per connection.

A delta commit merges without a lock held across round trips: read the data column, merge
in Python, then a compare-and-set UPDATE (`WHERE data = <what was read>`) that a concurrent
writer makes match nothing, so the merge is retried on what that writer left; a session
that keeps losing (many requests writing it at once) merges under the row's lock instead
(`SELECT ... FOR UPDATE` in a transaction), so no request gives up. The request's
own load usually read the column a moment before: its text is kept (the last few hundred
small ones) and the first compare-and-set goes without the read. A one-statement
JSON_SET merge would save the read, but MySQL re-serializes the document (a 20-digit integer
comes back a double) and JSON paths need key escaping of their own; the compare-and-set keeps
every value byte for byte. SQLAlchemy still builds the URL and the engine, creates and
migrates the table, and runs the flash claim and the operations view.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Sequence
from typing import Any

import asyncmy
from asyncmy import errors as my_errors

from ..errors import SessionStoreError
from ._sql_dialect import Dialect
from ._sql_pool import LoopPool

ERRORS = (my_errors.Error,)
FOUND_ROWS = 2  # CLIENT.FOUND_ROWS: an UPDATE's count is the rows it matched, changed or not
# each failed compare-and-set means another write to this session committed in between;
# after this many the merge waits for the row's lock rather than retrying without end
OPTIMISTIC_ATTEMPTS = 3
# a load's data text, kept for the request's delta commit to compare-and-set against without
# reading it again (a stale one only costs that read): the most recent loads, small ones
RECENT, RECENT_CHARS = 256, 16384
_LOST = (my_errors.OperationalError, my_errors.InterfaceError)  # e.g. closed by the server


class MyDirect(LoopPool["_Held"]):
    """The statements on asyncmy connections, pooled per event loop and process (LoopPool)."""

    def __init__(
        self,
        connect: dict[str, Any],
        connect_timeout: float,
        table: str,
        size: int,
        dialect: Dialect,
        label: str,
    ) -> None:
        self._connect_args = dict(connect)
        self._connect_args["client_flag"] = self._connect_args.get("client_flag", 0) | FOUND_ROWS
        self._connect_args["connect_timeout"] = connect_timeout
        self._connect_args["autocommit"] = True
        super().__init__(size, _LOST)
        self._when = dialect.when  # UTC deadlines as naive DATETIME values
        self._label = label
        self._recent: dict[str, str] = {}  # key -> data text its last load read
        t = f"`{table}`"  # the name matched SQLStore's pattern
        live = "(expires_at IS NULL OR expires_at > ?)"
        columns = "meta = ?, user_id = ?, expires_at = ?, last_seen = ?"
        self._statements = {
            "get": f"SELECT data, meta FROM {t} WHERE `key` = ? AND {live}",
            "set": (
                f"INSERT INTO {t} (`key`, data, meta, user_id, expires_at, last_seen) "
                "VALUES (?, ?, ?, ?, ?, ?) ON DUPLICATE KEY UPDATE data = VALUES(data), "
                "meta = VALUES(meta), user_id = VALUES(user_id), "
                "expires_at = VALUES(expires_at), last_seen = VALUES(last_seen)"
            ),
            "read": f"SELECT data FROM {t} WHERE `key` = ? AND {live}",
            # the table's binary collation compares the text byte for byte
            "swap": f"UPDATE {t} SET data = ?, {columns} WHERE `key` = ? AND data = ? AND {live}",
            "lock": f"SELECT data FROM {t} WHERE `key` = ? AND {live} FOR UPDATE",
            "write": f"UPDATE {t} SET data = ?, {columns} WHERE `key` = ?",
            "touch": f"UPDATE {t} SET {columns} WHERE `key` = ? AND {live}",
            "destroy": f"DELETE FROM {t} WHERE `key` = ?",
        }

    # ---- the statements: `columns` is SQLStore's meta, user_id, expires_at, last_seen ----
    async def get(self, key: str, now: float) -> tuple[Any, ...] | None:
        """(data as JSON text, meta) of the live row, or None."""
        rows = (await self._execute("get", (key, self._when(now)))).rows
        if not rows:
            return None
        recent = self._recent
        if len(rows[0][0]) <= RECENT_CHARS:
            if len(recent) >= RECENT:
                del recent[next(iter(recent))]  # the oldest
            recent[key] = rows[0][0]
        return rows[0]  # type: ignore[no-any-return]

    async def set(self, key: str, data: str, columns: dict[str, Any]) -> None:
        await self._execute("set", (key, data, *_meta(columns)))

    async def patch(
        self,
        key: str,
        changed: dict[str, Any],
        removed: list[str],
        columns: dict[str, Any],
        now: float,
        dialect: Dialect,
    ) -> bool:
        live = self._when(now)
        meta = _meta(columns)
        old = self._recent.pop(key, None)  # what this request's load read, if it was here
        for _ in range(OPTIMISTIC_ATTEMPTS):
            if old is None:
                rows = (await self._execute("read", (key, live))).rows
                if not rows:
                    return False  # missing, expired or destroyed: never written back
                old = rows[0][0]
            swap = (self._merged(old, changed, removed, dialect), *meta, key, old, live)
            if (await self._execute("swap", swap)).affected_rows == 1:
                return True
            old = None  # changed since (or gone): read it again
        return await self._run(
            lambda held: self._locked_patch(held, key, changed, removed, meta, live, dialect)
        )

    async def _locked_patch(
        self,
        held: _Held,
        key: str,
        changed: dict[str, Any],
        removed: list[str],
        meta: tuple[Any, ...],
        live: Any,
        dialect: Dialect,
    ) -> bool:
        """The merge under the row's lock, in one transaction. On any error the pool closes
        the connection, which rolls the transaction back."""
        await held.conn.begin()
        rows = (await self._prepared(held, "lock", (key, live))).rows
        if rows:
            data = self._merged(rows[0][0], changed, removed, dialect)
            await self._prepared(held, "write", (data, *meta, key))
        await held.conn.commit()
        return bool(rows)

    def _merged(self, old: str, changed: dict[str, Any], removed: list[str], dialect: Dialect) -> str:
        """The data text `old` becomes with the request's changes."""
        try:
            data = dialect.decode_data(old)
        except (ValueError, TypeError) as exc:
            raise SessionStoreError(f"corrupt session record in {self._label}: {exc}") from None
        for name in removed:
            data.pop(name, None)
        data.update(changed)
        return dialect.data_text(data)

    async def touch(self, key: str, columns: dict[str, Any], now: float) -> None:
        await self._execute("touch", (*_meta(columns), key, self._when(now)))

    async def destroy(self, key: str) -> None:
        self._recent.pop(key, None)
        await self._execute("destroy", (key,))

    def _execute(self, name: str, params: Sequence[Any]) -> Awaitable[Any]:
        return self._run(self._prepared, name, params)

    async def _prepared(self, held: _Held, name: str, params: Sequence[Any]) -> Any:
        statement = held.statements.get(name)
        if statement is None:
            statement = await held.conn.prepare(self._statements[name])
            held.statements[name] = statement
        return await statement.execute(params)

    async def _open(self) -> _Held:
        return _Held(await asyncmy.connect(**self._connect_args))

    def _usable(self, held: _Held) -> bool:
        return bool(held.conn.connected)  # False if the loop saw the server close it while idle

    async def _discard(self, held: _Held) -> None:
        with contextlib.suppress(Exception):  # already closed: nothing left to release
            held.conn.close()


class _Held:
    """A connection and the statements prepared on it, by name."""

    __slots__ = ("conn", "statements")

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.statements: dict[str, Any] = {}


def _meta(columns: dict[str, Any]) -> tuple[Any, ...]:
    user_id = columns["user_id"]  # VARBINARY: its UTF-8 bytes, as the table type binds it
    return (
        columns["meta"],
        None if user_id is None else user_id.encode(),
        columns["expires_at"],
        columns["last_seen"],
    )
