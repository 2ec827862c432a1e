"""The demo app over HTTP (httpx against the ASGI app; real MemoryStore and SQLiteStore)."""

from __future__ import annotations

import os
import re
import secrets
import stat
import time
from collections.abc import AsyncIterator, Callable
from http.cookiejar import Cookie
from pathlib import Path
from urllib.parse import unquote

import httpx
import pytest

from coatcheck.crypto import storage_key
from coatcheck.demo import COOKIE_NAME, DemoApp, create_app
from coatcheck.demo.inspector import format_delta, parse_set_cookie
from coatcheck.demo.server import (
    SECRET_FILE_NAME,
    load_or_create_secret,
    probe_store,
    redact_url,
    secret_path_for,
)
from coatcheck.errors import ConfigurationError, SessionStoreError
from coatcheck.stores import MemoryStore, SQLiteStore, Store, UserIndex

MakeApp = Callable[..., DemoApp]


@pytest.fixture(params=["memory", "sqlite"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Store]:
    """A factory of stores; SQLite stores made by one test share one file, like a restart."""
    if request.param == "memory":
        return MemoryStore
    return lambda: SQLiteStore(tmp_path / "demo.db")


@pytest.fixture
def app(make_store: Callable[[], Store], secret: str) -> DemoApp:
    return create_app(store=make_store(), secret=secret, store_url="test://")


def client_for(app: DemoApp, base_url: str = "http://127.0.0.1:8000") -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base_url)


@pytest.fixture
async def client(app: DemoApp) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(app) as c:
        yield c
    await app.demo.store.close()


def carry(cookies: list[Cookie], client: httpx.AsyncClient) -> None:
    """Give `client` the cookies another client held: the same browser after a restart."""
    for cookie in cookies:
        client.cookies.jar.set_cookie(cookie)


def session_id(client: httpx.AsyncClient) -> str:
    value = client.cookies.get(COOKIE_NAME)
    assert value is not None, "the client holds no session cookie"
    signed = unquote(value)
    assert signed.startswith("s:")
    return signed[2:].rpartition(".")[0]


async def stored(app: DemoApp, client: httpx.AsyncClient) -> dict[str, object] | None:
    record = await app.demo.store.get(storage_key(session_id(client)))
    return None if record is None else record.data


TOKEN = re.compile(r'<input type="hidden" name="csrf_token" value="([A-Za-z0-9_-]+)">')


async def post(client: httpx.AsyncClient, path: str, data: dict[str, str] | None = None) -> httpx.Response:
    """Submit a form as a browser would: with the CSRF token from a page of this session."""
    page = await client.get("/login")
    match = TOKEN.search(page.text)
    assert match, "the login form carries no CSRF token"
    origin = f"{client.base_url.scheme}://{client.base_url.netloc.decode()}"
    return await client.post(
        path, data={**(data or {}), "csrf_token": match.group(1)}, headers={"origin": origin}
    )


async def login(client: httpx.AsyncClient, name: str) -> httpx.Response:
    response = await post(client, "/login", {"name": name})
    assert response.status_code == 303
    return response


# ---- anonymous visits -----------------------------------------------------------------------
async def test_looking_at_pages_without_forms_creates_no_session(
    client: httpx.AsyncClient, app: DemoApp
) -> None:
    for path in ("/", "/restart", "/profile"):
        response = await client.get(path)
        assert response.status_code in (200, 401), path
        assert "set-cookie" not in response.headers, path
        assert 'id="no-record"' in response.text
    assert "sent no session cookie" in response.text
    assert isinstance(app.demo.store, MemoryStore | SQLiteStore)
    assert await app.demo.store.count() == 0


@pytest.mark.parametrize("path", ["/login", "/cart", "/settings"])
async def test_a_page_with_a_form_starts_a_session_holding_only_the_csrf_token(
    client: httpx.AsyncClient, app: DemoApp, path: str
) -> None:
    response = await client.get(path)
    assert response.headers["set-cookie"].startswith(f"{COOKIE_NAME}=")
    assert set((await stored(app, client) or {}).keys()) == {"_csrf"}
    assert TOKEN.search(response.text)
    assert "<code>_csrf</code> is the CSRF token" in response.text  # the inspector shows it, explained
    assert "This response starts a session, so its cookie comes with it" in response.text


