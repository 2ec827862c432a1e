"""Flash messages over real HTTP: across redirects, in templates, and under concurrent requests.

The concurrency tests run a real uvicorn server on a loopback port and make the requests
overlap on purpose (each handler waits at a gate until the others have loaded the session),
so "exactly once" is tested against the interleaving it is about, on real stores.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import jinja2
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from coatcheck import Flash, SessionMiddleware
from coatcheck.session import FLASH_PREFIX, FlashClaims
from coatcheck.stores import MemoryStore, SQLiteStore
from coatcheck.templating import install
from tests.helpers import make_settings
from tests.services import free_port

StoreFactory = Callable[[], Any]


# ---- stores -----------------------------------------------------------------------------------
def store_factory(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    if kind == "memory":
        return MemoryStore
    if kind == "sqlite":
        return lambda: SQLiteStore(tmp_path / "sessions.db")
    if kind == "cookie":
        from coatcheck.stores import CookieStore

        return CookieStore
    url = request.getfixturevalue("redis_url")
    from coatcheck.stores import RedisStore

    return lambda: RedisStore(url, prefix=f"coatcheck-flash-test:{time.time_ns()}:")


@pytest.fixture(params=["memory", "sqlite", "redis"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    """Real stores with delta commits (PatchingStore)."""
    return store_factory(request.param, request, tmp_path)


@pytest.fixture(params=["memory", "sqlite", "redis", "cookie"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    """Every kind of store, client-side sessions included."""
    return store_factory(request.param, request, tmp_path)


# ---- a real server ----------------------------------------------------------------------------
@contextmanager
def serve(app: Any) -> Iterator[str]:
    """Run `app` under uvicorn on a free loopback port in a thread; yield its base URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start within 10 s")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


class Signals:
    """Named events inside the server's event loop, set by handlers or by the test over HTTP."""

    def __init__(self) -> None:
        self.events: dict[str, asyncio.Event] = {}
        self.counts: dict[str, int] = {}

    def event(self, name: str) -> asyncio.Event:
        return self.events.setdefault(name, asyncio.Event())

    async def wait(self, name: str) -> None:
        await asyncio.wait_for(self.event(name).wait(), timeout=10)

    async def gather(self, name: str, parties: int) -> None:
        """Wait until `parties` handlers have arrived here (a barrier)."""
        self.counts[name] = self.counts.get(name, 0) + 1
        if self.counts[name] >= parties:
            self.event(name).set()
        await self.wait(name)


def flash_app(store: Any, secret: str, signals: Signals | None = None, parties: int = 0) -> Starlette:
    signals = signals or Signals()

    async def add(request: Request) -> Response:
        request.session.flash(request.query_params["msg"], request.query_params.get("category", "info"))
        return JSONResponse({"ok": True})

    async def save(request: Request) -> Response:
        form = await request.form()
        request.session.flash(f"Saved {form['title']}", "success")
        return RedirectResponse("/", status_code=303)

    async def show(request: Request) -> Response:
        category = request.query_params.get("category")
        return JSONResponse([list(f) for f in request.session.flashes(category)])

    async def peek(request: Request) -> Response:
        """What the store holds, without taking anything."""
        return JSONResponse(
            sorted(request.session[k][1] for k in request.session if k.startswith(FLASH_PREFIX))
        )

    async def show_together(request: Request) -> Response:
        loaded = [request.session[k][1] for k in request.session if k.startswith(FLASH_PREFIX)]
        await signals.gather("show", parties)
        return JSONResponse({"loaded": loaded, "shown": [f.message for f in request.session.flashes()]})

    async def consume_after_producer_commits(request: Request) -> Response:
        signals.event("consumer-loaded").set()
        await signals.wait("producer-committed")
        return JSONResponse([f.message for f in request.session.flashes()])

    async def produce_while_consumer_waits(request: Request) -> Response:
        await signals.wait("consumer-loaded")
        request.session.flash(request.query_params["msg"])
        return JSONResponse({"ok": True})

    async def produce_after_consumer_commits(request: Request) -> Response:
        signals.event("producer-loaded").set()
        await signals.wait("consumer-committed")
        request.session.flash(request.query_params["msg"])
        return JSONResponse({"ok": True})

    async def consume_while_producer_waits(request: Request) -> Response:
        await signals.wait("producer-loaded")
        return JSONResponse([f.message for f in request.session.flashes()])

    async def signal(request: Request) -> Response:
        signals.event(request.path_params["name"]).set()
        return JSONResponse({"ok": True})

    app = Starlette(
        routes=[
            Route("/", show),
            Route("/add", add),
            Route("/save", save, methods=["POST"]),
            Route("/peek", peek),
            Route("/show-together", show_together),
            Route("/consume-a", consume_after_producer_commits),
            Route("/produce-a", produce_while_consumer_waits),
            Route("/produce-b", produce_after_consumer_commits),
            Route("/consume-b", consume_while_producer_waits),
            Route("/signal/{name}", signal),
        ]
    )
    app.add_middleware(SessionMiddleware, secret=secret, store=store)
    return app


