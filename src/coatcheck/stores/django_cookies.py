"""DjangoSignedCookieStore: Django's ``signed_cookies`` session backend, client-side.

The cookie (``sessionid``) holds the whole session as a `django.core.signing` object under
the salt ``django.contrib.sessions.backends.signed_cookies``, signed with ``SECRET_KEY``
(verified with ``SECRET_KEY_FALLBACKS`` too). Like Django, the session is refused once its
signature is older than ``SESSION_COOKIE_AGE`` (`DjangoFormat.cookie_age`), whatever
``set_expiry`` said (Django ticket #19201), and an emptied session expires the cookie. The
client can read the data (it is signed, not encrypted), exactly as with Django.

There is no session id in Django's cookie: each opened session gets a random one for
coatcheck's bookkeeping, and nothing can be revoked server-side (Django's limitation too).
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

from .._django_signing import DjangoSigner
from ..cookies import MAX_COOKIE_BYTES, first_cookie
from ..django_format import SIGNED_COOKIES_SALT, DjangoFormat
from ..errors import SessionTooLarge
from ..record import Record
from .base import OpenedSession, RenderCookie

if TYPE_CHECKING:
    from ..codec import Serializer
    from ..crypto import Keyring


class DjangoSignedCookieStore:
    """Sessions in Django's signed_cookies format (`store="django-signed-cookies://"`)."""

    def __init__(self, *, debug: bool = False) -> None:
        self.debug = debug
        self._signer: DjangoSigner | None = None
        self._format: DjangoFormat | None = None

    def __repr__(self) -> str:
        return "DjangoSignedCookieStore()"

    def with_format(self, record_format: DjangoFormat) -> DjangoSignedCookieStore:
        """Adopt the middleware's `DjangoFormat` (cookie age, timeouts)."""
        self._format = record_format
        return self

    def bind(self, keyring: Keyring, serializer: Serializer) -> None:
        """Sign with the middleware's secrets: Django's SECRET_KEY first, then its fallbacks."""
        self._signer = DjangoSigner(list(keyring.keys), SIGNED_COOKIES_SALT)

    def _parts(self) -> tuple[DjangoSigner, DjangoFormat]:
        if self._signer is None or self._format is None:
            raise RuntimeError(
                "this DjangoSignedCookieStore is not bound: pass it to SessionMiddleware(compat='django')"
            )
        return self._signer, self._format

    async def open(self, cookie_header: bytes | None, name: str, now: float) -> OpenedSession | None:
        """The session in Django's cookie, or None if absent, forged, older than the cookie
        age or not a JSON object. Never raises on hostile input."""
        signer, fmt = self._parts()
        value = first_cookie(cookie_header, name.encode("latin-1")) if cookie_header else None
        if not value or len(value) > MAX_COOKIE_BYTES:
            return None
        opened = signer.unsign_object(value)
        if opened is None or not isinstance(opened.value, dict):
            return None
        expires_at = opened.timestamp + fmt.cookie_age
        if now > expires_at:  # Django: SignatureExpired
            return None
        record = fmt.record(opened.value, now=now, expires_at=expires_at)
        record.meta.last_seen = min(float(opened.timestamp), now)
        return OpenedSession(secrets.token_urlsafe(32), record, reseal=opened.key_index > 0)

    def seal(
        self,
        session_id: str,
        record: Record,
        *,
        name: str,
        cookie_header: bytes | None,
        max_age: float | None,
        render: RenderCookie,
    ) -> list[bytes]:
        """The Set-Cookie value carrying `record` as Django's signed_cookies backend writes it;
        an empty session expires the cookie (Django's middleware does the same)."""
        signer, fmt = self._parts()
        if not record.data:
            return self.expire(name=name, cookie_header=cookie_header, render=render)
        value = signer.sign_object(fmt.session_object(record.data, record.meta), now=record.meta.last_seen)
        out = render(name, value, max_age)
        if len(out) > MAX_COOKIE_BYTES:
            raise SessionTooLarge(
                f"the Django signed_cookies session needs a {len(out)}-byte cookie, above the "
                f"{MAX_COOKIE_BYTES}-byte limit browsers keep: store less in the session, or share "
                "Django's database backend instead"
            )
        return [out]

    def expire(self, *, name: str, cookie_header: bytes | None, render: RenderCookie) -> list[bytes]:
        return [render(name, "", 0)]

    async def close(self) -> None:
        """Nothing to release."""
