"""Reading the token field from a WSGI body (for the WSGI middleware and Flask's CSRFProtect):
incrementally, never past `max_body_size`, and replayed for the app afterwards."""

from __future__ import annotations

import io
from collections.abc import Iterator, MutableMapping
from typing import Any

from .forms import FormScanner
from .rules import CSRFPolicy, Verdict, body_too_large

READ_CHUNK = 64 * 1024


def read_form_token(
    environ: MutableMapping[str, Any], content_type: str | None, policy: CSRFPolicy
) -> str | Verdict | None:
    """Read `wsgi.input` until the token field is certainly found or the body ends, reading
    at most `max_body_size + 1` bytes; then put what was read back in front of `wsgi.input`.
    Returns the field's value, None (no such field), or the 413 verdict."""
    stream = environ.get("wsgi.input")
    if stream is None:
        return None
    try:
        remaining: int | None = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        remaining = 0
    if not remaining and environ.get("wsgi.input_terminated"):
        remaining = None  # chunked: read until the stream ends
    scanner = FormScanner(content_type, policy.field_name)
    limit = policy.max_body_size
    token = None
    ended = False
    while token is None and len(scanner) <= limit:
        # Never read past limit + 1 bytes: a field later than that is refused, as in ASGI.
        want = limit + 1 - len(scanner) if remaining is None else min(limit + 1 - len(scanner), remaining)
        chunk = bytes(stream.read(min(READ_CHUNK, want))) if want > 0 else b""
        if remaining is not None:
            remaining -= len(chunk)
        ended = not chunk or remaining == 0
        token = scanner.feed(chunk)
        if token is None and ended:
            token = scanner.finish()
        if ended:
            break
    environ["wsgi.input"] = ReplayInput(scanner.body, stream)
    if token is None and not ended:
        return body_too_large(policy)
    return token


class ReplayInput:
    """`wsgi.input` for the app: the bytes the CSRF check already read, then the rest."""

    def __init__(self, head: bytes, rest: Any) -> None:
        self._head = io.BytesIO(head)
        self._rest = rest

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            return self._head.read() + bytes(self._rest.read())
        data = self._head.read(size)
        if len(data) < size:
            data += bytes(self._rest.read(size - len(data)))
        return data

    def readline(self, size: int | None = -1) -> bytes:
        line = self._head.readline() if size is None or size < 0 else self._head.readline(size)
        if line.endswith(b"\n") or (size is not None and 0 <= size <= len(line)):
            return line
        more = self._rest.readline() if size is None or size < 0 else self._rest.readline(size - len(line))
        return line + bytes(more)

    def readlines(self, hint: int = -1) -> list[bytes]:
        return list(iter(self.readline, b""))

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.readline, b"")
