"""CookieStore: client-side sessions. The whole record travels in the cookie, sealed.

Three modes:

- ``"sealed"`` (default): AES-256-GCM with a key derived from the secrets by HKDF; the
  client can neither read nor change the session. See `coatcheck.sealing` for the layout.
- ``"signed"``: HMAC-SHA256; the client can read the session (base64url JSON) but not change it.
- ``"cookie-session"``: byte-compatible with Express's cookie-session (keygrip): a base64
  JSON value plus a ``<name>.sig`` cookie. Only the data is stored, so no idle/absolute
  timeout, user id or per-session max-age survives between requests (cookie-session has
  none either); limit the lifetime with ``Cookie(max_age=...)`` and rotate secrets.

Sealed and signed values too large for one cookie are split into ``name.0``, ``name.1``...
each at most 4096 bytes including attributes; above `max_chunks` cookies, or above the
1 MiB a payload may inflate to when opened (a highly compressible session fits in a small
cookie but could not be read back), the commit raises `SessionTooLarge` instead of
letting the session be lost silently.
"""

from __future__ import annotations

import base64
import binascii
import inspect
import re
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from ..cookies import MAX_COOKIE_BYTES, first_cookie, parse_cookie_header
from ..errors import ConfigurationError, SessionStoreError, SessionTooLarge
from ..record import Meta, Record
from ..sealing import FrameCodec, Opened, Sealer, Signer, keygrip_index, keygrip_sign
from ._cookie_payload import decode_payload, encode_payload, fresh, is_flat
from .base import OpenedSession, RenderCookie
from .url import query_options, register_scheme

if TYPE_CHECKING:
    from ..codec import Serializer
    from ..crypto import Keyring

Mode = Literal["sealed", "signed", "cookie-session"]
MODES: tuple[Mode, ...] = ("sealed", "signed", "cookie-session")
DEFAULT_MAX_CHUNKS = 4
MAX_CHUNKS_LIMIT = 50  # browsers keep ~180 cookies per site; more chunks would evict others

_CHUNK_SUFFIX = re.compile(rb"^(?:0|[1-9][0-9]?)\Z")  # name.0 ... name.99, canonical digits
_STD_B64 = re.compile(rb"^[A-Za-z0-9+/_-]*={0,2}\Z")
# Opened frames are kept by their exact cookie value: a browser sends the same value until
# the session changes, and opening (base64, AES-GCM or HMAC, inflate) and decoding cost more
# than the rest of a read. The frame's expiry is still checked on every request; a session of
# plain values is handed out as a shallow copy, any other is decoded again per request, so
# each request gets data of its own.
OPENED_CACHE_ENTRIES = 1024
OPENED_CACHE_MAX_PAYLOAD = 8192


@dataclass(frozen=True, slots=True)
class CookiePayload:
    """What an `is_revoked` hook sees about an opened session.

    `session_id` is the random per-session nonce: `login()` and `regenerate()` replace it,
    so a deny-list of these ids (or of user ids with a `created` cut-off) revokes sessions.
    """

    session_id: str
    user_id: str | None
    created: float
    last_seen: float
    data: Mapping[str, Any]


RevocationHook = Callable[[CookiePayload], bool | Awaitable[bool]]


@dataclass(slots=True)
class _Found:
    """The session's cookies in one request: the single cookie, the chunks, all names seen."""

    single: bytes | None
    chunks: dict[int, bytes]
    signature: bytes | None
    names: set[str]