def asgi_client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")


# ---- across a real redirect -----------------------------------------------------------------------
async def test_flash_survives_a_303_redirect_and_is_shown_once(secret: str, any_store: StoreFactory) -> None:
    app = flash_app(any_store(), secret)
    with serve(app) as url:
        async with httpx.AsyncClient(base_url=url, follow_redirects=True) as c:
            response = await c.post("/save", data={"title": "draft"})
            assert [r.status_code for r in response.history] == [303]
            assert response.url.path == "/"
            assert response.json() == [["success", "Saved draft"]]
            assert (await c.get("/")).json() == []


async def test_flashes_keep_order_and_categories(secret: str) -> None:
    async with asgi_client(flash_app(MemoryStore(), secret)) as c:
        for msg, category in [("one", "info"), ("two", "error"), ("three", "info"), ("four", "error")]:
            await c.get("/add", params={"msg": msg, "category": category})
        assert (await c.get("/", params={"category": "error"})).json() == [
            ["error", "two"],
            ["error", "four"],
        ]
        assert (await c.get("/peek")).json() == ["one", "three"]
        assert (await c.get("/")).json() == [["info", "one"], ["info", "three"]]
        assert (await c.get("/")).json() == []


def test_flash_in_one_request_is_taken_in_the_same_request_once() -> None:
    from coatcheck.codec import DEFAULT_SERIALIZER
    from coatcheck.session import Session

    session = Session(settings=make_settings(), serializer=DEFAULT_SERIALIZER, now=time.time())
    session.flash({"text": "structured", "n": 1}, "warning")
    session.flash("plain")
    assert session.flashes() == [Flash("warning", {"text": "structured", "n": 1}), Flash("info", "plain")]
    assert session.flashes() == []
    assert str(Flash("info", "hi")) == "hi"
    with pytest.raises(TypeError, match="category must be a string"):
        session.flash("x", category=3)  # type: ignore[arg-type]


# ---- exactly once under concurrency ------------------------------------------------------------------
PARTIES = 8


async def test_concurrent_requests_that_all_loaded_a_flash_show_it_exactly_once(
    secret: str, any_store: StoreFactory
) -> None:
    signals = Signals()
    app = flash_app(any_store(), secret, signals, parties=PARTIES)
    with serve(app) as url:
        async with httpx.AsyncClient(base_url=url) as c:
            await c.get("/add", params={"msg": "hello"})
            responses = await asyncio.gather(*(c.get("/show-together") for _ in range(PARTIES)))
            bodies = [r.json() for r in responses]
            # every request had the message in its loaded session before any of them took it ...
            assert all(body["loaded"] == ["hello"] for body in bodies)
            # ... and exactly one of them showed it
            assert sorted(m for body in bodies for m in body["shown"]) == ["hello"]
            assert (await c.get("/peek")).json() == []
            assert (await c.get("/")).json() == []


async def test_flash_added_while_another_request_takes_flashes_is_not_lost(
    secret: str, make_store: StoreFactory
) -> None:
    """The producer commits between the consumer's load and its commit."""
    app = flash_app(make_store(), secret)
    with serve(app) as url:
        async with httpx.AsyncClient(base_url=url) as c:
            await c.get("/add", params={"msg": "first"})
            consumer = asyncio.ensure_future(c.get("/consume-a"))
            assert (await c.get("/produce-a", params={"msg": "second"})).json() == {"ok": True}
            await c.get("/signal/producer-committed")  # its response came, so its commit landed
            assert (await consumer).json() == ["first"]
            assert (await c.get("/")).json() == [["info", "second"]]
            assert (await c.get("/")).json() == []


async def test_flash_taken_while_another_request_holds_a_stale_copy_is_not_resurrected(
    secret: str, make_store: StoreFactory
) -> None:
    """The consumer commits between the producer's load (which still holds the message) and its commit."""
    app = flash_app(make_store(), secret)
    with serve(app) as url:
        async with httpx.AsyncClient(base_url=url) as c:
            await c.get("/add", params={"msg": "first"})
            producer = asyncio.ensure_future(c.get("/produce-b", params={"msg": "second"}))
            assert (await c.get("/consume-b")).json() == ["first"]
            await c.get("/signal/consumer-committed")
            assert (await producer).json() == {"ok": True}
            assert (await c.get("/")).json() == [["info", "second"]]


