"""OpenTelemetry spans and metrics (`pip install coatcheck[otel]`), or nothing at all.

The import is tried once, here. Without `opentelemetry-api`, `ENABLED` is False and the
runtime never calls into this module on the request path. With it, every store call is a
span (`coatcheck.store <operation>`) and these instruments are recorded (meter
"coatcheck"); an app that configures no SDK gets the API's no-op providers.

| instrument | kind | attributes |
| --- | --- | --- |
| `coatcheck.store.duration` (s) | histogram | `coatcheck.operation`, `coatcheck.store`, `coatcheck.outcome` |
| `coatcheck.store.errors` | counter | `coatcheck.operation` |
| `coatcheck.responses.unavailable` (503s) | counter | `coatcheck.during` |
| `coatcheck.sessions.created` | counter | `coatcheck.event` (created) |
| `coatcheck.sessions.destroyed` | counter | `coatcheck.event` (destroyed, logout, revoked) |
| `coatcheck.csrf.refused` | counter | `coatcheck.reason` |

Attributes never carry a session id, an id hint, a user id or a token: only operation names,
store class names and reasons, so their cardinality stays small.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from .events import AuditEvent

T = TypeVar("T")

try:
    from opentelemetry import metrics as _metrics
    from opentelemetry import trace as _trace
    from opentelemetry.trace import SpanKind, StatusCode
except ImportError:  # the extra is not installed: the runtime checks ENABLED and never calls in
    ENABLED = False
else:
    ENABLED = True

# Short, stable operation names for the runtime's descriptions of its store calls.
OPERATIONS = {
    "loading a session": "get",
    "reloading a session": "get",
    "saving a session": "save",
    "touching a session": "touch",
    "destroying a session": "destroy",
    "opening a client-side session": "open",
    "claiming flash messages": "claim",
}


class _Instruments:
    """The tracer and instruments, made once (the API's proxies follow a provider set later)."""

    def __init__(self) -> None:
        meter = _metrics.get_meter("coatcheck")
        self.tracer = _trace.get_tracer("coatcheck")
        self.duration = meter.create_histogram(
            "coatcheck.store.duration", unit="s", description="Session store call latency"
        )
        self.errors = meter.create_counter("coatcheck.store.errors", description="Failed session store calls")
        self.unavailable = meter.create_counter(
            "coatcheck.responses.unavailable", description="503 responses: the session store failed"
        )
        self.created = meter.create_counter("coatcheck.sessions.created", description="Sessions created")
        self.destroyed = meter.create_counter("coatcheck.sessions.destroyed", description="Sessions ended")
        self.csrf_refused = meter.create_counter(
            "coatcheck.csrf.refused", description="Requests refused by the CSRF check"
        )


_instruments: _Instruments | None = None


def instruments() -> _Instruments:
    global _instruments
    if _instruments is None:
        _instruments = _Instruments()
    return _instruments


async def traced(what: str, call: Awaitable[T], target: object) -> T:
    """Await one store call inside a span, recording its latency and outcome."""
    found = instruments()
    operation = OPERATIONS.get(what, what)
    attributes = {"coatcheck.operation": operation, "coatcheck.store": type(target).__name__}
    start = time.perf_counter()
    outcome = "error"
    with found.tracer.start_as_current_span(
        f"coatcheck.store {operation}",
        kind=SpanKind.CLIENT,
        attributes=attributes,
        record_exception=False,  # a store's message may quote a key: the error event says enough
        set_status_on_exception=False,
    ) as span:
        try:
            result = await call
            outcome = "ok"
            return result
        except BaseException as exc:  # timeouts arrive as cancellation
            span.set_status(StatusCode.ERROR, type(exc).__name__)
            raise
        finally:
            found.duration.record(time.perf_counter() - start, {**attributes, "coatcheck.outcome": outcome})


def count_event(event: AuditEvent) -> None:
    """Count an audit event on the matching instrument (no-op without the extra)."""
    if not ENABLED:
        return
    found, kind = instruments(), event.kind
    if kind == "created":
        found.created.add(1, {"coatcheck.event": kind})
    elif kind in ("destroyed", "logout", "revoked"):
        found.destroyed.add(event.count if event.count is not None else 1, {"coatcheck.event": kind})
    elif kind == "csrf_refused":
        found.csrf_refused.add(1, {"coatcheck.reason": event.reason or "unknown"})
    elif kind == "store_error":
        found.errors.add(1, {"coatcheck.operation": OPERATIONS.get(event.reason or "", event.reason or "")})


def count_unavailable(during: str) -> None:
    """One 503 response because the store failed `during` ("loading a session", ...)."""
    if ENABLED:
        instruments().unavailable.add(1, {"coatcheck.during": OPERATIONS.get(during, during)})
