"""Validated settings: the session cookie's attributes and the middleware's options."""

from __future__ import annotations

import base64
import logging
import math
import os
import re
import secrets
import string
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import timedelta
from typing import TYPE_CHECKING, Literal

from .cookies import is_valid_name
from .crypto import as_secret_list
from .errors import ConfigurationError

if TYPE_CHECKING:
    from .codec import Serializer
    from .events import OnEvent
    from .migrate import LegacyReader
    from .stores.base import ClientSideStore, Store

SameSite = Literal["lax", "strict", "none", "auto"]
Secure = bool | Literal["auto"]
Priority = Literal["low", "medium", "high"]
Unset = Literal["keep", "destroy"]
Duration = timedelta | int | float

_PATH = re.compile(r"^/[\x21-\x3a\x3c-\x7e]*\Z")  # printable ASCII, no ';', starts with '/'
_DOMAIN = re.compile(
    r"^\.?[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\Z"
)

logger = logging.getLogger("coatcheck")
MAX_COOKIE_AGE = 1000 * 366 * 86400.0  # an Expires date stays renderable (year < 9999) for centuries


def seconds(value: Duration | None, what: str) -> float | None:
    """Turn a timedelta or a number of seconds into float seconds; None stays None."""
    if value is None:
        return None
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigurationError(f"{what} must be a timedelta or a number of seconds, got {value!r}")
    if not math.isfinite(value):
        raise ConfigurationError(f"{what} must be a finite number of seconds, got {value!r}")
    if value < 0:
        raise ConfigurationError(f"{what} must not be negative, got {value!r}")
    return float(value)


@dataclass(frozen=True, slots=True)
class Cookie:
    """Attributes of the session cookie. `max_age=None` makes a browser-session cookie.

    `secure="auto"` sets Secure exactly when the request came over HTTPS;
    `same_site="auto"` sends `None` on HTTPS (cross-site embeds) and `Lax` on plain HTTP.
    """

    max_age: Duration | None = None
    secure: Secure = "auto"
    same_site: SameSite | None = "lax"
    http_only: bool = True
    path: str = "/"
    domain: str | None = None
    partitioned: bool = False
    priority: Priority | None = None

    def validated(self, name: str) -> Cookie:
        """Return a copy with `max_age` in seconds, or raise ConfigurationError."""
        if not is_valid_name(name):
            raise ConfigurationError(
                f"cookie name {name!r} is not a valid token: use letters, digits and !#$%&'*+-.^_`|~"
            )
        if self.secure not in (True, False, "auto"):
            raise ConfigurationError(f'Cookie(secure=...) must be True, False or "auto", got {self.secure!r}')
        if self.same_site not in ("lax", "strict", "none", "auto", None):
            raise ConfigurationError(
                f'Cookie(same_site=...) must be "lax", "strict", "none", "auto" or None, got {self.same_site!r}'
            )
        if self.priority not in ("low", "medium", "high", None):
            raise ConfigurationError(
                f'Cookie(priority=...) must be "low", "medium", "high" or None, got {self.priority!r}'
            )
        if not _PATH.match(self.path):
            raise ConfigurationError(
                f"Cookie(path=...) must start with '/' and hold printable ASCII without ';', got {self.path!r}"
            )
        if self.domain is not None and not _DOMAIN.match(self.domain):
            raise ConfigurationError(f"Cookie(domain=...) is not a valid host name: {self.domain!r}")
        if self.same_site == "none" and self.secure is False:
            raise ConfigurationError(
                'Cookie(same_site="none") needs secure=True or "auto": browsers drop SameSite=None cookies without Secure'
            )
        if self.partitioned and self.secure is False:
            raise ConfigurationError(
                'Cookie(partitioned=True) needs secure=True or "auto": browsers require Secure for CHIPS'
            )
        if name.startswith("__Secure-") and self.secure is not True:
            raise ConfigurationError(
                f"cookie name {name!r} has the __Secure- prefix: set Cookie(secure=True)"
            )
        if name.startswith("__Host-") and (
            self.secure is not True or self.path != "/" or self.domain is not None
        ):
            raise ConfigurationError(
                f"cookie name {name!r} has the __Host- prefix: set Cookie(secure=True, path='/', domain=None)"
            )
        max_age = seconds(self.max_age, "Cookie(max_age=...)")
        if max_age is not None and max_age > MAX_COOKIE_AGE:
            raise ConfigurationError(
                f"Cookie(max_age=...) is {max_age:g}s, past what a cookie's Expires date can hold: "
                "use at most a few years (browsers cap cookies at 400 days anyway)"
            )
        return replace(self, max_age=max_age)


Secret = str | bytes | Sequence[str | bytes]
Compat = Literal["express", "django"]
COMPAT_MODES: tuple[str, ...] = ("express", "django")
COMPAT_COOKIE_NAMES = {"express": "connect.sid", "django": "sessionid"}  # each program's default
DJANGO_KEY_CHARS = string.ascii_lowercase + string.digits  # Django's VALID_KEY_CHARS
DJANGO_COOKIE_AGE = 1209600.0  # Django's SESSION_COOKIE_AGE default: its cookie lasts two weeks


