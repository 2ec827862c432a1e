"""Redis store URLs: redis://, rediss://, redis+cluster://h:p,h:p, redis+sentinel://h:p,.../service.

Parsed and validated here, before any connection exists, so a typo fails at start-up with
a ConfigurationError that says what to change (and never shows the password).
"""

from __future__ import annotations

import math
import os
import ssl
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote

from ..errors import ConfigurationError
from ._toolkit import redact_url

_KINDS: dict[str, tuple[str, bool]] = {
    "redis": ("standalone", False),
    "rediss": ("standalone", True),
    "redis+cluster": ("cluster", False),
    "redis+sentinel": ("sentinel", False),
}
_COMMON_OPTIONS = {"prefix", "socket_timeout", "socket_connect_timeout", "client_name"}
_TLS_OPTIONS = {"ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs", "ssl_check_hostname"}
_OPTIONS = {
    "standalone": _COMMON_OPTIONS | {"db", "connection", "max_connections"},
    "cluster": _COMMON_OPTIONS | {"max_connections"},
    "sentinel": _COMMON_OPTIONS | {"db", "max_connections"},
}


@dataclass(frozen=True, slots=True)
class RedisURL:
    """A parsed, validated Redis store URL (see `parse_url`)."""

    kind: str  # "standalone" | "cluster" | "sentinel"
    nodes: tuple[tuple[str, int], ...]
    db: int = 0
    username: str | None = None
    password: str | None = None
    service: str | None = None
    tls: bool = False
    options: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        """Where the sessions live, for messages: never the password."""
        hosts = ",".join(_host_port(h, p) for h, p in self.nodes)
        if self.kind == "cluster":
            return f"cluster {hosts}"
        if self.kind == "sentinel":
            return f"sentinel {hosts} service {self.service!r} db {self.db}"
        return f"{'rediss' if self.tls else 'redis'}://{hosts}/{self.db}"


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# One pass over the URL, so each error names the part that is wrong (splitting would re-parse).
def parse_url(url: str) -> RedisURL:
    """Parse redis://, rediss://, redis+cluster://h:p,h:p and redis+sentinel://h:p,.../service.
    Raises ConfigurationError saying what is wrong (the message never shows the password)."""
    shown = redact_url(url)
    scheme, sep, rest = url.partition("://")
    kind_tls = _KINDS.get(scheme.lower())
    if not sep or kind_tls is None:
        raise ConfigurationError(
            f"{shown!r} is not a Redis store URL: use redis://host:6379/0, rediss://..., "
            "redis+cluster://host:port,host:port or redis+sentinel://host:26379,.../service_name"
        )
    kind, tls = kind_tls
    # the user information ends at the last "@" before the query, so a password written
    # raw may contain "/", "@", ":" or "#" (it is never quoted in a message either way)
    head, _, query = rest.partition("?")
    userinfo, at, location = head.rpartition("@")
    netloc, _, path = location.partition("#")[0].partition("/")
    hosts = netloc
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    default_port = 26379 if kind == "sentinel" else 6379
    nodes = tuple(_parse_host(part, default_port, shown) for part in hosts.split(",") if part.strip())
    if not nodes:
        if kind != "standalone":
            raise ConfigurationError(f"{shown!r} names no server: list host:port pairs separated by commas")
        nodes = (("localhost", 6379),)
    if kind == "standalone" and len(nodes) > 1:
        raise ConfigurationError(
            f"{shown!r} lists several servers: use redis+cluster://... for a cluster "
            "or redis+sentinel://.../service_name for Sentinel"
        )

    options = dict(parse_qsl(query, keep_blank_values=True))
    allowed = _OPTIONS[kind] | (_TLS_OPTIONS if tls else set())
    unknown = sorted(set(options) - allowed)
    if unknown:
        hint = " (TLS options need rediss://)" if set(unknown) & _TLS_OPTIONS and not tls else ""
        raise ConfigurationError(
            f"unknown option {unknown[0]!r} in Redis URL {shown!r}{hint}; "
            f"known options: {', '.join(sorted(allowed))}"
        )

    service = None
    db_text = options.pop("db", None)
    path = path.strip("/")
    if kind == "sentinel":
        if not path or "/" in path:
            raise ConfigurationError(
                f"{shown!r} needs the Sentinel service name as its path: redis+sentinel://host:26379/mymaster"
            )
        service = unquote(path)
    elif path:
        if db_text is not None:
            raise ConfigurationError(f"{shown!r} gives the database twice (path and ?db=): keep one")
        db_text = path
    db = whole_number(db_text or "0", "database number", shown)
    if kind == "cluster" and db != 0:
        raise ConfigurationError(f"{shown!r}: Redis Cluster has only database 0; drop /{db}")
    return RedisURL(
        kind=kind,
        nodes=nodes,
        db=db,
        username=username,
        password=password,
        service=service,
        tls=tls,
        options=options,
    )


