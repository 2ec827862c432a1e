"""Quart-Auth with the user kept in the coatcheck session instead of a cookie of its own.

    from coatcheck.quart import Session
    from coatcheck.quart_auth import SessionAuth
    from quart_auth import AuthUser, current_user, login_required, login_user, logout_user

    Session(app)
    SessionAuth(app)

`login_user(AuthUser(user_id))` becomes `session.login(user_id)` at the end of the request
(a new session id, data kept, bound to the user: fixation-safe, and visible to the store's
per-user index: `store.sessions_for(user_id)`, `store.destroy_user(user_id)`);
`login_user(..., remember=True)` also makes the cookie last QUART_AUTH_DURATION;
`logout_user()` destroys the session record. `current_user.auth_id` is `session.user_id`,
so logging a user out everywhere (or on another app sharing the store) takes effect on the
next request. Quart-Auth's own cookie is never set. Needs `coatcheck.quart.Session(app)`.
"""

from __future__ import annotations

try:
    from quart import Response
    from quart_auth import Action, AuthUser, QuartAuth
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("coatcheck.quart_auth needs Quart-Auth: pip install 'coatcheck[quart]'") from exc

from .quart import current_session


class SessionAuth(QuartAuth):
    """`QuartAuth` whose user lives in the coatcheck session (cookie mode only)."""

    def resolve_user(self) -> AuthUser:
        if self.mode != "cookie":
            return super().resolve_user()  # bearer tokens are Quart-Auth's own business
        session = current_session()
        return self.user_class(session.user_id if session is not None else None)

    async def after_request(self, response: Response) -> Response:
        if self.mode != "cookie":
            return await super().after_request(response)
        user = self.load_user()
        session = current_session()
        if session is None or user.action is Action.PASS:
            return response
        if user.action is Action.DELETE:
            session.logout()
            return response
        auth_id = user.auth_id
        if auth_id is not None and auth_id != session.user_id:
            session.login(auth_id)  # runs before save_session: committed with this response
        if user.action is Action.WRITE_PERMANENT and self.duration:
            session.cookie.max_age = float(self.duration)
        return response


__all__ = ["SessionAuth"]
