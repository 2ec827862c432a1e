"""The audit event record and the `on_event` hook's type (see `coatcheck.audit`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal

from .crypto import storage_key
from .record import ID_HINT_CHARS

EventKind = Literal[
    "created",
    "login",
    "logout",
    "regenerated",
    "destroyed",
    "revoked",
    "expired",
    "csrf_refused",
    "store_error",
]


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One lifecycle event. Safe to log as is: no field holds an id, a token or a secret.

    `id_hint` names the session (12 hex characters of SHA-256 of its id); `previous_hint`
    the session it replaced (login, regenerated); `reason` says why (the CSRF check that
    failed, "deadline"/"gone" for an expired cookie, the store operation that failed);
    `count` is how many sessions a `revoked` event deleted.
    """

    kind: EventKind
    time: float
    id_hint: str | None = None
    previous_hint: str | None = None
    user_id: str | None = None
    reason: str | None = None
    path: str | None = None
    count: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """The fields that are set, for a JSON log line."""
        return {k: v for k, v in asdict(self).items() if v is not None}


OnEvent = Callable[[AuditEvent], None]


def id_hint(session_id: str | None) -> str | None:
    """The hint for a session id: never the id, nor a prefix of it (express keys by raw id)."""
    return None if not session_id else storage_key(session_id)[:ID_HINT_CHARS]