def test_claims_are_granted_once_and_bounded() -> None:
    claims = FlashClaims(ttl=300, max_entries=2)
    assert claims.claim("a") and not claims.claim("a")
    assert claims.claim("b") and claims.claim("c")  # "a" is evicted: at most 2 are kept
    assert not claims.claim("c") and claims.claim("a")
    expired = FlashClaims(ttl=0)
    assert expired.claim("x") and expired.claim("x")  # a claim lives only `ttl` seconds


# ---- templates ----------------------------------------------------------------------------------
PAGE = (
    "{% for category, message in get_flashed_messages(with_categories=true) %}"
    '<p class="{{ category }}">{{ message }}</p>'
    "{% endfor %}"
    "{% for message in get_flashed_messages() %}[again:{{ message }}]{% endfor %}"
    "{% for f in flashes('error') %}[error:{{ f.message }}]{% endfor %}"
)


def template_app(secret: str, *, autoescape: bool, store: Any = None) -> Starlette:
    env = jinja2.Environment(
        loader=jinja2.DictLoader(
            {"page.html": PAGE, "form.html": "<form>{{ csrf_input() }}</form>|{{ csrf_token() }}"}
        ),
        autoescape=autoescape,
    )
    templates = Jinja2Templates(env=env)
    install(templates)

    async def add(request: Request) -> Response:
        request.session.flash(request.query_params["msg"], request.query_params.get("category", "info"))
        return JSONResponse({"ok": True})

    async def page(request: Request) -> Response:
        return templates.TemplateResponse(request, "page.html")

    async def form(request: Request) -> Response:
        return templates.TemplateResponse(request, "form.html")

    app = Starlette(routes=[Route("/add", add), Route("/page", page), Route("/form", form)])
    app.add_middleware(SessionMiddleware, secret=secret, store=store or MemoryStore())
    return app


@pytest.mark.parametrize("autoescape", [True, False])
async def test_template_helper_escapes_html_in_messages(secret: str, autoescape: bool) -> None:
    async with asgi_client(template_app(secret, autoescape=autoescape)) as c:
        await c.get("/add", params={"msg": "<script>alert('x')</script> & co", "category": 'error"><b>'})
        html = (await c.get("/page")).text
        assert "<script>" not in html and "<b>" not in html
        assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; co" in html
        assert 'class="error&#34;&gt;&lt;b&gt;"' in html
        # the first call takes the request's messages; later calls in the request see the same
        assert html.count("[again:&lt;script&gt;") == 1
        assert "[error:" not in html  # category filter: this message's category is not "error"
        assert "&lt;script&gt;" not in (await c.get("/page")).text  # gone on the next page


async def test_template_flashes_filter_by_category(secret: str) -> None:
    async with asgi_client(template_app(secret, autoescape=True)) as c:
        await c.get("/add", params={"msg": "bad", "category": "error"})
        await c.get("/add", params={"msg": "fine"})
        html = (await c.get("/page")).text
        assert html.startswith('<p class="error">bad</p><p class="info">fine</p>')
        assert "[error:bad]" in html and "[error:fine]" not in html


async def test_template_csrf_helpers_render_a_fresh_masked_token(secret: str) -> None:
    from coatcheck.csrf import tokens_match
    from coatcheck.session import CSRF_KEY

    store = MemoryStore()
    app = template_app(secret, autoescape=True, store=store)
    async with asgi_client(app) as c:
        first = (await c.get("/form")).text
        second = (await c.get("/form")).text
    (key,) = [info.storage_key for info in await store.list_sessions()]
    session_token = (await store.get(key)).data[CSRF_KEY]  # type: ignore[union-attr]
    tokens = []
    for text in (first, second):
        field, _, bare = text.partition("|")
        assert field.startswith('<form><input type="hidden" name="csrf_token" value="')
        value = field.split('value="', 1)[1].split('"', 1)[0]
        tokens += [value, bare]
    assert len(set(tokens)) == 4  # a new mask every time it is rendered
    assert all(tokens_match(session_token, t) for t in tokens)


def test_install_refuses_something_that_is_not_an_environment() -> None:
    from coatcheck import ConfigurationError

    with pytest.raises(ConfigurationError, match=r"jinja2\.Environment"):
        install(object())


def test_template_without_a_session_is_a_clear_error() -> None:
    from coatcheck import ConfigurationError

    env = install(jinja2.Environment(autoescape=True))
    with pytest.raises(ConfigurationError, match="the template has no session"):
        env.from_string("{{ get_flashed_messages() }}").render()