async def test_a_form_post_without_the_csrf_token_is_refused(client: httpx.AsyncClient, app: DemoApp) -> None:
    await client.get("/cart")
    response = await client.post("/cart/add", data={"item": "coat"})
    assert response.status_code == 403
    assert "cart" not in (await stored(app, client) or {})


async def test_a_form_post_from_another_site_is_refused(client: httpx.AsyncClient) -> None:
    page = await client.get("/login")
    match = TOKEN.search(page.text)
    assert match
    form = {"name": "mallory", "csrf_token": match.group(1)}
    refused = await client.post("/login", data=form, headers={"origin": "http://evil.example"})
    assert refused.status_code == 403
    allowed = await client.post("/login", data=form, headers={"origin": "http://127.0.0.1:8000"})
    assert allowed.status_code == 303


async def test_profile_is_refused_with_401_when_logged_out(client: httpx.AsyncClient) -> None:
    response = await client.get("/profile")
    assert response.status_code == 401
    assert "Log in to see your profile" in response.text
    assert "set-cookie" not in response.headers


# ---- logging in ---------------------------------------------------------------------------
async def test_login_sets_a_signed_httponly_lax_cookie_without_secure_over_http(
    client: httpx.AsyncClient,
) -> None:
    response = await login(client, "ann")
    assert response.headers["location"] == "/profile"
    header = response.headers["set-cookie"]
    assert header.startswith(f"{COOKIE_NAME}=s%3A")
    assert "; HttpOnly" in header and "; SameSite=Lax" in header and "; Path=/" in header
    assert "Secure" not in header and "Max-Age" not in header  # a browser-session cookie
    page = await client.get("/profile")
    assert page.status_code == 200
    assert '<span id="profile-name">ann</span>' in page.text


async def test_login_over_https_sets_a_secure_cookie(secret: str) -> None:
    app = create_app(store=MemoryStore(), secret=secret, trusted_origins=["https://127.0.0.1:8443"])
    async with client_for(app, "https://127.0.0.1:8443") as c:
        response = await login(c, "ann")
        assert "; Secure" in response.headers["set-cookie"]


async def test_login_changes_the_id_keeps_the_cart_and_deletes_the_old_record(
    client: httpx.AsyncClient, app: DemoApp
) -> None:
    await post(client, "/cart/add", {"item": "hat"})
    before = session_id(client)
    await login(client, "ann")
    after = session_id(client)
    assert after != before
    assert await app.demo.store.get(storage_key(before)) is None
    assert (await stored(app, client) or {}).get("cart") == ["hat"]
    record = await app.demo.store.get(storage_key(after))
    assert record is not None and record.meta.user_id == "ann"


@pytest.mark.parametrize("name", ["", "   ", "x" * 41, "tab\there"])
async def test_a_bad_name_is_refused_with_a_flash(client: httpx.AsyncClient, name: str) -> None:
    response = await post(client, "/login", {"name": name})
    assert response.headers["location"] == "/login"
    page = await client.get("/login")
    assert "Type a name of 1 to 40 printable characters." in page.text
    assert "Logged in as" not in page.text


async def test_names_are_escaped_in_pages(client: httpx.AsyncClient) -> None:
    await login(client, "<script>alert(1)</script>")
    page = await client.get("/profile")
    assert "<script>alert(1)</script>" not in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text


# ---- the cart and flash messages --------------------------------------------------------
async def test_cart_changes_are_nested_mutations_that_reach_the_store(
    client: httpx.AsyncClient, app: DemoApp
) -> None:
    for item in ("coat", "scarf", "coat"):
        response = await post(client, "/cart/add", {"item": item})
        assert response.status_code == 303
    assert (await stored(app, client) or {}).get("cart") == ["coat", "scarf", "coat"]
    await post(client, "/cart/remove", {"index": "0"})
    assert (await stored(app, client) or {}).get("cart") == ["scarf", "coat"]
    page = await client.get("/cart")
    assert page.text.count('class="item"') == 2


async def test_removing_the_last_item_drops_the_cart_key(client: httpx.AsyncClient, app: DemoApp) -> None:
    await post(client, "/cart/add", {"item": "gloves"})
    await post(client, "/cart/remove", {"index": "0"})
    assert "cart" not in (await stored(app, client) or {})
    assert 'id="cart-empty"' in (await client.get("/cart")).text


