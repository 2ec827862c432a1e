"""Finding the token field in a form body, incrementally.

`FormScanner` is fed the body as it arrives and looks at every byte a bounded number of
times, whatever the chunking: the total work is linear in the body size. (Re-parsing the
whole buffer on every chunk made a 1 MiB body in small chunks cost seconds of CPU.)
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Literal
from urllib.parse import unquote_to_bytes

FormKind = Literal["urlencoded", "multipart"]

_PARAM = re.compile(r';\s*([A-Za-z0-9_*.-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)')
_MAX_BOUNDARY = 200


def parse_content_type(value: str | None) -> tuple[str, dict[str, str]]:
    """(lower-case media type, parameters) of a Content-Type value; ("", {}) if absent."""
    if not value:
        return "", {}
    media, _, rest = value.partition(";")
    params: dict[str, str] = {}
    for match in _PARAM.finditer(";" + rest):
        raw = match.group(2).strip()
        if len(raw) >= 2 and raw[0] == raw[-1] == '"':
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        params.setdefault(match.group(1).lower(), raw)
    return media.strip().lower(), params


def form_kind(content_type: str | None) -> FormKind | None:
    """Which kind of form body can carry the token field; None for every other body."""
    media, params = parse_content_type(content_type)
    if media == "application/x-www-form-urlencoded":
        return "urlencoded"
    if media == "multipart/form-data" and 0 < len(params.get("boundary", "")) <= _MAX_BOUNDARY:
        return "multipart"
    return None


@lru_cache(maxsize=32)
def _pair_pattern(shortest: int, longest: int) -> re.Pattern[bytes]:
    # A key that could decode to the field name is between len(name) and 3 * len(name)
    # bytes long (each byte at most "%XX"); the regex engine skips every other pair in C.
    return re.compile(rb"(?<![^&])([^&=]{%d,%d})(?:=([^&]*))?(?=&|\Z)" % (shortest, longest))


class FormScanner:
    """Finds the first value of form field `field_name` in a body fed in chunks.

    `feed(chunk)` returns the value as soon as the field is certainly whole, else None;
    `finish()` is called once the body has ended and looks at the last field too. The
    scanner keeps the body (the caller replays it to the app) and the offset it has
    examined up to, so no byte is searched twice.
    """

    __slots__ = (
        "_buffer",
        "_closed",
        "_delimiter",
        "_kind",
        "_name",
        "_pattern",
        "_pos",
        "_searched",
        "_section",
        "_text_name",
    )

    def __init__(self, content_type: str | None, field_name: str) -> None:
        self._kind = form_kind(content_type)
        self._buffer = bytearray()
        self._text_name = field_name
        self._name = field_name.encode()
        self._pattern = _pair_pattern(len(self._name), 3 * len(self._name))
        boundary = parse_content_type(content_type)[1].get("boundary", "")
        self._delimiter = b"--" + boundary.encode("latin-1")
        self._pos = 0  # urlencoded: start of the first unexamined pair; multipart: search start
        self._searched = 0  # urlencoded: no "&" before this offset is unexamined
        self._section: int | None = None  # multipart: where the current part began, if any
        self._closed = False  # multipart: the closing delimiter was seen
        if self._kind is None:
            raise ValueError(f"not a form content type: {content_type!r}")

    @property
    def body(self) -> bytes:
        """Everything fed so far."""
        return bytes(self._buffer)

    def __len__(self) -> int:
        return len(self._buffer)

    def feed(self, chunk: bytes) -> str | None:
        self._buffer += chunk
        return self._scan(final=False)

    def finish(self) -> str | None:
        return self._scan(final=True)

    def _scan(self, *, final: bool) -> str | None:
        if self._kind == "urlencoded":
            return self._scan_urlencoded(final)
        return self._scan_multipart(final)

    def _scan_urlencoded(self, final: bool) -> str | None:
        buffer = self._buffer
        end = len(buffer) if final else buffer.rfind(b"&", max(self._pos, self._searched))
        self._searched = len(buffer)
        if end < self._pos:
            return None  # no pair completed by this chunk
        for match in self._pattern.finditer(buffer, self._pos, end):
            if unquote_to_bytes(match.group(1).replace(b"+", b" ")) == self._name:
                value = match.group(2) or b""
                return unquote_to_bytes(value.replace(b"+", b" ")).decode("latin-1")
        self._pos = end + 1
        return None

    def _scan_multipart(self, final: bool) -> str | None:
        buffer, delimiter = self._buffer, self._delimiter
        while not self._closed:
            found = buffer.find(delimiter, self._pos)
            if found < 0:
                break
            value = self._close_part(found)
            if value is not None:
                return value
            self._section = self._pos = found + len(delimiter)
        # A delimiter may straddle this chunk and the next: search its possible start again.
        self._pos = max(self._pos, len(buffer) - len(delimiter) + 1)
        return self._close_part(len(buffer)) if final and not self._closed else None

    def _close_part(self, end: int) -> str | None:
        """The part that began at `self._section` ends at `end`: its value if it is the field."""
        start = self._section
        if start is None:
            return None  # the preamble before the first delimiter
        self._section = None
        if self._buffer.startswith(b"--", start, end):
            self._closed = True  # the closing delimiter: nothing after it counts
            return None
        return self._part_value(start, end)

    def _part_value(self, start: int, end: int) -> str | None:
        """The content of the part in buffer[start:end] if it is the (non-file) token field."""
        head_end = self._buffer.find(b"\r\n\r\n", start, end)
        if head_end < 0:
            return None
        disposition = None
        for line in bytes(self._buffer[start:head_end]).split(b"\r\n"):
            header, colon, value = line.partition(b":")
            if colon and header.strip().lower() == b"content-disposition":
                disposition = value.decode("latin-1")
        if disposition is None:
            return None
        kind, params = parse_content_type(disposition)
        if kind != "form-data" or params.get("name") != self._text_name:
            return None
        if any(key.startswith("filename") for key in params):
            return None
        content = bytes(self._buffer[head_end + 4 : end])
        return (content[:-2] if content.endswith(b"\r\n") else content).decode("latin-1")


def find_form_token(
    body: bytes, content_type: str | None, field_name: str, *, complete: bool = True
) -> str | None:
    """The first value of form field `field_name` in `body`, or None.

    With `complete=False`, `body` is a prefix of a longer body and only fields that are
    certainly whole are considered. (Adapters feed a `FormScanner` instead, chunk by chunk.)
    """
    if form_kind(content_type) is None:
        return None
    scanner = FormScanner(content_type, field_name)
    found = scanner.feed(body)
    return scanner.finish() if found is None and complete else found
