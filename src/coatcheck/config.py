"""Validated settings: the session cookie's attributes and the middleware's options."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Literal

from .cookies import is_valid_name
from .errors import ConfigurationError

SameSite = Literal["lax", "strict", "none", "auto"]
Secure = bool | Literal["auto"]
Priority = Literal["low", "medium", "high"]
Unset = Literal["keep", "destroy"]
Duration = timedelta | int | float

_PATH = re.compile(r"^/[\x21-\x3a\x3c-\x7e]*$")  # printable ASCII, no ';', starts with '/'
_DOMAIN = re.compile(
    r"^\.?[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)

logger = logging.getLogger("coatcheck")


def seconds(value: Duration | None, what: str) -> float | None:
    """Turn a timedelta or a number of seconds into float seconds; None stays None."""
    if value is None:
        return None
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigurationError(f"{what} must be a timedelta or a number of seconds, got {value!r}")
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
        return replace(self, max_age=seconds(self.max_age, "Cookie(max_age=...)"))


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the engine needs to decide, validated once at start-up."""

    name: str = "session"
    cookie: Cookie = field(default_factory=Cookie)
    resave: bool = False
    save_uninitialized: bool = False
    rolling: bool = False
    unset: Unset = "keep"
    trust_proxy: bool = False
    idle_timeout: float | None = 86400.0
    absolute_timeout: float | None = 30 * 86400.0
    touch_after: float = 60.0
    client_hints: bool = False
    id_bytes: int = 32  # random bytes per new session id (24 with compat="express", like uid-safe)

    @classmethod
    def build(
        cls,
        *,
        name: str = "session",
        cookie: Cookie | None = None,
        resave: bool = False,
        save_uninitialized: bool = False,
        rolling: bool = False,
        unset: Unset = "keep",
        trust_proxy: bool = False,
        idle_timeout: Duration | None = timedelta(days=1),
        absolute_timeout: Duration | None = timedelta(days=30),
        touch_after: Duration = timedelta(seconds=60),
        client_hints: bool = False,
        id_bytes: int = 32,
    ) -> Settings:
        if unset not in ("keep", "destroy"):
            raise ConfigurationError(f'unset must be "keep" or "destroy", got {unset!r}')
        for flag, value in (
            ("resave", resave),
            ("save_uninitialized", save_uninitialized),
            ("rolling", rolling),
            ("trust_proxy", trust_proxy),
        ):
            if not isinstance(value, bool):
                raise ConfigurationError(f"{flag} must be True or False, got {value!r}")
        idle = seconds(idle_timeout, "idle_timeout")
        absolute = seconds(absolute_timeout, "absolute_timeout")
        if idle is not None and absolute is not None and idle > absolute:
            raise ConfigurationError(
                f"idle_timeout ({idle:g}s) is longer than absolute_timeout ({absolute:g}s): shorten idle_timeout"
            )
        touch = seconds(touch_after, "touch_after") or 0.0
        return cls(
            name=name,
            cookie=(cookie or Cookie()).validated(name),
            resave=resave,
            save_uninitialized=save_uninitialized,
            rolling=rolling,
            unset=unset,
            trust_proxy=trust_proxy,
            idle_timeout=idle,
            absolute_timeout=absolute,
            touch_after=touch,
            client_hints=client_hints,
            id_bytes=id_bytes,
        )


def as_secret_list(secret: str | bytes | Sequence[str | bytes]) -> list[bytes]:
    """Normalise the `secret` option to a non-empty list of byte strings."""
    items: Sequence[str | bytes] = [secret] if isinstance(secret, str | bytes) else secret
    keys = [s.encode() if isinstance(s, str) else bytes(s) for s in items]
    if not keys:
        raise ConfigurationError("secret must be a string, bytes, or a non-empty list of them")
    for key in keys:
        if not key:
            raise ConfigurationError("secret must not be empty")
    return keys
