"""What every store shares: turning driver failures into SessionStoreError, TTLs, and URL redaction.

Stores see storage keys, and drivers sometimes quote them (MongoDB's E11000 duplicate key
error quotes the `_id`; in express compat the key is the session id itself), so every
message built here replaces the key before it leaves the store.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..codec import Serializer

import asyncio
import contextlib
import math
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

from .._deadline import Deadlines
from ..errors import SessionStoreError

T = TypeVar("T")

MAX_DETAIL = 300  # characters of a driver's message kept in a SessionStoreError
Errors = tuple[type[BaseException], ...]
Describe = Callable[[BaseException, "str | None"], str]


def redact_url(url: str) -> str:
    """`url` with its password replaced by ``***``, for any scheme (redis, redis+cluster with
    several hosts, redis+sentinel, postgresql, mysql, mongodb, memcached, ...).

    Users write passwords raw as often as percent-encoded, so the password may contain
    ``/ @ : % # ?``: everything between the first ``:`` of the user information and the
    *last* ``@`` of the URL is hidden. That can hide more than the password (an ``@`` in the
    query), never less. A URL without ``user:password@`` comes back unchanged.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    userinfo, at, after = rest.rpartition("@")
    user, colon, _ = userinfo.partition(":")
    if not at or not colon:
        return url
    return f"{scheme}://{user}:***@{after}"


def describe_error(exc: BaseException, key: str | None = None) -> str:
    """``Type: first line of the message``, at most MAX_DETAIL characters, with `key` replaced
    by ``<key>`` wherever the driver quoted it."""
    lines = str(exc).strip().splitlines()
    message = f"{type(exc).__name__}: {lines[0] if lines else 'no detail'}"
    if key:
        message = message.replace(key, "<key>")
    return message[:MAX_DETAIL]


@contextlib.contextmanager
def store_errors(
    errors: Errors, message: str, *, key: str | None = None, describe: Describe = describe_error
) -> Iterator[None]:
    """Re-raise any of `errors` raised inside as ``SessionStoreError(f"{message}: {detail}")``,
    the detail from `describe` (key redacted). SessionStoreError passes through unchanged."""
    try:
        yield
    except SessionStoreError:
        raise
    except errors as exc:
        raise SessionStoreError(f"{message}: {describe(exc, key)}") from None


async def guarded(
    label: str,
    what: str,
    work: Callable[[], Awaitable[T]],
    *,
    errors: Errors,
    key: str | None = None,
    time_limit: float | None = None,
    describe: Describe = describe_error,
    on_abort: Callable[[], Awaitable[object]] | None = None,
) -> T:
    """Run one store operation: `errors` become ``"{label}: {what} failed: ..."``.

    `time_limit` (seconds) is for drivers that have no socket timeout of their own (a silent server would
    otherwise hang a caller that is not the middleware, e.g. a script or the CLI):
    it raises ``"{label}: {what} timed out after Ns"``. `on_abort` runs when the work is
    cancelled or times out mid-command (e.g. to drop a connection whose reply is still due).
    """
    try:
        # the deadline outside the error mapping: a driver's own TimeoutError is an OSError
        # and reads "failed", only this deadline reads "timed out"
        async with asyncio.timeout(time_limit):
            try:  # `store_errors`, inline: its message is built only for a failure
                return await work()
            except SessionStoreError:
                raise
            except errors as exc:
                raise _failed(label, what, exc, key, describe) from None
    except TimeoutError:
        if on_abort is not None:
            await on_abort()
        raise SessionStoreError(f"{label}: {what} timed out after {time_limit:g}s") from None
    except asyncio.CancelledError:
        if on_abort is not None:
            await on_abort()
        raise


async def kept_to(
    deadlines: Deadlines,
    label: str,
    what: str,
    call: Awaitable[T],
    errors: Errors,
    key: str | None,
    describe: Describe = describe_error,
) -> T:
    """`guarded(label, what, ...)` for a `call` already made, its time limit `deadlines.seconds`
    (set) kept with one timer per event loop (_deadline.py) instead of an `asyncio.timeout`
    per call: the same messages, one coroutine fewer, no timer handle armed and cancelled."""
    task = asyncio.current_task()
    assert task is not None  # asyncio only, as `guarded`
    watch, token, cancelling = deadlines.arm(task.get_loop(), task)
    try:
        try:
            return await call
        except SessionStoreError:
            raise
        except errors as exc:
            raise _failed(label, what, exc, key, describe) from None
    except asyncio.CancelledError:
        if deadlines.expired(watch, token, task, cancelling):
            raise SessionStoreError(f"{label}: {what} timed out after {deadlines.seconds:g}s") from None
        raise
    finally:
        deadlines.disarm(watch, token, task)


def _failed(
    label: str, what: str, exc: BaseException, key: str | None, describe: Describe
) -> SessionStoreError:
    """The error `guarded` and `kept_to` raise for a driver's failure (key redacted)."""
    return SessionStoreError(f"{label}: {what} failed: {describe(exc, key)}")


def ttl_ms(deadline: float | None, now: float) -> int:
    """Milliseconds from `now` until `deadline`: -1 for no deadline, 0 if it has passed
    (rounded up, so a store never drops a live record early)."""
    if deadline is None:
        return -1
    ms = math.ceil((deadline - now) * 1000)
    return ms if ms > 0 else 0


class SerializerChoice:
    """Mixin for stores that encode records with a serializer: the middleware's `serializer`
    option (e.g. "tagged") replaces the one the store was built with, before first use."""

    _serializer: Serializer

    def use_serializer(self, serializer: Serializer) -> None:
        self._serializer = serializer
