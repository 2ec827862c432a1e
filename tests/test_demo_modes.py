"""The demo's explanations match the store that is running: sqlite (the default), memory://,
cookie:// and redis://. Each test visits the pages over HTTP (httpx against the ASGI app,
real stores) and checks the sentences that differ between modes, plus the lessons: the
fixation lesson at login, the restart lesson, several instances, styled CSRF refusals and
exact inspector statements."""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from coatcheck.crypto import storage_key
from coatcheck.demo import DemoApp, create_app
from coatcheck.demo.inspector import format_delta
from coatcheck.demo.modes import Instance
from tests.test_demo import TOKEN, carry, client_for, login, post, session_id

MODES = ["sqlite", "memory", "cookie", "redis"]
SERVER_SIDE = {"sqlite", "memory", "redis"}
MakeApp = Callable[..., DemoApp]


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store_url(mode: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """The URL `coatcheck demo --store` would get in this mode (Redis: a private prefix)."""
    if mode == "sqlite":
        yield f"sqlite:///{tmp_path / 'coatcheck-demo.db'}"
    elif mode == "memory":
        yield "memory://"
    elif mode == "cookie":
        yield "cookie://"
    else:
        redis_url: str = request.getfixturevalue("redis_url")
        prefix = f"demo-modes-{secrets.token_hex(6)}:"
        yield f"{redis_url}?prefix={prefix}"
        asyncio.run(_drop_keys(redis_url, prefix))


async def _drop_keys(redis_url: str, prefix: str) -> None:
    import redis.asyncio as redis

    client = redis.Redis.from_url(redis_url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.fixture
def make_app(store_url: str, secret: str) -> Iterator[MakeApp]:
    """Demo apps on this mode's store, as `coatcheck demo` builds them; each call is a new
    server process over the same store URL (memory:// gets a new, empty dict)."""
    made: list[DemoApp] = []

    def make(*, started_at: float | None = None, instance: Instance | None = None) -> DemoApp:
        app = create_app(
            store=store_url, secret=secret, store_url=store_url, started_at=started_at, instance=instance
        )
        made.append(app)
        return app

    yield make
    for app in made:
        asyncio.run(app.demo.store.close())


def text(html: str) -> str:
    """The page's words with tags removed and whitespace collapsed."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", html))


# ---- the home page ----------------------------------------------------------------------------
async def test_the_home_page_explains_the_running_store(mode: str, store_url: str, make_app: MakeApp) -> None:
    async with client_for(make_app()) as browser:
        home = text((await browser.get("/")).text)
    if mode == "cookie":
        assert "carry the coat yourself" in home and "the server keeps nothing" in home
        assert "signed, random session id" not in home and "cloakroom is the store" not in home
    else:
        assert "the cloakroom is the store on the server" in home and "signed, random session id" in home
    assert ("log out my other sessions" in home) == (mode in SERVER_SIDE)


async def test_the_command_line_hint_appears_only_where_the_command_line_works(
    mode: str, store_url: str, make_app: MakeApp
) -> None:
    async with client_for(make_app()) as browser:
        home = (await browser.get("/")).text
    shown = re.search(r'id="cli-hint">.*?<code>(.*?)</code>', home, flags=re.S)
    if mode in ("sqlite", "redis"):
        assert shown is not None and shown.group(1) == f"coatcheck sessions list --store {store_url}"
    else:
        assert shown is None and "coatcheck sessions list" not in home
        assert 'id="cli-note"' in home


async def test_the_logout_note_says_what_was_deleted(mode: str, make_app: MakeApp) -> None:
    async with client_for(make_app()) as browser:
        await login(browser, "ann")
        assert (await post(browser, "/logout")).headers["location"] == "/?logged_out=1"
        page = text((await browser.get("/?logged_out=1")).text)
    if mode == "cookie":
        assert "the server kept nothing to delete" in page and "deleted from the store" not in page
    else:
        assert "the record was deleted from the store" in page


# ---- the restart lesson -------------------------------------------------------------------------
async def test_the_restart_page_says_why_the_session_survived_or_was_lost(
    mode: str, make_app: MakeApp
) -> None:
    async with client_for(make_app()) as browser:
        await login(browser, "ann")
        await post(browser, "/cart/add", {"item": "hat"})
        cookies = list(browser.cookies.jar)
    async with client_for(make_app(started_at=time.time() + 1)) as restarted:
        carry(cookies, restarted)
        page = text((await restarted.get("/restart")).text)
    if mode == "memory":
        assert "Lost." in page and "went with it" in page and "coatcheck demo</code>" not in page
        assert "store outside the process (coatcheck demo, a SQLite file)" in page
        return
    assert "Survived a restart." in page
    assert "Now try the opposite" in page and "coatcheck demo --store memory://" in page
    why = {
        "sqlite": "The record is in the SQLite file on disk, which outlived the process",
        "redis": "The record is in a Redis server, which kept running while the app restarted",
        "cookie": "The server never held it: your browser sent the whole session back, sealed",
    }[mode]
    assert why in page


# ---- log in: the fixation lesson, the cart, the record a form starts ----------------------------
async def test_login_shows_the_id_changing_from_the_old_hint_to_the_new(mode: str, make_app: MakeApp) -> None:
    async with client_for(make_app()) as browser:
        await browser.get("/login")  # the form's CSRF token starts a session
        before = storage_key(session_id(browser))[:12] if mode != "cookie" else None
        await login(browser, "ann")
        profile = (await browser.get("/profile")).text
        after = storage_key(session_id(browser))[:12] if mode != "cookie" else None
        again = (await browser.get("/profile")).text
    if mode == "cookie":
        assert 'id="id-change"' not in profile
        return
    assert before != after
    assert f'<code id="old-hint">{before}…</code>' in profile
    assert f'<code id="new-hint">{after}…</code>' in profile
    assert "session fixation" in text(profile)
    assert 'id="id-change"' not in again  # shown once, like a flash


@pytest.mark.parametrize("cart", [[], ["coat", "hat"]])
async def test_the_login_message_mentions_the_cart_only_when_it_has_something(
    make_app: MakeApp, cart: list[str]
) -> None:
    async with client_for(make_app()) as browser:
        for item in cart:
            await post(browser, "/cart/add", {"item": item})
        await login(browser, "ann")
        profile = text((await browser.get("/profile")).text)
    assert "Welcome, ann!" in profile
    if cart:
        assert "Your cart came along (2 items)." in profile
    else:
        assert "came along" not in profile


async def test_opening_the_login_form_explains_the_record_it_starts(mode: str, make_app: MakeApp) -> None:
    async with client_for(make_app()) as browser:
        home = text((await browser.get("/")).text)
        page = (await browser.get("/login")).text
    assert "a page with a form (log in, cart, settings) puts a CSRF token in" in home
    assert 'id="only-csrf"' in page
    assert "the form on this page needed one" in text(page)


# ---- the panel's statements ----------------------------------------------------------------------
async def test_the_inspector_states_deadlines_exactly(make_app: MakeApp) -> None:
    app = make_app()
    async with client_for(app) as browser:
        await login(browser, "ann")
        page = text((await browser.get("/profile")).text)
    touch_after = format_delta(app.demo.manager.settings.touch_seconds)
    assert f"a visit that changes nothing moves it at most once every {touch_after} (touch_after)" in page
    assert "moves forward with each visit" not in page
    assert "absolute 30 days" in page
    assert re.search(r"in 29 days 23 h; never moves", page)  # not a round "29 days" beside "30 days"
    assert not re.search(r"in 29 days;", page)


@pytest.mark.parametrize("mode", ["sqlite", "cookie", "redis"], indirect=True)  # memory:// loses it
async def test_a_remembered_cookie_never_reads_as_a_session_cookie_after_a_restart(
    mode: str, make_app: MakeApp
) -> None:
    async with client_for(make_app()) as browser:
        await login(browser, "ann")
        await post(browser, "/settings", {"remember": "on"})
        cookies = list(browser.cookies.jar)
    async with client_for(make_app(started_at=time.time() + 1)) as restarted:
        carry(cookies, restarted)
        page = (await restarted.get("/")).text
    expires = re.search(r'class="expires">(.*?)<div class="note">(.*?)</div>', page, flags=re.S)
    assert expires is not None
    assert expires.group(1).strip() != "Session" and "Max-Age=2592000" in expires.group(2)


async def test_favicon_is_served_without_starting_a_session(make_app: MakeApp) -> None:
    async with client_for(make_app()) as browser:
        icon = await browser.get("/favicon.ico")
    assert icon.status_code == 200 and icon.headers["content-type"] == "image/svg+xml"
    assert icon.content.startswith(b"<svg") and "set-cookie" not in icon.headers


# ---- stale forms: a styled refusal ---------------------------------------------------------------
async def test_a_stale_form_gets_a_styled_page_with_a_way_back(mode: str, make_app: MakeApp) -> None:
    async with client_for(make_app()) as browser:
        cart = (await browser.get("/cart")).text
        token = TOKEN.search(cart)
        assert token is not None
        browser.cookies.clear()  # the session ended (revoked, restarted, logged out elsewhere)
        refused = await browser.post(
            "/cart/add",
            data={"item": "coat", "csrf_token": token.group(1)},
            headers={"origin": "http://127.0.0.1:8000"},
        )
    assert refused.status_code == 403
    assert refused.headers["content-type"].startswith("text/html")
    assert refused.headers["x-csrf-failure"] == "session-token-missing"
    page = text(refused.text)
    assert "This form was refused" in page and "nothing was changed" in page
    assert '<a class="button" id="reload" href="/cart">Reload the page</a>' in refused.text
    assert '<link rel="stylesheet" href="/static/style.css">' in refused.text


# ---- several instances ----------------------------------------------------------------------------
async def test_the_inspector_says_which_instance_answered_and_whether_the_session_followed(
    mode: str, make_app: MakeApp
) -> None:
    ports = (18001, 18002)
    one = make_app(instance=Instance(number=1, count=2, ports=ports))
    two = make_app(instance=Instance(number=2, count=2, ports=ports))
    async with client_for(one) as browser:
        await login(browser, "ann")
        await post(browser, "/cart/add", {"item": "scarf"})
        first = text((await browser.get("/instances")).text)
        cookies = list(browser.cookies.jar)
    async with client_for(two) as same_browser:
        carry(cookies, same_browser)
        second = (await same_browser.get("/instances")).text
    assert "Answered by instance 1 of 2 (port 18001)" in first
    assert "Answered by instance 2 of 2 (port 18002)" in text(second)
    assert 'href="http://127.0.0.1:18001/instances">Ask instance 1</a>' in second
    logged_in = 'id="who">ann<' in second
    if mode == "memory":
        assert not logged_in and "each instance keeps its own dict" in text(second)
    else:
        assert logged_in and "your session follows you" in text(second)


async def test_a_single_instance_explains_how_to_start_two(make_app: MakeApp) -> None:
    async with client_for(make_app()) as browser:
        page = text((await browser.get("/instances")).text)
    assert "coatcheck demo --instances 2 --store memory://" in page
    assert "Answered by instance" not in page


# ---- `coatcheck demo --instances 2`: real processes ---------------------------------------------
def test_demo_instances_are_separate_processes_that_stop_with_the_first(tmp_path: Path) -> None:
    """Two real processes on two ports; with memory:// each keeps its own sessions; when
    instance 1 dies (even by SIGKILL) instance 2 stops too."""
    import shutil
    import subprocess
    import sys

    from tests.services import free_port_run, port_open, wait_for_port

    script = shutil.which("coatcheck", path=str(Path(sys.executable).parent)) or shutil.which("coatcheck")
    assert script is not None, "the coatcheck script is not installed: pip install -e ."
    port = free_port_run(2)  # --instances 2 serves on port and port + 1
    log = (tmp_path / "demo.log").open("wb")
    first = subprocess.Popen(
        [script, "demo", "--store", "memory://", "--port", str(port), "--instances", "2"],
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        for each in (port, port + 1):
            # Starting two processes can take long on a loaded machine: wait as long as the
            # demo is alive (bounded at 3 minutes), and fail at once, with its log, if it exits.
            deadline = time.monotonic() + 180
            while not port_open("127.0.0.1", each) and time.monotonic() < deadline:
                assert first.poll() is None, (tmp_path / "demo.log").read_text(errors="replace")
                time.sleep(0.05)
            wait_for_port("127.0.0.1", each, timeout=1)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as one:
            page = one.get("/login").text
            token = TOKEN.search(page)
            assert token is not None
            origin = {"origin": f"http://127.0.0.1:{port}"}
            one.post("/login", data={"name": "ann", "csrf_token": token.group(1)}, headers=origin)
            answered_one = re.search(r"process id (\d+)", one.get("/instances").text)
            cookies = one.cookies
        with httpx.Client(base_url=f"http://127.0.0.1:{port + 1}", cookies=cookies, timeout=30) as two:
            page_two = two.get("/instances").text
        answered_two = re.search(r"process id (\d+)", page_two)
        assert answered_one and answered_two and answered_one.group(1) != answered_two.group(1)
        assert "instance 2 of 2" in page_two and 'id="who">ann<' not in page_two  # memory: not shared
        first.kill()  # SIGKILL: no chance to stop instance 2 itself
        first.wait(timeout=30)
        deadline = time.monotonic() + 30
        while port_open("127.0.0.1", port + 1) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not port_open("127.0.0.1", port + 1), "instance 2 outlived instance 1"
    finally:
        log.close()
        if first.poll() is None:
            first.kill()