def _parse_host(text: str, default_port: int, shown: str) -> tuple[str, int]:
    text = text.strip()
    if text.startswith("["):
        host, _, port_text = text[1:].partition("]")
        port_text = port_text.removeprefix(":")
    else:
        host, _, port_text = text.partition(":")
    if not host:
        raise ConfigurationError(f"{shown!r} has an empty host name in {text!r}")
    port = default_port if not port_text else whole_number(port_text, "port", shown)
    if not 0 < port < 65536:
        raise ConfigurationError(f"port {port} in {shown!r} is out of range (1-65535)")
    return host, port


def whole_number(text: str, what: str, shown: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ConfigurationError(f"{what} {text!r} in {shown!r} must be a whole number") from None
    if value < 0:
        raise ConfigurationError(f"{what} {text!r} in {shown!r} must not be negative")
    return value


def seconds(value: float | str, what: str) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise ConfigurationError(f"{what} must be a number of seconds, got {value!r}") from None
    if not (seconds > 0 and math.isfinite(seconds)):
        raise ConfigurationError(f"{what} must be a positive number of seconds, got {value!r}")
    return seconds


def _flag(value: str, what: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigurationError(f"{what} must be true or false, got {value!r}")


def tls_settings(options: dict[str, str]) -> dict[str, Any]:
    """The rediss:// options, validated, as redis-py keyword arguments."""
    cert_reqs = options.get("ssl_cert_reqs", "required").lower()
    if cert_reqs not in ("none", "optional", "required"):
        raise ConfigurationError(f"ssl_cert_reqs must be none, optional or required, got {cert_reqs!r}")
    settings: dict[str, Any] = {
        "ssl_cert_reqs": cert_reqs,
        "ssl_check_hostname": _flag(options.get("ssl_check_hostname", "true"), "ssl_check_hostname")
        and cert_reqs != "none",
    }
    for name in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile"):
        path = options.get(name)
        if path:
            if not os.path.isfile(path):
                raise ConfigurationError(f"{name}={path!r}: no such file")
            settings[name] = path
    if "ssl_keyfile" in settings and "ssl_certfile" not in settings:
        raise ConfigurationError("ssl_keyfile needs ssl_certfile (the client certificate) as well")
    return settings


def ssl_context(settings: dict[str, Any]) -> ssl.SSLContext:
    """The same TLS policy redis-py would apply, for the pipelined connection."""
    try:
        context = ssl.create_default_context(cafile=settings.get("ssl_ca_certs"))
        context.check_hostname = bool(settings["ssl_check_hostname"])
        context.verify_mode = {
            "none": ssl.CERT_NONE,
            "optional": ssl.CERT_OPTIONAL,
            "required": ssl.CERT_REQUIRED,
        }[settings["ssl_cert_reqs"]]
        if "ssl_certfile" in settings:
            context.load_cert_chain(settings["ssl_certfile"], settings.get("ssl_keyfile"))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigurationError(f"cannot set up TLS for Redis: {exc}") from exc
    return context
