"""Jinja2 helpers: flash messages and CSRF tokens in templates.

`install(templates)` adds four globals to a Jinja2 environment (or Starlette's
`Jinja2Templates`); they find the session through the `request` in the template context
(Starlette's `TemplateResponse` always passes it) or a `session` variable:

- `get_flashed_messages(with_categories=False, category_filter=())` — Flask's signature.
- `flashes(category=None)` — `Flash(category, message)` tuples.
- `csrf_token()` — a freshly masked token (for a `<meta>` tag or a JavaScript header).
- `csrf_input()` — the hidden `<input>` for a form.

Messages and categories come back HTML-escaped (as `Markup`), so they are safe whether or
not the environment autoescapes. Flash messages are text: HTML in them is shown, never run.
The first call in a request takes all of the session's messages (as Flask does) and later
calls in the same request, in any template, see the same ones.
"""

from __future__ import annotations

from collections.abc import MutableMapping, Sequence
from typing import Any

try:
    from jinja2 import Environment, pass_context
    from jinja2.runtime import Context
    from markupsafe import Markup, escape
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("coatcheck.templating needs Jinja2: pip install jinja2 (or coatcheck[demo])") from exc

from .csrf import DEFAULT_FIELD_NAME, get_token
from .errors import ConfigurationError
from .session import Flash

_CACHE_KEY = "coatcheck.flashes"  # in the ASGI scope / WSGI environ: this request's messages


def install(target: Any, *, field_name: str = DEFAULT_FIELD_NAME) -> Environment:
    """Register the helpers on a Jinja2 `Environment` or an object with `.env` (Starlette's
    `Jinja2Templates`); returns the environment. `field_name` must match the middleware's."""
    env = getattr(target, "env", target)
    if not isinstance(env, Environment):
        raise ConfigurationError(
            f"install() needs a jinja2.Environment or Jinja2Templates, got {type(target).__name__}"
        )
    field = str(escape(field_name))

    @pass_context
    def get_flashed_messages(
        context: Context, with_categories: bool = False, category_filter: Sequence[str] = ()
    ) -> list[Any]:
        selected = [f for f in _taken(context) if not category_filter or f.category in category_filter]
        if with_categories:
            return [(escape(f.category), escape(f.message)) for f in selected]
        return [escape(f.message) for f in selected]

    @pass_context
    def flashes(context: Context, category: str | None = None) -> list[Flash]:
        return [
            Flash(escape(f.category), escape(f.message))
            for f in _taken(context)
            if category is None or f.category == category
        ]

    @pass_context
    def csrf_token(context: Context) -> str:
        return get_token(session_of(context))

    @pass_context
    def csrf_input(context: Context) -> Markup:
        token = get_token(session_of(context))  # base64url: nothing to escape
        return Markup(f'<input type="hidden" name="{field}" value="{token}">')  # noqa: S704

    env.globals.update(
        get_flashed_messages=get_flashed_messages,
        flashes=flashes,
        csrf_token=csrf_token,
        csrf_input=csrf_input,
    )
    return env


def session_of(context: Context | MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """The session for a template context: `request.session`-style scope lookup, else `session`."""
    request = context.get("request")
    scope = getattr(request, "scope", None) or getattr(request, "environ", None)
    if isinstance(scope, MutableMapping):
        session = scope.get("session")
        if isinstance(session, MutableMapping):
            return session
    session = context.get("session")
    if isinstance(session, MutableMapping):
        return session
    raise ConfigurationError(
        "the template has no session: render it with the request in the context "
        "(Starlette's templates.TemplateResponse(request, ...)) or pass session=..., "
        "and add SessionMiddleware to the app"
    )


def _taken(context: Context) -> list[Flash]:
    """All of this request's flash messages, taken from the session once per request."""
    request = context.get("request")
    scope = getattr(request, "scope", None)
    if isinstance(scope, MutableMapping):
        cached = scope.get(_CACHE_KEY)
        if cached is None:
            cached = scope[_CACHE_KEY] = _take(session_of(context))
        return list(cached)
    return _take(session_of(context))


def _take(session: MutableMapping[str, Any]) -> list[Flash]:
    take = getattr(session, "flashes", None)
    if take is None:
        raise ConfigurationError("flash messages need a coatcheck Session (SessionMiddleware)")
    return list(take())
