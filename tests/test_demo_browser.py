"""The demo in a real Chromium, against real `coatcheck demo` processes that get killed and
restarted: what survives a restart depends on the store. Screenshots go to test-artifacts/."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from coatcheck.demo import COOKIE_NAME
from tests.services import free_port_run, unavailable, wait_for_port

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCRIPT = shutil.which("coatcheck", path=str(Path(sys.executable).parent)) or shutil.which("coatcheck")


class DemoProcess:
    """`coatcheck demo` as a real process on a fixed port, which can be killed and restarted."""

    def __init__(self, store_url: str, cwd: Path, *extra: str) -> None:
        self.store_url = store_url
        self.cwd = cwd
        self.extra = list(extra)
        self.port = free_port_run(2)  # room for --instances 2 on port + 1
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        assert SCRIPT is not None, "the coatcheck script is not installed: pip install -e ."
        self.starts += 1
        log = open(self.cwd / f"demo-{self.starts}.log", "wb")  # noqa: SIM115 - kept open for the child
        self.proc = subprocess.Popen(
            [SCRIPT, "demo", "--port", str(self.port), "--store", self.store_url, *self.extra],
            cwd=self.cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        try:
            wait_for_port("127.0.0.1", self.port, timeout=30)
        except TimeoutError:
            self.kill()
            raise AssertionError((self.cwd / f"demo-{self.starts}.log").read_text()) from None

    def kill(self) -> None:
        """SIGKILL: no graceful shutdown, so only what was committed before each response counts."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        self.proc = None

    def restart(self) -> None:
        self.kill()
        self.start()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    chromium = shutil.which("chromium") or (
        "/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None
    )
    if chromium is None:
        unavailable("Chromium", "no chromium binary (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("Chromium", "the playwright package is not installed (pip install -e '.[dev]')")
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


@pytest.fixture
def demo_in(tmp_path: Path) -> Iterator[Any]:
    started: list[DemoProcess] = []

    def make(store_url: str, *extra: str) -> DemoProcess:
        demo = DemoProcess(store_url, tmp_path, *extra)
        started.append(demo)
        demo.start()
        return demo

    yield make
    for demo in started:
        demo.kill()


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"demo-{name}.png"), full_page=True)


def session_cookie(context: Any) -> dict[str, Any] | None:
    return next((c for c in context.cookies() if c["name"] == COOKIE_NAME), None)


def log_in_and_fill_cart(page: Any, demo: DemoProcess, name: str) -> None:
    page.goto(f"{demo.url}/login")
    page.fill("#name", name)
    page.click("form[action='/login'] button[type=submit]")
    page.wait_for_url(f"{demo.url}/profile")
    assert page.inner_text("#profile-name") == name
    page.goto(f"{demo.url}/cart")
    page.click("#add-scarf")
    page.wait_for_selector("text=Added the striped scarf to your cart.")
    page.click("#add-hat")
    page.wait_for_selector("text=Added the felt hat to your cart.")
    assert page.locator("#cart .item").all_inner_texts() == ["Striped scarf", "Felt hat"]


def test_a_sqlite_session_survives_a_restart_and_logout_removes_it(
    browser: Any, demo_in: Any, tmp_path: Path
) -> None:
    demo = demo_in(f"sqlite:///{tmp_path / 'demo.db'}")
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)

    log_in_and_fill_cart(page, demo, "Ada")
    cookie = session_cookie(context)
    assert cookie is not None
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax" and not cookie["secure"]
    assert cookie["expires"] == -1  # a browser-session cookie: no "remember me" yet
    assert page.inner_text("#js-cookies") == 'document.cookie = ""'  # HttpOnly: invisible to scripts
    shot(page, "sqlite-1-cart")

    demo.restart()
    response = page.goto(f"{demo.url}/restart")
    assert response is not None and response.status == 200
    assert "Survived a restart." in page.inner_text("#restart-verdict")
    shot(page, "sqlite-2-restart-survived")
    assert page.goto(f"{demo.url}/profile").status == 200
    assert page.inner_text("#profile-name") == "Ada"
    page.goto(f"{demo.url}/cart")
    assert page.locator("#cart .item").all_inner_texts() == ["Striped scarf", "Felt hat"]

    page.click("#logout")
    page.wait_for_selector("#logged-out")
    assert session_cookie(context) is None
    shot(page, "sqlite-3-logged-out")
    refused = page.goto(f"{demo.url}/profile")
    assert refused is not None and refused.status == 401
    assert page.inner_text("#refused") == "Log in to see your profile"
    shot(page, "sqlite-4-profile-refused")
    context.close()


def test_a_memory_session_is_lost_in_a_restart(browser: Any, demo_in: Any) -> None:
    demo = demo_in("memory://")
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)

    log_in_and_fill_cart(page, demo, "Ada")
    before = session_cookie(context)
    demo.restart()

    page.goto(f"{demo.url}/restart")
    verdict = page.inner_text("#restart-verdict")
    assert verdict.startswith("Lost.") and "the store has no record for it" in verdict
    shot(page, "memory-1-restart-lost")
    after = session_cookie(context)
    assert (
        before is not None and after is not None and after["value"] == before["value"]
    )  # the browser kept it
    assert page.goto(f"{demo.url}/profile").status == 401
    page.goto(f"{demo.url}/cart")
    assert page.locator("#cart-empty").is_visible()
    context.close()


