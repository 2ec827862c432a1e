from __future__ import annotations

import os
import secrets
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from coatcheck import ConfigurationError, Cookie, SessionMiddleware
from tests.helpers import make_settings


async def noop(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
    pass


@pytest.mark.parametrize(
    ("name", "cookie", "message"),
    [
        ("__Host-s", Cookie(), r"__Host- prefix: set Cookie\(secure=True"),
        ("__Host-s", Cookie(secure=True, path="/app"), "__Host- prefix"),
        ("__Host-s", Cookie(secure=True, domain="example.com"), "__Host- prefix"),
        ("__Secure-s", Cookie(), r"__Secure- prefix: set Cookie\(secure=True\)"),
        ("bad name", Cookie(), "not a valid token"),
        ("s", Cookie(same_site="none", secure=False), "SameSite=None"),
        ("s", Cookie(path="no-slash"), "must start with '/'"),
        ("s", Cookie(path="/a;b"), "without ';'"),
        ("s", Cookie(domain="bad domain"), "not a valid host name"),
        ("s", Cookie(same_site="sometimes"), "same_site"),  # type: ignore[arg-type]
        ("s", Cookie(max_age=-1), "must not be negative"),
    ],
)
def test_bad_cookie_settings_fail_at_start_up(name: str, cookie: Cookie, message: str, secret: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        SessionMiddleware(noop, secret=secret, name=name, cookie=cookie, store="memory://")


def test_host_prefix_accepted_when_correct(secret: str) -> None:
    SessionMiddleware(noop, secret=secret, name="__Host-s", cookie=Cookie(secure=True), store="memory://")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"unset": "forget"}, 'unset must be "keep" or "destroy"'),
        ({"resave": "yes"}, "resave must be True or False"),
        ({"idle_timeout": timedelta(days=40)}, "idle_timeout .* is longer than absolute_timeout"),
        ({"idle_timeout": "1 day"}, "idle_timeout must be a timedelta"),
        ({"store": "nosuch://x"}, "unknown store URL scheme"),
        ({"store": "sessions.db"}, "is not a URL"),
        ({"store": object()}, "store must be a Store"),
        ({"secret": []}, "non-empty list"),
        ({"secret": "short"}, "too weak"),
    ],
)
def test_bad_options_fail_at_start_up(options: dict[str, object], message: str, secret: str) -> None:
    kwargs: dict[str, object] = {"secret": secret, "store": "memory://", **options}
    with pytest.raises(ConfigurationError, match=message):
        SessionMiddleware(noop, **kwargs)


def test_durations_accept_numbers_and_timedeltas() -> None:
    settings = make_settings(idle_timeout=600, absolute_timeout=timedelta(hours=2), touch_after=1.5)
    assert (settings.idle_seconds, settings.absolute_seconds, settings.touch_seconds) == (600.0, 7200.0, 1.5)
    assert make_settings(cookie=Cookie(max_age=timedelta(days=1))).cookie.max_age == 86400.0


def test_secret_from_env_refuses_missing_empty_and_weak_secrets_at_import(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from coatcheck import secret_from_env

    monkeypatch.delenv("COATCHECK_TEST_SECRET", raising=False)
    with pytest.raises(
        ConfigurationError, match='not set: export COATCHECK_TEST_SECRET="\\$\\(coatcheck secret\\)"'
    ):
        secret_from_env("COATCHECK_TEST_SECRET")
    monkeypatch.setenv("COATCHECK_TEST_SECRET", "  ")
    with pytest.raises(ConfigurationError, match="is empty"):
        secret_from_env("COATCHECK_TEST_SECRET")
    monkeypatch.setenv("COATCHECK_TEST_SECRET", "changeme" * 4)
    with pytest.raises(ConfigurationError, match="too weak"):
        secret_from_env("COATCHECK_TEST_SECRET")
    strong = secrets.token_urlsafe(32)
    monkeypatch.setenv("COATCHECK_TEST_SECRET", strong)
    assert secret_from_env("COATCHECK_TEST_SECRET") == strong


def test_uvicorn_stops_at_start_up_when_the_readme_apps_secret_is_empty(tmp_path: Path) -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    app_code = readme.split("```python\n", 1)[1].split("```", 1)[0]
    assert "secret_from_env" in app_code
    (tmp_path / "app.py").write_text(app_code)
    env = {**os.environ, "SESSION_SECRET": ""}
    proc = subprocess.run(
        [sys.executable, "-m", "uvicorn", "app:app", "--port", "0"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0  # exits at import, before serving anything
    assert "SESSION_SECRET is empty" in proc.stderr
