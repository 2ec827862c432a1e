"""Choosing the runtime once, at construction: the store decides server- or client-side, and
`compat` decides the layout (`coatcheck.layout`)."""

from __future__ import annotations

from .adoption import AdoptingRuntime
from .client_side import ClientSideRuntime
from .config import Settings
from .layout import layout_for
from .runtime import Runtime
from .server_side import ServerSideRuntime
from .session import Session
from .stores.base import ClientSideStore


def build_runtime(settings: Settings, session_class: type[Session] = Session) -> Runtime:
    """Client-side sessions for a cookie store (the cookie is the store), server-side otherwise;
    with `migrate_from`, wrapped to adopt legacy sessions (`coatcheck.adoption`)."""
    layout = layout_for(settings)
    store = layout.open_store(settings.store)
    runtime: ClientSideRuntime | ServerSideRuntime
    if isinstance(store, ClientSideStore):
        runtime = ClientSideRuntime(settings, store, session_class)
    else:
        runtime = ServerSideRuntime(settings, store, layout, session_class)
    if settings.migrate_from:
        return AdoptingRuntime(runtime, tuple(settings.migrate_from))
    return runtime