@pytest.mark.parametrize(
    ("path", "form"), [("/cart/add", {"item": "piano"}), ("/cart/remove", {"index": "7"})]
)
async def test_bad_cart_requests_are_refused_with_a_flash(
    client: httpx.AsyncClient, path: str, form: dict[str, str]
) -> None:
    response = await post(client, path, form)
    assert response.status_code == 303
    assert 'class="flash flash-error"' in (await client.get("/cart")).text


async def test_a_flash_is_shown_once(client: httpx.AsyncClient, app: DemoApp) -> None:
    await post(client, "/cart/add", {"item": "umbrella"})
    first = await client.get("/cart")
    assert "Added the umbrella to your cart." in first.text
    assert not [k for k in (await stored(app, client) or {}) if k.startswith("_flash")]  # taken and saved
    second = await client.get("/cart")
    assert "Added the umbrella" not in second.text


# ---- logging out --------------------------------------------------------------------------
async def test_logout_deletes_the_record_and_expires_the_cookie(
    client: httpx.AsyncClient, app: DemoApp
) -> None:
    await login(client, "ann")
    key = storage_key(session_id(client))
    response = await post(client, "/logout")
    assert response.headers["location"] == "/?logged_out=1"
    assert "Max-Age=0" in response.headers["set-cookie"]
    assert client.cookies.get(COOKIE_NAME) is None
    assert await app.demo.store.get(key) is None
    assert (await client.get("/profile")).status_code == 401
    home = await client.get("/?logged_out=1")
    assert 'id="logged-out"' in home.text
    assert "set-cookie" not in home.headers


async def test_logging_out_other_sessions_keeps_this_one(app: DemoApp) -> None:
    async with client_for(app) as mine, client_for(app) as other:
        await login(mine, "ann")
        await login(other, "ann")
        await post(mine, "/cart/add", {"item": "coat"})
        page = await mine.get("/profile")
        assert page.text.count('class="session-row') == 2
        response = await post(mine, "/profile/logout-others")
        assert response.status_code == 303
        page = await mine.get("/profile")
        assert page.status_code == 200
        assert "Logged out 1 other session. This one continues under a new id." in page.text
        assert (await other.get("/profile")).status_code == 401
        assert (await stored(app, mine) or {}).get("cart") == ["coat"]
        store = app.demo.store
        assert isinstance(store, UserIndex)
        assert len(await store.sessions_for("ann")) == 1


# ---- remember me ----------------------------------------------------------------------------
async def test_remember_me_sets_and_clears_a_persistent_cookie(
    client: httpx.AsyncClient, app: DemoApp
) -> None:
    await login(client, "ann")
    response = await post(client, "/settings", {"remember": "on"})
    assert "Max-Age=2592000" in response.headers["set-cookie"]
    page = await client.get("/settings")
    assert 'id="remember" checked' in page.text
    assert "Max-Age=2592000" in page.text  # the inspector shows what the browser was told
    record = await app.demo.store.get(storage_key(session_id(client)))
    assert record is not None and record.meta.cookie == {"max_age": 2592000.0}
    assert "30 days (2592000 s)" in page.text
    response = await post(client, "/settings", {})
    assert "Max-Age" not in response.headers["set-cookie"]
    page = await client.get("/settings")
    assert 'id="remember" checked' not in page.text
    assert "no Max-Age: the browser drops it when it closes" in page.text


# ---- the inspector --------------------------------------------------------------------------
async def test_the_inspector_shows_the_stored_record_but_never_the_id_or_the_secret(
    client: httpx.AsyncClient, app: DemoApp, secret: str
) -> None:
    await login(client, "ann")
    await post(client, "/cart/add", {"item": "scarf"})
    page = (await client.get("/cart")).text
    sid = session_id(client)
    key = storage_key(sid)
    assert f'<code id="key-hint">{key[:12]}…</code>' in page
    assert "idle deadline" in page and "absolute deadline" in page and "last seen" in page
    assert re.search(
        r'<pre id="record-data">\{\s*&#34;_csrf&#34;: &#34;[\w-]{8}…&#34;,\s*&#34;cart&#34;: \[\s*&#34;scarf&#34;',
        page,
    )
    assert "the server checked its signature and loaded the record" in page
    record = await app.demo.store.get(key)
    assert record is not None and record.data["_csrf"] not in page  # forms carry it masked only
    assert sid not in page and key not in page and secret not in page
    assert unquote(client.cookies.get(COOKIE_NAME) or "x") not in page
    assert '<code id="store-kind">' in page


