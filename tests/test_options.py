"""Every option is declared once (a `Settings` field) and every public constructor lists it by name."""

from __future__ import annotations

import inspect
from dataclasses import MISSING, fields

import pytest

import coatcheck
import coatcheck.flask
import coatcheck.wsgi
from coatcheck.config import Settings, option_names
from coatcheck.errors import ConfigurationError
from tests.helpers import make_settings

MIDDLEWARES = [coatcheck.SessionMiddleware, coatcheck.wsgi.SessionMiddleware]


def keyword_parameters(obj: object) -> dict[str, inspect.Parameter]:
    params = inspect.signature(obj).parameters  # type: ignore[arg-type]
    assert not any(p.kind is p.VAR_KEYWORD for p in params.values()), (
        "no **options: an IDE shows every option"
    )
    return {name: p for name, p in params.items() if p.kind is p.KEYWORD_ONLY}


@pytest.mark.parametrize("constructor", [*MIDDLEWARES, coatcheck.flask.Session], ids=lambda c: c.__module__)
def test_every_constructor_lists_exactly_the_settings_fields(constructor: type) -> None:
    names = set(keyword_parameters(constructor.__init__)) - {"rotate_on_login"}
    assert names == set(option_names())
    assert {"secret", "store", "idle_timeout", "store_timeout", "compat", "insecure_dev_secret"} <= names


@pytest.mark.parametrize("constructor", MIDDLEWARES, ids=lambda c: c.__module__)
def test_middleware_defaults_are_the_settings_defaults(constructor: type) -> None:
    params = keyword_parameters(constructor.__init__)
    for f in fields(Settings):
        if not f.init:
            continue
        expected = inspect.Parameter.empty if f.default is MISSING else f.default
        assert params[f.name].default == expected, f.name


def test_flask_defaults_defer_to_the_app_config() -> None:
    params = keyword_parameters(coatcheck.flask.Session.__init__)
    assert all(params[name].default is coatcheck.flask.DEFAULT for name in option_names())


def test_flask_config_keys_are_derived_from_option_names() -> None:
    config = {
        f"SESSION_{name.upper()}": object() for name in ("resave", "rolling", "store_timeout", "compat")
    }
    options = coatcheck.flask.options_from_config({"SECRET_KEY": "k" * 40, **config})
    for key, value in config.items():
        assert options[key.removeprefix("SESSION_").lower()] is value


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"store_timeout": -1}, "store_timeout must not be negative"),
        ({"store_timeout": 0}, "store_timeout must be positive"),
        ({"idle_timeout": float("nan")}, "finite"),
        ({"touch_after": float("inf")}, "finite"),
        ({"compat": "rails"}, "compat must be one of"),
        ({"client_hints": "yes"}, "client_hints must be True or False"),
        ({"secret": ""}, "secret must not be empty"),
        ({"secret": []}, "non-empty list"),
        ({"cookie": "lax"}, "coatcheck.Cookie"),
    ],
)
def test_every_option_is_validated_at_construction(options: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        make_settings(**options)


@pytest.mark.parametrize("max_age", [float("inf"), float("nan"), 10**12])
def test_cookie_max_age_past_what_a_cookie_date_can_hold_is_refused_at_configuration(max_age: float) -> None:
    with pytest.raises(ConfigurationError, match="Cookie\\(max_age"):
        make_settings(cookie=coatcheck.Cookie(max_age=max_age))
