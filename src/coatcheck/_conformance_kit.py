"""What the conformance suite's checks share: records to write, fresh keys, the runner."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import pytest

from .crypto import storage_key
from .record import Meta, Record
from .stores.base import Store

TestBody = Callable[[Any], Awaitable[None]]


def make_record(
    data: dict[str, Any] | None = None,
    *,
    ttl: float = 3600.0,
    user_id: str | None = None,
    now: float | None = None,
) -> Record:
    """A record whose idle deadline is `ttl` seconds away (negative: already dead)."""
    now = time.time() if now is None else now
    return Record(
        data=dict(data or {}),
        meta=Meta(
            created=now,
            last_seen=now,
            idle_deadline=now + ttl,
            absolute_deadline=now + max(ttl, 0) + 86400,
            user_id=user_id,
        ),
    )


def new_key() -> str:
    return storage_key(secrets.token_urlsafe(32))


class ConformanceBase:
    """How each check gets its store: `make_store`, run in a fresh event loop, then closed."""

    #: Seconds a "short" deadline lies in the future in the expiry tests.
    short_ttl: float = 1.0

    async def make_store(self) -> Store:
        raise NotImplementedError("implement make_store() to return the store under test")

    async def close_store(self, store: Any) -> None:
        await store.close()

    #: Runs each test's coroutine; set to e.g. `uvloop.run` to run the suite on another loop.
    runner: Callable[[Coroutine[Any, Any, None]], None] = staticmethod(asyncio.run)

    def run(self, body: TestBody) -> None:
        async def main() -> None:
            store = await self.make_store()
            try:
                await body(store)
            finally:
                await self.close_store(store)

        self.runner(main())

    @staticmethod
    def _need(store: Any, capability: type, name: str) -> None:
        if not isinstance(store, capability):
            pytest.skip(f"{type(store).__name__} does not implement {name}")
