"""What the running store means for the learner: every sentence the demo says about where
sessions live, what survives a restart, what several instances share and what the command
line can see is chosen here, from the store actually in use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..stores.base import ClientSideStore, Inventory, PatchingStore, UserIndex


@dataclass(frozen=True, slots=True)
class StoreView:
    """The store in use, described for the pages.

    `mode` is one of "memory" (a dict in this process), "file" (SQLite), "server" (Redis,
    SQL, MongoDB, memcached: a server of its own) and "cookie" (client-side).
    """

    kind: str
    url: str
    mode: str
    where: str
    survives_restart: bool
    shared_by_instances: bool
    capabilities: str
    user_index: bool
    cli_command: str | None  # `coatcheck sessions list --store URL`, where the CLI can see the sessions

    @property
    def client_side(self) -> bool:
        return self.mode == "cookie"


_WHERE = {
    "MemoryStore": ("memory", "a dict inside this server process: gone when it stops"),
    "SQLiteStore": ("file", "a SQLite file on this disk: survives restarts"),
    "RedisStore": ("server", "a Redis server: survives restarts of this app"),
    "SQLStore": ("server", "a SQL database: survives restarts of this app"),
    "MongoStore": ("server", "a MongoDB collection: survives restarts of this app"),
    "MemcachedStore": ("server", "a memcached server: survives restarts of this app, not of memcached"),
    "CookieStore": ("cookie", "your browser: the whole session travels in the cookie, sealed"),
}


def store_view(store: Any, url: str) -> StoreView:
    """Describe `store` (reachable at `url`, password already redacted) for the pages."""
    kind = type(store).__name__
    mode, where = _WHERE.get(kind, ("server", "a custom store"))
    if isinstance(store, ClientSideStore):
        mode = "cookie"
        capabilities = "nothing on the server: it cannot list, count or revoke sessions"
    else:
        found = [
            label
            for label, protocol in (
                ("delta commits", PatchingStore),
                ("user index", UserIndex),
                ("inventory", Inventory),
            )
            if isinstance(store, protocol)
        ]
        capabilities = ", ".join(found) or "nothing beyond get, set, touch and destroy"
    # The command line opens the store itself: a dict inside this process is out of its
    # reach, and it needs the inventory to list anything.
    listable = mode in ("file", "server") and isinstance(store, Inventory)
    return StoreView(
        kind=kind,
        url=url,
        mode=mode,
        where=where,
        survives_restart=mode != "memory",
        shared_by_instances=mode != "memory",
        capabilities=capabilities,
        user_index=mode != "cookie" and isinstance(store, UserIndex),
        cli_command=f"coatcheck sessions list --store {url}" if listable else None,
    )


@dataclass(frozen=True, slots=True)
class Instance:
    """Which of the demo's processes this is, with `coatcheck demo --instances N`."""

    number: int  # 1-based
    count: int
    ports: tuple[int, ...]  # every instance's port, in order
    host: str = "127.0.0.1"

    def url(self, number: int, path: str = "/") -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.ports[number - 1]}{path}"

    @property
    def others(self) -> list[int]:
        return [n for n in range(1, self.count + 1) if n != self.number]


SINGLE = Instance(number=1, count=1, ports=(8000,))
