"""Starting the demo: the default store, the persisted development secret, the server."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import socket
import stat
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from ..crypto import HOW_TO_MAKE_ONE, Keyring
from ..errors import CoatcheckError, ConfigurationError, SessionStoreError
from ..stores._toolkit import redact_url as _redact_url
from ..stores.base import ClientSideStore, Store
from ..stores.sqlite import SQLiteStore
from ..stores.url import from_url

DEFAULT_STORE_URL = "sqlite:///coatcheck-demo.db"
SECRET_FILE_NAME = ".coatcheck-demo-secret"  # noqa: S105 - a file name, not a secret
PROBE_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class DemoSecret:
    """The demo's signing secret and where it is kept."""

    value: str
    path: Path
    created: bool


def redact_url(url: str) -> str:
    """The store URL with any password replaced by '***', fit to print or show on a page."""
    return _redact_url(url)


def secret_path_for(store: Store | ClientSideStore, directory: Path | None = None) -> Path:
    """Where the demo keeps its secret: next to a SQLite file, else in the working directory."""
    if isinstance(store, SQLiteStore) and isinstance(store.path, Path):
        return store.path.resolve().parent / SECRET_FILE_NAME
    return (directory or Path.cwd()) / SECRET_FILE_NAME


def load_or_create_secret(path: Path) -> DemoSecret:
    """Read the secret in `path`, or create the file (mode 0600) with a new strong secret.

    Keeping it on disk is what lets a restarted demo still verify the cookies it signed.
    Raises ConfigurationError if the file cannot be written, or holds a weak secret.
    """
    created = False
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    except OSError as exc:
        raise ConfigurationError(
            f"cannot create the demo secret file {str(path)!r}: {exc.strerror}; "
            "run the demo in a writable directory or pass --secret-file"
        ) from None
    else:
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(32) + "\n")
        created = True
    try:
        mode = path.stat().st_mode
        value = path.read_text().strip()
    except OSError as exc:
        raise ConfigurationError(f"cannot read the demo secret file {str(path)!r}: {exc.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        # Anyone who can read the secret can forge session cookies.
        try:
            path.chmod(0o600)
        except OSError as exc:
            raise ConfigurationError(
                f"the demo secret file {str(path)!r} is readable by other users and cannot be "
                f"restricted ({exc.strerror}): chmod 600 it or delete it"
            ) from None
    try:
        Keyring(value)
    except ConfigurationError:
        raise ConfigurationError(
            f"the demo secret file {str(path)!r} holds a weak or empty secret: delete it to get a "
            f"new one, or put a strong one in it ({HOW_TO_MAKE_ONE})"
        ) from None
    return DemoSecret(value=value, path=path, created=created)


def probe_store(url: str) -> None:
    """Open the store once and ask it for a record, so a bad URL or an unreachable server
    is one clear error before the server starts. Raises CoatcheckError."""

    async def ask() -> None:
        store = from_url(url)
        if isinstance(store, ClientSideStore):
            return  # the cookie is the store: nothing to reach
        try:
            await asyncio.wait_for(store.get("0" * 64), PROBE_TIMEOUT)
        except TimeoutError:
            raise SessionStoreError(
                f"the store at {redact_url(url)} did not answer within {PROBE_TIMEOUT:g}s"
            ) from None
        except CoatcheckError:
            raise
        except (OSError, ConnectionError) as exc:
            raise SessionStoreError(f"cannot reach the store at {redact_url(url)}: {exc}") from None
        finally:
            # Closing a store that never connected may fail too; the probe's own error matters.
            with contextlib.suppress(Exception):
                await store.close()

    asyncio.run(ask())


# The demo's start-up, step by step in the order it happens (secret, store, instances, server).
def run(
    *,
    store_url: str = DEFAULT_STORE_URL,
    host: str = "127.0.0.1",
    port: int = 8000,
    secret_file: Path | None = None,
    origins: Iterable[str] = (),
    say: Callable[[str], None] | None = None,
    instances: int = 1,
    instance_number: int = 1,
) -> None:
    """Serve the demo with uvicorn until interrupted. Raises CoatcheckError on bad settings.

    With `instances` > 1 the same app is served by that many processes, instance k on
    `port + k - 1`, all with the same store URL and secret: this process is instance
    `instance_number`, and instance 1 starts the others and stops them when it stops.
    """
    import uvicorn

    from .app import create_app, origins_for
    from .modes import Instance

    ports = tuple(range(port, port + instances))
    own_port = ports[instance_number - 1]
    if instance_number == 1:
        probe_store(store_url)
        for each in ports:
            check_port(host, each)
    store = from_url(store_url)
    secret_path = secret_file or secret_path_for(store)
    secret = load_or_create_secret(secret_path)
    app = create_app(
        store=store,
        secret=secret.value,
        store_url=redact_url(store_url),
        trusted_origins=[*(o for each in ports for o in origins_for(host, each)), *origins],
        instance=Instance(number=instance_number, count=instances, ports=ports, host=host),
    )
    echo = say or (lambda text: print(text, file=sys.stderr))
    if instance_number > 1:
        _stop_with_parent()
        uvicorn.run(app, host=host, port=own_port, log_level="warning", server_header=False)
        return
    echo(f"coatcheck demo on http://{_host_for_url(host)}:{port}  (store: {redact_url(store_url)})")
    for number, each in enumerate(ports[1:], start=2):
        echo(f"instance {number} of {instances} on http://{_host_for_url(host)}:{each}, a process of its own")
    what = "created" if secret.created else "using"
    echo(f"{what} the development secret in {secret.path} (keep it private; it signs the cookies)")
    if host not in ("127.0.0.1", "localhost", "::1"):
        echo(
            "warning: the demo is for local learning and listens beyond this machine on plain HTTP; "
            "add --origin http://<address>:<port> for each address browsers will use"
        )
    echo("press Ctrl+C to stop")
    others = [
        _start_instance(number, store_url, host, port, secret.path, origins, instances)
        for number in range(2, instances + 1)
    ]
    try:
        uvicorn.run(app, host=host, port=port, log_level="info", server_header=False)
    finally:
        for process in others:
            process.terminate()
        for process in others:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


def _start_instance(
    number: int, store_url: str, host: str, port: int, secret: Path, origins: Iterable[str], count: int
) -> subprocess.Popen[bytes]:
    """Instance `number` of the demo, as a process of its own (the same command, one flag more)."""
    command = [sys.executable, "-m", "coatcheck", "demo", "--store", store_url, "--host", host]
    command += ["--port", str(port), "--secret-file", str(secret), "--instances", str(count)]
    command += ["--instance-number", str(number)]
    for origin in origins:
        command += ["--origin", origin]
    # stdin is a pipe from this process: when it closes (this process ended, even by SIGKILL),
    # the instance stops itself (_stop_with_parent).
    return subprocess.Popen(command, stdin=subprocess.PIPE)  # noqa: S603 - our own interpreter and arguments


def _stop_with_parent() -> None:
    """Stop this instance gracefully when instance 1, which holds our stdin open, goes away."""

    def wait() -> None:
        sys.stdin.buffer.read()  # returns at EOF: the parent's end of the pipe is closed
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=wait, name="coatcheck-demo-parent-watch", daemon=True).start()


def check_port(host: str, port: int) -> None:
    """Fail before printing "demo on http://..." if the address cannot be listened on."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigurationError(
            f"cannot listen on {host!r}: {exc.strerror}; use e.g. --host 127.0.0.1"
        ) from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
        try:
            sock.bind(address)
        except OSError as exc:
            raise CoatcheckError(
                f"cannot listen on {_host_for_url(host)}:{port} ({exc.strerror}): choose another --port"
            ) from None


def _host_for_url(host: str) -> str:
    return f"[{host}]" if ":" in host else host
