"""The Flask integration's session and its per-app runtime: `flask.session` is a
`FlaskSession`; `FlaskSessions` builds the runtime from the app's config when a request first
needs it, and again (keeping the store it opened) when that config changes, since Flask
reads its configuration per request. Public names are re-exported by `coatcheck.flask`."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flask import Flask, current_app
from flask.sessions import SessionMixin

from ._flask_config import (
    VERSION,
    FlaskSide,
    config_key,
    flask_side,
    options_from_config,
    unmapped_keys,
    unmapped_warning,
    watch,
)
from .config import Settings
from .errors import ConfigurationError
from .flash import Flash
from .runtime import logger
from .strategy import build_runtime
from .wsgi import SyncBridge, WSGISession

if TYPE_CHECKING:
    from .runtime import Runtime

REDIS_SCHEMES = frozenset({"redis", "rediss", "redis+cluster", "redis+sentinel"})
STORE_KEYS = ("SESSION_STORE", "SESSION_TYPE", "SESSION_REDIS", "SESSION_KEY_PREFIX", "SESSION_COMPAT")
EXTENSION = "coatcheck"  # app.extensions[EXTENSION] is the app's FlaskSessions
FLASHES_KEY = "_flashes"  # where Flask's flash() keeps (category, message) pairs


class FlaskSession(WSGISession, SessionMixin):
    """`flask.session`: a coatcheck `Session` with the attributes Flask's API expects.

    `permanent` maps to the cookie's lifetime (PERMANENT_SESSION_LIFETIME when True, a
    browser-session cookie when False); `new` is `is_new`; setting `modified = True` forces
    a save, as with Flask's own session. `flash()` and `flashes()` use Flask's `_flashes`
    queue, so `flask.flash()` / `get_flashed_messages()` and these see the same messages.
    """

    @property
    def permanent(self) -> bool:
        return self.cookie.max_age_seconds is not None

    @permanent.setter
    def permanent(self, value: bool) -> None:
        wanted = sessions_for().flask_side().permanent_lifetime if value else None
        if self.cookie.max_age_seconds != wanted:  # apps set it on every request: only changes count
            self.cookie.max_age = wanted

    @property
    def new(self) -> bool:  # type: ignore[override]
        return self.is_new

    @property
    def accessed(self) -> bool:
        return super().accessed

    @accessed.setter
    def accessed(self, value: bool) -> None:
        # Flask sets this whenever the `flask.session` proxy is looked up, even for
        # `session.permanent`; the mapping itself tracks real reads and writes, which is
        # what decides Vary: Cookie and Cache-Control: private.
        pass

    @property
    def modified(self) -> bool:
        # After the response, Flask's session still says whether the request modified it.
        return super().modified or self.__dict__.get("committed_modified", False)

    @modified.setter
    def modified(self, value: bool) -> None:
        if value:  # Flask's idiom for "I mutated something nested, save it"
            self.mark_modified()

    def flash(self, message: Any, category: str = "info") -> None:
        """Queue a message, exactly as `flask.flash(message, category)` does."""
        if not isinstance(category, str):
            raise TypeError(f"flash category must be a string, got {type(category).__name__}")
        self[FLASHES_KEY] = [*self.get(FLASHES_KEY, ()), (category, message)]

    def flashes(self, category: str | None = None) -> list[Flash]:
        """Return and clear queued messages (only `category`'s, if given), oldest first: those
        of `flask.flash()` and `session.flash()` alike, each returned once."""
        queued = self.get(FLASHES_KEY)
        taken: list[Flash] = []
        if isinstance(queued, list | tuple) and self._queue_is_ours():
            kept = []
            for entry in queued:
                valid = isinstance(entry, list | tuple) and len(entry) == 2 and isinstance(entry[0], str)
                if not valid:
                    continue  # not something flash() wrote: dropped, as Flask would fail on it
                if category is None or entry[0] == category:
                    taken.append(Flash(entry[0], entry[1]))
                else:
                    kept.append(entry)
            if kept:
                self[FLASHES_KEY] = kept
            else:
                del self[FLASHES_KEY]
        return taken + super().flashes(category)  # messages written by a non-Flask app too

    def pop(self, key: str, *default: Any) -> Any:
        """`flask.get_flashed_messages()` pops `_flashes`: with a claiming store, a queue
        another request took (or that could not be claimed) reads as empty."""
        if key == FLASHES_KEY and dict.__contains__(self, key) and not self._queue_is_ours():
            return []
        return super().pop(key, *default)

    def _queue_is_ours(self) -> bool:
        """With a store that claims (`FlashClaiming`), the stored `_flashes` queue is taken by
        exactly one request across processes; a request that lost it drops its copy unseen.
        After a failed claim the queue is neither shown nor dropped."""
        claim, asked = self.claim_stored([FLASHES_KEY])
        if not asked or claim.names is None:
            return True  # queued by this request, or a store without claims
        if claim.failed:
            return False
        if FLASHES_KEY not in claim.names:
            del self[FLASHES_KEY]  # another request took it
            return False
        return True

    def before_commit(self, refresh: bool) -> None:
        """Called by the session interface before the commit: remembers `modified` for code
        that reads it after the response (as Flask's own session allows), and re-sends a
        permanent session's cookie when `refresh` (SESSION_REFRESH_EACH_REQUEST)."""
        if not self.untouched:  # an unused session is not modified: no per-request __dict__
            self.__dict__["committed_modified"] = self.modified
        if refresh and self.stored_id is not None and self.permanent:  # cheapest test first
            self.refresh()

    def refresh(self) -> None:
        """Re-send the cookie with a fresh expiry and extend the server-side deadlines
        (SESSION_REFRESH_EACH_REQUEST for a permanent session)."""
        self.cookie.max_age = self.cookie.max_age_seconds


@dataclass(frozen=True, slots=True)
class Built:
    """The runtime built from one version of the app's config (`bridge` None: no secret)."""

    key: tuple[Any, ...]
    bridge: SyncBridge | None
    side: FlaskSide
    store_source: tuple[Any, ...] = ()  # the settings the store was opened from
    every_path: bool = False  # the cookie path is "/": every request is in scope


class FlaskSessions:
    """The sessions of one Flask app: its runtime, driven through the sync bridge, built from
    the app's config when a request first needs it and again when that config changes."""

    def __init__(self, app: Flask, given: Mapping[str, Any]) -> None:
        self.app = app
        self.given = dict(given)
        self._built: Built | None = None
        self._lock = threading.Lock()
        self._warned: set[str] = set()
        # (config, its version, the runtime built from it): while the app's config is that
        # object at that version, nothing changed since the keys were last compared.
        self._seen: tuple[Any, Any, Built | None] = (None, None, None)

    def current(self) -> Built:
        """The runtime for the app's config as it is now. Raises ConfigurationError."""
        app = self.app
        config = app.config
        seen = self._seen
        if seen[0] is config and seen[2] is not None:
            version = getattr(config, VERSION, None)
            if version is not None and version == seen[1]:
                return seen[2]
        watch(config)  # a config swapped in after setup is watched from now on
        version = getattr(config, VERSION, None)  # read before the keys: a change after is seen next time
        key = config_key(config, app.secret_key)
        built = self._built
        if built is None or built.key != key:
            with self._lock:  # one build per config change, whatever the number of threads
                built = self._built
                if built is None or built.key != key:
                    built = self._build(key, built)
                    self._built = built
        self._seen = (config, version, built)
        return built

    def flask_side(self) -> FlaskSide:
        return self.current().side

    @property
    def bridge(self) -> SyncBridge:
        bridge = self.current().bridge
        if bridge is None:
            raise ConfigurationError(
                "coatcheck.flask.Session needs a secret: set app.secret_key (or SESSION_SECRET); "
                'make one with `coatcheck secret` or `python -c "import secrets; print(secrets.token_urlsafe(32))"`'
            )
        return bridge

    @property
    def runtime(self) -> Runtime:
        return self.bridge.runtime

    @property
    def store(self) -> Any:
        return self.runtime.store

    def _build(self, key: tuple[Any, ...], previous: Built | None) -> Built:
        config = self.app.config
        side = flask_side(config)
        given = self.given
        options = options_from_config(
            config, need_secret="secret" not in given, secret_key=self.app.secret_key, given=given
        )
        unmapped = unmapped_keys(config)
        message = unmapped_warning(unmapped) if unmapped else ""
        if message and message not in self._warned:
            self._warned.add(message)
            logger.warning("%s", message)
        if options.get("secret") is None:
            return Built(key, None, side)  # Flask's behaviour: a null session that refuses writes
        source = (given.get("store"), *(config.get(k) for k in STORE_KEYS))
        _complete_store(
            options, previous if previous is not None and previous.store_source == source else None
        )
        runtime = build_runtime(Settings(**options), FlaskSession)
        every_path = runtime.settings.cookie.path == "/"
        return Built(key, SyncBridge(runtime), side, source, every_path)


def _complete_store(options: dict[str, Any], same_store: Built | None) -> None:
    """The store option, completed: the store a previous build opened from the same settings
    is kept (a config change that is not about the store keeps the sessions). Whatever store
    it is, the runtime has it write with the integration's serializer (tagged by default)."""
    if options.get("compat") is not None:
        return  # a compat layout wraps the store it opens: let it open its own
    if same_store is not None and same_store.bridge is not None:
        options["store"] = same_store.bridge.runtime.store


def sessions_for(app: Flask | None = None) -> FlaskSessions:
    """The coatcheck sessions set up on `app` (default: the current app)."""
    target = app if app is not None else current_app
    sessions = target.extensions.get(EXTENSION)
    if not isinstance(sessions, FlaskSessions):
        raise RuntimeError("coatcheck.flask.Session(app) was not set up on this app")
    return sessions


def current_session() -> FlaskSession:
    """`flask.session` as a `FlaskSession` (typed), or RuntimeError if there is none."""
    from flask import session as flask_session

    obj = flask_session._get_current_object()  # type: ignore[attr-defined]
    if not isinstance(obj, FlaskSession):
        raise RuntimeError("there is no coatcheck session for this request")
    return obj