async def test_the_inspector_shows_the_cookie_flags_it_set(client: httpx.AsyncClient) -> None:
    await login(client, "ann")
    page = (await client.get("/profile")).text
    cookie = page[page.index(f'id="cookie-{COOKIE_NAME}"') :]
    assert "<th>HttpOnly</th><td>✓" in cookie
    assert "<th>SameSite</th><td>Lax</td>" in cookie
    assert "<th>Secure</th><td>✗" in cookie
    assert '<td class="expires">Session' in cookie
    assert "<th>Domain</th><td>127.0.0.1</td>" in cookie


async def test_pages_load_nothing_from_other_sites(client: httpx.AsyncClient) -> None:
    page = await client.get("/")
    assert page.headers["content-security-policy"].startswith("default-src 'self'")
    assert not re.search(r'(src|href)="(https?:)?//', page.text)
    for asset in ("/static/style.css", "/static/inspector.js"):
        assert (await client.get(asset)).status_code == 200


# ---- restarts: a second app over the same store plays the restarted server ---------------
async def test_a_persistent_store_keeps_the_session_across_a_restart(tmp_path: Path, secret: str) -> None:
    first = create_app(store=SQLiteStore(tmp_path / "demo.db"), secret=secret)
    async with client_for(first) as c:
        await login(c, "ann")
        await post(c, "/cart/add", {"item": "coat"})
        cookies = list(c.cookies.jar)
    await first.demo.store.close()
    second = create_app(store=SQLiteStore(tmp_path / "demo.db"), secret=secret, started_at=time.time() + 1)
    async with client_for(second) as c:
        carry(cookies, c)
        page = await c.get("/restart")
        assert "Survived a restart." in page.text
        assert (await c.get("/profile")).status_code == 200
        assert "Wool coat" in (await c.get("/cart")).text
    await second.demo.store.close()


async def test_memory_store_loses_the_session_across_a_restart(secret: str) -> None:
    first = create_app(store=MemoryStore(), secret=secret)
    async with client_for(first) as c:
        await login(c, "ann")
        cookies = list(c.cookies.jar)
    second = create_app(store=MemoryStore(), secret=secret)
    async with client_for(second) as c:
        carry(cookies, c)
        page = await c.get("/restart")
        assert '<strong class="bad">Lost.</strong> Your browser still sent its cookie' in page.text
        assert "the store has no record for it" in page.text
        assert (await c.get("/profile")).status_code == 401


async def test_a_cookie_signed_with_another_secret_is_reported(secret: str) -> None:
    first = create_app(store=MemoryStore(), secret=secret)
    async with client_for(first) as c:
        await login(c, "ann")
        cookies = list(c.cookies.jar)
    second = create_app(store=first.demo.store, secret=secrets.token_urlsafe(32))
    async with client_for(second) as c:
        carry(cookies, c)
        page = await c.get("/restart")
        assert "signed with a different secret" in page.text
        assert "the signature does not match" in page.text or "does not match this server" in page.text


# ---- other stores through the same code: redis:// and cookie:// ---------------------------
async def test_the_demo_on_redis_survives_a_restart_and_logs_out_other_sessions(
    redis_url: str, secret: str
) -> None:
    url = f"{redis_url}?prefix=demo-test-{secrets.token_hex(6)}:"
    first = create_app(store=url, secret=secret, store_url=url)
    async with client_for(first) as mine, client_for(first) as other:
        await login(mine, "ann")
        await login(other, "ann")
        await post(mine, "/cart/add", {"item": "coat"})
        assert '<code id="store-kind">RedisStore</code>' in (await mine.get("/cart")).text
        await post(mine, "/profile/logout-others")
        assert (await other.get("/profile")).status_code == 401
        cookies = list(mine.cookies.jar)
    await first.demo.store.close()
    second = create_app(store=url, secret=secret, store_url=url, started_at=time.time() + 1)
    async with client_for(second) as c:
        carry(cookies, c)
        assert "Survived a restart." in (await c.get("/restart")).text
        assert "Wool coat" in (await c.get("/cart")).text
        await post(c, "/logout")
        assert c.cookies.get(COOKIE_NAME) is None
    await second.demo.store.close()