def django_key() -> str:
    """A new session key like Django's: 32 characters of [a-z0-9] from `secrets` (165 bits)."""
    return "".join(secrets.choice(DJANGO_KEY_CHARS) for _ in range(32))


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """Every middleware option, declared once: its type, its default and its validation.

    `SessionMiddleware` (ASGI and WSGI) and the Flask extension take exactly these fields as
    keyword-only parameters (tests/test_options.py keeps them in step). Values are checked
    here, at start-up; the derived fields below the divider hold them normalised (seconds
    as floats, the cookie name resolved) for the engine.
    """

    secret: Secret
    store: Store | ClientSideStore | str | None = None
    name: str | None = None
    cookie: Cookie = Cookie()
    resave: bool = False
    save_uninitialized: bool = False
    rolling: bool = False
    unset: Unset = "keep"
    trust_proxy: bool = False
    idle_timeout: Duration | None = timedelta(days=1)
    absolute_timeout: Duration | None = timedelta(days=30)
    touch_after: Duration = timedelta(seconds=60)
    client_hints: bool = False
    store_timeout: Duration | None = timedelta(seconds=5)
    insecure_dev_secret: bool = False
    serializer: Serializer | str = "json"
    clock: Callable[[], float] = time.time
    compat: Compat | None = None
    on_event: OnEvent | None = None
    migrate_from: Sequence[LegacyReader] = ()

    # ---- derived at validation (not options) ------------------------------------------------
    cookie_name: str = field(init=False)
    cookie_max_age: float | None = field(init=False)
    idle_seconds: float | None = field(init=False)
    absolute_seconds: float | None = field(init=False)
    touch_seconds: float = field(init=False)
    timeout_seconds: float | None = field(init=False)
    id_bytes: int = field(init=False)  # random bytes per new id (24 with compat="express", like uid-safe)

    def __post_init__(self) -> None:
        if self.compat is not None and self.compat not in COMPAT_MODES:
            raise ConfigurationError(f"compat must be one of {COMPAT_MODES} or None, got {self.compat!r}")
        if self.unset not in ("keep", "destroy"):
            raise ConfigurationError(f'unset must be "keep" or "destroy", got {self.unset!r}')
        for flag in (
            "resave",
            "save_uninitialized",
            "rolling",
            "trust_proxy",
            "client_hints",
            "insecure_dev_secret",
        ):
            value = getattr(self, flag)
            if not isinstance(value, bool):
                raise ConfigurationError(f"{flag} must be True or False, got {value!r}")
        if not isinstance(self.cookie, Cookie):
            raise ConfigurationError(f"cookie must be a coatcheck.Cookie, got {type(self.cookie).__name__}")
        if not callable(self.clock):
            raise ConfigurationError("clock must be a callable returning Unix seconds")
        if self.on_event is not None and not callable(self.on_event):
            raise ConfigurationError(
                "on_event must be a callable taking a coatcheck.audit.AuditEvent, or None"
            )
        as_secret_list(self.secret)  # an empty secret fails here, at start-up
        object.__setattr__(self, "migrate_from", legacy_readers(self.migrate_from))
        name = self.name
        if name is None:
            name = COMPAT_COOKIE_NAMES.get(self.compat or "", "session")
        cookie = self.cookie
        if self.compat == "django" and cookie == Cookie():  # Django's cookie outlives the browser
            cookie = replace(cookie, max_age=DJANGO_COOKIE_AGE)
        cookie = cookie.validated(name)
        idle = seconds(self.idle_timeout, "idle_timeout")
        absolute = seconds(self.absolute_timeout, "absolute_timeout")
        if idle is not None and absolute is not None and idle > absolute:
            raise ConfigurationError(
                f"idle_timeout ({idle:g}s) is longer than absolute_timeout ({absolute:g}s): shorten idle_timeout"
            )
        timeout = seconds(self.store_timeout, "store_timeout")
        if timeout == 0:
            raise ConfigurationError("store_timeout must be positive (or None for no limit), got 0")
        derived = {
            "cookie": cookie,
            "cookie_name": name,
            "cookie_max_age": cookie.max_age,
            "idle_seconds": idle,
            "absolute_seconds": absolute,
            "touch_seconds": seconds(self.touch_after, "touch_after") or 0.0,
            "timeout_seconds": timeout,
            "id_bytes": 24 if self.compat == "express" else 32,
        }
        for attribute, value in derived.items():
            object.__setattr__(self, attribute, value)  # frozen: derived once, here

    def new_id(self) -> str:
        """A fresh session id, in the format of the program `compat` shares sessions with."""
        if self.compat == "django":
            return django_key()
        # secrets.token_urlsafe, without its two Python frames on every new session
        return base64.urlsafe_b64encode(os.urandom(self.id_bytes)).rstrip(b"=").decode("ascii")


def legacy_readers(readers: object) -> tuple[LegacyReader, ...]:
    """`migrate_from` as a tuple of readers (`coatcheck.migrate`), or ConfigurationError."""
    if not isinstance(readers, list | tuple):
        raise ConfigurationError(
            "migrate_from must be a list of readers from coatcheck.migrate, "
            f"e.g. [StarletteCookie(OLD_SECRET)], got {type(readers).__name__}"
        )
    for reader in readers:
        if not (
            isinstance(getattr(reader, "cookie_name", None), str)
            and all(callable(getattr(reader, method, None)) for method in ("read", "forget", "bind"))
        ):
            raise ConfigurationError(
                f"migrate_from: {type(reader).__name__} is not a legacy reader (cookie_name, read, "
                "forget, bind): use coatcheck.migrate.StarletteCookie, FlaskCookie or FlaskSessionRedis"
            )
    return tuple(readers)


def option_names() -> tuple[str, ...]:
    """The options every constructor takes, in declaration order."""
    return tuple(f.name for f in fields(Settings) if f.init)
