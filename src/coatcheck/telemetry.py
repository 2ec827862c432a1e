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
    "loading or saving a session": "get_or_save",  # aiohttp names both
    "reading a legacy session": "legacy_get",  # migrate_from
    "deleting a legacy session": "legacy_destroy",
}


def _unset_providers() -> tuple[object, object]:
    """The providers the API hands out before an app sets any (its proxies); an SDK set later
    replaces them for good (the API allows one set per process)."""
    return _trace.get_tracer_provider(), _metrics.get_meter_provider()


_UNSET = _unset_providers() if ENABLED else (None, None)


class _Configured:
    """Whether the app set up an SDK: tracing, metrics. Asking the API costs microseconds, so
    a "no" is asked again at most once a second and a "yes" is final (set once per process)."""

    RECHECK = 1.0

    def __init__(self) -> None:
        self.tracing = self.metrics = False
        self.next_check = 0.0

    def now(self) -> tuple[bool, bool]:
        if not (self.tracing and self.metrics):
            clock = time.monotonic()
            if clock >= self.next_check:
                self.next_check = clock + self.RECHECK
                self.tracing = _trace.get_tracer_provider() is not _UNSET[0]
                self.metrics = _metrics.get_meter_provider() is not _UNSET[1]
        return self.tracing, self.metrics


_configured = _Configured()


def counting() -> bool:
    """True if an SDK's MeterProvider would receive the counters (audit events feed them)."""
    if not ENABLED:
        return False
    configured = _configured
    if not configured.metrics and time.monotonic() < configured.next_check:
        return False  # `now()`'s cached "no", without its call: asked on every commit
    return configured.now()[1]


def instrumented() -> bool:
    """True if an SDK would receive store spans or latencies (the store calls must go through `wrap`)."""
    return ENABLED and any(_configured.now())


def refresh() -> None:
    """Look for an SDK now (after setting one up once requests have started; tests)."""
    _configured.next_check = 0.0


def wrap(what: str, call: Awaitable[T], target: object) -> Awaitable[T]:
    """`call` inside a span and timed, if an SDK is configured; else `call` itself, so an app
    that installs the API but sets up no SDK pays one check per store call (an SDK set up
    after the first requests is noticed within a second)."""
    configured = _configured
    if not (configured.tracing or configured.metrics) and time.monotonic() < configured.next_check:
        return call  # `now()`'s cached "no", without its call: asked on every store call
    tracing, metering = configured.now()
    if not (tracing or metering):
        return call
    return traced(what, call, target, span=tracing)


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


async def traced(what: str, call: Awaitable[T], target: object, *, span: bool = True) -> T:
    """Await one store call (inside a span if `span`), recording its latency and outcome."""
    found = instruments()
    operation = OPERATIONS.get(what, what)
    store = target if isinstance(target, str) else type(target).__name__  # "migrate_from"
    attributes = {"coatcheck.operation": operation, "coatcheck.store": store}
    start = time.perf_counter()
    outcome = "error"
    try:
        if not span:
            result = await call
        else:
            with found.tracer.start_as_current_span(
                f"coatcheck.store {operation}",
                kind=SpanKind.CLIENT,
                attributes=attributes,
                record_exception=False,  # a store's message may quote a key: the event says enough
                set_status_on_exception=False,
            ) as current:
                try:
                    result = await call
                except BaseException as exc:  # timeouts arrive as cancellation
                    current.set_status(StatusCode.ERROR, type(exc).__name__)
                    raise
        outcome = "ok"
        return result
    finally:
        found.duration.record(time.perf_counter() - start, {**attributes, "coatcheck.outcome": outcome})


def count_event(event: AuditEvent) -> None:
    """Count an audit event on the matching instrument (no-op without the extra)."""
    if not counting():
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
    if counting():
        instruments().unavailable.add(1, {"coatcheck.during": OPERATIONS.get(during, during)})
