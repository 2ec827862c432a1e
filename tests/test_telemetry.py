"""OpenTelemetry spans and metrics (`coatcheck[otel]`), read back with the SDK's in-memory
exporters: store calls are spans, the instruments count what they name, and no attribute
ever carries a session id or an id hint."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from starlette.applications import Starlette

from coatcheck import SessionMiddleware, telemetry
from coatcheck.audit import id_hint
from coatcheck.csrf import CSRFMiddleware
from coatcheck.stores import RedisStore, SQLiteStore
from tests.helpers import TEST_SECRET, client
from tests.services import free_port
from tests.test_audit import ROUTES

SPANS = InMemorySpanExporter()
READER = InMemoryMetricReader()


@pytest.fixture(scope="module", autouse=True)
def providers() -> Iterator[None]:
    """The process's OpenTelemetry SDK (global providers can be set once per process)."""
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(SPANS))
    trace.set_tracer_provider(tracer_provider)
    metrics.set_meter_provider(MeterProvider(metric_readers=[READER]))
    telemetry.refresh()  # earlier tests in this process ran without an SDK
    yield


@pytest.fixture(autouse=True)
def fresh() -> None:
    SPANS.clear()
    READER.get_metrics_data()  # cumulative: tests compare before/after instead


def points(name: str) -> dict[tuple[tuple[str, Any], ...], float]:
    """Cumulative sum (or histogram count) per attribute set, for metric `name`."""
    found: dict[tuple[tuple[str, Any], ...], float] = {}
    data = READER.get_metrics_data()
    for resource in data.resource_metrics if data else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name != name:
                    continue
                for point in metric.data.data_points:
                    value = getattr(point, "value", None)
                    key = tuple(sorted(point.attributes.items()))
                    found[key] = value if value is not None else point.count
    return found


def total(name: str, **attributes: str) -> float:
    wanted = set(attributes.items())
    return sum(v for k, v in points(name).items() if wanted <= set(k))


def test_the_otel_api_is_detected() -> None:
    assert telemetry.ENABLED


async def test_store_calls_are_spans_and_latency_points_without_ids(tmp_path: Path) -> None:
    created_before = total("coatcheck.sessions.created")
    ended_before = total("coatcheck.sessions.destroyed", **{"coatcheck.event": "logout"})
    saves_before = total("coatcheck.store.duration", **{"coatcheck.operation": "save"})
    app = Starlette(routes=ROUTES)
    app.add_middleware(SessionMiddleware, secret=TEST_SECRET, store=SQLiteStore(tmp_path / "otel.db"))
    ids = []
    async with client(app) as c:
        ids.append((await c.get("/whoami")).json()["id"])
        ids.append((await c.get("/login?user=5")).json()["id"])
        await c.get("/read")
        await c.get("/logout")
        cookie_values = [v for v in c.cookies.values()]
    spans = SPANS.get_finished_spans()
    names = [s.name for s in spans]
    assert names.count("coatcheck.store get") == 3  # login, read, logout loaded the session
    assert names.count("coatcheck.store save") == 2  # created, then saved under the login id
    assert "coatcheck.store destroy" in names
    for span in spans:
        assert span.kind == trace.SpanKind.CLIENT
        assert span.attributes is not None and span.attributes["coatcheck.store"] == "SQLiteStore"
        values = " ".join(str(v) for v in span.attributes.values())
        for secret in [*ids, *map(id_hint, ids), *cookie_values]:
            assert str(secret) not in values
    assert total("coatcheck.sessions.created") == created_before + 1
    assert total("coatcheck.sessions.destroyed", **{"coatcheck.event": "logout"}) == ended_before + 1
    assert total("coatcheck.store.duration", **{"coatcheck.operation": "save"}) == saves_before + 2


async def test_csrf_refusals_are_counted_by_reason(tmp_path: Path) -> None:
    before = points("coatcheck.csrf.refused")
    app = Starlette(routes=ROUTES)
    app.add_middleware(CSRFMiddleware, trusted_origins=["http://testserver"])
    app.add_middleware(SessionMiddleware, secret=TEST_SECRET, store=SQLiteStore(tmp_path / "csrf.db"))
    async with client(app) as c:
        await c.get("/whoami")
        foreign = await c.post("/form", headers={"origin": "http://evil.example"})
        tokenless = await c.post("/form", headers={"origin": "http://testserver"})
    after = points("coatcheck.csrf.refused")
    for response in (foreign, tokenless):
        key = (("coatcheck.reason", response.headers["x-csrf-failure"]),)
        assert after[key] == before.get(key, 0) + 1


async def test_a_store_outage_counts_an_error_a_failed_span_and_a_503() -> None:
    errors_before = total("coatcheck.store.errors", **{"coatcheck.operation": "save"})
    unavailable_before = total("coatcheck.responses.unavailable")
    app = Starlette(routes=ROUTES)
    store = RedisStore(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    app.add_middleware(SessionMiddleware, secret=TEST_SECRET, store=store, store_timeout=2)
    async with client(app) as c:
        assert (await c.get("/whoami")).status_code == 503
    assert total("coatcheck.store.errors", **{"coatcheck.operation": "save"}) == errors_before + 1
    assert total("coatcheck.responses.unavailable") == unavailable_before + 1
    (span,) = [s for s in SPANS.get_finished_spans() if s.name == "coatcheck.store save"]
    assert span.status.status_code == trace.StatusCode.ERROR
    assert total("coatcheck.store.duration", **{"coatcheck.outcome": "error"}) >= 1


async def test_a_timed_out_store_call_ends_its_span_as_an_error() -> None:
    from tests.services import silent_server

    with silent_server() as port:
        store = RedisStore(f"redis://127.0.0.1:{port}/0")
        app = Starlette(routes=ROUTES)
        app.add_middleware(SessionMiddleware, secret=TEST_SECRET, store=store, store_timeout=0.3)
        started = time.perf_counter()
        async with client(app) as c:
            assert (await c.get("/whoami")).status_code == 503
        assert time.perf_counter() - started < 5
    (span,) = [s for s in SPANS.get_finished_spans() if s.name == "coatcheck.store save"]
    assert span.status.status_code == trace.StatusCode.ERROR
