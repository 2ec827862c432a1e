"""The peer-suite adaptation (tests/peers/adapt.py) swaps exactly what the README says, and
fails loudly when a released file no longer looks as expected."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.peers import adapt

STARLETTE_TEST = """from starlette.middleware.sessions import Session, SessionMiddleware

app = Middleware(SessionMiddleware, secret_key="example", max_age=None)
"""


def released(tmp_path: Path, relative: str, text: str) -> Path:
    path = tmp_path / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_starlette_suite_imports_our_middleware_and_keeps_starlettes_session(tmp_path: Path) -> None:
    released(tmp_path, "tests/middleware/test_session.py", STARLETTE_TEST)
    text = adapt.starlette_session_tests(tmp_path, "memory", tmp_path)
    assert "from starlette.middleware.sessions import Session\n" in text
    assert "from coatcheck.starlette import SessionMiddleware\n" in text
    assert "from coatcheck.stores import MemoryStore\n" in text
    assert 'secret_key="example", insecure_dev_secret=True, store=MemoryStore(), max_age=None' in text
    cookie = adapt.starlette_session_tests(tmp_path, "cookie", tmp_path)
    assert 'secret_key="example", insecure_dev_secret=True, max_age=None' in cookie  # the default store


def test_a_moved_starlette_import_fails_the_adaptation(tmp_path: Path) -> None:
    released(tmp_path, "tests/middleware/test_session.py", "from somewhere import SessionMiddleware\n")
    with pytest.raises(adapt.AdaptationError, match="SessionMiddleware import"):
        adapt.starlette_session_tests(tmp_path, "memory", tmp_path)


def test_flask_login_gets_the_session_wherever_an_app_gets_its_secret(tmp_path: Path) -> None:
    path = released(
        tmp_path,
        "test_login.py",
        "class T:\n    def setUp(self):\n        self.app = Flask(__name__)\n"
        '        self.app.config["SECRET_KEY"] = "deterministic"\n'
        "        self.lm = LoginManager()\n\n"
        "def test_static():\n    app = Flask(__name__)\n    app.secret_key = 'temp'\n",
    )
    text = adapt.flask_login_tests(path, "redis", "p:")
    assert text.startswith("import coatcheck.flask\nimport coatcheck.stores\n")
    assert (
        '"deterministic"\n        coatcheck.flask.Session(self.app, insecure_dev_secret=True, '
        "store='redis://127.0.0.1:6379/0?prefix=p:')\n        self.lm" in text
    )
    assert "app.secret_key = 'temp'\n    coatcheck.flask.Session(app, insecure_dev_secret=True" in text


def test_flask_app_fixture_installs_the_session_before_returning(tmp_path: Path) -> None:
    path = released(
        tmp_path, "conftest.py", "@pytest.fixture\ndef app():\n    app = Flask('x')\n    return app\n"
    )
    text = adapt.flask_conftest(path, "cookie", "p:")
    assert (
        "    coatcheck.flask.Session(app, insecure_dev_secret=True, store=coatcheck.stores.CookieStore())\n"
        "    return app\n" in text
    )


def test_unpacked_finds_a_tree_whatever_the_sdist_spells_its_name(tmp_path: Path) -> None:
    (tmp_path / "Flask-Login-0.6.3").mkdir()
    (tmp_path / "flask_wtf-1.3.0").mkdir()
    (tmp_path / "flask-3.1.3").mkdir()
    assert adapt.unpacked(tmp_path, "flask-login").name == "Flask-Login-0.6.3"
    assert adapt.unpacked(tmp_path, "flask-wtf").name == "flask_wtf-1.3.0"
    assert adapt.unpacked(tmp_path, "flask").name == "flask-3.1.3"
