"""The running demo's state, shared by the app, its pages and the inspector."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ..runtime import Runtime
from ..stores.base import ClientSideStore, Store
from .inspector import CookieWitness
from .modes import SINGLE, Instance, StoreView


@dataclass(slots=True)
class Demo:
    """The running demo: its session manager, its store and when this process started."""

    manager: Runtime
    store_url: str
    view: StoreView
    started_at: float = field(default_factory=time.time)
    witness: CookieWitness | None = None
    instance: Instance = SINGLE

    @property
    def store(self) -> Store:
        store: Store = self.manager.store
        return store

    @property
    def client_side(self) -> ClientSideStore | None:
        """The CookieStore when sessions live in the cookie, else None."""
        return self.manager.client_side

    @property
    def cookie_mode(self) -> str:
        if self.client_side is None:
            return "server"
        return str(getattr(self.client_side, "mode", "sealed"))

    def cookie_names(self) -> frozenset[str]:
        """Every cookie name the session may use: client-side sessions split into chunks."""
        name = self.manager.settings.cookie_name
        names = {name}
        if self.client_side is not None:
            chunks = int(getattr(self.client_side, "max_chunks", 1))
            names.update(f"{name}.{i}" for i in range(chunks))
            names.add(f"{name}.sig")
        return frozenset(names)
