"""Lifecycle events for audit logs: structured records on the `coatcheck.audit` logger and
the `on_event` hook.

Events are derived from what the runtime already knows after the store work (the engine's
`Plan` and the session it was made for), never from inside the pure engine. A record
carries an *id hint* (the first 12 hex characters of SHA-256 of the session id, the same
hint `coatcheck sessions list` shows), never an id, a token or a secret. Nothing is derived
when no one listens: no hook, the logger below INFO and no metrics.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import telemetry
from .events import AuditEvent, EventKind, OnEvent, id_hint

if TYPE_CHECKING:
    from .engine import Plan
    from .errors import SessionStoreError
    from .session import Session

logger = logging.getLogger("coatcheck.audit")
__all__ = ["AuditEvent", "Auditor", "EventKind", "OnEvent", "id_hint", "lifecycle"]

_WARNINGS = frozenset({"csrf_refused", "store_error"})


class Auditor:
    """Emits the events of one middleware: to the logger, its `on_event` hook and the metrics.

    A hook that raises never breaks the request: its first failure is logged with the
    traceback, later ones are counted in `hook_failures` only.
    """

    def __init__(self, on_event: OnEvent | None, *, clock: Callable[[], float] = time.time) -> None:
        self.on_event = on_event
        self.clock = clock
        self.hook_failures = 0

    @property
    def listening(self) -> bool:
        """True if an event would reach anyone (checked before deriving events)."""
        return self.on_event is not None or logger.isEnabledFor(logging.INFO) or telemetry.counting()

    def emit(self, kind: EventKind, **fields: Any) -> AuditEvent:
        event = AuditEvent(kind=kind, time=self.clock(), **fields)
        level = logging.WARNING if kind in _WARNINGS else logging.INFO
        if logger.isEnabledFor(level):
            logger.log(level, "coatcheck %s %s", kind, _summary(event), extra={"audit": event.as_dict()})
        telemetry.count_event(event)
        hook = self.on_event
        if hook is not None:
            try:
                hook(event)
            except Exception:
                self.hook_failures += 1
                if self.hook_failures == 1:
                    logger.exception("coatcheck: the on_event hook raised (logged once; events continue)")
        return event

    # ---- derived from a committed plan ---------------------------------------------------
    def committed(self, session: Session, plan: Plan, *, client_side: bool = False) -> None:
        """The events of a plan the runtime just performed, for `session` before `after_commit`."""
        if self.on_event is None and not logger.isEnabledFor(logging.INFO) and not telemetry.counting():
            return  # `listening`, inline: asked on every commit
        request = session.request
        path = request.path if request is not None else None
        for kind, fields in lifecycle(session, plan, client_side=client_side):
            self.emit(kind, path=path, **fields)

    def expired(self, session_id: str, reason: str, path: str | None = None) -> None:
        """A verified cookie whose record is past its deadline ("deadline") or absent ("gone")."""
        if self.listening:
            self.emit("expired", id_hint=id_hint(session_id), reason=reason, path=path)

    def store_error(self, operation: str, error: SessionStoreError) -> None:
        self.emit("store_error", reason=operation)


def lifecycle(
    session: Session, plan: Plan, *, client_side: bool = False
) -> list[tuple[EventKind, dict[str, Any]]]:
    """(kind, fields) for what `plan` did to `session` (before `after_commit`): created,
    login, regenerated, destroyed or logout. Pure: reads the plan and the session's public
    state. `client_side`: the plan re-seals a cookie rather than writing a store."""
    before, old = session.loaded_user_id, session.client_id
    if plan.cookie == "expire" and plan.record is None:
        ended = plan.destroy[0] if plan.destroy else (old if client_side else None)
        if ended is None:
            return []
        kind: EventKind = "logout" if before is not None else "destroyed"
        return [(kind, {"id_hint": id_hint(ended), "user_id": before})]
    if client_side:
        new_id = plan.session_id if plan.cookie == "send" and plan.session_id != old else None
    else:
        new_id = plan.session_id if plan.write == "set" and plan.session_id != session.stored_id else None
    if new_id is None or plan.record is None:
        return []
    user = plan.record.meta.user_id
    previous = plan.destroy[0] if plan.destroy else (old if old != new_id else None)
    hints = {"id_hint": id_hint(new_id), "previous_hint": id_hint(previous)} if previous else None
    if hints is None:
        created: list[tuple[EventKind, dict[str, Any]]] = [("created", {"id_hint": id_hint(new_id)})]
        if user is not None:
            created.append(("login", {"id_hint": id_hint(new_id), "user_id": user}))
        return created
    kind = "login" if user is not None and user != before else "regenerated"
    return [(kind, {**hints, "user_id": user})]


def _summary(event: AuditEvent) -> str:
    parts = [f"{k}={v}" for k, v in event.as_dict().items() if k not in ("kind", "time")]
    return " ".join(parts)


# ---- events outside a request: revocation, CSRF ------------------------------------------------
_auditors: weakref.WeakKeyDictionary[object, Auditor] = weakref.WeakKeyDictionary()


def watch_store(store: object, auditor: Auditor) -> None:
    """Route events a store raises outside a request (`destroy_user`) to this middleware."""
    if _is_weakrefable(store):  # else: the logger and metrics still get its events
        _auditors[store] = auditor


def revoked(store: object, user_id: str, count: int) -> None:
    """`store.destroy_user(user_id)` deleted `count` sessions ("log out everywhere")."""
    auditor = _auditors.get(store) if _is_weakrefable(store) else None
    (auditor or _DEFAULT).emit("revoked", user_id=str(user_id), count=count)


def csrf_refused(session: object, reason: str, path: str | None, *, fallback: object = None) -> None:
    """A CSRF adapter refused a request for `reason` (the `X-CSRF-Failure` value); the session
    (or else `fallback`, a runtime) leads to its middleware's hook."""
    host = getattr(session, "host", None) or fallback
    auditor = getattr(host, "audit", None)
    if not isinstance(auditor, Auditor):
        auditor = _DEFAULT
    session_id = getattr(session, "stored_id", None)
    auditor.emit("csrf_refused", reason=reason, path=path, id_hint=id_hint(session_id))


def _is_weakrefable(obj: object) -> bool:
    try:
        weakref.ref(obj)
    except TypeError:
        return False
    return True


_DEFAULT = Auditor(None)  # events with no middleware to route them to: logger and metrics only
