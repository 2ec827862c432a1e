"""Flask's `test_json_tag` values, sent through `flask.session` on coatcheck (run by
`tests.peers.run`, which sets FLASK_TESTS to the unpacked Flask tests directory and
COATCHECK_PEER_STORE to "memory" or "cookie").

Flask's session keeps each value's type across requests; so must a switched app. The
values are read from Flask's released test file (its `test_dump_load_unchanged`
parameters); the last case is the scenario of its `test_custom_tag`, an app-registered
tag, registered the coatcheck way (`coatcheck.Tag`).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, session

from coatcheck import Tag, TaggedSerializer
from coatcheck.flask import Session
from coatcheck.stores import CookieStore, MemoryStore


def flask_values() -> list[Any]:
    path = Path(os.environ["FLASK_TESTS"]) / "test_json_tag.py"
    spec = importlib.util.spec_from_file_location("flask_test_json_tag", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    (mark,) = [m for m in module.test_dump_load_unchanged.pytestmark if m.name == "parametrize"]
    return list(mark.args[1])


class Foo:
    def __init__(self, data: Any) -> None:
        self.data = data


def app_with_session(serializer: TaggedSerializer | None = None) -> Flask:
    app = Flask(__name__)
    app.config["SECRET_KEY"] = "a test key, not a secret"
    store = MemoryStore() if os.environ.get("COATCHECK_PEER_STORE") == "memory" else CookieStore()
    options: dict[str, Any] = {"serializer": serializer} if serializer is not None else {}
    Session(app, insecure_dev_secret=True, store=store, **options)
    return app


def round_trip(app: Flask, value: Any) -> Any:
    """Store `value` in one request and read it back in the next."""
    held: dict[str, Any] = {}

    @app.route("/put")
    def put() -> str:
        session["value"] = value
        return "ok"

    @app.route("/get")
    def get() -> str:
        held["value"] = session["value"]
        return "ok"

    with app.test_client() as client:
        assert client.get("/put").status_code == 200
        assert client.get("/get").status_code == 200
    return held["value"]


@pytest.mark.parametrize("value", flask_values(), ids=repr)
def test_value_keeps_its_type_through_the_session(value: Any) -> None:
    back = round_trip(app_with_session(), value)
    assert back == value
    assert type(back) is type(value)


def test_custom_tag_round_trips_through_the_session() -> None:
    serializer = TaggedSerializer()
    serializer.register(Tag(" f", Foo, lambda foo: foo.data, Foo))
    back = round_trip(app_with_session(serializer), Foo("bar"))
    assert isinstance(back, Foo) and back.data == "bar"