def test_logging_out_other_sessions_from_a_second_browser(browser: Any, demo_in: Any, tmp_path: Path) -> None:
    demo = demo_in(f"sqlite:///{tmp_path / 'others.db'}")
    mine, other = browser.new_context(viewport={"width": 1280, "height": 900}), browser.new_context()
    page, elsewhere = mine.new_page(), other.new_page()
    for p in (page, elsewhere):
        p.set_default_timeout(15_000)
        p.goto(f"{demo.url}/login")
        p.fill("#name", "Grace")
        p.click("form[action='/login'] button[type=submit]")
        p.wait_for_url(f"{demo.url}/profile")
    page.reload()
    assert page.locator("#my-sessions .session-row").count() == 2
    shot(page, "others-1-two-sessions")
    page.click("#logout-others")
    page.wait_for_selector("text=Logged out 1 other session.")
    assert page.locator("#my-sessions .session-row").count() == 1
    shot(page, "others-2-one-left")
    assert elsewhere.goto(f"{demo.url}/profile").status == 401
    mine.close()
    other.close()


def test_a_cookie_session_survives_a_restart_with_nothing_on_the_server(browser: Any, demo_in: Any) -> None:
    demo = demo_in("cookie://")
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)

    log_in_and_fill_cart(page, demo, "Ada")
    assert "bytes" in page.inner_text("#cookie-size")
    shot(page, "cookie-1-cart")
    demo.restart()
    page.goto(f"{demo.url}/restart")
    assert "Survived a restart." in page.inner_text("#restart-verdict")
    page.goto(f"{demo.url}/cart")
    assert page.locator("#cart .item").all_inner_texts() == ["Striped scarf", "Felt hat"]
    page.click("#logout")
    page.wait_for_selector("#logged-out")
    assert session_cookie(context) is None
    context.close()


# ---- every page in every mode: the sentences that depend on the store ------------------------------
PAGES = ["/", "/login", "/cart", "/settings", "/profile", "/restart", "/instances"]


@pytest.fixture(params=["sqlite", "memory", "cookie", "redis"])
def mode_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'modes.db'}"
    elif request.param == "redis":
        import redis  # the sync client: Playwright's sync API already runs an event loop here

        redis_url: str = request.getfixturevalue("redis_url")
        prefix = f"demo-browser-{secrets.token_hex(6)}:"
        yield f"{redis_url}?prefix={prefix}"
        with redis.Redis.from_url(redis_url) as client:
            keys = list(client.scan_iter(match=f"{prefix}*"))
            if keys:
                client.delete(*keys)
    else:
        yield f"{request.param}://"


def test_every_page_in_every_mode_says_what_this_store_does(
    browser: Any, demo_in: Any, mode_url: str
) -> None:
    demo = demo_in(mode_url)
    mode = mode_url.split(":", 1)[0]
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    failed: list[str] = []
    page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status == 404 else None)
    log_in_and_fill_cart(page, demo, "Ada")
    for path in PAGES:
        response = page.goto(f"{demo.url}{path}")
        assert response is not None and response.status == 200, path
    assert not failed, failed  # the favicon included
    page.goto(f"{demo.url}/")
    metaphor = page.inner_text("#metaphor")
    assert ("carry the coat yourself" in metaphor) == (mode == "cookie")
    assert (page.locator("#cli-hint").count() == 1) == (mode in ("sqlite", "redis"))
    assert (page.locator("#step-other-sessions").count() == 1) == (mode != "cookie")
    shot(page, f"modes-{mode}-home")
    page.click("#logout")
    page.wait_for_selector("#logged-out")
    note = page.inner_text("#logged-out")
    assert ("the server kept nothing to delete" in note) == (mode == "cookie")
    context.close()


def test_two_instances_share_a_sqlite_session_in_a_real_browser(
    browser: Any, demo_in: Any, tmp_path: Path
) -> None:
    demo = demo_in(f"sqlite:///{tmp_path / 'two.db'}", "--instances", "2")
    second = f"http://127.0.0.1:{demo.port + 1}"
    wait_for_port("127.0.0.1", demo.port + 1, timeout=30)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    log_in_and_fill_cart(page, demo, "Ada")
    page.goto(f"{second}/instances")
    assert page.inner_text("#answered-by").startswith("instance 2 of 2")
    assert "your session follows you" in page.inner_text("#instances-verdict")
    assert page.inner_text("#who") == "Ada"
    shot(page, "instances-2-followed")
    context.close()


def test_a_stale_form_is_refused_with_a_styled_page(browser: Any, demo_in: Any) -> None:
    demo = demo_in("memory://")
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.goto(f"{demo.url}/cart")
    demo.restart()  # memory://: the session that issued the form is gone
    page.click("#add-coat")
    page.wait_for_selector("#refused")
    assert page.locator("#reload").get_attribute("href") == "/cart"
    assert page.eval_on_selector("#refused", "e => getComputedStyle(e).borderRadius") == "6px"  # styled
    shot(page, "refused-stale-form")
    page.click("#reload")
    page.wait_for_url(f"{demo.url}/cart")
    page.click("#add-coat")
    page.wait_for_selector("text=Added the wool coat to your cart.")
    context.close()