class CookieStore:
    """Client-side sessions: `SessionMiddleware(app, secret=..., store=CookieStore())`.

    Options: `mode` ("sealed", "signed" or "cookie-session"); `max_chunks` (how many
    4 KB cookies a session may use; 1 in cookie-session mode); `compress` (deflate the
    payload when that makes it smaller); `debug` (a too-large session becomes a 500 that
    names the cause, instead of an error log with the previous cookie kept); `is_revoked`
    (a sync or async callable given a `CookiePayload`; True rejects the cookie).
    """

    anyio_compatible = True  # no I/O of its own: runs under asyncio and trio alike

    def __init__(
        self,
        *,
        mode: Mode = "sealed",
        max_chunks: int | None = None,
        compress: bool = True,
        debug: bool = False,
        is_revoked: RevocationHook | None = None,
    ) -> None:
        if mode not in MODES:
            raise ConfigurationError(
                f"CookieStore(mode=...) must be 'sealed', 'signed' or 'cookie-session', got {mode!r}"
            )
        compat = mode == "cookie-session"
        if max_chunks is None:
            max_chunks = 1 if compat else DEFAULT_MAX_CHUNKS
        if (
            isinstance(max_chunks, bool)
            or not isinstance(max_chunks, int)
            or not 1 <= max_chunks <= MAX_CHUNKS_LIMIT
        ):
            raise ConfigurationError(
                f"CookieStore(max_chunks=...) must be a whole number from 1 to {MAX_CHUNKS_LIMIT}, got {max_chunks!r}"
            )
        if compat and max_chunks != 1:
            raise ConfigurationError(
                "CookieStore(mode='cookie-session') cannot split a session over several cookies "
                "(cookie-session would not read them): leave max_chunks unset"
            )
        for flag, value in (("compress", compress), ("debug", debug)):
            if not isinstance(value, bool):
                raise ConfigurationError(f"CookieStore({flag}=...) must be True or False, got {value!r}")
        if is_revoked is not None and not callable(is_revoked):
            raise ConfigurationError("CookieStore(is_revoked=...) must be a callable taking a CookiePayload")
        self.mode: Mode = mode
        self.max_chunks = max_chunks
        self.compress = compress
        self.debug = debug
        self.is_revoked = is_revoked
        self._codec: FrameCodec | None = None
        self._opened: dict[bytes, tuple[str, Opened, tuple[str, Record] | None]] = {}
        self._keys: list[bytes] = []
        self._serializer: Serializer | None = None
        self._dotted_names: dict[str, bytes] = {}
        self._assign: dict[str, bytes] = {}  # b"<name>=" for the names `open` may look up directly

    def __repr__(self) -> str:
        return f"CookieStore(mode={self.mode!r}, max_chunks={self.max_chunks})"

    # ---- binding ----------------------------------------------------------------------------
    def bind(self, keyring: Keyring, serializer: Serializer) -> None:
        """Derive this store's keys from the middleware's secrets. A store serves one middleware."""
        if self._keys and self._keys != list(keyring.keys):
            raise ConfigurationError(
                "this CookieStore is already used by a middleware with other secrets: give each middleware its own CookieStore"
            )
        self._keys = list(keyring.keys)
        self._serializer = serializer
        self._opened.clear()
        if self.mode == "sealed":
            self._codec = Sealer(keyring.derive("cookie-store/aes-256-gcm"), compress=self.compress)
        elif self.mode == "signed":
            self._codec = Signer(keyring.derive("cookie-store/hmac-sha256"), compress=self.compress)

    def _need_serializer(self) -> Serializer:
        if self._serializer is None:
            raise RuntimeError("this CookieStore is not bound: pass it to SessionMiddleware(store=...)")
        return self._serializer

    # ---- reading ----------------------------------------------------------------------------
    def _find(self, cookie_header: bytes | None, name: str) -> _Found:
        """One linear pass over the Cookie header; the first cookie of each name wins."""
        found = _Found(single=None, chunks={}, signature=None, names=set())
        if not cookie_header:
            return found
        base = name.encode("latin-1")
        dotted = base + b"."
        sig_name = base + b".sig"
        for key, value in parse_cookie_header(cookie_header):
            if key == base:
                if found.single is None:
                    found.single = value
                found.names.add(name)
            elif key == sig_name:
                if found.signature is None:
                    found.signature = value
            elif key.startswith(dotted) and _CHUNK_SUFFIX.match(key[len(dotted) :]):
                index = int(key[len(dotted) :])
                if index >= MAX_CHUNKS_LIMIT:  # never ours: not read, not cleared
                    continue
                found.chunks.setdefault(index, value)
                found.names.add(key.decode("ascii"))
        return found

    def _joined_chunks(self, chunks: dict[int, bytes]) -> bytes | None:
        count = len(chunks)
        if not chunks or count > self.max_chunks or any(i not in chunks for i in range(count)):
            return None
        return b"".join(chunks[i] for i in range(count))

    async def open(self, cookie_header: bytes | None, name: str, now: float) -> OpenedSession | None:
        """The session in the request's cookies, or None (absent, forged, moved from another
        cookie name, expired, revoked). Never raises on hostile input."""
        serializer = self._serializer
        if serializer is None:
            serializer = self._need_serializer()
        if self.mode == "cookie-session":
            opened = self._open_compat(self._find(cookie_header, name), name, now, serializer)
        elif not cookie_header:
            opened = None
        elif (dotted := self._dotted_names.get(name) or self._dotted(name)) not in cookie_header:
            # No "<name>.<n>" chunk can be in the header: only the single cookie may hold the
            # session, and `first_cookie` finds what `_find` would, without a pass over it all;
            # a header of that one cookie alone (most API clients) needs no split at all.
            value: bytes | None
            assign = self._assign.get(name)
            if assign is not None and b";" not in cookie_header and cookie_header.startswith(assign):
                value = cookie_header[len(assign) :].strip(b" \t")
            else:
                value = first_cookie(cookie_header, dotted[:-1])
            if value is None or len(value) > self.max_chunks * MAX_COOKIE_BYTES:
                opened = None
            else:
                opened = self._open_frame(value, name, now, serializer)
        else:
            found = self._find(cookie_header, name)
            opened = None
            limit = self.max_chunks * MAX_COOKIE_BYTES
            joined = self._joined_chunks(found.chunks) if found.chunks else None
            for value in (found.single, joined):
                if value is not None and len(value) <= limit:
                    opened = self._open_frame(value, name, now, serializer)
                    if opened is not None:
                        break
        if opened is None or (self.is_revoked is not None and not await self._allowed(opened)):
            return None
        return opened

    def _open_frame(
        self, value: bytes, name: str, now: float, serializer: Serializer
    ) -> OpenedSession | None:
        """Open and decode one frame; both steps are remembered for the exact value."""
        cache = self._opened
        hit = cache.get(value)
        if hit is not None and hit[0] == name:
            _, opened, flat = hit
            if opened.expiry and now >= opened.expiry:
                return None
            if flat is not None:  # only immutable values: a shallow copy is this request's own
                session_id, record = flat
                return OpenedSession(session_id, fresh(record), opened.key_index > 0)
        else:
            assert self._codec is not None
            opened_or_none = self._codec.open(value, name=name, now=now)
            if opened_or_none is None:
                return None
            opened = opened_or_none
        decoded = decode_payload(opened.payload, serializer)
        if hit is None and len(opened.payload) <= OPENED_CACHE_MAX_PAYLOAD:
            if len(cache) >= OPENED_CACHE_ENTRIES:
                cache.clear()  # no LRU bookkeeping per hit; safe under threads
            flat = decoded if decoded is not None and is_flat(decoded[1]) else None
            cache[value] = (name, opened, None if flat is None else (flat[0], fresh(flat[1])))
        if decoded is None:
            return None
        session_id, record = decoded
        return OpenedSession(session_id, record, reseal=opened.key_index > 0)

    def _open_compat(
        self, found: _Found, name: str, now: float, serializer: Serializer
    ) -> OpenedSession | None:
        value, signature = found.single, found.signature
        if value is None or signature is None or len(value) > MAX_COOKIE_BYTES or not _STD_B64.match(value):
            return None
        index = keygrip_index(self._keys, name.encode("latin-1") + b"=" + value, signature)
        if index is None:
            return None
        try:
            # cookie-session decodes with Node's lenient base64: accept both alphabets.
            text = base64.b64decode(value.replace(b"-", b"+").replace(b"_", b"/") + b"==", validate=False)
            data = serializer.loads(text)
        except (binascii.Error, ValueError, TypeError, RecursionError):
            return None
        if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
            return None
        # cookie-session keeps no metadata: this request's view starts now and never expires.
        record = Record(data=data, meta=Meta(created=now, last_seen=now))
        return OpenedSession(secrets.token_urlsafe(32), record, reseal=index > 0)

    async def _allowed(self, opened: OpenedSession) -> bool:
        if self.is_revoked is None:
            return True
        meta = opened.record.meta
        payload = CookiePayload(
            session_id=opened.session_id,
            user_id=meta.user_id,
            created=meta.created,
            last_seen=meta.last_seen,
            data=opened.record.data,
        )
        try:
            verdict = self.is_revoked(payload)
            if inspect.isawaitable(verdict):
                verdict = await verdict
        except SessionStoreError:
            raise
        except Exception as exc:
            # Fail closed: if the deny-list cannot answer, neither can we (the adapter sends 503).
            raise SessionStoreError(f"the is_revoked hook failed: {type(exc).__name__}: {exc}") from exc
        return not verdict

    # ---- writing ----------------------------------------------------------------------------
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
        """Set-Cookie values carrying `record`, and expirations of this session's cookies the
        browser has but no longer needs. Raises SessionTooLarge above `max_chunks` cookies
        or when the serialized record is over 1 MiB (more than opening inflates)."""
        serializer = self._serializer
        if serializer is None:
            serializer = self._need_serializer()
        if self.mode == "cookie-session":
            return self._seal_compat(record, name, max_age, render, serializer)
        codec = self._codec
        assert codec is not None
        meta = record.meta
        idle, absolute = meta.idle_deadline, meta.absolute_deadline  # Meta.expires, inline
        expires = absolute if idle is None or (absolute is not None and absolute < idle) else idle
        value = codec.seal(encode_payload(session_id, record, serializer), name=name, expires=expires)
        single = render(name, value, max_age)
        # Only a cookie "<name>.<n>" can be stale next to a single cookie, and none is when
        # "<name>." appears nowhere in the header: then there is nothing to scan for.
        if len(single) <= MAX_COOKIE_BYTES and (
            not cookie_header or (self._dotted_names.get(name) or self._dotted(name)) not in cookie_header
        ):
            return [single]
        found = self._find(cookie_header, name)
        out, written = self._lay_out(value, name, max_age, render, single)
        stale = sorted(found.names - written, key=_chunk_order)
        out.extend(render(stale_name, "", 0) for stale_name in stale)
        return out

    def _dotted(self, name: str) -> bytes:
        """`name` + "." as bytes: what every chunk's (and the `.sig`) cookie name starts with."""
        dotted = self._dotted_names.get(name)
        if dotted is None:
            if len(self._dotted_names) >= 64:
                self._dotted_names.clear()
            base = name.encode("latin-1")
            dotted = self._dotted_names[name] = base + b"."
            if len(self._assign) >= 64:
                self._assign.clear()
            if base and b"=" not in base and base.strip(b" \t") == base:  # first_cookie's key
                self._assign[name] = base + b"="
        return dotted

    def _lay_out(
        self, value: str, name: str, max_age: float | None, render: RenderCookie, single: bytes
    ) -> tuple[list[bytes], set[str]]:
        if len(single) <= MAX_COOKIE_BYTES:
            return [single], {name}
        out: list[bytes] = []
        position = 0
        while position < len(value):
            chunk_name = f"{name}.{len(out)}"
            room = MAX_COOKIE_BYTES - len(render(chunk_name, "", max_age))
            if len(out) == self.max_chunks or room <= 0:
                raise self._too_large(len(value), room)
            out.append(render(chunk_name, value[position : position + room], max_age))
            position += room
        return out, {f"{name}.{i}" for i in range(len(out))}

    def _too_large(self, sealed: int, room: int) -> SessionTooLarge:
        needed = -(-sealed // room) if room > 0 else "more"
        return SessionTooLarge(
            f"the client-side session is {sealed} bytes sealed and needs {needed} cookies, but "
            f"CookieStore(max_chunks={self.max_chunks}) allows {self.max_chunks} of {MAX_COOKIE_BYTES} bytes "
            f"(attributes included): store less in the session, raise max_chunks, or use a server-side store"
        )

    def _seal_compat(
        self, record: Record, name: str, max_age: float | None, render: RenderCookie, serializer: Serializer
    ) -> list[bytes]:
        if not record.data:  # cookie-session drops an emptied session's cookies
            return [render(name, "", 0), render(f"{name}.sig", "", 0)]
        value = base64.b64encode(serializer.dumps(record.data)).decode("ascii")
        signature = keygrip_sign(self._keys[0], f"{name}={value}".encode("latin-1"))
        out = [render(name, value, max_age), render(f"{name}.sig", signature, max_age)]
        if len(out[0]) > MAX_COOKIE_BYTES:
            raise SessionTooLarge(
                f"the cookie-session-compatible session needs a {len(out[0])}-byte cookie, above the "
                f"{MAX_COOKIE_BYTES}-byte limit browsers keep (cookie-session cannot split it): store less "
                "in the session, or use mode='sealed' or a server-side store"
            )
        return out

    def expire(self, *, name: str, cookie_header: bytes | None, render: RenderCookie) -> list[bytes]:
        """Expire the session cookie and every chunk (or `.sig`) of it the browser sent."""
        if self.mode == "cookie-session":
            return [render(name, "", 0), render(f"{name}.sig", "", 0)]
        names = self._find(cookie_header, name).names | {name}
        return [render(n, "", 0) for n in sorted(names, key=_chunk_order)]

    async def close(self) -> None:
        """Nothing to release: the browser holds every session."""


def _chunk_order(cookie_name: str) -> tuple[int, int]:
    """The unsplit cookie first, then chunks by number."""
    _, dot, suffix = cookie_name.rpartition(".")
    return (1, int(suffix)) if dot and suffix.isdigit() else (0, 0)


# ---- from_url -------------------------------------------------------------------------------------
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_URL_OPTIONS = ("mode", "max_chunks", "compress", "debug")


def _flag(options: dict[str, str], key: str, default: bool) -> bool:
    text = options.get(key)
    if text is None:
        return default
    if text.lower() in _TRUE:
        return True
    if text.lower() in _FALSE:
        return False
    raise ConfigurationError(f"cookie:// {key} must be true or false, got {text!r}")


@register_scheme("cookie")
def _cookie(url: str) -> CookieStore:
    """cookie://  cookie://?mode=signed  cookie://?mode=cookie-session  cookie://?max_chunks=2&debug=1"""
    rest = url.split("://", 1)[1].split("?", 1)[0]
    if rest not in ("", "/"):
        raise ConfigurationError(
            f"cookie:// takes no host or path (the browser is the store), got {url!r}: use e.g. 'cookie://?mode=signed'"
        )
    options = query_options(url)
    unknown = sorted(set(options) - set(_URL_OPTIONS))
    if unknown:
        raise ConfigurationError(
            f"unknown cookie:// option(s) {', '.join(unknown)}; known: {', '.join(_URL_OPTIONS)}"
        )
    mode = options.get("mode", "sealed")
    if mode not in MODES:
        raise ConfigurationError(f"cookie:// mode must be sealed, signed or cookie-session, got {mode!r}")
    max_chunks: int | None = None
    if "max_chunks" in options:
        try:
            max_chunks = int(options["max_chunks"])
        except ValueError:
            raise ConfigurationError(
                f"cookie:// max_chunks must be a whole number, got {options['max_chunks']!r}"
            ) from None
    return CookieStore(
        mode=mode,
        max_chunks=max_chunks,
        compress=_flag(options, "compress", True),
        debug=_flag(options, "debug", False),
    )