async def test_the_demo_on_cookie_sessions_shows_the_sealed_cookie_and_keeps_nothing_on_the_server(
    secret: str,
) -> None:
    first = create_app(store="cookie://", secret=secret, store_url="cookie://")
    async with client_for(first) as c:
        assert 'id="no-record"' in (await c.get("/")).text
        await login(c, "ann")
        await post(c, "/cart/add", {"item": "scarf"})
        page = (await c.get("/cart")).text
        assert "2 · The record inside your cookie" in page
        assert re.search(
            r'id="cookie-size">Your whole session travels in 1 cookie:\s*<strong>\d+ bytes</strong>', page
        )
        assert re.search(r"data \(\d+ bytes of JSON before sealing\)", page)
        assert "AES-256-GCM" in page and "&#34;scarf&#34;" in page
        sealed = c.cookies.get(COOKIE_NAME) or ""
        assert "scarf" not in sealed and len(sealed) > 100  # encrypted, not readable
        profile = (await c.get("/profile")).text
        assert "can neither show nor end the others" in profile
        await post(c, "/profile/logout-others")
        assert "cannot find your others" in (await c.get("/profile")).text
        cookies = list(c.cookies.jar)
    second = create_app(store="cookie://", secret=secret, started_at=time.time() + 1)
    async with client_for(second) as c:
        carry(cookies, c)
        assert "Survived a restart." in (await c.get("/restart")).text
        assert "Striped scarf" in (await c.get("/cart")).text
        await post(c, "/logout")
        assert c.cookies.get(COOKIE_NAME) is None
        assert (await c.get("/profile")).status_code == 401
    stranger = create_app(store="cookie://", secret=secrets.token_urlsafe(32))
    async with client_for(stranger) as c:
        carry(cookies, c)
        assert "could not open" in (await c.get("/restart")).text


# ---- start-up pieces ----------------------------------------------------------------------
def test_the_secret_file_is_created_private_strong_and_reused(tmp_path: Path) -> None:
    path = tmp_path / SECRET_FILE_NAME
    made = load_or_create_secret(path)
    assert made.created and len(made.value) >= 43
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = load_or_create_secret(path)
    assert not again.created and again.value == made.value


def test_a_secret_file_readable_by_others_is_tightened(tmp_path: Path) -> None:
    path = tmp_path / SECRET_FILE_NAME
    path.write_text(secrets.token_urlsafe(32))
    path.chmod(0o644)
    load_or_create_secret(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_weak_secret_file_is_refused_with_advice(tmp_path: Path) -> None:
    path = tmp_path / SECRET_FILE_NAME
    path.write_text("hunter2")
    os.chmod(path, 0o600)
    with pytest.raises(ConfigurationError, match="weak or empty secret: delete it"):
        load_or_create_secret(path)


def test_the_secret_lives_next_to_the_sqlite_file(tmp_path: Path) -> None:
    assert secret_path_for(SQLiteStore(tmp_path / "x" / "demo.db")) == tmp_path / "x" / SECRET_FILE_NAME
    assert secret_path_for(MemoryStore(), tmp_path) == tmp_path / SECRET_FILE_NAME


def test_passwords_are_redacted_from_store_urls() -> None:
    assert redact_url("redis://:hunter2@localhost:6379/0") == "redis://:***@localhost:6379/0"
    assert redact_url("postgresql://app:pw@db/x") == "postgresql://app:***@db/x"
    assert redact_url("sqlite:///demo.db") == "sqlite:///demo.db"


def test_an_unusable_store_fails_the_probe(tmp_path: Path) -> None:
    with pytest.raises(SessionStoreError):
        probe_store(f"sqlite:///{tmp_path}/missing-dir/demo.db")
    with pytest.raises(ConfigurationError):
        probe_store("nonsense://")


def test_set_cookie_parsing_and_durations() -> None:
    sent, value = parse_set_cookie(b"a=b%3Ac; Max-Age=60; Path=/; HttpOnly; SameSite=Lax", 100.0)
    assert value == b"b%3Ac" and sent.max_age == 60.0 and "httponly" in sent.attributes
    assert sent.attributes["samesite"] == "Lax"
    assert [format_delta(s) for s in (5, 120, 3600, 86400, 90000, 30 * 86400)] == [
        "5 s",
        "2 min",
        "1 h",
        "1 day",
        "25 h",
        "30 days",
    ]
